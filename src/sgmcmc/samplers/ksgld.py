"""KSGLD: the Langevin step preconditioned by K-FAC's damped inverse Fisher (Nado, Snoek, Grosse,
Duvenaud, Xu & Martens 2018, ICLR workshop; Palacci & Hess 2018,
https://arxiv.org/abs/1806.02855).

For each layer :class:`sgmcmc.KFAC` covers, ``P = (s·F̃ + δI)⁻¹`` with ``F̃ = A⊗G`` the
per-example K-FAC Fisher and ``δ`` the KFAC's ``damping``:

- ``convention="langevin"``: ``s = num_data``; with ``damping = 1/prior_std²`` this is
  ``(N·F̃ + αI)⁻¹``, the inverse Hessian of the potential ``U`` wherever the Fisher is
  Kronecker-factored (for example multi-output linear regression). ``precondition="both"``:
  ``θ ← θ − lr·P·∇U + sqrt(2·lr·T)·P^{1/2}·ξ``; ``"noise"``:
  ``θ ← θ − lr·∇U + sqrt(2·lr·T)·P^{1/2}·ξ``.
- ``convention="paper"`` (the paper as described, with a K-FAC that is actually updated):
  ``s = 1``, ``θ ← θ − (lr/2)·g + lr²·sqrt(T)·(F̃ + δI)⁻¹·ξ`` with ``g`` the mean-loss gradient.
  Along directions the Fisher does not see, the noise's standard deviation is ``lr²/δ``: 0.4
  at the paper's ``lr = 0.02``, ``δ = 1e-3``, ten times the paper CNN's initial weights.

Parameters in the optimizer that K-FAC does not cover (other layer types) get the identity
Fisher, the value every layer has before its first factor update: ``P = (s + δ)⁻¹·I``
(``"factored"`` damping: ``(s·(1 + sqrt(δ/s))²)⁻¹·I``). ``weight_decay=λ`` adds ``λ·θ`` to the
gradient, as for the other samplers; the prior precision inside ``P`` is the KFAC's damping.

Each covered layer's step is done in its eigenbasis in one pass: the gradient is rotated in
(``precondition="both"`` only), the noise is drawn directly in eigen-coordinates (a rotation of
``N(0, I)`` is ``N(0, I)``), and their sum is rotated out once — two ``out × in`` matrix
products per factor instead of four per preconditioned term, ``O(out·in·(out + in))`` per layer
and step. With ``KFAC(eigen_rtol=...)`` the damping-swamped tails of the factors are merged
(:meth:`sgmcmc.kfac.Eigenbasis.truncated`) and a step costs ``O(out·in·k)`` for ``k`` kept
eigenvectors; the noise's tail blocks are projections of their own standard normal draws.

K-FAC's factors adapt, so with ``precondition="both"`` the chain omits the ``Γ`` correction
(Ma, Chen & Fox 2015, https://arxiv.org/abs/1506.04696), as Li et al. do for pSGLD; it is exact
once the factors are frozen (stop calling ``kfac.observe``).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Unpack

import torch
from torch import Tensor

from sgmcmc.kfac import KFAC, Eigenbasis, LayerFactors
from sgmcmc.samplers.base import LangevinOptions, LangevinSampler
from sgmcmc.samplers.preconditioner import GroupStep, Preconditioner


@dataclass
class _Prepared:
    """One group's step: the covered layers with a gradient, their eigenbases, the parameters
    no layer covers, the scale ``s`` and each parameter's gradient by ``id``."""

    layers: list[LayerFactors]
    bases: list[Eigenbasis]
    others: list[Tensor]
    scale: float
    grads: dict[int, Tensor]


