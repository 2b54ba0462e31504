"""Superseded runs: those a profile's store holds that nothing reads any more.

A test-set run is *needed* at a profile when a notebook's run plan asks for its key
(:func:`sgmcmc_paper.protocol.plan.notebook_configs`) or when it is the transfer source of such a
run (:func:`sgmcmc_paper.engine.robustness.transfer_source`). Every other finished test-set run
under ``results/<profile>`` is superseded: a configuration or an evaluation changed since it was
trained (e.g. smallMNIST runs made before every step was sampled), so no table reads it. The
sweep's trials (validation-set runs) are never superseded: they are the record of a search, a
search in progress has not written its record yet, and a rerun of it loads them.

:func:`retire` moves superseded runs to ``results/superseded/<profile>/<key>``, which git ignores:
nothing is deleted, the committed store holds only what the book reads, and a run moved back by
hand is read again.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from sgmcmc_paper.engine.store import RUN_FILE, finished_runs
from sgmcmc_paper.paths import results_dir

#: Where :func:`retire` puts superseded runs, under the results root.
SUPERSEDED = "superseded"


def needed_keys(profile: str) -> set[str]:
    """The keys of every test-set run the notebooks need at ``profile``, transfer sources
    included."""
    from sgmcmc_paper.engine.robustness import transfer_source
    from sgmcmc_paper.protocol.plan import notebook_configs

    keys: set[str] = set()
    for config in notebook_configs(profile):
        keys.add(config.key())
        if (source := transfer_source(config)) is not None:
            keys.add(source.key())
    return keys


def _is_trial(folder: Path) -> bool:
    """Whether the run in ``folder`` was evaluated on the validation split (a sweep's trial);
    an unreadable record counts as one, so that it is kept for the store's own checks."""
    try:
        return json.loads((folder / RUN_FILE).read_text())["config"]["evaluate_on"] != "test"
    except (OSError, ValueError, KeyError, TypeError):
        return True


def superseded_runs(profile: str, root: Path | None = None) -> list[Path]:
    """The finished test-set run folders under ``<root>/<profile>`` whose key no one needs, by
    name."""
    needed = needed_keys(profile)
    return [
        folder
        for folder in finished_runs(profile, root)
        if folder.name not in needed and not _is_trial(folder)
    ]


def retire(runs: list[Path], root: Path | None = None) -> list[Path]:
    """Move ``runs`` (folders ``<root>/<profile>/<key>``) to ``<root>/superseded/<profile>/<key>``
    (one rename each, atomic on one file system); a run already retired under that key keeps
    the newer name ``<key>.<n>``. Returns the new folders."""
    root = Path(root or results_dir())
    moved = []
    for folder in runs:
        target = root / SUPERSEDED / folder.parent.name / folder.name
        target.parent.mkdir(parents=True, exist_ok=True)
        n = 1
        while target.exists():
            target = target.with_name(f"{folder.name}.{n}")
            n += 1
        os.replace(folder, target)
        moved.append(target)
    return moved
