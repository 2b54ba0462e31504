"""Superseded runs: those a profile's store holds that nothing reads any more.

A test-set run is *needed* at a profile when a notebook's run plan asks for its key
(:func:`sgmcmc_paper.protocol.plan.notebook_configs`) or when it is the transfer source of such a
run (:func:`sgmcmc_paper.engine.robustness.transfer_source`). Every other finished test-set run
under ``results/<profile>`` is superseded: a configuration or an evaluation changed since it was
trained (e.g. smallMNIST runs made before every step was sampled), so no table reads it. A sweep's
trial (a validation-set run) is kept while it can still matter: while a search record of its
profile (``results/hparams/<profile>.json``) lists it, or while the profile's searches would still
make it as it is (a search in progress has not written its record yet, and a rerun of it loads
its trials). A trial that no record lists and whose evaluation the searches no longer use
(:data:`TRIAL_EVALUATION`, e.g. smallMNIST trials sampled every 20 steps from before every step
was) is superseded.

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
#: The fields a stored trial's config is rebuilt from
#: (:func:`sgmcmc_paper.sweep.trial.trial_config`), and those the profile sets in it: a trial
#: whose stored ``TRIAL_EVALUATION`` differs from the rebuilt config's is one that no current
#: search would make.
TRIAL_SHAPE = ("method", "convention", "dataset", "train_size", "batch_size")
TRIAL_EVALUATION = ("epochs", "eval_every")


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


def recorded_trials(profile: str, root: Path | None = None) -> set[str]:
    """The keys of every trial the profile's search records list."""
    from sgmcmc_paper.protocol.hparams import hparams_path
    from sgmcmc_paper.sweep.record import read_file

    sweeps = (read_file(hparams_path(profile, root)) or {}).get("sweeps", {})
    return {trial.get("key") for entry in sweeps.values() for trial in entry.get("trials", [])}


def _config(folder: Path) -> dict | None:
    """The stored config of the run in ``folder``; ``None`` when its record is unreadable."""
    try:
        config = json.loads((folder / RUN_FILE).read_text())["config"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return config if isinstance(config, dict) else None


def _outdated_trial(config: dict, profile: str) -> bool:
    """Whether the profile's searches would now evaluate the trial of ``config`` otherwise
    (:data:`TRIAL_EVALUATION`); ``False`` when its config cannot be rebuilt."""
    from sgmcmc_paper.protocol.config import ConfigError
    from sgmcmc_paper.sweep.trial import trial_config

    fields = {name: config[name] for name in TRIAL_SHAPE if name in config}
    if "method" not in fields:
        return False
    try:
        current = trial_config(profile, fields)
    except (ConfigError, TypeError, ValueError):
        return False
    return any(config.get(name) != getattr(current, name) for name in TRIAL_EVALUATION)


def superseded_runs(profile: str, root: Path | None = None) -> list[Path]:
    """The finished run folders under ``<root>/<profile>`` that nothing reads (module
    docstring), by name. A run whose record is unreadable (or of a layout without
    ``evaluate_on``) is kept for the store's own checks."""
    needed, recorded = needed_keys(profile), recorded_trials(profile, root)
    superseded = []
    for folder in finished_runs(profile, root):
        config = _config(folder)
        if config is None or "evaluate_on" not in config:  # unreadable, or of an older layout
            continue
        if config.get("evaluate_on") == "test":
            if folder.name not in needed:
                superseded.append(folder)
        elif folder.name not in recorded and _outdated_trial(config, profile):
            superseded.append(folder)
    return superseded


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