class KroneckerFactored(Preconditioner):
    """``P = (s·F̃ + δI)⁻¹`` from a :class:`sgmcmc.KFAC` (module docstring). The KFAC's state
    is saved with the sampler's (key ``"kfac"``)."""

    STATE_KEYS = ("kfac",)

    def __init__(self, kfac: KFAC, num_data: int | None) -> None:
        if not isinstance(kfac, KFAC):
            raise ValueError(
                f"KSGLD needs kfac=KFAC(model, ...) for the model being sampled, got {kfac!r}"
            )
        self.kfac = kfac
        self._num_data = num_data
        self._warned_unestimated = False

    def defaults(self) -> dict[str, Any]:
        return {"num_data": self._num_data}

    def check_group(self, group: dict[str, Any]) -> None:
        """Check ``num_data`` and that no layer is split between groups."""
        num_data = group["num_data"]
        if group["convention"] == "langevin" and (
            isinstance(num_data, bool) or not isinstance(num_data, int) or num_data < 1
        ):
            raise ValueError(
                "num_data must be an integer >= 1 (the number of training examples) with "
                f"convention='langevin', got {num_data!r}"
            )
        if group["convention"] == "paper" and num_data is not None:
            raise ValueError(
                "num_data is not used with convention='paper' (its P = (F + damping·I)^-1 has "
                f"no N), got {num_data!r}; pass num_data=None"
            )
        members = {id(p) for p in group["params"]}
        for layer in self.kfac.layers:
            inside = {id(p) in members for p in layer.params}
            if len(inside) > 1:
                raise ValueError(
                    f"layer {layer.name!r}: put its weight and bias in the same parameter group "
                    "(K-FAC preconditions them together)"
                )

    def check_covers(self, param_groups: list[dict[str, Any]]) -> None:
        """``ValueError`` unless some layer of the KFAC has its parameters in the optimizer."""
        members = {id(p) for group in param_groups for p in group["params"]}
        if not any(id(layer.weight) in members for layer in self.kfac.layers):
            names = ", ".join(repr(layer.name) for layer in self.kfac.layers)
            raise ValueError(
                f"kfac was built for another model: none of its layers ({names}) has its "
                "parameters in this optimizer; pass kfac=KFAC(model) for the model whose "
                "parameters are sampled"
            )

    def _scale(self, group: dict[str, Any]) -> float:
        return float(group["num_data"]) if group["convention"] == "langevin" else 1.0

    def _group_layers(self, group: dict[str, Any]) -> list[LayerFactors]:
        members = {id(p) for p in group["params"]}
        return [layer for layer in self.kfac.layers if id(layer.weight) in members]

    def _identity_eigenvalue(self, scale: float) -> float:
        """The eigenvalue of ``s·F̃ + δI`` for identity factors (uncovered parameters)."""
        one = torch.ones(1, 1, dtype=torch.float64)
        identity = Eigenbasis.identity(one, one)
        return identity.eigenvalues(scale, self.kfac.damping, self.kfac.damping_mode).item()

    def update(self, step: GroupStep) -> _Prepared:
        """The layers and eigenbases of this step (the KFAC updates its factors itself, in
        ``kfac.observe``)."""
        if not self.kfac.updated and not self._warned_unestimated:
            warnings.warn(
                "KSGLD is stepping with K-FAC factors never estimated (identity Fisher: the step "
                "is SGLD's); call kfac.observe(output) after each forward pass",
                stacklevel=2,
            )
            self._warned_unestimated = True
        scale = self._scale(step.group)
        with_grad = {id(p) for p in step.params}
        layers = [
            layer for layer in self._group_layers(step.group) if id(layer.weight) in with_grad
        ]
        covered = {id(p) for layer in layers for p in layer.params}
        others = [p for p in step.params if id(p) not in covered]
        bases = [self.kfac.eigenbasis(layer, scale) for layer in layers]
        by_id = {id(p): g for p, g in zip(step.params, step.grads, strict=True)}
        return _Prepared(layers, bases, others, scale, by_id)

    def noise_like(self, step: GroupStep) -> list[Tensor]:
        """Each layer's eigen-coordinate draws (:meth:`Eigenbasis.noise_shapes`), layer by
        layer, then the uncovered parameters."""
        prepared: _Prepared = step.prepared
        templates = [
            layer.weight.new_empty(shape)
            for layer, eigen in zip(prepared.layers, prepared.bases, strict=True)
            for shape in eigen.noise_shapes()
        ]
        return templates + prepared.others

    def add_(self, step: GroupStep, noise: list[Tensor] | None) -> None:
        """Each layer's drift and noise summed in its eigen-coordinates and rotated out once;
        the uncovered parameters scaled by the identity Fisher's eigenvalue."""
        prepared: _Prepared = step.prepared
        scales, scale = step.scales, prepared.scale
        drift, noise_scale = scales.drift, scales.noise
        layer_noise: list[list[Tensor]] = []
        if noise is not None:
            start = 0
            for eigen in prepared.bases:
                count = len(eigen.noise_shapes())
                layer_noise.append(noise[start : start + count])
                start += count
            other_noise = noise[start:]
        if not scales.drift_preconditioned:  # the raw gradient step, for every parameter at once
            torch._foreach_add_(step.params, step.grads, alpha=drift)
        for i, (layer, eigen) in enumerate(zip(prepared.layers, prepared.bases, strict=True)):
            eigen_step = None
            if scales.drift_preconditioned:
                gradient = layer.to_matrix(*(prepared.grads.get(id(p)) for p in layer.params))
                inverse = self.kfac.damped_power(layer, -1.0, scale)
                eigen_step = eigen.coordinates(gradient).mul_(inverse, drift)
            if noise is not None:
                root = self.kfac.damped_power(layer, -scales.noise_power, scale)
                standard = eigen.noise_coordinates(layer_noise[i])
                if eigen_step is None:
                    eigen_step = standard.mul_(root, noise_scale)
                else:
                    eigen_step.addcmul_(standard, root, value=noise_scale)
            if eigen_step is not None:
                update = layer.from_matrix(eigen.matrix(eigen_step))
                torch._foreach_add_(layer.params, update)
        others = prepared.others
        if others:
            identity = self._identity_eigenvalue(scale)
            if scales.drift_preconditioned:
                other_grads = [prepared.grads[id(p)] for p in others]
                torch._foreach_add_(others, other_grads, alpha=drift / identity)
            if noise is not None:
                factor = noise_scale * identity**-scales.noise_power
                torch._foreach_add_(others, other_noise, alpha=factor)

    def apply(self, step: GroupStep, tensors: list[Tensor], power: float) -> list[Tensor]:
        """``P**power`` applied to ``tensors`` (aligned with ``step.params``), layer by layer."""
        scale = self._scale(step.group)
        result = {id(p): t for p, t in zip(step.params, tensors, strict=True)}
        layers = self._group_layers(step.group)
        for layer in layers:
            if id(layer.weight) not in result:
                continue
            matrix = layer.to_matrix(*(result.get(id(p)) for p in layer.params))
            conditioned = self.kfac.power(layer.module, matrix, -power, scale)
            for p, part in zip(layer.params, layer.from_matrix(conditioned), strict=True):
                result[id(p)] = part
        covered = {id(p) for layer in layers for p in layer.params}
        factor = None
        for p, t in zip(step.params, tensors, strict=True):
            if id(p) not in covered:
                if factor is None:
                    factor = self._identity_eigenvalue(scale) ** -power
                result[id(p)] = t * factor
        return [result[id(p)] for p in step.params]

    def state_dict(self) -> dict[str, Any]:
        return {"kfac": self.kfac.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "kfac" in state:
            self.kfac.load_state_dict(state["kfac"])


class KSGLD(LangevinSampler):
    """Stochastic-gradient Langevin dynamics preconditioned by K-FAC.

    Args:
        params, lr, **options: as :class:`sgmcmc.samplers.base.LangevinSampler` (convention,
            precondition, temperature, weight_decay, generator; ``fused`` and ``cuda_graph``
            must stay False: K-FAC's step has no compiled update).
        kfac: the :class:`sgmcmc.KFAC` of the model whose parameters are sampled; the training
            loop calls ``kfac.observe(output)`` before ``loss.backward()`` (see :class:`KFAC`).
        num_data: ``N``, the number of training examples (langevin convention; ``None`` with
            the paper convention, whose ``P`` has no ``N``).

    A layer's weight and bias must be in the same parameter group. ``state_dict()`` includes
    the KFAC's state (key ``"kfac"``), so a restored sampler continues a chain bit-identically.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float,
        *,
        kfac: KFAC,
        num_data: int | None = None,
        **options: Unpack[LangevinOptions],
    ) -> None:
        preconditioner = KroneckerFactored(kfac, num_data)
        super().__init__(params, lr, preconditioner, **options)
        preconditioner.check_covers(self.param_groups)

    @property
    def kfac(self) -> KFAC:
        """The KFAC whose factors precondition the step."""
        return self.preconditioner.kfac
