"""pSGLD: the Langevin step preconditioned by an RMSprop-style diagonal.

Two rules for the diagonal, chosen with ``average=`` independently of the convention (default:
the convention's own, ``"square"`` for langevin, ``"released"`` for paper).

``average="square"`` (Li, Chen, Carlson & Carin 2016, https://arxiv.org/abs/1512.07666):
per element ``V ← α·V + (1 − α)·g²`` (``V`` starts at 0 and is updated before it is used, as in
``torch.optim.RMSprop``) and ``P = diag(1 / (ε + sqrt(V)))``, with ``g`` the gradient the
optimizer sees (of ``U`` in the langevin convention). Li et al. average squared *mean*
minibatch log-likelihood gradients (no factor ``N``): their ``P`` is ``N`` times ours, their
step size ``ε_Li = 2·lr/N`` and their ``λ = ε/N``. Defaults ``α = 0.99`` (RMSprop's
``alpha``) and ``ε = 1e-5`` (the value of Li et al.'s λ; negligible beside ``sqrt(V)`` either
way).

With ``V`` adapting, the step omits the correction term ``Γ(θ)`` of Ma, Chen & Fox (2015,
https://arxiv.org/abs/1506.04696), as Li et al. do, so the chain is not exactly invariant for
the posterior. Freeze ``V`` (``burn_in`` steps, or :meth:`PSGLD.freeze_preconditioner`) to get
a constant ``P`` (of either rule), for which ``precondition="both"`` (langevin) samples the
posterior up to discretization.

``average="released"`` (the released code of Palacci & Hess 2018,
https://arxiv.org/abs/1806.02855): ``m`` starts at 1 and ``m ← sqrt(ε + α·m + (1 − α)·g²)``
with ``α = 0.96``, ``ε = 1e-10`` (``P = diag(1/m)``). With ``convention="paper"`` (``g`` the
gradient of the mean batch loss) the step is ``θ ← θ − (lr/2)·g + lr²·sqrt(T)·ξ/m``: the
released code's pSGLD.

``average="square"`` with ``convention="paper"`` is Li et al.'s pSGLD in the paper's convention
(Palacci & Hess's text): ``V`` averages squared mean-loss gradients, which is Li et al.'s own
``ḡ`` (the mean minibatch log-likelihood gradient, no prior), so ``α = 0.99`` and ``λ = ε =
1e-5`` are their values in their units; the step is ``θ ← θ − (lr/2)·g + lr²·sqrt(T)·P·ξ``
with ``P = diag(1/(λ + sqrt(V)))`` (the convention's ``P·ξ`` noise, as every sampler of that
convention). The defaults of ``alpha`` and ``eps`` follow the rule, not the convention.

Each rule exists twice, with the same arithmetic: elementwise (:class:`SquareAverage`,
:class:`ReleasedRecursion`, which the compiled step of :mod:`sgmcmc.samplers.fused` calls) and
as foreach operations over a group's tensors (the default step).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any, Unpack

import torch
from torch import Tensor

from sgmcmc.samplers.base import LangevinOptions, LangevinSampler
from sgmcmc.samplers.preconditioner import FusedInputs, GroupStep, Preconditioner


class SquareAverage:
    """``V ← α·V + (1 − α)·g²`` from ``V = 0``, ``D = ε + sqrt(V)`` (``average="square"``)."""

    key = "square_avg"
    initial: Callable[..., Tensor] = staticmethod(torch.zeros_like)

    def update(self, a: Tensor, g: Tensor, alpha: Tensor, eps: Tensor) -> Tensor:
        return alpha * a + (1.0 - alpha) * g * g

    def denominator(self, a: Tensor, alpha: Tensor, eps: Tensor) -> Tensor:
        return torch.sqrt(a) + eps

    def update_(
        self, averages: list[Tensor], grads: list[Tensor], alpha: float, eps: float
    ) -> None:
        """:meth:`update` in place, over a group's tensors."""
        torch._foreach_mul_(averages, alpha)
        torch._foreach_addcmul_(averages, grads, grads, value=1.0 - alpha)

    def denominators(self, averages: list[Tensor], eps: float) -> list[Tensor]:
        """:meth:`denominator` over a group's tensors, as new tensors."""
        base = torch._foreach_sqrt(averages)
        torch._foreach_add_(base, eps)
        return base


