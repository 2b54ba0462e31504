"""SGLD (Welling & Teh 2011, ICML): the Langevin step with the identity preconditioner."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Unpack

from torch import Tensor

from sgmcmc.samplers.base import LangevinOptions, LangevinSampler
from sgmcmc.samplers.preconditioner import Identity


class SGLD(LangevinSampler):
    """Stochastic-gradient Langevin dynamics, ``P = I``.

    ``convention="langevin"`` (default): backpropagate the potential ``U``
    (:func:`sgmcmc.potential`), then ``θ ← θ − lr·∇U + sqrt(2·lr·T)·ξ``, ``ξ ~ N(0, I)``.
    ``convention="paper"``: backpropagate the mean batch loss, then
    ``θ ← θ − (lr/2)·g + lr²·sqrt(T)·ξ`` (the released code of Palacci & Hess 2018,
    https://arxiv.org/abs/1806.02855). ``precondition`` is accepted for uniformity with the
    other samplers; with ``P = I`` both choices are the same step. ``weight_decay=1/σ²`` with
    ``potential(..., prior_std=None)`` is the cheaper equivalent of
    ``potential(..., prior_std=σ)`` on a GPU. ``fused=True`` compiles the update into one
    function (:mod:`sgmcmc.samplers.fused`); on a GPU add ``cuda_graph=True`` to replay it as a
    CUDA graph (:mod:`sgmcmc.samplers.graphed`). The options are those of
    :class:`sgmcmc.samplers.base.LangevinSampler`.

    Example::

        opt = SGLD(model.parameters(), lr=1e-6, generator=torch.Generator().manual_seed(0))
        for x, y in loader:
            opt.zero_grad()
            potential(F.cross_entropy(model(x), y), len(dataset), model.parameters()).backward()
            opt.step()
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float,
        **options: Unpack[LangevinOptions],
    ) -> None:
        super().__init__(params, lr, Identity(), **options)
