"""SGLD (Welling & Teh 2011): the Langevin step with the identity preconditioner."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from sgmcmc.samplers.base import LangevinSampler


class SGLD(LangevinSampler):
    """Stochastic-gradient Langevin dynamics, ``P = I``.

    ``convention="langevin"`` (default): backpropagate the potential ``U``
    (:func:`sgmcmc.potential`), then ``θ ← θ − lr·∇U + sqrt(2·lr·T)·ξ``, ``ξ ~ N(0, I)``.
    ``convention="paper"``: backpropagate the mean batch loss, then
    ``θ ← θ − (lr/2)·g + lr²·sqrt(T)·ξ`` (the released code of Palacci & Hess 2018).
    ``precondition`` is accepted for uniformity with the other samplers; with ``P = I`` both
    choices give the same step. ``weight_decay=1/σ²`` with ``potential(..., prior_std=None)``
    is the cheaper equivalent of ``potential(..., prior_std=σ)`` on a GPU. ``fused=True``
    compiles the update into one function (:mod:`sgmcmc.samplers.fused`); on a GPU add
    ``cuda_graph=True`` to replay it as a CUDA graph (:mod:`sgmcmc.samplers.graphed`). See
    :class:`sgmcmc.samplers.base.LangevinSampler` for the rest.

    Example::

        opt = SGLD(model.parameters(), lr=1e-6, generator=torch.Generator().manual_seed(0))
        for x, y in loader:
            opt.zero_grad()
            potential(F.cross_entropy(model(x), y), len(dataset), model.parameters()).backward()
            opt.step()
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
            fused=fused,
            cuda_graph=cuda_graph,
        )

    def _prepare_fused(self, group: dict[str, Any], params: list[Tensor]):
        return [], None, False  # P = I: no state
