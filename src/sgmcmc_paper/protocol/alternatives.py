"""The runs of "Against the alternatives" (notebook 09): the paper's methods beside a K-FAC
Laplace approximation, a deep ensemble and cyclical SG-MCMC, at one profile's sizes.

Every run is the paper convention "as described"
(:func:`~sgmcmc_paper.protocol.profiles.as_described`), so the rows differ only in the method:

- ``as described``: SGD, FSGD, SGLD, pSGLD and KSGLD, the runs of Table 1 and Figs. 1 and 4
  (shared with notebooks 01, 04 and 05);
- ``alternatives``: ``ensemble`` (the profile's ``ensemble_size`` SGD members) and ``laplace``
  (the K-FAC Laplace posterior around SGD, ``laplace_samples`` draws), at SGD's rate, every
  window evaluated after the last epoch (:mod:`sgmcmc_paper.engine.alternatives`);
- ``cyclical``: SGLD, pSGLD and KSGLD under Zhang et al.'s schedule, with the selection of
  ``sgmcmc sweep --cyclical`` for ``<method>+cyclical`` (:data:`CYCLICAL_SUFFIX`; ``lr``,
  ``cycles``, ``cycle_exploration`` and the method constants its trials held fixed) where there
  is one, else the profile's ``cycles``, half of each cycle exploring and the method's rate;
  where the run is too short for the selected cycles to end in a sampling stage (a selection
  searched on 980 steps read by the quick profile's 236), the most cycles below that do
  (:func:`fitted_cycles`). Their windows span the whole run (the samples of every cycle's
  sampling stage, about as many as the profile's ``table1`` window holds;
  :func:`spanning_windows`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from typing import Any

from sgmcmc.schedules import sampling_stage
from sgmcmc_paper.protocol.config import ALTERNATIVE_DEFAULTS, RunConfig, Window
from sgmcmc_paper.protocol.hparams import tuned_overrides
from sgmcmc_paper.protocol.paper import ALTERNATIVE_METHODS, LANGEVIN_METHODS, METHODS
from sgmcmc_paper.protocol.profiles import Profile, as_described, get_profile

#: The selection of a cyclical sampler is recorded as ``<convention>/<method>+cyclical/<size>``.
CYCLICAL_SUFFIX = "+cyclical"
LABELS = ("as described", "alternatives", "cyclical")


def cyclical_fields(profile: str, method: str) -> dict[str, Any]:
    """``cycles``, ``cycle_exploration`` and ``lr_decay = 1`` of a cyclical ``method``, with
    the ``<method>+cyclical`` selection's fields where there is one (``lr``, ``cycles``,
    ``cycle_exploration`` and the method constants its trials held fixed, e.g. pSGLD's ``λ``
    and ``α``: the run is then the selected trial's configuration at the profile's length)."""
    prof = get_profile(profile)
    fields: dict[str, Any] = {
        "cycles": prof.cycles,
        "cycle_exploration": ALTERNATIVE_DEFAULTS["cycle_exploration"],
    }
    selected = tuned_overrides(
        prof.hparams, method + CYCLICAL_SUFFIX, "paper", prof.train_size
    )  # fmt: skip
    fields.update(selected or {})
    fields["lr_decay"] = 1.0  # the schedule sets the rate
    return fields


def fitted_cycles(total_steps: int, cycles: int, exploration: float) -> int:
    """The most cycles up to ``cycles`` after which a run of ``total_steps`` ends in a sampling
    stage (a cycle is ``ceil(K/M)`` steps, so the last may be cut short), at least 1."""
    fits = (
        c for c in range(cycles, 0, -1) if sampling_stage(total_steps, total_steps, c, exploration)
    )
    return next(fits, 1)


def spanning_windows(prof: Profile, probe: RunConfig) -> tuple[Window, ...]:
    """The profile's windows spread over the whole run: samples as far apart as leaves about
    the smallest window's count (``table1``'s: 50 at the paper profile; at least 3) in
    sampling stages, ending at the last step."""
    samples, every = _spacing(probe, probe.windows)
    return tuple(
        Window(w.name, samples=samples, every=every, end_epoch=probe.epochs, sets=w.sets)
        for w in prof.windows
    )


#: The window a cyclical sweep trial is scored by (:func:`sampling_window`).
SAMPLING_WINDOW = "sampling"


def sampling_window(prof: Profile, probe: RunConfig) -> Window:
    """The window that scores a cyclical sweep trial (``probe``: the trial's cyclical config):
    spaced over the whole run as :func:`spanning_windows` spaces chapter 09's (against the
    profile's windows fitted to the trial's length), evaluated on the test set alone (the
    validation split in a trial), so that the search selects by the predictive its runs use:
    the sampling-stage iterates of every cycle."""
    fitted = prof.windows_for(probe.epochs, probe.num_train, probe.batch_size)
    samples, every = _spacing(probe, fitted)
    return Window(SAMPLING_WINDOW, samples=samples, every=every, end_epoch=probe.epochs,
                  sets=("test",))  # fmt: skip


def _spacing(probe: RunConfig, windows: Iterable[Window]) -> tuple[int, int]:
    """``(samples, every)`` of a window ending at ``probe``'s last step that keeps about the
    smallest of ``windows``' sample counts (at least 3) in sampling stages."""
    target = max(3, min(w.samples or 1 for w in windows))
    total, cycles, exploration = probe.total_steps, probe.cycles, probe.cycle_exploration
    every = max(1, math.floor(total * (1 - exploration) / target))
    while every > 1 and _kept(total, every, cycles, exploration) < target:
        every -= 1
    return total // every, every


