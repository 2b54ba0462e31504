"""A sweep trial on the run engine: grid point in, stored run, outcome out.

A trial is a run (:func:`sgmcmc_paper.engine.store.run_or_load`) of the profile's sizes with three
changes that make it a tuning run: it trains on the 50,000 training images of MNIST's
train/validation split (or their first ``train_size``) and is scored on the 10,000 validation
images (never the test set), it lasts the profile's ``sweep_epochs``, and it records neither
traces nor averaging windows (the score needs neither). Its score is the last epoch's
accuracy: of the predictive averaged over that epoch's samples (one every ``eval_every``
steps) for FSGD and the Langevin methods, of the final model for SGD. A trial under a cyclical
schedule (``cycles`` set: ``sgmcmc sweep --cyclical``) has ``lr_decay = 1`` and one window
instead, :func:`~sgmcmc_paper.protocol.alternatives.sampling_window`, over the whole run and
on the validation images alone, and is scored by its averaged predictive: the sampling-stage
iterates of every cycle, the predictive chapter 09's cyclical runs use (the last epoch's
average would mix in exploration-stage iterates).

Every trial's result lands in the store under its key, so a rerun loads it instead of
training again, on whatever machine made it; its compute is the wall time stored with it.

Before its first trial, each process makes one tiny run that is not stored (one step on 512
images), so that one-time costs (lazy imports, the dataset cache, kernel selection, a CUDA
context) are not counted in the first trial's wall time: that trial is usually the SGD
reference, whose time sets the budget. Three identical ci runs in a fresh process took 9.6, 6.1
and 6.2 s here without it, and 9.1, 10.0 and 8.6 s with it (on a busier machine).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sgmcmc_paper.protocol.alternatives import SAMPLING_WINDOW, sampling_window
from sgmcmc_paper.protocol.config import RunConfig


def trial_config(profile: str, fields: dict[str, Any]) -> RunConfig:
    """The tuning run of ``fields`` at ``profile`` (module docstring)."""
    from sgmcmc_paper.protocol.profiles import get_profile

    fields = dict(fields)
    prof = get_profile(profile)
    method = fields.pop("method")
    sizes = {"evaluate_on": "validation", "epochs": prof.sweep_epochs, "trace_every": 0}
    config = prof.config(method, windows=(), **sizes, **fields)
    if config.cycles is None:
        return config
    return prof.config(method, windows=(sampling_window(prof, config),), **sizes, **fields)


@dataclass(frozen=True)
class RunTrial:
    """The trial function of a sweep at one profile (picklable, so that it travels to Ray
    workers; paths are resolved where the sweep starts).

    Args:
        profile: the profile whose sizes the runs use (and whose store folder they land in).
        root: the run store (``$SGMCMC_RESULTS`` where the sweep started).
        data: the dataset cache (``$SGMCMC_DATA`` where the sweep started).
        device: as :func:`sgmcmc_paper.engine.experiment.run`.
        progress: print the runs' per-epoch lines.
    """

    profile: str
    root: str
    data: str
    device: str = "auto"
    progress: bool = False

    def config(self, fields: dict[str, Any]) -> RunConfig:
        """The run of a grid point: ``fields`` hold ``method``, ``train_size`` (``None``: all
        50,000) and any other config fields."""
        return trial_config(self.profile, fields)

    def __call__(self, fields: dict[str, Any]) -> dict[str, Any]:
        from sgmcmc_paper.engine.store import find_result, run_or_load

        if os.environ.get("SGMCMC_DATA") != self.data:
            os.environ["SGMCMC_DATA"] = self.data  # a Ray worker may not share our environment
        config = self.config(fields)
        root = Path(self.root)
        reused = find_result(config, root) is not None
        if not reused:
            _warm_up(self.device)
        result = run_or_load(config, device=self.device, progress=self.progress, root=root)
        last = result.metrics["epochs"][-1] if result.metrics["epochs"] else {}
        score = last.get("single" if config.method == "sgd" else "averaged", {})
        if config.cycles is not None:
            window = result.metrics.get("windows", {}).get(SAMPLING_WINDOW, {})
            score = window.get("sets", {}).get("test", {}).get("averaged", {})
        divergence = result.divergence or {}
        return {
            "status": "ok" if result.status == "complete" else "diverged",
            "val_accuracy": score.get("accuracy", math.nan),
            "val_nll": score.get("nll", math.nan),
            "compute_s": result.provenance["timing"]["total_s"],
            "reason": divergence.get("reason", ""),
            "key": result.key,
            "reused": reused,
            "device": result.provenance.get("device_name", ""),
        }


_WARM_DEVICES: set[str] = set()


def _warm_up(device: str) -> None:
    """One tiny unstored run per process and device (module docstring)."""
    if device in _WARM_DEVICES:
        return
    from sgmcmc_paper.engine.experiment import run

    tiny = RunConfig(
        method="sgd",
        evaluate_on="validation",
        train_size=512,
        epochs=1,
        test_size=512,
        windows=(),
        trace_every=0,
    )
    run(tiny, device=device, progress=False)
    _WARM_DEVICES.add(device)
