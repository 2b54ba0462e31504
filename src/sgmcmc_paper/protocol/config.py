"""What one run is: a frozen, hashable :class:`RunConfig` and its averaging :class:`Window` s.

A config names everything that determines a run's result (method and hyper-parameters, data,
schedule, evaluation sizes, seed) and nothing that does not (device, paths, verbosity: those
are arguments of :func:`sgmcmc_paper.engine.experiment.run`). :meth:`RunConfig.key` hashes the
former, so a result made on a GPU is found from a CPU. Fields a method ignores are normalised to
``None`` (e.g. ``kfac_damping`` of an SGLD run), so they never split the store.

Units. ``lr`` is in the units of the config's ``convention`` (book/methods.md): mean-loss units for
``"paper"``, potential units (``N`` times smaller) for ``"langevin"``. ``eval_every``,
``trace_every`` and window spacings count optimizer steps; an epoch is
``ceil(train size / batch_size)`` steps (the last batch of an epoch is smaller).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from sgmcmc.kfac.eigen import DAMPING_MODES
from sgmcmc.kfac.estimator import FACTOR_INITS, FISHERS
from sgmcmc.samplers.base import CONVENTIONS, PRECONDITIONS
from sgmcmc.samplers.psgld import AVERAGES, DEFAULT_AVERAGE
from sgmcmc_paper.errors import UserError
from sgmcmc_paper.protocol.models import INITS
from sgmcmc_paper.protocol.paper import (
    ALTERNATIVE_METHODS,
    LANGEVIN_METHODS,
    LEARNING_RATES,
    METHODS,
    SGD_METHODS,
)

# The library's choices (conventions, preconditioning, Fisher types, damping modes), the paper's
# methods and rates (protocol.paper) and the CNN's initialisations (protocol.models) are imported
# above, each from the one module that defines it; the choices below are the harness's own.
DATASETS = ("mnist",)
SPLITS = ("test", "validation")
WINDOW_SETS = ("test", "fgsm", "ood")
#: Training examples of each dataset and split the run evaluates on.
TRAIN_SIZES = {("mnist", "test"): 60_000, ("mnist", "validation"): 50_000}
# Fields added after results were stored, with the values that reproduce the behaviour from
# before they existed: left out of a config's key at those values, so stored keys still hold.
LATE_FIELDS: dict[str, tuple] = {
    "kfac_eigen_rtol": (None, 0.0),
    "kfac_factor_init": (None, "identity"),
    "kfac_max_rows": (None, 4096),
    "psgld_average": (None,),
    "cycles": (None,),
    "cycle_exploration": (None,),
    "ensemble_size": (None,),
    "laplace_samples": (None,),
}
#: Fields that only add outputs to a run's evaluation (never change its training or any output
#: a run without them has): left out of the key, recorded in ``run.json``. A stored run whose
#: recorded values differ from a config's holds the same training but an older evaluation: the
#: notebooks read what it has, the fill retrains it to complete it.
EVALUATION_FIELDS: frozenset[str] = frozenset(
    {"robustness_size", "pgd_steps", "pgd_restarts", "robustness_eps", "transfer_eps"}
    | {"stability_every"}
)
#: The ε grid of the robustness sweep (book/methods.md, "Adversarial robustness"): the paper's
#: 0.3 in steps of 0.05, then 0.5 and 1 (unbounded on [0, 1] pixels: the checklist's check that
#: accuracy falls to about 0).
ROBUSTNESS_EPS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.5, 1.0)
#: The ε at which SGD runs store their PGD examples for transfer attacks.
TRANSFER_EPS = (0.1, 0.2, 0.3)
#: Defaults of the alternatives' fields (book/methods.md, "Against the alternatives"): Zhang et
#: al.'s half-exploration cycles, a deep ensemble of 5 (Lakshminarayanan et al. 2017), 30
#: Monte Carlo draws of the Laplace posterior.
ALTERNATIVE_DEFAULTS: dict[str, Any] = {
    "cycle_exploration": 0.5,
    "ensemble_size": 5,
    "laplace_samples": 30,
}
#: pSGLD's ``alpha`` and ``eps`` per average rule when a config leaves them ``None``: the values
#: every stored run used (:class:`sgmcmc.PSGLD`'s defaults when they were made; before
#: ``psgld_average`` existed each convention had its own rule, so these are the values per
#: convention as well), passed to the sampler explicitly so that a change of the library's
#: defaults cannot change a stored result under the same key. Changing them here changes
#: results: bump :data:`RESULT_SCHEMA` with them.
PSGLD_DEFAULTS: dict[str, tuple[float, float]] = {"released": (0.96, 1e-10), "square": (0.99, 1e-5)}
#: Bump when the engine's output for an unchanged config changes meaning; it is part of the key.
RESULT_SCHEMA = 1

# Langevin convention, preconditioned drift (precondition="both"): the step is about lr per
# coordinate for pSGLD (lr·∇U/sqrt(V), RMSprop's range) and the natural-gradient step
# lr·F̃⁻¹g for KSGLD, whatever N; the sweep's grids start from these (sgmcmc_paper.sweep.grids).
LANGEVIN_PRECONDITIONED_LR = {"psgld": 3e-4, "ksgld": 1e-3}


def default_lr(method: str, convention: str, precondition: str | None, num_train: int) -> float:
    """The rate a config gets when none is given or tuned: the released code's in the paper
    convention; in the langevin convention the rate that gives the released gradient step
    (``lr/N`` for SGD, ``lr/(2N)`` for the Langevin methods, whose paper step is ``(lr/2)·g``)
    wherever the drift is not preconditioned, :data:`LANGEVIN_PRECONDITIONED_LR` where it is."""
    if method in ALTERNATIVE_METHODS:  # the ensemble's members and the Laplace's MAP: SGD
        method = "sgd"
    if convention == "paper":
        return LEARNING_RATES[method]
    if precondition == "both" and method in LANGEVIN_PRECONDITIONED_LR:
        return LANGEVIN_PRECONDITIONED_LR[method]
    return LEARNING_RATES[method] / (num_train if method in SGD_METHODS else 2 * num_train)


class ConfigError(UserError, ValueError):
    """An impossible or unknown configuration value: a ``ValueError`` that the CLI prints."""


@dataclass(frozen=True)
class Window:
    """Posterior samples whose predictions are averaged: ``samples`` steps, ``every`` apart,
    the last one at the final step of epoch ``end_epoch``.

    ``sets`` says what each sample is evaluated on: ``"test"`` (the test subset), ``"fgsm"``
    (adversarial examples of the attack subset, three threat models) and ``"ood"`` (the
    out-of-distribution sets; needs ``"test"``, the in-distribution side of the detection
    scores). In a profile, ``end_epoch=None`` means the run's last epoch and ``samples=None``
    every ``every``-th step of that epoch; :class:`RunConfig` resolves both.
    """

    name: str
    samples: int | None = None
    every: int = 1
    end_epoch: int | None = None
    sets: tuple[str, ...] = WINDOW_SETS

    def __post_init__(self) -> None:
        if isinstance(self.sets, (list, tuple)) and all(isinstance(s, str) for s in self.sets):
            object.__setattr__(self, "sets", tuple(self.sets))
        else:
            raise ConfigError(
                f"window {self.name}: sets must be a list of names from {WINDOW_SETS}, "
                f"got {self.sets!r}"
            )
        if not isinstance(self.name, str) or not self.name.replace("_", "").isalnum():
            raise ConfigError(f"window name must be letters, digits and _, got {self.name!r}")
        _check_int(f"window {self.name}: every", self.every, 1)
        if self.samples is not None:
            _check_int(f"window {self.name}: samples", self.samples, 1)
        if self.end_epoch is not None:
            _check_int(f"window {self.name}: end_epoch", self.end_epoch, 1)
        unknown = sorted(set(self.sets) - set(WINDOW_SETS))
        if unknown or not self.sets:
            raise ConfigError(
                f"window {self.name}: sets must be a non-empty subset of {WINDOW_SETS}, "
                f"got {self.sets!r}"
            )
        if "ood" in self.sets and "test" not in self.sets:
            raise ConfigError(
                f"window {self.name}: 'ood' needs 'test' too (the in-distribution scores)"
            )

    def steps(self, steps_per_epoch: int) -> tuple[int, ...]:
        """The 1-based optimizer steps of the samples, oldest first (needs a resolved window)."""
        end = self.end_epoch * steps_per_epoch
        return tuple(end - k * self.every for k in reversed(range(self.samples)))

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "sets": list(self.sets)}


@dataclass(frozen=True)
class RunConfig:
    """One run of the paper's CNN with one method (the fields are the run's definition).

    ``None`` in a method hyper-parameter means its default: ``lr`` from :func:`default_lr`
    (the released code's 0.01 for SGD/FSGD and 0.02 for the Langevin methods, in each
    convention's units; pSGLD's and KSGLD's own where their drift is preconditioned);
    ``precondition`` "noise" (paper) or "both" (langevin); pSGLD's ``psgld_average`` the
    convention's rule (:class:`sgmcmc.PSGLD`'s ``average``: the released recursion for paper,
    Li et al.'s ``"square"`` average for langevin; a late field, so stored keys hold) and its
    ``alpha``/``eps`` the values of :data:`PSGLD_DEFAULTS` for that rule (:class:`sgmcmc.PSGLD`'s
    defaults, pinned here).

    ``sgd`` and ``fsgd`` are one training (``torch.optim.SGD``); every run records both the
    single model and the window-averaged predictions, so they share one stored result: SGD's
    row reads ``single``, FSGD's ``averaged``.

    ``kfac_update=False`` is the released code's K-FAC, never updated, whose stored inverse
    was the identity: KSGLD then takes exactly SGLD's step (book/reproduction_notes.md), so it
    is trained as ``sgld`` and shares SGLD's stored result (its other ``kfac_*`` fields are
    ignored).
    ``kfac_eigen_rtol`` is :class:`sgmcmc.KFAC`'s ``eigen_rtol`` (``0``: exact K-FAC),
    ``kfac_factor_init`` its ``factor_init`` (``"identity"``: the factors start at ``I``, as
    tf.contrib.kfac's) and ``kfac_max_rows`` its ``max_rows`` (input rows per layer and factor
    update). Every K-FAC argument that changes a result is a field here, passed explicitly, so
    that a changed library default cannot be silently reused from the store; fields added
    after runs were stored are :data:`LATE_FIELDS`, left out of the key at the value those
    runs used.

    Beyond the paper (notebook 09): ``cycles`` (Langevin methods) gives the sampler Zhang et
    al.'s cyclical schedule (:class:`sgmcmc.CyclicalSchedule`: ``cycles`` cosine cycles over the
    run, the first ``cycle_exploration`` of each without noise) and its windows keep only
    sampling-stage steps; method ``ensemble`` trains ``ensemble_size`` SGD members and
    ``laplace`` one SGD model and its K-FAC Laplace posterior (``laplace_samples`` draws), each
    evaluating every window on its members or draws after the last epoch
    (:mod:`sgmcmc_paper.engine.alternatives`).

    Robustness (:data:`EVALUATION_FIELDS`, book/methods.md "Adversarial robustness"): at each
    window with ``"fgsm"``, the first ``robustness_size`` attacked images (``0``: none, the
    behaviour of runs stored before these fields) get PGD (``pgd_steps`` signed steps of
    ``2.5·ε/pgd_steps``, ``pgd_restarts`` random starts), an ε sweep over ``robustness_eps``
    and the saturation statistics (:mod:`sgmcmc_paper.engine.robustness`); SGD runs store
    their PGD examples at ``transfer_eps`` for the other runs' transfer attacks.

    Stability (an evaluation field: the tracker reads the run and changes none of its
    training): ``stability_every > 0`` records a Langevin run's
    :class:`~sgmcmc_paper.analysis.stability.StabilityTracker` every this many steps into
    ``metrics["stability"]`` (``λmax`` of the drift's ``c·P^a·H``, K-FAC spectra and staleness,
    the weights' spread against the noise's random walk); ``0``: none (SGD runs: always 0).
    """

    method: str
    lr: float | None = None
    lr_decay: float = 1.0
    lr_decay_steps: int = 50
    convention: str = "paper"
    precondition: str | None = None
    temperature: float = 1.0
    prior_std: float | None = 1.0
    psgld_alpha: float | None = None
    psgld_eps: float | None = None
    psgld_average: str | None = None
    kfac_damping: float | None = 1e-3
    kfac_damping_mode: str | None = "exact"
    kfac_ema_decay: float | None = 0.95
    kfac_factor_every: int | None = 10
    kfac_inverse_every: int | None = 100
    kfac_fisher: str | None = "sampled"
    kfac_eigen_rtol: float | None = 0.0
    kfac_factor_init: str | None = "identity"
    kfac_max_rows: int | None = 4096
    kfac_update: bool | None = True
    cycles: int | None = None
    cycle_exploration: float | None = None
    ensemble_size: int | None = None
    laplace_samples: int | None = None
    init: str = "tf"
    dataset: str = "mnist"
    evaluate_on: str = "test"
    train_size: int | None = None
    epochs: int = 10
    batch_size: int = 512
    eval_every: int = 10
    trace_every: int = 2
    trace_per_tensor: int = 8
    probe_size: int = 32
    test_size: int | None = None
    attack_size: int | None = None
    ood_size: int | None = None
    fgsm_eps: tuple[float, ...] = (0.3,)
    robustness_size: int = 0
    pgd_steps: int = 40
    pgd_restarts: int = 1
    robustness_eps: tuple[float, ...] = ROBUSTNESS_EPS
    transfer_eps: tuple[float, ...] = TRANSFER_EPS
    stability_every: int = 0
    windows: tuple[Window, ...] = ()
    seed: int = 0
    #: The store folder (``results/<profile>/``); a label, not part of the key.
    profile: str = field(default="custom", compare=False)

    # ------------------------------------------------------------------ validation
    def __post_init__(self) -> None:
        set_ = object.__setattr__
        _check_types(self)
        _check_choice("method", self.method, METHODS + ALTERNATIVE_METHODS)
        _check_choice("convention", self.convention, CONVENTIONS)
        _check_choice("init", self.init, INITS)
        _check_choice("dataset", self.dataset, DATASETS)
        _check_choice("evaluate_on", self.evaluate_on, SPLITS)
        for name in ("epochs", "batch_size", "eval_every", "lr_decay_steps", "probe_size"):
            _check_int(name, getattr(self, name), 1)
        _check_int("trace_every", self.trace_every, 0)
        _check_int("trace_per_tensor", self.trace_per_tensor, 1)
        _check_int("seed", self.seed, 0)
        limit = TRAIN_SIZES[(self.dataset, self.evaluate_on)]
        if self.train_size is not None:
            _check_int("train_size", self.train_size, 1)
            if self.train_size > limit:
                raise ConfigError(
                    f"train_size {self.train_size} exceeds the {limit:,} training examples of "
                    f"{self.dataset} ({self.evaluate_on} split); use at most {limit}"
                )
        for name in ("test_size", "attack_size", "ood_size"):
            if getattr(self, name) is not None:
                _check_int(name, getattr(self, name), 1)
        _check_positive("lr_decay", self.lr_decay)
        _check_positive("temperature", self.temperature, allow_zero=True)
        eps = self.fgsm_eps if isinstance(self.fgsm_eps, (list, tuple)) else (self.fgsm_eps,)
        if not eps or any(not _is_number(e) or not 0 < e < math.inf for e in eps):
            raise ConfigError(f"fgsm_eps must be positive numbers, got {self.fgsm_eps!r}")
        set_(self, "fgsm_eps", tuple(float(e) for e in eps))
        _check_int("robustness_size", self.robustness_size, 0)
        _check_int("stability_every", self.stability_every, 0)
        _check_int("pgd_steps", self.pgd_steps, 1)
        _check_int("pgd_restarts", self.pgd_restarts, 1)
        for name in ("robustness_eps", "transfer_eps"):
            grid = getattr(self, name)
            if not isinstance(grid, (list, tuple)) or any(
                not _is_number(e) or not 0 <= e < math.inf for e in grid
            ):
                raise ConfigError(f"{name} must be a list of numbers >= 0, got {grid!r}")
            set_(self, name, tuple(sorted({float(e) for e in grid})))
        self._normalise_method_fields()
        set_(self, "windows", self._resolve_windows())
        self._normalise_alternatives()

    def _normalise_method_fields(self) -> None:
        """Fill defaults and set fields the method ignores to ``None`` (one key per run)."""
        set_ = object.__setattr__
        langevin = self.method in LANGEVIN_METHODS
        if langevin:
            default = "noise" if self.convention == "paper" else "both"
            set_(self, "precondition", self.precondition or default)
            _check_choice("precondition", self.precondition, PRECONDITIONS)
            if self.convention == "paper" and self.precondition == "both":
                raise ConfigError(
                    "precondition must be 'noise' with convention 'paper' (the released code "
                    "preconditions only the noise); use convention 'langevin' for 'both'"
                )
            if self.method == "sgld":
                set_(self, "precondition", default)  # P = I: both choices are the same step
        else:
            set_(self, "precondition", None)
            set_(self, "temperature", 0.0)
            set_(self, "stability_every", 0)  # no sampler to track
        if self.lr is None:
            set_(self, "lr", default_lr(self.method, self.convention, self.precondition,
                                        self.num_train))  # fmt: skip
        _check_positive("lr", self.lr)
        set_(self, "lr", float(self.lr))
        if self.convention == "paper":
            set_(self, "prior_std", None)
        elif self.prior_std is not None:
            _check_positive("prior_std", self.prior_std)
        if self.method == "psgld":
            if self.psgld_alpha is not None:
                _check_unit_interval("psgld_alpha", self.psgld_alpha)
            if self.psgld_eps is not None:
                _check_positive("psgld_eps", self.psgld_eps)
            if self.psgld_average is not None:
                _check_choice("psgld_average", self.psgld_average, AVERAGES)
                if self.psgld_average == DEFAULT_AVERAGE[self.convention]:
                    set_(self, "psgld_average", None)  # the convention's own: one key per run
        else:
            set_(self, "psgld_alpha", None)
            set_(self, "psgld_eps", None)
            set_(self, "psgld_average", None)
        kfac_fields = [f.name for f in dataclasses.fields(self) if f.name.startswith("kfac_")]
        if self.method != "ksgld" or self.kfac_update is False:
            for name in kfac_fields:
                set_(self, name, None)
            if self.method == "ksgld":
                set_(self, "kfac_update", False)
            return
        defaults = {f.name: f.default for f in dataclasses.fields(self) if f.name in kfac_fields}
        for name in kfac_fields:
            if getattr(self, name) is None:
                set_(self, name, defaults[name])
        _check_choice("kfac_damping_mode", self.kfac_damping_mode, DAMPING_MODES)
        _check_positive("kfac_damping", self.kfac_damping)
        _check_unit_interval("kfac_ema_decay", self.kfac_ema_decay)
        _check_int("kfac_factor_every", self.kfac_factor_every, 1)
        _check_int("kfac_inverse_every", self.kfac_inverse_every, 1)
        _check_choice("kfac_fisher", self.kfac_fisher, FISHERS)
        _check_unit_interval("kfac_eigen_rtol", self.kfac_eigen_rtol, " (0: exact K-FAC)")
        _check_choice("kfac_factor_init", self.kfac_factor_init, FACTOR_INITS)
        _check_int("kfac_max_rows", self.kfac_max_rows, 1)
        set_(self, "kfac_update", True)

    def _normalise_alternatives(self) -> None:
        """Check and default the fields of cyclical schedules, ensembles and Laplace runs
        (:data:`ALTERNATIVE_DEFAULTS`); each is ``None`` for a method it does not apply to."""
        from sgmcmc.schedules import sampling_stage

        set_ = object.__setattr__
        owners = {
            "cycles": LANGEVIN_METHODS,
            "ensemble_size": ("ensemble",),
            "laplace_samples": ("laplace",),
        }
        for name, methods in owners.items():
            if getattr(self, name) is None and self.method in methods and name != "cycles":
                set_(self, name, ALTERNATIVE_DEFAULTS[name])
            if self.method not in methods:
                set_(self, name, None)
            elif getattr(self, name) is not None:
                _check_int(name, getattr(self, name), 1 if name == "cycles" else 2)
        if self.cycles is None:
            set_(self, "cycle_exploration", None)
            return
        if self.cycle_exploration is None:
            set_(self, "cycle_exploration", ALTERNATIVE_DEFAULTS["cycle_exploration"])
        _check_unit_interval("cycle_exploration", self.cycle_exploration)
        if self.lr_decay != 1.0:
            raise ConfigError("a cyclical schedule sets the rate itself: use lr_decay=1")
        if self.cycles > self.total_steps:
            raise ConfigError(f"cycles ({self.cycles}) exceeds the run's {self.total_steps} steps")
        spe = self.steps_per_epoch
        for w in self.windows:
            steps = w.steps(spe)
            kept = [s for s in steps if sampling_stage(s, self.total_steps, self.cycles,
                                                       self.cycle_exploration)]  # fmt: skip
            if not kept or kept[-1] != steps[-1]:
                raise ConfigError(
                    f"window {w.name} must end in a sampling stage of the cyclical schedule "
                    f"(step {steps[-1]} is in an exploration stage); choose cycles that divide "
                    f"the {self.total_steps} steps or end the window at the last epoch"
                )

    def _resolve_windows(self) -> tuple[Window, ...]:
        if not isinstance(self.windows, (list, tuple)):
            raise ConfigError(f"windows must be a list of windows, got {self.windows!r}")
        windows = tuple(_window(w) for w in self.windows)
        names = [w.name for w in windows]
        if len(set(names)) != len(names):
            raise ConfigError(f"window names must be unique, got {names}")
        spe = self.steps_per_epoch
        resolved = []
        for w in windows:
            end = self.epochs if w.end_epoch is None else w.end_epoch
            samples = w.samples if w.samples is not None else math.ceil(spe / w.every)
            if end > self.epochs:
                raise ConfigError(
                    f"window {w.name} ends at epoch {end} but the run has {self.epochs} epochs; "
                    "lower its end_epoch or raise epochs"
                )
            first = end * spe - (samples - 1) * w.every
            if first < 1:
                raise ConfigError(
                    f"window {w.name} needs {samples} samples {w.every} steps apart ending at "
                    f"step {end * spe}, which is before step 1; use fewer samples or a later end"
                )
            resolved.append(dataclasses.replace(w, end_epoch=end, samples=samples))
        return tuple(resolved)

    # ------------------------------------------------------------------ derived
    @property
    def num_train(self) -> int:
        """Training examples used (the first ``train_size`` of the training split)."""
        return self.train_size or TRAIN_SIZES[(self.dataset, self.evaluate_on)]

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.num_train / self.batch_size)

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    @property
    def epoch_samples(self) -> tuple[int, ...]:
        """Samples in each epoch's averaged predictive: the steps of the epoch that are
        multiples of ``eval_every``, and its last step (always a sample)."""
        spe, every = self.steps_per_epoch, self.eval_every
        return tuple(
            (k * spe) // every - ((k - 1) * spe) // every + (1 if (k * spe) % every else 0)
            for k in range(1, self.epochs + 1)
        )

    @property
    def algorithm(self) -> str:
        """What is trained: ``fsgd`` trains as ``sgd`` (they differ in what is read), and
        ``ksgld`` with ``kfac_update=False`` as ``sgld``."""
        if self.method == "fsgd":
            return "sgd"
        if self.method == "ksgld" and self.kfac_update is False:
            return "sgld"
        return self.method

    @property
    def psgld_rule(self) -> str | None:
        """pSGLD's average rule (``psgld_average``, or the convention's own when ``None``:
        ``"released"`` for paper, ``"square"`` for langevin); ``None`` for other methods."""
        if self.method != "psgld":
            return None
        return self.psgld_average or DEFAULT_AVERAGE[self.convention]

    @property
    def psgld_constants(self) -> tuple[float, float] | None:
        """pSGLD's ``(alpha, eps)`` as the sampler receives them: the config's, else the
        :data:`PSGLD_DEFAULTS` of its rule; ``None`` for other methods."""
        if self.method != "psgld":
            return None
        alpha, eps = PSGLD_DEFAULTS[self.psgld_rule]
        return (
            alpha if self.psgld_alpha is None else self.psgld_alpha,
            eps if self.psgld_eps is None else self.psgld_eps,
        )

    def window(self, name: str) -> Window:
        for w in self.windows:
            if w.name == name:
                return w
        raise KeyError(f"no window {name!r}; this run has {[w.name for w in self.windows]}")

    # ------------------------------------------------------------------ identity
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready fields (windows as dicts, tuples as lists)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["windows"] = [w.to_dict() for w in self.windows]
        out["fgsm_eps"] = list(self.fgsm_eps)
        out["robustness_eps"] = list(self.robustness_eps)
        out["transfer_eps"] = list(self.transfer_eps)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        """The inverse of :meth:`to_dict`; unknown fields are an error naming them."""
        if not isinstance(data, dict):
            raise ConfigError(f"a run config must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown config fields {unknown}; known fields: {sorted(known)}")
        if "method" not in data:
            raise ConfigError("a run config needs a 'method' (one of " + ", ".join(METHODS) + ")")
        return cls(**data)

    def key(self) -> str:
        """16 hex digits of a SHA-256 of the result-determining fields (not ``profile``)."""
        fields = self.to_dict()
        fields.pop("profile")
        for name in EVALUATION_FIELDS:
            fields.pop(name)
        for name, absent in LATE_FIELDS.items():  # keys from before the field existed hold
            if fields[name] in absent:
                fields.pop(name)
        if self.algorithm != self.method:
            fields.update(method=self.algorithm, kfac_update=None)
        fields["schema"] = RESULT_SCHEMA
        text = json.dumps(fields, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def replace(self, **changes: Any) -> RunConfig:
        """A copy with some fields changed (re-validated; unset method fields re-defaulted)."""
        return dataclasses.replace(self, **changes)


def _window(spec: Window | dict[str, Any]) -> Window:
    if isinstance(spec, Window):
        return spec
    known = [f.name for f in dataclasses.fields(Window)]
    if not isinstance(spec, dict):
        raise ConfigError(f"a window must be an object of the fields {known}, got {spec!r}")
    unknown = sorted(set(spec) - set(known))
    if unknown or "name" not in spec:
        problem = f"unknown fields {unknown}" if unknown else "no name"
        raise ConfigError(f"bad window {spec!r}: {problem}; its fields are {known}")
    return Window(**spec)


@functools.cache
def _field_kinds() -> dict[str, tuple[type, bool]]:
    """``{field: (bool | int | float | str, optional)}`` for RunConfig's scalar fields."""
    kinds = {}
    for name, hint in typing.get_type_hints(RunConfig).items():
        args = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
        scalar = [a for a in args if a in (bool, int, float, str)]
        if len(scalar) == 1:
            kinds[name] = (scalar[0], type(None) in args)
    return kinds


