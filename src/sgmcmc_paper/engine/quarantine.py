"""Damaged store entries are moved aside, never deleted: ``<key>.damaged-<time>`` beside them.

Its own module so that the store, a loaded run (whose traces are read lazily), checkpoints and
attack progress can move what is damaged aside without importing each other.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from sgmcmc_paper.errors import DamagedRunError

#: How a folder moved aside by :func:`quarantine` is named: ``<key>.damaged-<time>``.
DAMAGED = ".damaged-"


def move_aside(path: Path) -> Path:
    """Rename ``path`` (a file or folder) to ``<name>.damaged-<time>`` beside it, with ``-<n>``
    added while that name is taken; returns the new path. Raises ``OSError`` where it cannot
    (``FileNotFoundError``: another process moved it first)."""
    stamp = time.strftime("%Y%m%dT%H%M%S")
    aside = path.with_name(f"{path.name}{DAMAGED}{stamp}")
    for n in range(2, 100):
        if not aside.exists():
            break
        aside = path.with_name(f"{path.name}{DAMAGED}{stamp}-{n}")
    os.rename(path, aside)
    return aside


def quarantine(damage: DamagedRunError) -> DamagedRunError:
    """Move the damaged store folder of ``damage`` aside (:func:`move_aside`); returns the
    error to raise, whose message says where it went and what to do."""
    folder = damage.folder
    try:
        aside = move_aside(folder)
    except FileNotFoundError:
        fix = "another process moved it aside already; run again to train it afresh"
        return DamagedRunError(folder, damage.problem, fix=fix)
    except OSError as exc:
        fix = (
            f"it could not be moved aside ({exc.strerror or exc}): delete it to train the run "
            "afresh, or put a good copy of it back"
        )
        return DamagedRunError(folder, damage.problem, fix=fix)
    fix = (
        f"moved it aside to {aside.name}: run again to train it afresh, or put a good copy "
        "back (e.g. `git checkout` in a committed store)"
    )
    return DamagedRunError(folder, damage.problem, moved_to=aside, fix=fix)
