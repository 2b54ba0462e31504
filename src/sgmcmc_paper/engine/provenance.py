"""Where, when and with what a run was made (stored in ``run.json``).

Every stored run records the git commit of the code that made it (``provenance.git_commit``)
and where that came from (``git_commit_source``): :data:`RECORDED` for a run that read
``HEAD`` when it was made (``git_dirty`` says whether tracked files differed from it), or
:data:`BACKFILLED` for a run stored before commits were recorded, whose commit is the one that
added its ``run.json`` to the store (:func:`backfill_git_commits`): the code state closest to
the one that made it.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sgmcmc_paper.paths import repo_root


def device_name(device: torch.device) -> str:
    """A human name for the device: the GPU model, or the CPU and its thread count."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu} ({torch.get_num_threads()} threads)"


#: ``git_commit_source`` of a run that recorded ``HEAD`` when it was made.
RECORDED = "HEAD when the run was made"
#: ``git_commit_source`` of a run whose commit was backfilled (:func:`backfill_git_commits`).
BACKFILLED = "backfilled from the store's history: the commit that added this run.json"


def _git(*args: str, cwd: Path | None = None) -> str | None:
    """The stripped output of ``git args`` in the repository (``None`` if git fails)."""
    try:
        out = subprocess.run(
            ["git", "-C", str(cwd or repo_root()), *args],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _git_commit() -> str | None:
    return _git("rev-parse", "HEAD") or None


def _git_dirty() -> bool | None:
    """Whether tracked files differ from ``HEAD`` (``None`` where git cannot say)."""
    status = _git("status", "--porcelain", "--untracked-files=no")
    return None if status is None else bool(status)


def provenance(device: torch.device, started: float, timing: dict[str, float]) -> dict[str, Any]:
    """Where, when and with what a run was made."""
    import sgmcmc

    return {
        "device": device.type,
        "device_name": device_name(device),
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "timing": timing,
        "versions": {
            "sgmcmc": sgmcmc.__version__,
            "python": platform.python_version(),
            "torch": torch.__version__,
            "numpy": np.__version__,
        },
        "git_commit": _git_commit(),
        "git_commit_source": RECORDED,
        "git_dirty": _git_dirty(),
        "host_os": f"{platform.system()} {platform.release()}",
        "pid": os.getpid(),
    }


def adding_commit(path: Path) -> str | None:
    """The commit that added ``path`` to the repository (the latest, where it was added more
    than once), from ``git log --diff-filter=A``; ``None`` if git knows of none."""
    path = Path(path).resolve()
    out = _git("log", "--diff-filter=A", "--format=%H", "--", str(path), cwd=path.parent)
    return out.splitlines()[0] if out else None


def backfill_git_commits(folders: list[Path]) -> list[Path]:
    """Give every run of ``folders`` (store run folders) that has no recorded git commit the
    commit that added its ``run.json`` (:func:`adding_commit`), with ``git_commit_source``
    :data:`BACKFILLED`; ``run.json`` is replaced atomically, its other fields untouched (the
    artifact sizes it records are those of the other files). Returns the folders changed;
    a run git has no record of is left as it is."""
    changed = []
    for folder in folders:
        path = Path(folder) / "run.json"
        record = json.loads(path.read_text())
        provenance = record.get("provenance", {})
        if provenance.get("git_commit"):
            continue
        commit = adding_commit(path)
        if commit is None:
            continue
        provenance.update(git_commit=commit, git_commit_source=BACKFILLED)
        record["provenance"] = provenance
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(record, indent=1))
        os.replace(tmp, path)
        changed.append(Path(folder))
    return changed
