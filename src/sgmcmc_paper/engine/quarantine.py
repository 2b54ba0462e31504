"""Damaged store entries are moved aside, never deleted: ``<key>.damaged-<time>`` beside them.

Its own module so that both the store and a loaded run (whose traces are read lazily) can move a
folder aside without importing each other.
"""

from __future__ import annotations

import os
import time

from sgmcmc_paper.errors import DamagedRunError

#: How a folder moved aside by :func:`quarantine` is named: ``<key>.damaged-<time>``.
DAMAGED = ".damaged-"


def quarantine(damage: DamagedRunError) -> DamagedRunError:
    """Move the damaged store folder of ``damage`` aside, to ``<key>.damaged-<time>`` beside
    it; returns the error to raise, whose message says where it went and what to do."""
    folder = damage.folder
    stamp = time.strftime("%Y%m%dT%H%M%S")
    aside = folder.with_name(f"{folder.name}{DAMAGED}{stamp}")
    for n in range(2, 100):
        if not aside.exists():
            break
        aside = folder.with_name(f"{folder.name}{DAMAGED}{stamp}-{n}")
    try:
        os.rename(folder, aside)
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
