"""Run Python in a subprocess where some modules cannot be imported, as if not installed.

The interpreter's module finders are wrapped in one that finds nothing for a blocked top-level
name: ``import pandas`` raises ``ModuleNotFoundError`` and ``importlib.util.find_spec("pandas")``
returns ``None``, exactly as when the package is not installed, so an install without the
extras can be simulated inside the project's full environment.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: The top-level modules each extra of pyproject.toml brings that the project imports.
EXTRA_MODULES = {
    "paper": (
        "scipy",
        "pandas",
        "xarray",
        "h5netcdf",
        "arviz",
        "matplotlib",
        "seaborn",
        "sklearn",
        "tqdm",
        "PIL",
        "fontTools",
    ),
    "sweep": ("ray",),
    "book": ("papermill", "IPython", "myst_nb"),
    "dev": ("yaml",),
}
#: What the library must not import: every extra's modules, and the harness.
NOT_LIBRARY = (*sum(EXTRA_MODULES.values(), ()), "sgmcmc_paper")

_PRELUDE = """\
import importlib.abc
import sys


class _NotInstalled(importlib.abc.MetaPathFinder):
    def __init__(self, names, finders):
        self.names = frozenset(names)
        self.finders = finders
        self.refused = []

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in self.names:
            self.refused.append(name)
            return None
        for finder in self.finders:
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                return spec
        return None

    def invalidate_caches(self):
        for finder in self.finders:
            getattr(finder, "invalidate_caches", lambda: None)()


NOT_INSTALLED = _NotInstalled({blocked!r}, list(sys.meta_path))
sys.meta_path[:] = [NOT_INSTALLED]
"""


def run_without(
    blocked: Iterable[str],
    code: str,
    *args: str,
    env: Mapping[str, str] | None = None,
    timeout: float = 300,
) -> subprocess.CompletedProcess:
    """Run ``code`` (with ``args`` as ``sys.argv[1:]``) in a fresh interpreter in which the
    modules ``blocked`` name cannot be imported; ``NOT_INSTALLED.refused`` lists the attempts."""
    source = _PRELUDE.format(blocked=sorted(blocked)) + "\n" + code
    return subprocess.run(
        [sys.executable, "-c", source, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        timeout=timeout,
    )
