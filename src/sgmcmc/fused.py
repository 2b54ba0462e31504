"""The fused Langevin update of SGLD and pSGLD (``fused=True``): the whole elementwise part of a
step (weight decay, the moving average of squared gradients, drift and noise) as one function
compiled by ``torch.compile``, so a step reads and writes each parameter once instead of once
per foreach operation (pSGLD's foreach path makes 7 passes over the parameters, or 7+ kernel
launches on a GPU).

Same mathematics as the foreach path, with different rounding (fused multiply-adds, drift and
noise added in one sum), so a fused chain is not bit-identical to an unfused one. The noise is
drawn outside the compiled function, from the sampler's generator, so both paths use the same
draws. The first step compiles (tens of seconds on a CPU; Inductor caches it on disk for later
processes); hyper-parameters enter as one tensor, so a learning-rate schedule never recompiles.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

#: ``scalars`` holds, in this order: alpha, eps, drift scale, noise scale, weight decay.
SCALARS = ("alpha", "eps", "drift", "noise", "weight_decay")


def _langevin_update(
    params: list[Tensor],
    grads: list[Tensor],
    averages: list[Tensor],
    noise: list[Tensor] | None,
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
            xi = noise_scale * noise[i]
            if denominator is not None:
                xi = xi / (torch.sqrt(denominator) if noise_power == 0.5 else denominator)
            step = step + xi
        p.add_(step)


def langevin_update(*args, **kwargs) -> None:
    """One step in place: ``(params, grads, averages, noise, scalars)`` (``noise=None`` at
    T = 0; ``scalars`` as :data:`SCALARS`), keywords ``average``: ``None`` (``P = I``),
    ``"square_avg"`` (``V``, ``P = 1/(ε + sqrt(V))``) or ``"m"`` (the paper's recursion,
    ``P = 1/m``); ``adapt``: update ``averages`` first; ``drift_preconditioned``;
    ``noise_power``: ``P``'s power on the noise (0.5 langevin, 1 paper); ``weight_decay``.
    Compiled on first use."""
    _compiled()(*args, **kwargs)


@functools.cache
def _compiled():
    return torch.compile(_langevin_update, fullgraph=True)
