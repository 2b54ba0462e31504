"""The sweep's grids: for each method and convention, ordered axes of run-config values.

A grid is a tuple of :class:`Axis`; the first is always the learning rate ``lr``. The walk
(:mod:`sgmcmc_paper.sweep.walk`) tries the learning rates first, every other axis at its default,
then tunes the further axes one at a time, in the order listed, at the best trial so far. Within an
axis, values are tried from the default outwards, alternately above and below it (larger
first), so a budget that runs out early has still covered the neighbourhood of the default.

Learning rates: seven, half a decade apart (:data:`STEPS`, gradient steps ``1e-3 … 1`` on the
mean loss, first ``0.01``: the released code's), in each convention's units (book/methods.md):

- ``paper`` convention (``θ ← θ − (lr/2)·g + lr²·P·ξ`` for the Langevin methods): SGD and FSGD
  ``lr ∈ {1e-3 … 1}`` from the released 0.01; the Langevin methods twice that, ``{2e-3 … 2}``
  from the released 0.02. pSGLD (``P = 1/m`` with ``m ≈ 1``) and KSGLD (only the noise is
  preconditioned) keep these units.
- ``langevin`` convention (potential units): SGD, FSGD and SGLD take ``lr = step / N`` (the
  gradient step of ``U = N·mean loss`` is ``lr·N`` times the mean-loss gradient), so the grid
  moves with the training size ``N``; pSGLD's drift ``lr·∇U/sqrt(V)`` is about ``lr`` per
  coordinate whatever ``N``, so ``lr ∈ {1e-5 … 1e-2}`` from 3e-4 (RMSprop's range); KSGLD's
  drift ``lr·(N·F̃ + δ)⁻¹·∇U`` is about the natural-gradient step ``lr·F̃⁻¹g``, so
  ``lr ∈ {1e-4 … 0.1}`` from 1e-3.

Further axes, in walk order: ``lr_decay`` (the rate at step ``t`` is ``lr·lr_decay^(t/50)``:
1 = constant, 0.95 and 0.9 leave ≈ 37% and ≈ 13% of it after the ~980 steps of 10 MNIST
epochs; left out with ``schedule=False``); pSGLD's averaging constant ``psgld_alpha`` (with Li
et al.'s average, ``psgld_average="square"``, in the paper convention: first its ``λ``,
``psgld_eps`` by decades from 1e-5 (Li et al.'s) to 100, then ``α`` in
{0.9, 0.95, 0.99, 0.995, 0.999} from their 0.99); KSGLD's ``kfac_damping`` (by decades from
1e-4 to 10; from the run config's default, or with ``schedule=False`` from 1) and factor
moving-average decay ``kfac_ema_decay`` (0.9, the default, 0.99; not with
``schedule=False``, where KSGLD searches the damping alone). The bracketing search starts
``λ`` and the damping at 1: the paper convention's noise is ``lr²·P·ξ``, and with mean-loss
gradients (``sqrt(V)`` and the Fisher's eigenvalues far below 1) Li et al.'s ``λ = 1e-5`` or
the code's damping 1e-3 make ``P`` up to 10⁵ or 10³ times SGLD's noise, a start at chance
accuracy from which every neighbour ties and no stage can move; from 1 (``P`` at most SGLD's)
the search goes down as far as the validation accuracy rewards it. In the langevin convention
only, the ``temperature`` (1 = the posterior, smaller = colder; not with ``schedule=False``).
In the langevin convention KSGLD (eq. 1) searches only the rate with ``schedule=False``: its
damping is the prior's precision (book/methods.md).

``schedule=False`` is the book's search (:func:`sgmcmc_paper.sweep.run_sweep`, bracketing: the
learning rate and each method's own constants); ``schedule=True`` the budgeted walk of the
smallMNIST selections made before it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sgmcmc.samplers.base import CONVENTIONS
from sgmcmc.schedules import sampling_stage
from sgmcmc_paper.protocol.config import RunConfig
from sgmcmc_paper.protocol.paper import LANGEVIN_METHODS, METHODS, SGD_METHODS


@dataclass(frozen=True)
class Axis:
    """One run-config field and the values the sweep tries, ``default`` first (see module)."""

    name: str
    values: tuple[Any, ...]
    default: Any

    def __post_init__(self) -> None:
        if self.default not in self.values:
            raise ValueError(f"axis {self.name}: default {self.default!r} is not a value")
        if len(set(self.values)) != len(self.values):
            raise ValueError(f"axis {self.name}: values repeat: {self.values!r}")

    def walk_order(self) -> tuple[Any, ...]:
        """The default, then its neighbours alternately above and below, moving outwards."""
        ordered = sorted(self.values)
        start = ordered.index(self.default)
        order = [self.default]
        for step in range(1, len(ordered)):
            for index in (start + step, start - step):
                if 0 <= index < len(ordered):
                    order.append(ordered[index])
        return tuple(order)


@dataclass(frozen=True)
class Grid:
    """The ordered axes of one method and convention; ``axes[0]`` is the learning rate.
    ``admits``: which points a trial can run (``None``: all; e.g. :class:`EndsSampling`), so
    that the walks neither try nor extend to the others."""

    method: str
    convention: str
    axes: tuple[Axis, ...]
    admits: Callable[[dict[str, Any]], bool] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not self.axes or self.axes[0].name != "lr":
            raise ValueError("a grid's first axis must be the learning rate 'lr'")

    def __contains__(self, name: object) -> bool:
        return any(axis.name == name for axis in self.axes)

    def __iter__(self) -> Iterator[Axis]:
        return iter(self.axes)

    @property
    def num_stages(self) -> int:
        return len(self.axes)

    @property
    def size(self) -> int:
        """Points the walk can visit at most: the rates, plus each further axis' other values."""
        return len(self.axes[0].values) + sum(len(a.values) - 1 for a in self.axes[1:])

    def admissible(self, fields: dict[str, Any]) -> bool:
        """Whether a trial can run the point ``fields`` (``admits``)."""
        return self.admits is None or self.admits(fields)

    def axis_name(self, stage: int) -> str:
        return self.axes[stage].name

    def defaults(self) -> dict[str, Any]:
        """Method, convention and every axis at its default."""
        fields: dict[str, Any] = {"method": self.method, "convention": self.convention}
        fields.update({axis.name: axis.default for axis in self.axes})
        return fields

    def stage_points(self, stage: int, incumbent: dict[str, Any] | None) -> list[dict[str, Any]]:
        """The points of ``stage``, in walk order: stage 0 from the defaults, later stages
        from ``incumbent`` (the best fields so far) with one axis changed."""
        axis = self.axes[stage]
        base = self.defaults() if stage == 0 else dict(incumbent or {})
        if stage and not incumbent:
            raise ValueError(f"stage {stage} needs the incumbent fields")
        points = [{**base, axis.name: value} for value in axis.walk_order()]
        return [
            point
            for point in points
            if (stage == 0 or point[axis.name] != base[axis.name]) and self.admissible(point)
        ]


