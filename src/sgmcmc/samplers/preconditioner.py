"""The preconditioner contract: what a sampler supplies to the Langevin step.

One step of a parameter group is ``θ ← θ + drift·P^a·g + noise·P^b·ξ`` with ``g`` the gradient
(plus ``λ·θ`` for ``weight_decay=λ``), ``ξ ~ N(0, I)``, and the coefficients of
:class:`Scales`, which the convention sets (:mod:`sgmcmc.samplers.base`). A
:class:`Preconditioner` is ``P``. For each group, at each step, the step function
(:func:`sgmcmc.samplers.functional.langevin_step`) describes the step as a :class:`GroupStep`
and asks the preconditioner to

1. :meth:`~Preconditioner.update` its state from the step's gradients (before ``θ`` moves) and
   return what this step's products need, computed once (kept as :attr:`GroupStep.prepared`);
2. name the standard normal tensors the step draws (:meth:`~Preconditioner.noise_like`): one
   call of the noise source, so one flat draw per device and dtype, in that order;
3. :meth:`~Preconditioner.add_` ``drift·P^a·g + noise·P^b·ξ`` to the parameters in place,
   ``a = 1`` if :attr:`Scales.drift_preconditioned` else 0, ``b`` = :attr:`Scales.noise_power`.

``P`` depends on the state, not on ``θ``, so the drift may move ``θ`` before the noise is added.
A preconditioner whose state follows an elementwise rule may also offer the compiled step
(:meth:`~Preconditioner.fused_inputs`, :mod:`sgmcmc.samplers.fused`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import torch
from torch import Tensor

if TYPE_CHECKING:
    from sgmcmc.samplers.fused import DiagonalRule

#: A sampler's per-parameter state (the optimizer's ``state``): tensor -> its entries.
State = dict[Tensor, dict[str, Any]]


class Scales(NamedTuple):
    """The coefficients of one step ``θ ← θ + drift·P^a·g + noise·P^b·ξ``.

    Langevin convention: ``drift = −lr``, ``noise = sqrt(2·lr·T)``, ``b = 1/2``, ``a = 1`` with
    ``precondition="both"``. Paper convention: ``drift = −lr/2``, ``noise = lr²·sqrt(T)``,
    ``b = 1``, ``a = 0``.
    """

    drift: float
    noise: float
    noise_power: float
    drift_preconditioned: bool
    weight_decay: float  #: ``λ``: ``g`` includes ``λ·θ``
    noisy: bool  #: ``T > 0``: the step draws ``ξ``


@dataclass(slots=True)
class GroupStep:
    """One parameter group's step, as the preconditioner's hooks see it."""

    group: dict[str, Any]  #: the group's hyper-parameters
    state: State  #: the sampler's per-parameter state
    params: list[Tensor]  #: the group's parameters that have a gradient
    grads: list[Tensor]  #: their gradients (``λ·θ`` included once the step has added it)
    scales: Scales
    prepared: Any = None  #: what :meth:`Preconditioner.update` returned this step


class FusedInputs(NamedTuple):
    """What the compiled step needs from a diagonal ``P = 1/D``
    (:func:`sgmcmc.samplers.fused.langevin_update`)."""

    rule: DiagonalRule | None  #: how ``D`` follows the gradients; ``None``: ``P = I``
    states: list[Tensor]  #: the rule's per-parameter state, updated in place
    adapt: bool  #: whether this step updates ``states``
    scalars: tuple[float, ...]  #: the rule's hyper-parameters, in the order it takes them


class Preconditioner:
    """``P`` of a Langevin sampler. Subclasses implement :meth:`apply`, and may override the
    other hooks to keep state or to fuse ``P``'s products into the update.

    Class attributes: :attr:`identity` (``P = I``: weight decay is folded into ``θ`` instead
    of the gradient), :attr:`fusable` (:meth:`fused_inputs` is implemented, so ``fused=True``
    is accepted) and :attr:`STATE_KEYS` (the keys :meth:`state_dict` adds to the sampler's).
    """

    identity = False
    fusable = False
    STATE_KEYS: tuple[str, ...] = ()

    def defaults(self) -> dict[str, Any]:
        """Per-group hyper-parameters this preconditioner adds to the sampler's defaults."""
        return {}

    def check_group(self, group: dict[str, Any]) -> None:
        """Validate a new parameter group's hyper-parameters (and fill those left ``None``);
        raise ``ValueError`` naming the argument and the fix."""

    def update(self, step: GroupStep) -> Any:
        """Update the state ``P`` depends on from ``step.grads``; return what this step's
        products need (the step keeps it as ``step.prepared``)."""
        return None

    def apply(self, step: GroupStep, tensors: list[Tensor], power: float) -> list[Tensor]:
        """``P**power`` applied to ``tensors`` (aligned with ``step.params``), without
        modifying them or any state."""
        raise NotImplementedError

    def noise_like(self, step: GroupStep) -> list[Tensor]:
        """Tensors shaped as the standard normal draws :meth:`add_` takes (here the params)."""
        return step.params

    def add_(self, step: GroupStep, noise: list[Tensor] | None) -> None:
        """``θ ← θ + drift·P^a·g``, then ``θ ← θ + noise·P^b·ξ`` (``noise``: the draws shaped as
        :meth:`noise_like`, ``None`` at ``T = 0``), through :meth:`add_power_`."""
        scales = step.scales
        if scales.drift_preconditioned:
            self.add_power_(step, step.grads, 1.0, scales.drift)
        else:
            torch._foreach_add_(step.params, step.grads, alpha=scales.drift)
        if noise is not None:
            self.add_power_(step, noise, scales.noise_power, scales.noise)

    def add_power_(
        self, step: GroupStep, tensors: list[Tensor], power: float, alpha: float
    ) -> None:
        """``θ ← θ + alpha·P**power·tensors`` in place (here through :meth:`apply`)."""
        torch._foreach_add_(step.params, self.apply(step, tensors, power), alpha=alpha)

    def fused_inputs(self, step: GroupStep) -> FusedInputs | None:
        """For ``fused=True``: this step's :class:`FusedInputs`, with the state's counters
        advanced as :meth:`update` would; ``None`` takes the foreach path this step."""
        return None

    def state_dict(self) -> dict[str, Any]:
        """State kept outside the optimizer's, saved under :attr:`STATE_KEYS`."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved (the keys present of :attr:`STATE_KEYS`)."""


class Identity(Preconditioner):
    """``P = I`` (SGLD)."""

    identity = True
    fusable = True

    def apply(self, step: GroupStep, tensors: list[Tensor], power: float) -> list[Tensor]:
        return tensors

    def fused_inputs(self, step: GroupStep) -> FusedInputs:
        return FusedInputs(None, [], False, ())
