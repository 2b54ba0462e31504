"""pSGLD: the Langevin step preconditioned by an RMSprop-style diagonal.

``convention="langevin"`` (Li, Chen, Carlson & Carin 2016): per element
``V ← α·V + (1 − α)·g²`` (``V`` starts at 0 and is updated before it is used, as in
``torch.optim.RMSprop``) and ``P = diag(1 / (ε + sqrt(V)))``, with ``g`` the gradient the
optimizer sees (of ``U``). Li et al. average squared *mean* minibatch log-likelihood gradients
(no factor ``N``): their ``P`` is ``N`` times ours, their step size ``ε_Li = 2·lr/N`` and their
``λ = ε/N``. Defaults ``α = 0.99`` (RMSprop's ``alpha``) and ``ε = 1e-5`` (the value of Li et
al.'s λ; negligible beside ``sqrt(V)`` either way).

With ``V`` adapting, the step omits the correction term ``Γ(θ)`` of Ma, Chen & Fox (2015),
as Li et al. do, so the chain is not exactly invariant for the posterior (PAPER.md §2). Freeze
``V`` (``burn_in`` steps, or :meth:`PSGLD.freeze_preconditioner`) to get a constant ``P``,
for which ``precondition="both"`` samples the posterior up to discretization.

``convention="paper"`` (the released code of Palacci & Hess 2018): ``m`` starts at 1 and
``m ← sqrt(ε + α·m + (1 − α)·g²)`` with ``α = 0.96``, ``ε = 1e-10`` and ``g`` the gradient of
the mean batch loss; then ``θ ← θ − (lr/2)·g + lr²·sqrt(T)·ξ/m`` (``P = diag(1/m)``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from sgmcmc.samplers.base import LangevinSampler

# (alpha, eps) per convention: RMSprop / Li et al. for langevin, the released code for paper.
_DEFAULT_CONSTANTS = {"langevin": (0.99, 1e-5), "paper": (0.96, 1e-10)}


class PSGLD(LangevinSampler):
    """Preconditioned SGLD with a diagonal ``P`` learned from squared gradients.

    Args:
        params, lr, convention, precondition, temperature, weight_decay, generator: as
            :class:`sgmcmc.samplers.base.LangevinSampler`.
        alpha: decay of the moving average, in ``[0, 1)``; ``None``: 0.99 (langevin), 0.96
            (paper).
        eps: ``ε > 0``; ``None``: 1e-5 (langevin, added to ``sqrt(V)``), 1e-10 (paper, inside
            the square root of the ``m`` recursion).
        burn_in: number of preconditioner updates after which it freezes (``None``: never).
        fused: compile the update into one function (:mod:`sgmcmc.samplers.fused`).
        cuda_graph: with ``fused=True`` on a GPU, replay the compiled update as a CUDA graph
            (:mod:`sgmcmc.samplers.graphed`).

    State per parameter: ``square_avg`` (``V``, langevin) or ``m`` (paper), and ``step``, the
    number of preconditioner updates so far.
    """

    fusable = True

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float,
        *,
        convention: str = "langevin",
        precondition: str | None = None,
        temperature: float = 1.0,
        weight_decay: float = 0.0,
        generator: torch.Generator | None = None,
        alpha: float | None = None,
        eps: float | None = None,
        burn_in: int | None = None,
        fused: bool = False,
        cuda_graph: bool = False,
    ) -> None:
        super().__init__(
            params,
            lr,
            convention=convention,
            precondition=precondition,
            temperature=temperature,
            weight_decay=weight_decay,
            generator=generator,
            alpha=alpha,
            eps=eps,
            burn_in=burn_in,
            preconditioner_frozen=False,
            fused=fused,
            cuda_graph=cuda_graph,
        )

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group; fill ``alpha`` and ``eps`` from its convention and validate them."""
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        default_alpha, default_eps = _DEFAULT_CONSTANTS[group["convention"]]
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

    def freeze_preconditioner(self, frozen: bool = True) -> None:
        """Stop (or, with ``frozen=False``, resume) updating ``V`` / ``m`` in every group."""
        for group in self.param_groups:
            group["preconditioner_frozen"] = frozen

    def _states(self, group: dict[str, Any], params: list[Tensor]) -> list[dict[str, Any]]:
        """Each parameter's state, made on first use: ``V`` (langevin, from 0) or ``m`` (paper,
        from 1), and ``step``. Looked up once a step (a tensor's hash runs Python code)."""
        states = [self.state[p] for p in params]
        for p, state in zip(params, states, strict=True):
            if not state:
                key = _state_key(group)
                init = torch.zeros_like if key == "square_avg" else torch.ones_like
                state["step"], state[key] = 0, init(p, memory_format=torch.preserve_format)
        return states

    @staticmethod
    def _adapting(group: dict[str, Any], states: list[dict[str, Any]]) -> list[int]:
        """Indices of the parameters whose average this step updates."""
        if group["preconditioner_frozen"]:
            return []
        burn_in = group["burn_in"]
        return [i for i, state in enumerate(states) if burn_in is None or state["step"] < burn_in]

    @staticmethod
    def _count_step(states: list[dict[str, Any]], adapting: list[int]) -> None:
        """Advance the burn-in counters of the parameters whose average this step updated."""
        for i in adapting:
            states[i]["step"] += 1

    def _prepare_fused(self, group: dict[str, Any], params: list[Tensor]):
        states = self._states(group, params)
        adapting = self._adapting(group, states)
        if 0 < len(adapting) < len(params):
            return None  # some parameters have finished their burn-in: the foreach path
        self._count_step(states, adapting)
        key = _state_key(group)
        return [state[key] for state in states], key, bool(adapting)

    def _update_preconditioner(
        self, group: dict[str, Any], params: list[Tensor], grads: list[Tensor]
    ) -> _Denominators:
        key = _state_key(group)
        states = self._states(group, params)
        averages = [state[key] for state in states]
        denominators = _Denominators(averages, group["eps"] if key == "square_avg" else None)
        adapting = self._adapting(group, states)
        if not adapting:
            return denominators
        if len(adapting) < len(params):
            averages, grads = [averages[i] for i in adapting], [grads[i] for i in adapting]
        alpha = group["alpha"]
        torch._foreach_mul_(averages, alpha)
        torch._foreach_addcmul_(averages, grads, grads, value=1.0 - alpha)
        if key == "m":
            torch._foreach_add_(averages, group["eps"])
            torch._foreach_sqrt_(averages)
        self._count_step(states, adapting)
        return denominators

    def _add_preconditioned_(
        self,
        group: dict[str, Any],
        params: list[Tensor],
        tensors: list[Tensor],
        power: float,
        alpha: float,
        prepared: _Denominators,
    ) -> None:
        torch._foreach_addcdiv_(params, tensors, prepared.power(power), value=alpha)