#: Seven gradient steps half a decade apart, tried from 0.01 outwards (module docstring).
STEPS = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0)


def learning_rates(method: str, convention: str, num_train: int) -> Axis:
    """The ``lr`` axis of a method in a convention, for a training set of ``num_train``."""
    default_step = 1e-2
    if convention == "langevin" and method == "psgld":
        scale, default_step = 1e-2, 3e-2  # per-coordinate steps, RMSprop's range, 3e-4 first
    elif convention == "langevin" and method == "ksgld":
        scale = 1e-1  # natural-gradient steps, 1e-3 first
    elif convention == "paper":
        scale = 1.0 if method in SGD_METHODS else 2.0  # Langevin steps are (lr/2)·g
    else:
        scale = 1.0 / num_train  # lr·∇U = (lr·N)·mean-loss gradient
    values = tuple(_round(step * scale) for step in STEPS)
    return Axis("lr", values, values[STEPS.index(default_step)])


def _config_default(name: str) -> Any:
    """A run config field's default: the grid's default, so stage 0 runs what a run would."""
    return RunConfig.__dataclass_fields__[name].default


def _round(value: float) -> float:
    """Six significant digits: grid values that print and hash the same everywhere."""
    return float(f"{value:.6g}")


def grid_for(
    method: str,
    convention: str,
    num_train: int,
    *,
    schedule: bool = True,
    psgld_average: str | None = None,
) -> Grid:
    """The sweep's grid for ``method`` in ``convention`` (module docstring); ``psgld_average``
    is the run config's (``None``: the convention's rule)."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}; got {method!r}")
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {', '.join(CONVENTIONS)}; got {convention!r}")
    axes = [learning_rates(method, convention, num_train)]
    if schedule:
        axes.append(Axis("lr_decay", (1.0, 0.95, 0.9), 1.0))
    if method == "psgld" and convention == "paper" and psgld_average == "square":
        eps = tuple(_round(10.0**k) for k in range(-5, 3))  # from 1: noise at most SGLD's
        axes.append(Axis("psgld_eps", eps, 1.0))
        axes.append(Axis("psgld_alpha", (0.9, 0.95, 0.99, 0.995, 0.999), 0.99))
    elif method == "psgld":
        default = 0.99 if convention == "langevin" else 0.96  # the sampler's defaults
        axes.append(Axis("psgld_alpha", tuple(sorted({0.9, default, 0.999})), default))
    if method == "ksgld" and (schedule or convention == "paper"):
        damping, decay = _config_default("kfac_damping"), _config_default("kfac_ema_decay")
        dampings = tuple(sorted({*(_round(10.0**k) for k in range(-4, 2)), damping}))
        start = damping if schedule else 1.0  # bracketing: from noise at most SGLD's
        axes.append(Axis("kfac_damping", dampings, start))
        if schedule:
            axes.append(Axis("kfac_ema_decay", tuple(sorted({0.9, decay, 0.99})), decay))
    if schedule and convention == "langevin" and method in LANGEVIN_METHODS:
        axes.append(Axis("temperature", (0.01, 0.1, 1.0), 1.0))
    return Grid(method, convention, tuple(axes))


#: Cyclical SG-MCMC's own axes (Zhang et al., ICLR 2020), after the rate: the cycles over the run
#: and the fraction of each cycle spent exploring without noise.
CYCLES = (1, 2, 4, 8)
CYCLE_EXPLORATION = (0.25, 0.5, 0.75)


def cyclical_grid(
    method: str, convention: str, num_train: int, *, total_steps: int | None = None
) -> Grid:
    """The search space of ``method`` under :class:`sgmcmc.CyclicalSchedule` (notebook 09;
    ``sgmcmc sweep --cyclical``): its rates (:func:`learning_rates`, the cycle's peak), then
    ``cycles`` from 4 and ``cycle_exploration`` from 0.5. Its selection is recorded as
    ``<method>+cyclical`` (:data:`sgmcmc_paper.protocol.alternatives.CYCLICAL_SUFFIX`).

    ``total_steps``: the trial's steps. Only the cycles after which the run's last step is in a
    sampling stage at every exploration fraction of the grid are kept (a cycle is
    ``ceil(K/M)`` steps, so the last one may be cut short: 8 cycles of 98 steps end 6 steps
    into a 13-step cycle, still exploring), the default lowered to the largest kept up to 4,
    and the grid admits only such points (:class:`EndsSampling`: the walk extends no axis
    beyond them). A paper trial (980 steps) keeps them all; a ci trial on 2,000 images (4
    steps) only 1."""
    if method not in LANGEVIN_METHODS:
        raise ValueError(f"a cyclical schedule needs a sampler ({', '.join(LANGEVIN_METHODS)})")
    cycles = tuple(
        c
        for c in CYCLES
        if total_steps is None
        or all(sampling_stage(total_steps, total_steps, c, e) for e in CYCLE_EXPLORATION)
    ) or (1,)
    return Grid(
        method,
        convention,
        (
            learning_rates(method, convention, num_train),
            Axis("cycles", cycles, max(c for c in cycles if c <= 4 or c == cycles[0])),
            Axis("cycle_exploration", CYCLE_EXPLORATION, 0.5),
        ),
        admits=None if total_steps is None else EndsSampling(total_steps),
    )


@dataclass(frozen=True)
class EndsSampling:
    """Admits the cyclical points whose run of ``total_steps`` ends in a sampling stage: a
    trial's window ends at its last step, so only those can run (a picklable predicate)."""

    total_steps: int

    def __call__(self, fields: dict[str, Any]) -> bool:
        steps = self.total_steps
        return sampling_stage(steps, steps, fields["cycles"], fields["cycle_exploration"])
