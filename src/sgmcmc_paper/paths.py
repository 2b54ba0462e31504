"""Where the project keeps its dataset cache and its run store.

Both default to folders of the repository (``data/`` and ``results/``) when the package is
used from a checkout, and to the current directory otherwise; ``$SGMCMC_DATA`` and
``$SGMCMC_RESULTS`` override them.
"""

import os
from pathlib import Path

_REPO = Path(__file__).resolve().parents[2]


def _root() -> Path:
    """The repository root for an editable install, else the working directory."""
    return _REPO if (_REPO / "pyproject.toml").exists() else Path.cwd()


def data_dir() -> Path:
    """The dataset cache (``$SGMCMC_DATA``, default ``<repo>/data``)."""
    return Path(os.environ.get("SGMCMC_DATA") or _root() / "data")


def results_dir() -> Path:
    """The run store (``$SGMCMC_RESULTS``, default ``<repo>/results``)."""
    return Path(os.environ.get("SGMCMC_RESULTS") or _root() / "results")


def repo_root() -> Path:
    """The repository root (notebooks, book), or the working directory outside a checkout."""
    return _root()
