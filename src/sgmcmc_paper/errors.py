"""The exception types users see: a problem they can fix, stated in one line."""

from __future__ import annotations

from pathlib import Path


class UserError(Exception):
    """A bad input or missing resource; the message names the problem and the fix.

    The command line prints ``error: <message>`` and exits with status 2, with no traceback.
    Raise it (or a subclass) for anything a user can correct: unknown names, impossible
    hyper-parameters, missing or tampered datasets, unwritable paths.
    """


class DamagedRunError(UserError):
    """A stored run folder that cannot be read as a run (a truncated ``run.json``, a garbage
    ``predictions.npz`` or ``traces.nc``, a file missing or of the wrong size).

    ``folder`` is the run folder and ``problem`` what is wrong with it. The store moves such a
    folder aside when it finds one (:func:`sgmcmc_paper.engine.store.find_result`), so the
    next request of that run trains it again; the message then says where it went.
    """

    def __init__(self, folder: Path, problem: str, moved_to: Path | None = None, fix: str = ""):
        self.folder, self.problem, self.moved_to = Path(folder), problem, moved_to
        if not fix:
            fix = "delete the folder or put a good copy of it back"
        super().__init__(f"run folder {folder} is damaged: {problem}; {fix}")
