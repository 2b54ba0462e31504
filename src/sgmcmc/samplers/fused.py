"""The fused Langevin update of SGLD and pSGLD (``fused=True``): the whole elementwise part of a
step (weight decay, the moving average of squared gradients, drift and noise) as one function
compiled by ``torch.compile``, so a step reads and writes each parameter once instead of once
per foreach operation (pSGLD's foreach path makes 7 passes over the parameters, or 7+ kernel
launches on a GPU).

The noise is generated inside the compiled function by Philox (:mod:`sgmcmc.rng.philox`), keyed
once from the sampler's generator and counted per step: no noise buffer is written and read
back, and on a CPU the draw runs on torch's own thread pool (a CPU generator is sequential, and
helper threads would compete with that pool's spinning workers). So a fused chain uses other
draws than the foreach path, the same on a CPU and a GPU; given the same draws it computes the
same update, up to rounding (fused multiply-adds, drift and noise added in one sum). The first
step compiles (tens of seconds on a CPU; Inductor caches it on disk for later processes);
hyper-parameters and the draw's seed enter as tensors, so neither a learning-rate schedule nor
the step counter recompiles.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from sgmcmc.rng import philox

#: ``scalars`` holds, in this order: alpha, eps, drift scale, noise scale, weight decay.
SCALARS = ("alpha", "eps", "drift", "noise", "weight_decay")


def _langevin_update(
    params: list[Tensor],
    grads: list[Tensor],
    averages: list[Tensor],
    seed: Tensor | None,
    scalars: Tensor,
    *,
    average: str | None,
    adapt: bool,
    drift_preconditioned: bool,
    noise_power: float,
    weight_decay: bool,
) -> None:
    """One step in place: see :func:`langevin_update`."""
    alpha, eps, drift, noise_scale, decay = (scalars[i] for i in range(len(SCALARS)))
    noise = None
    if seed is not None:
        sizes = [p.numel() for p in params]
        noise = philox.standard_normal(sum(sizes), seed).split(sizes)
    for i, p in enumerate(params):
        g = grads[i] + decay * p if weight_decay else grads[i]
        step = drift * g
        denominator = None
        if average is not None:
            a = averages[i]
            if adapt:
                updated = alpha * a + (1.0 - alpha) * g * g
                a.copy_(torch.sqrt(updated + eps) if average == "m" else updated)
            denominator = torch.sqrt(a) + eps if average == "square_avg" else a
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
    averages: list[Tensor],
    seed: Tensor | None,
    scalars: Tensor,
    **configuration: Any,
) -> None:
    """One step in place: ``(params, grads, averages, seed, scalars)`` (``seed``: the noise's
    :func:`sgmcmc.rng.philox.standard_normal` seed, ``None`` at T = 0; ``scalars`` as
    :data:`SCALARS`), keywords ``average``: ``None`` (``P = I``),
    ``"square_avg"`` (``V``, ``P = 1/(ε + sqrt(V))``) or ``"m"`` (the paper's recursion,
    ``P = 1/m``); ``adapt``: update ``averages`` first; ``drift_preconditioned``;
    ``noise_power``: ``P``'s power on the noise (0.5 langevin, 1 paper); ``weight_decay``.
    Compiled on first use of each configuration (the keywords, whether ``seed`` is given, and
    the device type)."""
    key = (seed is None, *sorted(configuration.items()))
    _compiled(key, params[0].device.type)(params, grads, averages, seed, scalars, **configuration)


@functools.cache
def _compiled(configuration: tuple, device_type: str) -> Callable[..., None]:
    """The update compiled for one configuration, from a copy of its code: Dynamo keeps the
    compilations of a code object in one cache of at most ``recompile_limit`` (8) entries,
    beyond which ``fullgraph=True`` fails, and a process may step more configurations (and
    parameter lists) than that. On a GPU, Inductor's combo kernels run the per-parameter loops
    in a few launches instead of one each (on an H200, 38 instead of 51 µs for the paper's CNN);
    a CPU's update is one kernel already."""
    update = types.FunctionType(
        _langevin_update.__code__.replace(), _langevin_update.__globals__, "langevin_update"
    )
    options = None
    if device_type == "cuda":
        import torch._inductor.config as inductor  # noqa: PLC0415 (loaded by torch.compile anyway)

        options = {"combo_kernels": True} if hasattr(inductor, "combo_kernels") else None
    return torch.compile(update, fullgraph=True, options=options)
