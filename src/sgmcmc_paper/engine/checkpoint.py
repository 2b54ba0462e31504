"""Checkpoints of a run in progress, taken at epoch ends, so that an interrupted run (a killed
job, a session that ends) resumes where it stopped, bit for bit, instead of starting over.

A checkpoint is one ``torch.save`` file of tensors, numbers, strings and containers, loaded
with ``weights_only=True``, written atomically (a hidden temporary renamed into place). It
names the run's key and :data:`FORMAT`, so it never resumes another config or a layout this
version cannot read. It is a cache of the store (:func:`sgmcmc_paper.engine.store.run_or_load`),
which deletes it once the run's result is written. An unreadable checkpoint, or one of another
run or format, is moved aside (``<key>.pt.damaged-<time>``) and reported in one line: the next
request of the run starts it over.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from sgmcmc_paper.engine.quarantine import move_aside
from sgmcmc_paper.errors import UserError
from sgmcmc_paper.paths import ensure_dir, unwritable_fix

FORMAT = 1


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` (with ``"key"``) to ``path`` atomically, as checkpoint :data:`FORMAT`."""
    path = Path(path)
    ensure_dir(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save({**state, "format": FORMAT}, tmp)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise UserError(
            f"cannot write the checkpoint {path} ({exc.strerror or exc}); {unwritable_fix(path)}"
        ) from None


def load_checkpoint(path: Path, key: str, device: torch.device) -> dict[str, Any] | None:
    """The checkpoint of run ``key`` at ``path`` with its tensors on ``device``; ``None`` when
    there is none. An unreadable file, or one of another run or format, is moved aside and
    reported as a one-line :class:`UserError` naming both files."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # truncated, tampered, or not a torch file
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise _set_aside(path, f"is unreadable ({type(exc).__name__}: {reason[:120]})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT or state.get("key") != key:
        found = state.get("key") if isinstance(state, dict) else type(state).__name__
        raise _set_aside(path, f"is not one of run {key} in format {FORMAT} (found {found!r})")
    return state


def _set_aside(path: Path, problem: str) -> UserError:
    """Move the bad checkpoint ``path`` aside (``<name>.damaged-<time>``); the error to raise."""
    try:
        aside = move_aside(path)
    except FileNotFoundError:
        fix = "another process moved it aside already; run again to start the run over"
    except OSError as exc:
        fix = f"it could not be moved aside ({exc.strerror or exc}): delete {path} to start over"
    else:
        fix = f"moved it aside to {aside.name}: run again to start the run over"
    return UserError(f"checkpoint {path} {problem}; {fix}")
