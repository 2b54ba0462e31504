"""Where, when and with what a run was made (stored in ``run.json``)."""

from __future__ import annotations

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


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(repo_root()), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


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
        "host_os": f"{platform.system()} {platform.release()}",
        "pid": os.getpid(),
    }
