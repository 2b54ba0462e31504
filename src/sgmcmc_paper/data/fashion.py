"""Fashion-MNIST, from the Debian package ``dataset-fashion-mnist``.

The package installs the four gzipped IDX files under ``/usr/share/datasets/fashion-mnist/``.
They are verified by the md5s of the uncompressed IDX files published with the dataset (Debian
recompressed the ``.gz`` files, so their own md5s differ from upstream's) and cached as uint8
images ``(n, 28, 28)`` and int64 labels (0 T-shirt/top .. 9 ankle boot).
"""

import gzip
import hashlib
import zlib
from pathlib import Path

import numpy as np

from sgmcmc_paper import paths
from sgmcmc_paper.data.cache import load_arrays, save_arrays
from sgmcmc_paper.data.idx import decode_idx
from sgmcmc_paper.data.summary import Summary
from sgmcmc_paper.errors import UserError

PACKAGE = "dataset-fashion-mnist"
SOURCE_DIR = Path("/usr/share/datasets/fashion-mnist")
#: IDX file (without ``.gz``) and md5 of its uncompressed bytes, per array.
FILES = {
    "x_train": ("train-images-idx3-ubyte", "f4a8712d7a061bf5bd6d2ca38dc4d50a"),
    "y_train": ("train-labels-idx1-ubyte", "9018921c3c673c538a1fc5bad174d6f9"),
    "x_test": ("t10k-images-idx3-ubyte", "8181f5470baa50b63fa0f6fddb340f0a"),
    "y_test": ("t10k-labels-idx1-ubyte", "15d484375f8d13e6eb1aabb0c3f46965"),
}
#: What the cache holds (a file of another layout is rebuilt, even when its checksum matches).
LAYOUT = {
    "x_train": (np.uint8, (60_000, 28, 28)),
    "y_train": (np.int64, (60_000,)),
    "x_test": (np.uint8, (10_000, 28, 28)),
    "y_test": (np.int64, (10_000,)),
}
INSTALL = f"run `make data` as root, or `sudo apt-get install -y {PACKAGE}`"
CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)


def cache_file() -> Path:
    return paths.data_dir() / "fashion_mnist" / "fashion_mnist.npz"


def load_fashion_mnist() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Fashion-MNIST ``(x_train, y_train, x_test, y_test)``: uint8 ``(n, 28, 28)``, int64 labels.

    60,000 training and 10,000 test images. Raises UserError naming the apt-get command when the
    Debian package is missing, or the reinstall command when its files do not verify.
    """
    arrays = load_arrays(cache_file(), LAYOUT, classes=10) or build_cache()
    return arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"]


def is_installed() -> bool:
    """Whether the package's IDX files are present (they are not verified here)."""
    return all(_source(name) is not None for name, _ in FILES.values())


def _source(name: str) -> Path | None:
    for path in (SOURCE_DIR / f"{name}.gz", SOURCE_DIR / name):
        if path.is_file():
            return path
    return None


def read_idx_file(name: str, md5: str) -> np.ndarray:
    """One IDX file of the package, decompressed and checked against its md5."""
    path = _source(name)
    if path is None:
        raise UserError(f"Fashion-MNIST is not installed ({SOURCE_DIR}/{name}.gz); {INSTALL}")
    try:
        data = path.read_bytes()
        if path.suffix == ".gz":
            data = gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:
        raise UserError(
            f"{path} is unreadable ({exc}); `sudo apt-get install --reinstall {PACKAGE}`"
        ) from None
    if hashlib.md5(data).hexdigest() != md5:
        raise UserError(
            f"{path} does not match the published Fashion-MNIST md5; "
            f"`sudo apt-get install --reinstall {PACKAGE}`"
        )
    return decode_idx(data)


def build_cache() -> dict[str, np.ndarray]:
    """Read and verify the four IDX files, cache them; return the arrays."""
    arrays = {key: read_idx_file(name, md5) for key, (name, md5) in FILES.items()}
    arrays = {
        key: value.astype(np.int64) if key.startswith("y") else value.copy()
        for key, value in arrays.items()
    }
    save_arrays(cache_file(), arrays)
    return arrays


def prepare() -> Summary:
    """Verify the package's files and (re)build the cache from them; describe the set.

    Without the package, a cache that matches its checksum is reported as it is.
    """
    if is_installed():
        arrays, checksum = build_cache(), "md5s of the 4 uncompressed IDX files match"
    elif (arrays := load_arrays(cache_file(), LAYOUT, classes=10)) is not None:
        checksum = f"cache matches its sha256 ({PACKAGE} not installed)"
    else:
        raise UserError(f"Fashion-MNIST is not installed ({SOURCE_DIR}); {INSTALL}")
    return Summary(
        name="Fashion-MNIST",
        source=f"Debian package {PACKAGE} ({SOURCE_DIR})",
        counts=f"train {len(arrays['y_train']):,}, test {len(arrays['y_test']):,}",
        checksum=checksum,
        path=cache_file(),
    )