class ReleasedRecursion(SquareAverage):
    """``m ← sqrt(ε + α·m + (1 − α)·g²)`` from ``m = 1``, ``D = m`` (``average="released"``)."""

    key = "m"
    initial = staticmethod(torch.ones_like)

    def update(self, a: Tensor, g: Tensor, alpha: Tensor, eps: Tensor) -> Tensor:
        return torch.sqrt(super().update(a, g, alpha, eps) + eps)

    def denominator(self, a: Tensor, alpha: Tensor, eps: Tensor) -> Tensor:
        return a

    def update_(
        self, averages: list[Tensor], grads: list[Tensor], alpha: float, eps: float
    ) -> None:
        super().update_(averages, grads, alpha, eps)
        torch._foreach_add_(averages, eps)
        torch._foreach_sqrt_(averages)

    def denominators(self, averages: list[Tensor], eps: float) -> list[Tensor]:
        """The state itself (not a copy)."""
        return averages


#: The rules ``average=`` names (module docstring).
AVERAGES = ("square", "released")
_RULES = {"square": SquareAverage(), "released": ReleasedRecursion()}
#: ``average=None`` means the convention's own rule.
DEFAULT_AVERAGE = {"langevin": "square", "paper": "released"}
# (alpha, eps) per rule: RMSprop / Li et al. for square, the released code for released.
_DEFAULT_CONSTANTS = {"square": (0.99, 1e-5), "released": (0.96, 1e-10)}


def _rule(group: dict[str, Any]) -> SquareAverage:
    """The group's rule (a group restored from a state dict saved before ``average`` existed
    has none: the convention's)."""
    return _RULES[group.get("average") or DEFAULT_AVERAGE[group["convention"]]]


class RMSDiagonal(Preconditioner):
    """``P = 1/D`` with ``D`` from a moving average of squared gradients (module docstring);
    per parameter the state holds the average (``square_avg`` or ``m``) and ``step``, the
    number of its updates so far."""

    fusable = True

    def __init__(
        self,
        alpha: float | None,
        eps: float | None,
        burn_in: int | None,
        average: str | None = None,
    ) -> None:
        self._defaults = dict(
            alpha=alpha, eps=eps, burn_in=burn_in, average=average, preconditioner_frozen=False
        )

    def defaults(self) -> dict[str, Any]:
        return dict(self._defaults)

    def check_group(self, group: dict[str, Any]) -> None:
        """Fill ``average`` from the group's convention, ``alpha`` and ``eps`` from the
        rule, and validate them."""
        if group["average"] is None:
            group["average"] = DEFAULT_AVERAGE[group["convention"]]
        if group["average"] not in AVERAGES:
            raise ValueError(
                f"average must be one of {AVERAGES} (or None: the convention's), "
                f"got {group['average']!r}"
            )
        default_alpha, default_eps = _DEFAULT_CONSTANTS[group["average"]]
        if group["alpha"] is None:
            group["alpha"] = default_alpha
        if group["eps"] is None:
            group["eps"] = default_eps
        alpha, eps, burn_in = group["alpha"], group["eps"], group["burn_in"]
        if not isinstance(alpha, (int, float)) or not 0 <= alpha < 1:
            raise ValueError(f"alpha must be a number in [0, 1), got {alpha!r}")
        if not isinstance(eps, (int, float)) or not 0 < eps < math.inf:
            raise ValueError(f"eps must be a finite number > 0, got {eps!r}")
        if burn_in is not None and (
            isinstance(burn_in, bool) or not isinstance(burn_in, int) or burn_in < 1
        ):
            raise ValueError(f"burn_in must be None or an integer >= 1, got {burn_in!r}")

    def _states(self, step: GroupStep) -> list[dict[str, Any]]:
        """Each parameter's state, made on first use. Looked up once a step (a tensor's hash
        runs Python code)."""
        states = [step.state[p] for p in step.params]
        for p, entry in zip(step.params, states, strict=True):
            if not entry:
                rule = _rule(step.group)
                entry["step"] = 0
                entry[rule.key] = rule.initial(p, memory_format=torch.preserve_format)
        return states

    @staticmethod
    def _adapting(group: dict[str, Any], states: list[dict[str, Any]]) -> list[int]:
        """Indices of the parameters whose average this step updates."""
        if group["preconditioner_frozen"]:
            return []
        burn_in = group["burn_in"]
        return [i for i, entry in enumerate(states) if burn_in is None or entry["step"] < burn_in]

    @staticmethod
    def _count_step(states: list[dict[str, Any]], adapting: list[int]) -> None:
        """Advance the burn-in counters of the parameters whose average this step updated."""
        for i in adapting:
            states[i]["step"] += 1

    def fused_inputs(self, step: GroupStep) -> FusedInputs | None:
        group, states = step.group, self._states(step)
        adapting = self._adapting(group, states)
        if 0 < len(adapting) < len(states):
            return None  # some parameters have finished their burn-in: the foreach path
        self._count_step(states, adapting)
        rule = _rule(group)
        averages = [entry[rule.key] for entry in states]
        return FusedInputs(rule, averages, bool(adapting), (group["alpha"], group["eps"]))

    def _denominators(self, group: dict[str, Any], states: list[dict[str, Any]]) -> _Denominators:
        rule = _rule(group)
        return _Denominators([entry[rule.key] for entry in states], rule, group["eps"])

    def update(self, step: GroupStep) -> _Denominators:
        group, states, grads = step.group, self._states(step), step.grads
        denominators = self._denominators(group, states)
        adapting = self._adapting(group, states)
        if not adapting:
            return denominators
        averages = denominators.averages
        if len(adapting) < len(states):
            averages, grads = [averages[i] for i in adapting], [grads[i] for i in adapting]
        _rule(group).update_(averages, grads, group["alpha"], group["eps"])
        self._count_step(states, adapting)
        return denominators

    def apply(self, step: GroupStep, tensors: list[Tensor], power: float) -> list[Tensor]:
        denominators = self._denominators(step.group, self._states(step))
        return torch._foreach_div(tensors, denominators.power(power))

    def add_power_(
        self, step: GroupStep, tensors: list[Tensor], power: float, alpha: float
    ) -> None:
        torch._foreach_addcdiv_(step.params, tensors, step.prepared.power(power), value=alpha)