_KIND_WORDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


def _check_types(config: RunConfig) -> None:
    """Every scalar field holds its type (``None`` where optional), whether or not the
    method uses it: a string ``"false"`` is not a boolean, nor ``"0.9"`` a number."""
    for name, (kind, optional) in _field_kinds().items():
        value = getattr(config, name)
        if value is None and optional:
            continue
        if kind is bool:
            ok = isinstance(value, bool)
        elif kind is str:
            ok = isinstance(value, str)
        elif kind is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        else:
            ok = _is_number(value)
        if not ok:
            none = " or null" if optional else ""
            raise ConfigError(
                f"{name} must be {_KIND_WORDS[kind]}{none}, got {value!r}{_unquote(kind, value)}"
            )


def _unquote(kind: type, value: Any) -> str:
    """A hint for a quoted value that would be right without its quotes."""
    if not isinstance(value, str) or kind is str:
        return ""
    if kind is bool:
        return " (write true or false without quotes)" if value in ("true", "false") else ""
    try:
        (int if kind is int else float)(value)
    except ValueError:
        return ""
    return " (write the number without quotes)"


def _check_unit_interval(name: str, value: Any, note: str = "") -> None:
    if not (_is_number(value) and 0 <= value < 1):
        raise ConfigError(f"{name} must lie in [0, 1){note}, got {value!r}")


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}; got {value!r}")


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_positive(name: str, value: Any, allow_zero: bool = False) -> None:
    ok = _is_number(value) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{name} must be a finite number {bound}, got {value!r}")
