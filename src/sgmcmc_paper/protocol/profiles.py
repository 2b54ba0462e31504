"""The three sizes of every experiment: ``ci``, ``quick`` and ``paper`` (book/rerun.md).

This module is the one place where sizes live: training-set size, epochs, evaluation subsets,
averaging windows, trace thinning, seeds and the sweep budget. Notebooks pick a profile
(``$SGMCMC_PROFILE``, else ``paper``) and build configs with :meth:`Profile.config`.

Windows (the paper's §4): ``fig4`` is "the last epoch's samples of the 10-epoch run" (Fig. 4,
out-of-distribution), ``table1`` is "the last 50 samples, every 20 steps, of the 20-epoch run"
(Table 1, FGSM). With a constant learning rate the first 10 epochs of the 20-epoch run are the
10-epoch run, so one run per (method, seed) serves Figs. 1, 2, 4 and Table 1.

Averages average (book/methods.md): every per-epoch averaged predictive and every
window holds at least :data:`MIN_SAMPLES` samples. A run's epoch averages one sample every
``eval_every`` steps and its last step (:attr:`RunConfig.epoch_samples`); where the profile's
spacing would leave an epoch fewer than :data:`MIN_SAMPLES` (smallMNIST: 10 or 6 steps per
epoch against a spacing of 20 or 40), :meth:`Profile.config` samples every step instead, so a
smallMNIST epoch averages all its 10 (5,000 images) or 6 (3,000 images) steps. A window that a
short run cannot fit at its spacing is fitted with closer samples (:meth:`Profile.windows_for`).
Per profile, the samples in each epoch's average: ``paper`` 6 or 7 (MNIST, 118 steps every
20), 10 or 6 (smallMNIST, every step); ``quick`` 3 or 4 (118 steps every 40), 10 (smallMNIST
5,000, every step); ``ci`` 4 (4 steps, every step) and 3 (smallMNIST 1,500: 3 steps).

Evaluation cost, counted in one-image forward passes (on this CPU a training step costs about
two per image): the per-epoch curves cost ``test_size`` every ``eval_every`` steps; a window
sample costs the test subset, each out-of-distribution subset, and for FGSM one forward and two
backward passes plus two forward passes on ``attack_size`` images; a window with FGSM ends with
the predictive attack, about five passes per stored sample. ``benchmarks/evaluation_cost.py``
measures it: ``quick`` spends about a fifth to a quarter of its training time on evaluation on
two CPU cores; at ``paper`` the windows (118 samples on 30,000 images, 50 samples attacked on
10,000) cost a few times the training, seconds on a GPU.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from typing import Any

from sgmcmc_paper.errors import UserError
from sgmcmc_paper.protocol.config import (
    LANGEVIN_PRECONDITIONED_LR,
    ROBUSTNESS_EPS,
    ConfigError,
    RunConfig,
    Window,
)
from sgmcmc_paper.protocol.hparams import tuned_overrides
from sgmcmc_paper.protocol.paper import LEARNING_RATES

#: The fewest samples any averaged predictive holds: each epoch's average and each window.
MIN_SAMPLES = 3


@dataclass(frozen=True)
class Profile:
    """Sizes for one scale of the experiments (fields in the units of :class:`RunConfig`).

    ``train_size=None``: the whole training split. ``epochs``: the main run (Figs. 1, 2, 4 and
    Table 1); ``small_train_sizes``/``small_epochs``: Fig. 3's smallMNIST runs. ``seeds``: the
    independent repetitions. ``sweep_budget``: the grid search's compute, in multiples of the
    SGD run's training time; ``sweep_epochs`` its runs' length. ``main_seeds``: the seeds of
    the runs behind Table 1, Figs. 1 and 4 (``None``: ``seeds``;
    :func:`sgmcmc_paper.protocol.plan.notebook_seeds`). ``hparams``: whose selection
    (``results/hparams/<hparams>.json``) tuned runs use. ``langevin_epochs``: the length of the
    langevin-convention runs of notebooks 06 and 07 (``None``: ``epochs``).
    ``robustness_size``/``pgd_steps``/``robustness_eps``: the images, PGD steps and ε grid of
    the robustness evaluation (:mod:`sgmcmc_paper.engine.robustness`), for runs on the
    profile's training set only.
    """

    name: str
    train_size: int | None
    epochs: int
    small_train_sizes: tuple[int, ...]
    small_epochs: int
    test_size: int | None
    attack_size: int | None
    ood_size: int | None
    probe_size: int
    eval_every: int
    trace_every: int
    trace_per_tensor: int
    windows: tuple[Window, ...]
    seeds: tuple[int, ...]
    sweep_budget: float
    sweep_epochs: int
    hparams: str
    description: str
    langevin_epochs: int | None = None
    main_seeds: tuple[int, ...] | None = None
    #: The alternatives (notebook 09, :mod:`sgmcmc_paper.protocol.alternatives`): draws of the
    #: K-FAC Laplace predictive, members of the deep ensemble, cycles of cyclical SG-MCMC
    #: where the sweep selected none.
    laplace_samples: int = 30
    ensemble_size: int = 5
    cycles: int = 4
    robustness_size: int = 0
    pgd_steps: int = 40
    robustness_eps: tuple[float, ...] = ROBUSTNESS_EPS

    def __post_init__(self) -> None:
        if self.main_seeds is None:
            object.__setattr__(self, "main_seeds", self.seeds)

    def windows_for(self, epochs: int, num_train: int, batch_size: int) -> tuple[Window, ...]:
        """The profile's windows fitted to a run: a window ending after the run ends at its
        last epoch, and one reaching back before step 1 keeps the samples that exist; where
        that would leave fewer than :data:`MIN_SAMPLES` (of a window asking for more), its
        samples are taken closer together, as far apart as the run allows."""
        spe = math.ceil(num_train / batch_size)
        fitted = []
        for w in self.windows:
            end = epochs if w.end_epoch is None else min(w.end_epoch, epochs)
            wanted = w.samples if w.samples is not None else math.ceil(spe / w.every)
            every, last = w.every, end * spe
            floor = min(wanted, MIN_SAMPLES)
            if (last - 1) // every + 1 < floor:  # a short run: closer samples
                every = max(1, (last - 1) // (floor - 1))
            samples = min(wanted, (last - 1) // every + 1)
            fitted.append(dataclasses.replace(w, end_epoch=end, samples=samples, every=every))
        return tuple(fitted)

    def eval_every_for(self, epochs: int, num_train: int, batch_size: int) -> int:
        """The spacing of a run's per-epoch samples: the profile's ``eval_every``, or every
        step where that would leave an epoch's average fewer than :data:`MIN_SAMPLES`
        samples (short epochs: smallMNIST)."""
        probe = RunConfig(
            method="sgd",
            epochs=epochs,
            train_size=num_train,
            batch_size=batch_size,
            eval_every=self.eval_every,
        )
        return self.eval_every if min(probe.epoch_samples) >= MIN_SAMPLES else 1

    def config(self, method: str, **overrides: Any) -> RunConfig:
        """A :class:`RunConfig` with this profile's sizes; ``overrides`` set any field.

        Windows, unless given, are the profile's, fitted to the run (:meth:`windows_for`);
        ``eval_every``, unless given, is the profile's or every step (:meth:`eval_every_for`).
        """
        known = {f.name for f in dataclasses.fields(RunConfig)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ConfigError(f"unknown config fields {unknown}; known fields: {sorted(known)}")
        fields = {
            "train_size": self.train_size,
            "epochs": self.epochs,
            "test_size": self.test_size,
            "attack_size": self.attack_size,
            "ood_size": self.ood_size,
            "probe_size": self.probe_size,
            "eval_every": self.eval_every,
            "trace_every": self.trace_every,
            "trace_per_tensor": self.trace_per_tensor,
            # robustness (#27) on the main training set only: Table 1 and the langevin chains
            "robustness_size": self.robustness_size
            if overrides.get("train_size", self.train_size) == self.train_size
            else 0,
            "pgd_steps": self.pgd_steps,
            "robustness_eps": self.robustness_eps,
            "profile": self.name,
            **overrides,
        }
        if "windows" not in overrides or "eval_every" not in overrides:
            probe = RunConfig(method="sgd", **{**fields, "windows": ()})
            shape = (probe.epochs, probe.num_train, probe.batch_size)
            if "windows" not in overrides:
                fields["windows"] = self.windows_for(*shape)
            if "eval_every" not in overrides:
                fields["eval_every"] = self.eval_every_for(*shape)
        return RunConfig(method=method, **fields)


PROFILES: dict[str, Profile] = {
    "ci": Profile(
        name="ci",
        train_size=2_000,
        epochs=2,
        small_train_sizes=(1_500,),
        small_epochs=2,
        test_size=256,
        attack_size=64,
        ood_size=128,
        probe_size=16,
        eval_every=1,
        trace_every=1,
        trace_per_tensor=4,
        windows=(
            Window("fig4", samples=None, every=1, end_epoch=None, sets=("test", "ood")),
            Window("table1", samples=3, every=2, end_epoch=None, sets=("test", "fgsm")),
        ),
        seeds=(0,),
        sweep_budget=5.0,
        sweep_epochs=1,
        hparams="ci",
        laplace_samples=3,
        ensemble_size=3,
        cycles=2,
        robustness_size=16,
        pgd_steps=5,
        robustness_eps=(0.0, 0.1, 0.3, 1.0),  # the checks' ε (0.3, unbounded 1), CI's time
        description="seconds per run on 2 CPU cores: 2,000 training images, 2 epochs, "
        "256 test images; proves every code path, says nothing about the paper",
    ),
    "quick": Profile(
        name="quick",
        train_size=None,
        epochs=2,
        small_train_sizes=(5_000,),
        small_epochs=10,
        test_size=2_000,
        attack_size=250,
        ood_size=500,
        probe_size=32,
        eval_every=40,
        trace_every=8,
        trace_per_tensor=8,
        windows=(
            Window("fig4", samples=6, every=12, end_epoch=None, sets=("test", "ood")),
            Window("table1", samples=6, every=12, end_epoch=None, sets=("test", "fgsm")),
        ),
        seeds=(0,),
        sweep_budget=0.0,
        sweep_epochs=2,
        hparams="paper",
        description="a CPU reader's rerun (about 40 minutes on 2 cores, half of it smallMNIST, "
        "evaluated at every step): all 60,000 training "
        "images but 2 epochs (the langevin-convention runs of notebooks 06 and 07: 1 epoch), "
        "evaluation on 2,000 test images (250 attacked, 500 per out-of-distribution set), "
        "6 samples per window (both in the last epoch), smallMNIST at 5,000 only, one seed, "
        "the paper profile's tuned hyper-parameters (no search)",
        robustness_size=50,
        pgd_steps=10,
        robustness_eps=(0.0, 0.1, 0.2, 0.3, 1.0),  # a CPU's minute per run
        langevin_epochs=1,
        laplace_samples=10,
        cycles=2,
    ),
    "paper": Profile(
        name="paper",
        train_size=None,
        epochs=20,
        small_train_sizes=(5_000, 3_000),
        small_epochs=10,
        test_size=None,
        attack_size=None,
        ood_size=10_000,
        probe_size=32,
        eval_every=20,
        trace_every=2,
        trace_per_tensor=8,
        windows=(
            Window("fig4", samples=None, every=1, end_epoch=10, sets=("test", "ood")),
            Window("table1", samples=50, every=20, end_epoch=20, sets=("test", "fgsm")),
        ),
        seeds=(0, 1, 2),
        main_seeds=(0, 1, 2, 3, 4),
        sweep_budget=5.0,
        sweep_epochs=10,
        hparams="paper",
        robustness_size=1000,
        pgd_steps=40,
        description="the paper's protocol: 60,000 training images, 20 epochs (the first 10 "
        "are the 10-epoch run), the full test set, 10,000 images per out-of-distribution set, "
        "the paper's windows, 3 seeds (5 for Table 1, Figs. 1 and 4), grid search with 5x the "
        "SGD training time",
    ),
}


def default_profile_name() -> str:
    """``$SGMCMC_PROFILE`` when set, else ``"paper"``."""
    return os.environ.get("SGMCMC_PROFILE") or "paper"


def get_profile(name: str | None = None) -> Profile:
    """The named profile (default :func:`default_profile_name`); unknown names are an error."""
    name = name or default_profile_name()
    if name not in PROFILES:
        raise UserError(f"unknown profile {name!r}; use one of {', '.join(PROFILES)}")
    return PROFILES[name]


# ---------------------------------------------------------------------- named configurations
def as_released(method: str, profile: str = "paper", **overrides: Any) -> RunConfig:
    """The released code's behaviour (book/reproduction_notes.md) at a profile's sizes.

    Paper convention (mean loss, ``(lr/2)·g + lr²·P·ξ``), TF initialisation, the code's
    learning rates, its pSGLD recursion, and K-FAC never updated (KSGLD = SGLD).
    """
    released = {"convention": "paper", "init": "tf", "lr": LEARNING_RATES.get(method)}
    if method == "ksgld":
        released["kfac_update"] = False
    return get_profile(profile).config(method, **{**released, **overrides})


#: pSGLD's preconditioner average "as described" (Li et al., 2016: squared gradients); a
#: selection searched for another rule (the released recursion: the smallMNIST ones made before
#: the rule was a field) is not used for it.
DESCRIBED_PSGLD_AVERAGE = "square"


def as_described(
    method: str, profile: str = "paper", tuned: bool = True, **overrides: Any
) -> RunConfig:
    """What the paper describes: a working K-FAC, the paper convention's noise, tuned rates.

    K-FAC is damped as tf.contrib.kfac (and Martens & Grosse) do, factor by factor
    (``kfac_damping_mode="factored"``), with the code's damping 1e-3 and decay 0.95.
    pSGLD is Li et al.'s (2016): the average of squared gradients (``psgld_average="square"``,
    not the released recursion) in the paper convention, with their ``α = 0.99`` and
    ``λ = 1e-5`` until the search selects its own (Palacci & Hess give neither); a selection
    searched for another pSGLD rule (the smallMNIST ones made before the rule was a field) is
    not used for it.

    The rates come from ``results/hparams/<profile's hparams>.json`` when ``tuned`` and a
    selection exists for this method, convention and training size
    (:mod:`sgmcmc_paper.protocol.hparams`; pSGLD and KSGLD with ``precondition="noise"`` in the
    langevin convention take SGLD's rate and schedule, since their drift is SGLD's); otherwise
    :func:`~sgmcmc_paper.protocol.config.default_lr`.
    """
    prof = get_profile(profile)
    described: dict[str, Any] = {"convention": "paper", "init": "tf"}
    if method == "ksgld":
        described.update(kfac_update=True, kfac_damping_mode="factored")
    if method == "psgld":
        described.update(psgld_average=DESCRIBED_PSGLD_AVERAGE)
    described.update(overrides)
    if tuned:
        convention = described.get("convention", "paper")
        train_size = described.get("train_size", prof.train_size)
        selection = tuned_overrides(prof.hparams, method, convention, train_size) or {}
        rule = described.get("psgld_average")
        if method == "psgld" and convention == "paper" and selection.get("psgld_average") != rule:
            selection = {}  # searched for another pSGLD rule
        noise_only = described.get("precondition") == "noise"
        if convention == "langevin" and noise_only and method in LANGEVIN_PRECONDITIONED_LR:
            # eq. 2: the drift is SGLD's, so its rate and schedule are SGLD's selection's
            sgld = tuned_overrides(prof.hparams, "sgld", convention, train_size) or {}
            selection = {k: v for k, v in selection.items() if k not in ("lr", "lr_decay")}
            selection.update({k: sgld[k] for k in ("lr", "lr_decay") if k in sgld})
        described = {**selection, **described}
    return prof.config(method, **described)