def _kept(total: int, every: int, cycles: int, exploration: float) -> int:
    steps = range(total - (total // every - 1) * every, total + 1, every)
    return sum(sampling_stage(s, total, cycles, exploration) for s in steps)


def final_windows(prof: Profile, probe: RunConfig) -> tuple[Window, ...]:
    """The profile's windows, each ending at the run's last epoch (where post-hoc methods
    evaluate their members or draws)."""
    ending = dataclasses.replace(prof, windows=tuple(
        dataclasses.replace(w, end_epoch=None) for w in prof.windows
    ))  # fmt: skip
    return ending.windows_for(probe.epochs, probe.num_train, probe.batch_size)


def alternatives_configs(profile: str, seeds: Iterable[int]) -> dict[tuple, RunConfig]:
    """``{(label, method, seed): RunConfig}`` of notebook 09 (module docstring)."""
    prof = get_profile(profile)
    configs: dict[tuple, RunConfig] = {}
    for seed in seeds:
        for method in METHODS:
            configs[("as described", method, seed)] = as_described(method, profile, seed=seed)
        sgd = configs[("as described", "sgd", seed)]
        sizes = {"ensemble": {"ensemble_size": prof.ensemble_size}}
        sizes["laplace"] = {"laplace_samples": prof.laplace_samples}
        for method in ALTERNATIVE_METHODS:
            fields = {"lr": sgd.lr, "lr_decay": sgd.lr_decay, **sizes[method]}
            probe = as_described(method, profile, seed=seed, tuned=False, **fields)
            fields["windows"] = final_windows(prof, probe)
            configs[("alternatives", method, seed)] = as_described(
                method, profile, seed=seed, tuned=False, **fields
            )
        for method in LANGEVIN_METHODS:
            fields = cyclical_fields(profile, method)
            plain = as_described(method, profile, seed=seed)
            exploring = fields["cycle_exploration"]
            fields["cycles"] = fitted_cycles(plain.total_steps, fields["cycles"], exploring)
            ends = final_windows(prof, plain)
            probe = as_described(method, profile, seed=seed, windows=ends, **fields)
            fields["windows"] = spanning_windows(prof, probe)
            configs[("cyclical", method, seed)] = as_described(method, profile, seed=seed, **fields)
    return configs
