"""Tuned hyper-parameters: the sweep's selections in ``results/hparams/<profile>.json``.

Schema (written by :mod:`sgmcmc_paper.sweep`, read here)::

    {"profile": "paper",
     "selected": {"<convention>/<method>/<train size or 'full'>": {"lr": 0.02, ...}, ...},
     ...anything else the sweep records (budget used, trial table)}

Each selection maps :class:`~sgmcmc_paper.protocol.config.RunConfig` field names to values; a run
built with ``tuned=True`` takes them, and fields given explicitly win.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from sgmcmc_paper.errors import UserError
from sgmcmc_paper.paths import results_dir


def hparams_path(profile: str, root: Path | None = None) -> Path:
    """``<root>/hparams/<profile>.json``; ``root`` defaults to the store (``results``, or
    ``$SGMCMC_RESULTS`` when set)."""
    return Path(root or results_dir()) / "hparams" / f"{profile}.json"


def selection_key(method: str, convention: str, train_size: int | None) -> str:
    """The key of one selection: ``"<convention>/<method>/<train size or 'full'>"``."""
    return f"{convention}/{method}/{'full' if train_size is None else int(train_size)}"


def tuned_overrides(
    profile: str, method: str, convention: str, train_size: int | None
) -> dict[str, Any] | None:
    """The selected fields for this method, or ``None`` when nothing was selected for it."""
    path = hparams_path(profile)
    if not path.exists():
        return None
    fix = "rerun `sgmcmc sweep`, restore the file (e.g. `git checkout` it) or delete it"
    try:
        selected = json.loads(path.read_text())["selected"]
    except OSError as exc:
        raise UserError(f"cannot read {path} ({exc.strerror or exc}); {fix}") from None
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
        raise UserError(
            f"{path} is not a hyper-parameter selection ({type(exc).__name__}: {exc}); {fix}"
        ) from None
    if not isinstance(selected, dict):
        raise UserError(f"{path}: 'selected' is not a JSON object; {fix}")
    key = selection_key(method, convention, train_size)
    found = selected.get(key)
    if found is None:
        return None
    from sgmcmc_paper.protocol.config import RunConfig

    known = {f.name for f in dataclasses.fields(RunConfig)} - {"method", "profile"}
    if not isinstance(found, dict) or set(found) - known:
        problem = (
            f"unknown fields {sorted(set(found) - known)}"
            if isinstance(found, dict)
            else "not a JSON object of config fields"
        )
        raise UserError(f"{path}: the selection {key!r} holds {problem}; {fix}")
    return dict(found)
