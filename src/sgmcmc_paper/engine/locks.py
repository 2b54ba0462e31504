"""Advisory file locks between processes of one machine (or a shared POSIX file system)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sgmcmc_paper.errors import UserError
from sgmcmc_paper.paths import ensure_dir, unwritable_fix


@contextmanager
def file_lock(path: Path, waiting: str | None = None) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created with its folder if missing).

    The kernel releases it if the holder dies, so a killed process never blocks the next one.
    When another process holds it, ``waiting`` (if given) is printed once to stderr before
    waiting, so a wait never looks like a hang. A lock that cannot be created is a one-line
    :class:`UserError`. Where ``fcntl`` does not exist (Windows) it is a no-op.
    """
    try:
        import fcntl
    except ImportError:
        yield
        return
    ensure_dir(path.parent)
    try:
        handle = open(path, "a")  # noqa: SIM115 (closed below, after the lock is released)
    except OSError as exc:
        raise UserError(
            f"cannot create the lock file {path} ({exc.strerror or exc}); {unwritable_fix(path)}"
        ) from None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if waiting:
                print(waiting, file=sys.stderr, flush=True)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
