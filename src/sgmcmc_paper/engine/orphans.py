"""Superseded runs: those a profile's store holds that nothing reads any more.

A run is *needed* at a profile when a notebook's run plan asks for its key
(:func:`sgmcmc_paper.protocol.plan.notebook_configs`), when it is the transfer source of such a
run (:func:`sgmcmc_paper.engine.robustness.transfer_source`), or when the profile's selection file
(``results/hparams/<profile>.json``) records it as a sweep trial or a sweep's SGD reference.
Every other finished run under ``results/<profile>`` is superseded: a configuration or an
evaluation changed since it was trained (e.g. smallMNIST runs made before every step was
sampled), so no table reads it.

:func:`retire` moves superseded runs to ``results/superseded/<profile>/<key>``, which git ignores:
nothing is deleted, the committed store holds only what the book reads, and a run moved back by
hand is read again.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from sgmcmc_paper.engine.store import DAMAGED, RUN_FILE
from sgmcmc_paper.errors import UserError
from sgmcmc_paper.paths import results_dir

#: Where :func:`retire` puts superseded runs, under the results root.
SUPERSEDED = "superseded"


def needed_keys(profile: str) -> set[str]:
    """The keys of every run the book, the fill or the sweep's record needs at ``profile``."""
    from sgmcmc_paper.engine.robustness import transfer_source
    from sgmcmc_paper.protocol.plan import notebook_configs

    keys: set[str] = set()
    for config in notebook_configs(profile):
        keys.add(config.key())
        if (source := transfer_source(config)) is not None:
            keys.add(source.key())
    return keys | sweep_keys(profile)


def sweep_keys(profile: str, root: Path | None = None) -> set[str]:
    """The keys of the trials and SGD references the profile's selection file records."""
    path = Path(root or results_dir()) / "hparams" / f"{profile}.json"
    if not path.exists():
        return set()
    try:
        sweeps = json.loads(path.read_text()).get("sweeps", {})
    except (OSError, json.JSONDecodeError, UnicodeDecodeError, AttributeError) as exc:
        raise UserError(
            f"cannot read the sweep record {path} ({exc}); restore it (`git checkout` it) "
            "before looking for superseded runs"
        ) from None
    keys = set()
    for sweep in sweeps.values():
        for record in [sweep.get("reference") or {}, *sweep.get("trials", [])]:
            if record.get("key"):
                keys.add(record["key"])
    return keys


def superseded_runs(profile: str, root: Path | None = None) -> list[Path]:
    """The finished run folders under ``<root>/<profile>`` whose key no one needs, by name."""
    base = Path(root or results_dir()) / profile
    if not base.exists():
        return []
    needed = needed_keys(profile)
    return sorted(
        folder
        for folder in base.iterdir()
        if (folder / RUN_FILE).exists() and DAMAGED not in folder.name
        if folder.name not in needed
    )


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