class _Denominators:
    """``D`` with ``P**power = 1/D`` for one step, each power computed once (after the
    update of the averages)."""

    def __init__(self, averages: list[Tensor], rule: SquareAverage, eps: float) -> None:
        self.averages, self._rule, self._eps = averages, rule, eps
        self._powers: dict[float, list[Tensor]] = {}

    def power(self, power: float) -> list[Tensor]:
        if power not in self._powers:
            self._powers[power] = self._compute(power)
        return self._powers[power]

    def _compute(self, power: float) -> list[Tensor]:
        if power == 1.0:
            return self._rule.denominators(self.averages, self._eps)
        if power == 0.5:
            # The last power a step asks for: sqrt in place of D's own buffer, unless D is
            # the state itself (m); D is then computed anew if asked for again.
            base = self._powers.pop(1.0) if 1.0 in self._powers else self._compute(1.0)
            if base is self.averages:
                return torch._foreach_sqrt(base)
            torch._foreach_sqrt_(base)
            return base
        return torch._foreach_pow(self.power(1.0), power)


class PSGLD(LangevinSampler):
    """Preconditioned SGLD with a diagonal ``P`` learned from squared gradients.

    Args:
        params, lr, **options: as :class:`sgmcmc.samplers.base.LangevinSampler` (convention,
            precondition, temperature, weight_decay, generator, fused, cuda_graph).
        alpha: decay of the moving average, in ``[0, 1)``; ``None``: 0.99 (square), 0.96
            (released).
        eps: ``ε > 0``; ``None``: 1e-5 (square, added to ``sqrt(V)``: Li et al.'s ``λ``),
            1e-10 (released, inside the square root of the ``m`` recursion).
        burn_in: number of preconditioner updates after which it freezes (``None``: never).
        average: ``"square"`` (Li et al.'s average of squared gradients) or ``"released"``
            (the released code's recursion); ``None``: the convention's (square for langevin,
            released for paper).

    State per parameter: ``square_avg`` (``V``, square) or ``m`` (released), and ``step``, the
    number of preconditioner updates so far.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float,
        *,
        alpha: float | None = None,
        eps: float | None = None,
        burn_in: int | None = None,
        average: str | None = None,
        **options: Unpack[LangevinOptions],
    ) -> None:
        super().__init__(params, lr, RMSDiagonal(alpha, eps, burn_in, average), **options)

    def freeze_preconditioner(self, frozen: bool = True) -> None:
        """Stop (or, with ``frozen=False``, resume) updating ``V`` / ``m`` in every group."""
        for group in self.param_groups:
            group["preconditioner_frozen"] = frozen
