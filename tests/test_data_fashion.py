"""Fashion-MNIST from the Debian package, verified by the published md5s of the IDX files."""

import gzip
import shutil

import numpy as np
import pytest

from sgmcmc_paper.data import fashion
from sgmcmc_paper.data.cache import load_arrays
from sgmcmc_paper.data.idx import encode_idx, idx_md5
from sgmcmc_paper.errors import UserError

installed = pytest.mark.skipif(
    not fashion.is_installed(),
    reason=f"Fashion-MNIST is not installed ({fashion.INSTALL})",
)


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("SGMCMC_DATA", str(tmp_path / "data"))
    return tmp_path / "data"


@installed
def test_arrays_rebuild_the_published_idx_files(data_dir):
    x_train, y_train, x_test, y_test = fashion.load_fashion_mnist()
    assert x_train.shape == (60_000, 28, 28) and x_test.shape == (10_000, 28, 28)
    assert x_train.dtype == np.uint8 and y_train.dtype == y_test.dtype == np.int64
    arrays = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
    assert {key: idx_md5(value) for key, value in arrays.items()} == {
        key: md5 for key, (_, md5) in fashion.FILES.items()
    }
    assert np.bincount(y_train).tolist() == [6000] * 10  # the dataset is balanced
    assert np.bincount(y_test).tolist() == [1000] * 10


@installed
def test_corrupt_cache_is_rebuilt(data_dir):
    x_train = fashion.load_fashion_mnist()[0]
    cache = fashion.cache_file()
    data = bytearray(cache.read_bytes())
    data[1000] ^= 0x01
    cache.write_bytes(bytes(data))
    assert load_arrays(cache) is None
    np.testing.assert_array_equal(fashion.load_fashion_mnist()[0], x_train)
    assert load_arrays(cache) is not None


def test_missing_package_names_the_apt_command(data_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(fashion, "SOURCE_DIR", tmp_path / "nowhere")
    with pytest.raises(UserError, match="apt-get install -y dataset-fashion-mnist") as error:
        fashion.load_fashion_mnist()
    assert "\n" not in str(error.value)
    assert not fashion.cache_file().exists()


def test_files_that_miss_the_published_md5s_are_refused(data_dir, tmp_path, monkeypatch):
    source = tmp_path / "fashion-mnist"
    source.mkdir()
    for key, (name, _) in fashion.FILES.items():
        shape = (5, 28, 28) if key.startswith("x") else (5,)
        (source / f"{name}.gz").write_bytes(gzip.compress(encode_idx(np.ones(shape, np.uint8))))
    monkeypatch.setattr(fashion, "SOURCE_DIR", source)
    with pytest.raises(UserError, match="does not match the published Fashion-MNIST md5"):
        fashion.load_fashion_mnist()
    assert not fashion.cache_file().exists()


@installed
def test_uncompressed_files_are_accepted_too(data_dir, tmp_path, monkeypatch):
    source = tmp_path / "fashion-mnist"
    shutil.copytree(fashion.SOURCE_DIR, source)
    name = fashion.FILES["y_test"][0]
    (source / name).write_bytes(gzip.decompress((source / f"{name}.gz").read_bytes()))
    (source / f"{name}.gz").unlink()
    monkeypatch.setattr(fashion, "SOURCE_DIR", source)
    assert len(fashion.load_fashion_mnist()[3]) == 10_000


def test_a_cache_of_another_layout_is_not_used_even_when_its_checksum_matches(
    data_dir, tmp_path, monkeypatch
):
    from sgmcmc_paper.data.cache import save_arrays

    save_arrays(fashion.cache_file(), {"x": np.zeros((2, 28, 28), np.uint8)})
    monkeypatch.setattr(fashion, "SOURCE_DIR", tmp_path / "nowhere")
    with pytest.raises(UserError, match="apt-get install -y dataset-fashion-mnist"):
        fashion.load_fashion_mnist()  # was a KeyError: 'x_train'
    with pytest.raises(UserError, match="Fashion-MNIST is not installed"):
        fashion.prepare()


@installed
def test_a_cache_of_another_layout_is_rebuilt_from_the_package(data_dir):
    from sgmcmc_paper.data.cache import save_arrays

    save_arrays(fashion.cache_file(), {"x_train": np.zeros((2, 28, 28), np.uint8)})
    assert fashion.load_fashion_mnist()[0].shape == (60_000, 28, 28)
