"""Planted trials and lock holders for tests/test_fill.py, in a module of their own so that the
worker processes they run in (``spawn``) import little besides them."""

from __future__ import annotations

import os
import time
from pathlib import Path


def square(fields):
    """A trial: fails on 3, squares the rest."""
    if fields["x"] == 3:
        raise RuntimeError("planted failure")
    return {"status": "ok", "y": fields["x"] ** 2, "pid": os.getpid()}


def die_once(fields):
    """A trial whose worker process dies the first time it runs ``x == 1`` (a marker file
    says whether it did)."""
    marker = Path(fields["dir"]) / f"{fields['x']}.started"
    if fields["x"] == 1 and not marker.exists():
        marker.touch()
        os._exit(9)
    return {"status": "ok", "y": fields["x"]}


def hold(path: str, seconds: float, log: str) -> None:
    """Hold the store's lock on ``path`` for ``seconds``, writing when it got and left it."""
    from sgmcmc_paper.engine.locks import file_lock

    with file_lock(Path(path)):
        with open(log, "a") as handle:
            handle.write(f"in {time.time()}\n")
        time.sleep(seconds)
        with open(log, "a") as handle:
            handle.write(f"out {time.time()}\n")
