"""Where the project keeps its dataset cache and its run store.

Both default to folders of the repository (``data/`` and ``results/``) when the package is
used from a checkout, and to the current directory otherwise; ``$SGMCMC_DATA`` and
``$SGMCMC_RESULTS`` override them. :func:`ensure_dir` creates a folder under either, and
reports one that cannot be created as a one-line :class:`~sgmcmc_paper.errors.UserError`
naming the variable that moves it.
"""

from __future__ import annotations

import os
from pathlib import Path

from sgmcmc_paper.errors import UserError

_REPO = Path(__file__).resolve().parents[2]
DATA_ENV = "SGMCMC_DATA"
RESULTS_ENV = "SGMCMC_RESULTS"


def _root() -> Path:
    """The repository root for an editable install, else the working directory."""
    return _REPO if (_REPO / "pyproject.toml").exists() else Path.cwd()


def data_dir() -> Path:
    """The dataset cache (``$SGMCMC_DATA``, default ``<repo>/data``)."""
    return Path(os.environ.get(DATA_ENV) or _root() / "data")


def results_dir() -> Path:
    """The run store (``$SGMCMC_RESULTS``, default ``<repo>/results``)."""
    return Path(os.environ.get(RESULTS_ENV) or _root() / "results")


def repo_root() -> Path:
    """The repository root (notebooks, book), or the working directory outside a checkout."""
    return _root()


def unwritable_fix(path: Path) -> str:
    """How to fix an unwritable ``path``: the variable that moves the folder it lies in."""
    path = Path(path).absolute()
    for env, base, what in (
        (RESULTS_ENV, results_dir(), "the run store"),
        (DATA_ENV, data_dir(), "the dataset cache"),
    ):
        if path == base.absolute() or base.absolute() in path.parents:
            return f"{what} is ${env}={base}: set {env} to a writable folder"
    return "choose a writable folder"


def ensure_dir(path: Path) -> Path:
    """Create ``path`` and its parents if missing; a folder that cannot be created (a read-only
    or virtual file system, a file in the way) is a one-line :class:`UserError` naming it."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(
            f"cannot create the folder {path} ({exc.strerror or exc}); {unwritable_fix(path)}"
        ) from None
    return path
