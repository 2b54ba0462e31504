"""One optimizer step of a run's method: the loss its convention backpropagates, and the update.

- ``sgd``/``fsgd``: ``torch.optim.SGD``; ``sgld``, ``psgld``, ``ksgld``: the library's samplers
  (``ksgld`` with a K-FAC that is never updated is SGLD:
  :class:`~sgmcmc_paper.protocol.config.RunConfig`). K-FAC observes every forward pass of training
  (``kfac.observe(logits, y)``; the labels are used only by the empirical Fisher).
- Paper convention: backpropagate the mean cross-entropy of the batch (no prior, no ``N``).
  Langevin convention: backpropagate the potential ``U`` (:func:`sgmcmc.potential`) with the
  config's Gaussian prior; SGD then descends ``U`` (MAP), in the same ``lr`` units.
- The learning rate decays as ``lr·decay^(t/decay_steps)`` (TF's ``exponential_decay``, not
  staircase), through a ``LambdaLR`` scheduler; ``decay = 1`` keeps it constant. A config with
  ``cycles`` uses :class:`sgmcmc.CyclicalSchedule` instead (cosine cycles, no noise in each
  cycle's exploration stage). ``laplace`` and ``ensemble`` train with SGD, as ``sgd``.

:meth:`Trainer.step` returns the batch's mean cross-entropy (detached, on the device), the
quantity progress bars, traces and the divergence check use, whatever the convention.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sgmcmc.posterior import potential
from sgmcmc_paper.protocol.config import RunConfig
from sgmcmc_paper.protocol.paper import ALTERNATIVE_METHODS


class Trainer:
    """Builds the optimizer (and K-FAC) for ``config`` and takes steps on batches."""

    def __init__(
        self,
        config: RunConfig,
        model: nn.Module,
        num_data: int,
        generator: torch.Generator,
        kfac_generator: torch.Generator,
    ) -> None:
        self.config, self.model, self.num_data = config, model, num_data
        self.kfac = None
        #: The learning rate the latest step used (the scheduler has moved on since).
        self.last_lr = config.lr
        self.optimizer = self._optimizer(generator, kfac_generator)
        decay, every = config.lr_decay, config.lr_decay_steps
        if config.cycles is not None:  # Zhang et al.'s cyclical schedule (sgmcmc.schedules)
            from sgmcmc.schedules import CyclicalSchedule

            self.scheduler = CyclicalSchedule(
                self.optimizer, config.total_steps, config.cycles, config.cycle_exploration
            )
        else:
            self.scheduler = torch.optim.lr_scheduler.LambdaLR(
                self.optimizer, lambda t: decay ** (t / every)
            )

    def _optimizer(
        self, generator: torch.Generator, kfac_generator: torch.Generator
    ) -> torch.optim.Optimizer:
        c, params = self.config, self.model.parameters()
        if c.algorithm in ("sgd", *ALTERNATIVE_METHODS):  # members and MAP: plain SGD
            return torch.optim.SGD(params, lr=c.lr)
        common = dict(
            convention=c.convention,
            precondition=c.precondition,
            temperature=c.temperature,
            weight_decay=0.0,  # the langevin convention's prior is in the potential
            generator=generator,
        )
        if c.algorithm == "sgld":
            from sgmcmc.samplers.sgld import SGLD

            return SGLD(params, c.lr, **common)
        if c.method == "psgld":
            from sgmcmc.samplers.psgld import PSGLD

            alpha, eps = c.psgld_constants  # pinned: a config's None means PSGLD_DEFAULTS
            return PSGLD(params, c.lr, alpha=alpha, eps=eps, average=c.psgld_rule, **common)
        from sgmcmc.kfac import KFAC
        from sgmcmc.samplers.ksgld import KSGLD

        self.kfac = KFAC(
            self.model,
            damping=c.kfac_damping,
            damping_mode=c.kfac_damping_mode,
            ema_decay=c.kfac_ema_decay,
            factor_every=c.kfac_factor_every,
            inverse_every=c.kfac_inverse_every,
            fisher=c.kfac_fisher,
            eigen_rtol=c.kfac_eigen_rtol,
            factor_init=c.kfac_factor_init,
            max_rows=c.kfac_max_rows,
            generator=kfac_generator,
        )
        num_data = self.num_data if c.convention == "langevin" else None  # paper: s = 1
        return KSGLD(params, c.lr, kfac=self.kfac, num_data=num_data, **common)

    def step(self, x: Tensor, y: Tensor) -> Tensor:
        """One update on the batch ``(x, y)``; returns its mean cross-entropy (detached)."""
        c = self.config
        self.optimizer.zero_grad(set_to_none=True)
        logits = self.model(x)
        if self.kfac is not None:
            self.kfac.observe(logits, y)
        loss = F.cross_entropy(logits, y)
        objective = loss
        if c.convention == "langevin":
            objective = potential(loss, self.num_data, self.model.parameters(), c.prior_std)
        objective.backward()
        self.last_lr = float(self.optimizer.param_groups[0]["lr"])
        self.optimizer.step()
        self.scheduler.step()
        return loss.detach()
