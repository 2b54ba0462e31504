"""The finished parts of a window's robustness evaluation, kept on disk so that a run interrupted
during its attacks (hours on a CPU at the paper profile: book/rerun.md) does not attack again
what it had finished.

The ε sweep of :func:`sgmcmc_paper.engine.robustness.evaluate` is made of *units*, one per
attack, threat model, number of samples and ε, each independent of the others (its random starts
are seeded afresh: :func:`sgmcmc_paper.analysis.robustness.eps_sweep`). Each finished unit's rows
are written to ``<checkpoint stem>.<window>.attacks.json`` beside the run's checkpoint
(:func:`progress_path`), atomically, under a fingerprint of everything they depend on: the
window's samples (their parameters, bit for bit), the attacked images and labels, and the
evaluation's settings. A resumed run retrains from its checkpoint bit for bit to the window's
end, so its fingerprint matches and the finished units are read back; a file of another
fingerprint is replaced, an unreadable one is moved aside with a one-line warning. The store
deletes the files with the checkpoint once the run's result is written (:func:`discard`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from torch import Tensor

from sgmcmc_paper.engine.quarantine import move_aside

#: The file format (a file of another format is replaced).
FORMAT = 1
SUFFIX = ".attacks.json"


def progress_path(checkpoint: Path, window: str) -> Path:
    """Where the attacks of window ``window`` of the run checkpointed at ``checkpoint`` go."""
    return checkpoint.with_name(f"{checkpoint.stem}.{window}{SUFFIX}")


def discard(checkpoint: Path) -> None:
    """Delete the attack progress of every window of the run checkpointed at ``checkpoint``."""
    for path in checkpoint.parent.glob(f"{checkpoint.stem}.*{SUFFIX}"):
        path.unlink(missing_ok=True)


def fingerprint(snapshots: Sequence[Iterable[Tensor]], x: Tensor, y: Tensor, *settings) -> str:
    """A hash of the samples' parameters, the attacked images and labels (their bytes) and
    ``settings`` (their ``repr``)."""
    digest = hashlib.sha256(repr(settings).encode())
    for tensor in (x, y, *(p for params in snapshots for p in params)):
        flat = tensor.detach().to("cpu").contiguous().reshape(-1)
        digest.update(str((tuple(tensor.shape), flat.dtype)).encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


class AttackProgress:
    """The finished units of one window's attacks (``path`` ``None``: kept in memory only)."""

    def __init__(self, path: Path | None = None, fingerprint: str = "") -> None:
        self.path, self.fingerprint = path, fingerprint
        self.units: dict[str, list[dict]] = {}
        if path is not None and path.exists():
            self.units = self._read(path)

    def rows(self, unit: str) -> list[dict] | None:
        """The rows of a finished ``unit``; ``None`` when it must be computed."""
        return self.units.get(unit)

    def save(self, unit: str, rows: list[dict]) -> None:
        """Record ``unit``'s rows (plain numbers and strings), on disk at once."""
        self.units[unit] = rows
        if self.path is None:
            return
        state = {"format": FORMAT, "fingerprint": self.fingerprint, "units": self.units}
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(state))
            os.replace(tmp, self.path)
        except OSError as exc:  # the attacks go on: only a resume of them is lost
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            print(
                f"warning: cannot write {self.path} ({exc.strerror or exc}); the attacks "
                "go on without saving their progress",
                file=sys.stderr,
            )
            self.path = None

    def _read(self, path: Path) -> dict[str, list[dict]]:
        try:
            state = json.loads(path.read_text())
            units = state["units"]
            if not isinstance(units, dict):
                raise TypeError(f"units is a {type(units).__name__}")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            try:
                where = f"moved aside to {move_aside(path).name}"
            except OSError as move:
                where = f"left in place ({move.strerror or move})"
            print(
                f"warning: the attack progress {path} is unreadable ({type(exc).__name__}); "
                f"{where}, its attacks are made again",
                file=sys.stderr,
            )
            return {}
        if state.get("format") != FORMAT or state.get("fingerprint") != self.fingerprint:
            return {}  # of other samples or settings: replaced by the first unit saved
        return units
