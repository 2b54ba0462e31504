"""A run's stability record: the :class:`~sgmcmc_paper.analysis.stability.StabilityTracker`
of a Langevin run whose config sets ``stability_every`` (book/methods.md, "KSGLD at scale").

The tracker measures, every ``stability_every`` optimizer steps on the first
:data:`EXAMPLES` images of that step's batch, the largest eigenvalue of the drift's
``c·P^a·H`` (Hessian-vector products, at most :data:`LANCZOS_STEPS` Lanczos steps), each
K-FAC layer's factor spectra and inverse staleness, and the weights' spread against the
injected noise's random walk. It reads the model and the sampler and changes neither (its
Lanczos start has its own generator), so a tracked run trains exactly as an untracked one;
its time is the run's ``stability`` phase.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from sgmcmc.posterior import potential
from sgmcmc.samplers.base import LangevinSampler
from sgmcmc_paper.analysis.stability import StabilityTracker
from sgmcmc_paper.protocol.config import RunConfig

#: Images of each measurement's minibatch (an unbiased estimate of the batch's curvature).
EXAMPLES = 128
#: Lanczos steps at most per ``λmax`` (relative tolerance :data:`RTOL`).
LANCZOS_STEPS = 15
RTOL = 1e-2


def tracker_for(config: RunConfig, model: nn.Module, sampler: LangevinSampler) -> StabilityTracker:
    """The tracker of ``config``'s run: the loss the sampler's gradient is taken of is the
    mean cross-entropy (paper convention) or the potential ``U`` with the config's prior
    (langevin)."""
    if not isinstance(sampler, LangevinSampler):
        raise ValueError(
            f"stability_every needs a Langevin sampler; {config.method} trains with "
            f"{type(sampler).__name__} (set stability_every=0)"
        )

    def loss(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        mean = F.cross_entropy(model(x), y)
        if config.convention == "langevin":
            return potential(mean, config.num_train, model.parameters(), config.prior_std)
        return mean

    return StabilityTracker(
        model,
        sampler,
        loss,
        every=config.stability_every,
        examples=EXAMPLES,
        max_iterations=LANCZOS_STEPS,
        rtol=RTOL,
    )