class _Denominators:
    """``D`` with ``P**power = 1/D`` for one step, each power computed once (after the
    update of ``V`` or ``m``): ``(ε + sqrt(V))**power`` (``eps`` given) or ``m**power``."""

    def __init__(self, averages: list[Tensor], eps: float | None) -> None:
        self._averages, self._eps = averages, eps
        self._powers: dict[float, list[Tensor]] = {}

    def power(self, power: float) -> list[Tensor]:
        if power not in self._powers:
            self._powers[power] = self._compute(power)
        return self._powers[power]

    def _compute(self, power: float) -> list[Tensor]:
        if power == 1.0:
            if self._eps is None:
                return self._averages
            base = torch._foreach_sqrt(self._averages)
            torch._foreach_add_(base, self._eps)
            return base
        if power == 0.5:
            # The last power a step asks for: sqrt in place of D's own buffer, unless D is
            # the state itself (m); D is then computed anew if asked for again.
            base = self._powers.pop(1.0) if 1.0 in self._powers else self._compute(1.0)
            if base is self._averages:
                return torch._foreach_sqrt(base)
            torch._foreach_sqrt_(base)
            return base
        return torch._foreach_pow(self.power(1.0), power)


def _state_key(group: dict[str, Any]) -> str:
    return "square_avg" if group["convention"] == "langevin" else "m"
