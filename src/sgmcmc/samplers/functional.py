"""The Langevin step of one parameter group as a function, with its fast paths as siblings.

:func:`langevin_step` is what :meth:`sgmcmc.samplers.base.LangevinSampler.step` calls for each
group, as ``torch.optim.SGD.step`` calls ``torch.optim.sgd.sgd``. It takes the path that
applies:

- foreach (:func:`foreach_step`, always available): a few multi-tensor operations, the
  preconditioner's products (:mod:`sgmcmc.samplers.preconditioner`) and one flat noise draw;
- fused (:func:`fused_step`, ``fused=True``, for a preconditioner that is the identity or a
  diagonal with an elementwise rule): one compiled function (:mod:`sgmcmc.samplers.fused`)
  with its noise generated inside by Philox;
- graphed (``fused=True`` with a :class:`~sgmcmc.samplers.graphed.GraphedUpdate`): that
  compiled function replayed as a CUDA graph (:mod:`sgmcmc.samplers.graphed`), bit for bit the
  fused chain.

Every path computes ``θ ← θ + drift·P^a·(g + λ·θ) + noise·P^b·ξ`` with the coefficients of
:class:`~sgmcmc.samplers.preconditioner.Scales`.
"""

from __future__ import annotations

import torch

from sgmcmc.rng.noise import NoiseSource
from sgmcmc.samplers import fused as compiled
from sgmcmc.samplers.graphed import GraphedUpdate
from sgmcmc.samplers.preconditioner import FusedInputs, GroupStep, Preconditioner
from sgmcmc.transfer import host_tensor


def langevin_step(
    step: GroupStep,
    preconditioner: Preconditioner,
    noise_source: NoiseSource,
    *,
    fused: bool = False,
    graph: GraphedUpdate | None = None,
) -> None:
    """One step of a group's parameters with a gradient, in place. ``fused=True`` takes the
    compiled path when the preconditioner offers it this step (``graph``: replayed from a CUDA
    graph), the foreach path otherwise."""
    if fused:
        inputs = preconditioner.fused_inputs(step)
        if inputs is not None:
            fused_step(step, inputs, noise_source, graph)
            return
    foreach_step(step, preconditioner, noise_source)


def foreach_step(
    step: GroupStep, preconditioner: Preconditioner, noise_source: NoiseSource
) -> None:
    """The step in multi-tensor operations: weight decay, the preconditioner's update, one
    noise draw, the preconditioner's products (:mod:`sgmcmc.samplers.preconditioner`)."""
    scales = step.scales
    if scales.weight_decay != 0 and preconditioner.identity:
        # P = I: θ + drift·(g + λθ) = (1 + drift·λ)·θ + drift·g, with no new tensors
        torch._foreach_mul_(step.params, 1.0 + scales.drift * scales.weight_decay)
    elif scales.weight_decay != 0:
        step.grads = torch._foreach_add(step.grads, step.params, alpha=scales.weight_decay)
    step.prepared = preconditioner.update(step)
    noise = noise_source.like(preconditioner.noise_like(step)) if scales.noisy else None
    preconditioner.add_(step, noise)


def fused_step(
    step: GroupStep,
    inputs: FusedInputs,
    noise_source: NoiseSource,
    graph: GraphedUpdate | None = None,
) -> None:
    """The step as one compiled function (:func:`sgmcmc.samplers.fused.langevin_update`), or
    its CUDA graph's replay when ``graph`` is given."""
    params, grads, scales = step.params, step.grads, step.scales
    values = [scales.drift, scales.noise, scales.weight_decay, *inputs.scalars]
    flags = dict(
        rule=inputs.rule,
        adapt=inputs.adapt,
        drift_preconditioned=scales.drift_preconditioned,
        noise_power=scales.noise_power,
        weight_decay=scales.weight_decay != 0,
    )
    if graph is not None:
        draw = noise_source.next_draw() if scales.noisy else None
        graph(params, grads, inputs.states, draw, values, **flags)
        return
    device = params[0].device
    seed = noise_source.counter_seed(device) if scales.noisy else None
    scalars = host_tensor(values, params[0].dtype, device)
    compiled.langevin_update(params, grads, inputs.states, seed, scalars, **flags)
