"""The fused Langevin update (``fused=True``): the whole elementwise part of a step (weight decay,
a diagonal preconditioner's state update, drift and noise) as one function compiled by
``torch.compile``, so a step reads and writes each parameter once instead of once per foreach
operation.

The preconditioner is the identity or a diagonal ``P = 1/D`` whose ``D`` follows an elementwise
rule (a :class:`DiagonalRule`, supplied by the sampler): the compiled function calls the rule,
and ``torch.compile`` inlines it.

The noise is generated inside the compiled function by Philox (:mod:`sgmcmc.rng.philox`), keyed
once from the sampler's generator and counted per step: no noise buffer is written and read
back, and on a CPU the draw runs on torch's own thread pool (a CPU generator is sequential, and
helper threads would compete with that pool's spinning workers). So a fused chain uses other
draws than the foreach path, the same on a CPU and a GPU; given the same draws it computes the
same update, up to rounding (fused multiply-adds, drift and noise added in one sum). The first
step compiles (Inductor caches it on disk for later processes); hyper-parameters and the draw's
seed enter as tensors, so neither a learning-rate schedule nor the step counter recompiles.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Callable
from typing import Any, Protocol

import torch
from torch import Tensor

from sgmcmc.rng import philox

#: ``scalars`` starts with these, in this order; the rule's own hyper-parameters follow.
SCALARS = ("drift", "noise", "weight_decay")


class DiagonalRule(Protocol):
    """An elementwise rule for the state ``a`` of a diagonal preconditioner ``P = 1/D``;
    ``scalars`` are the rule's hyper-parameters (0-d tensors inside the compiled update)."""

    def update(self, a: Tensor, g: Tensor, *scalars: Tensor) -> Tensor:
        """The state after a step with gradient ``g``."""
        ...

    def denominator(self, a: Tensor, *scalars: Tensor) -> Tensor:
        """``D`` for the state ``a``."""
        ...


def _langevin_update(
    params: list[Tensor],
    grads: list[Tensor],
    states: list[Tensor],
    seed: Tensor | None,
    scalars: Tensor,
    *,
    rule: DiagonalRule | None,
    adapt: bool,
    drift_preconditioned: bool,
    noise_power: float,
    weight_decay: bool,
) -> None:
    """One step in place: see :func:`langevin_update`."""
    drift, noise_scale, decay = (scalars[i] for i in range(len(SCALARS)))
    rule_scalars = [scalars[i] for i in range(len(SCALARS), scalars.shape[0])]
    noise = None
    if seed is not None:
        sizes = [p.numel() for p in params]
        noise = philox.standard_normal(sum(sizes), seed).split(sizes)
    for i, p in enumerate(params):
        g = grads[i] + decay * p if weight_decay else grads[i]
        step = drift * g
        denominator = None
        if rule is not None:
            a = states[i]
            if adapt:
                a.copy_(rule.update(a, g, *rule_scalars))
            denominator = rule.denominator(a, *rule_scalars)
            if drift_preconditioned:
                step = step / denominator
        if noise is not None:
            xi = noise_scale * noise[i].view_as(p).to(p.dtype)
            if denominator is not None:
                xi = xi / (torch.sqrt(denominator) if noise_power == 0.5 else denominator)
            step = step + xi
        p.add_(step)


def langevin_update(
    params: list[Tensor],
    grads: list[Tensor],
    states: list[Tensor],
    seed: Tensor | None,
    scalars: Tensor,
    **configuration: Any,
) -> None:
    """``θ ← θ + drift·P^a·(g + λ·θ) + noise·P^b·ξ`` in place, with ``P = 1/D`` or ``I``.

    ``seed``: the noise's :func:`sgmcmc.rng.philox.standard_normal` seed, ``None`` at T = 0;
    ``scalars``: a tensor of :data:`SCALARS` then the rule's hyper-parameters. Keywords:
    ``rule``: a :class:`DiagonalRule` for ``states`` (``None``: ``P = I``, ``states`` empty);
    ``adapt``: update ``states`` by the rule first; ``drift_preconditioned``: ``a = 1``
    (else 0); ``noise_power``: ``b``, 0.5 or 1; ``weight_decay``: add ``λ·θ`` to ``g``.
    Compiled on first use of each configuration (the keywords, whether ``seed`` is given, the
    parameters' shapes and dtypes, and the device type)."""
    shapes = tuple((p.shape, p.dtype) for p in params)
    key = (seed is None, shapes, *sorted(configuration.items()))
    _compiled(key, params[0].device.type)(params, grads, states, seed, scalars, **configuration)


@functools.cache
def _compiled(configuration: tuple, device_type: str) -> Callable[..., None]:
    """The update compiled for one configuration, from a copy of its code: Dynamo keeps the
    compilations of a code object in one cache of at most ``recompile_limit`` (8) entries,
    beyond which ``fullgraph=True`` fails, and a process may step more configurations and
    parameter lists (each shape list is a recompilation) than that. On a GPU, Inductor's combo
    kernels run the per-parameter loops in a few launches instead of one each; a CPU's update
    is one kernel already."""
    update = types.FunctionType(
        _langevin_update.__code__.replace(), _langevin_update.__globals__, "langevin_update"
    )
    options = None
    if device_type == "cuda":
        import torch._inductor.config as inductor  # noqa: PLC0415 (loaded by torch.compile anyway)

        options = {"combo_kernels": True} if hasattr(inductor, "combo_kernels") else None
    return torch.compile(update, fullgraph=True, options=options)
