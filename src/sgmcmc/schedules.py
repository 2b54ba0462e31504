"""Cyclical step sizes for any sampler: cyclical SG-MCMC (Zhang et al., ICLR 2020,
https://arxiv.org/abs/1902.03932) as a ``torch.optim.lr_scheduler``.

``total_steps`` optimizer steps are cut into ``cycles`` cycles of ``L = ceil(total_steps /
cycles)`` steps. At step ``k`` (1-based, the step the optimizer is about to take) the rate is
Zhang et al.'s cosine

    ``lr_k = lr_0 / 2 · (cos(π · r_k) + 1)``,  ``r_k = ((k − 1) mod L) / L``,

and the step belongs to the cycle's **exploration** stage when ``r_k < exploration`` (the
sampler's temperature is set to 0: no noise, an optimizer) and to its **sampling** stage
otherwise (the group's own temperature: a sampler). Collect samples only after sampling-stage
steps (:meth:`CyclicalSchedule.sampling`, :func:`sampling_stage`). ``shape="constant"`` keeps
``lr_0`` throughout and only switches the noise; with ``exploration=0`` it leaves the sampler
exactly as it is (a test pins that). Works with every :class:`sgmcmc.LangevinSampler` (SGLD,
pSGLD, KSGLD); with an optimizer that has no ``temperature`` (``torch.optim.SGD``) only the
rate changes.
"""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LRScheduler

SHAPES = ("cosine", "constant")


def cycle_position(step: int, total_steps: int, cycles: int) -> float:
    """``r_k ∈ [0, 1)``: how far 1-based ``step`` is into its cycle (module docstring)."""
    length = math.ceil(total_steps / cycles)
    return ((step - 1) % length) / length


def sampling_stage(step: int, total_steps: int, cycles: int, exploration: float) -> bool:
    """Whether 1-based ``step`` is in a sampling stage (its update carries noise)."""
    return cycle_position(step, total_steps, cycles) >= exploration


def lr_factor(step: int, total_steps: int, cycles: int, shape: str = "cosine") -> float:
    """``lr_k / lr_0`` at 1-based ``step``."""
    if shape == "constant":
        return 1.0
    return 0.5 * (math.cos(math.pi * cycle_position(step, total_steps, cycles)) + 1.0)


class CyclicalSchedule(LRScheduler):
    """Cyclical step size and exploration/sampling stages (module docstring).

    Call :meth:`step` after each ``optimizer.step()``, as with any LR scheduler. Each group's
    ``lr`` and ``temperature`` at construction are its ``lr_0`` and sampling temperature.

    Args:
        optimizer: a sampler (or any ``torch.optim.Optimizer``).
        total_steps: the run's optimizer steps ``K``.
        cycles: ``M ≥ 1`` cycles.
        exploration: the fraction ``β ∈ [0, 1)`` of each cycle without noise.
        shape: ``"cosine"`` (Zhang et al.) or ``"constant"``.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        total_steps: int,
        cycles: int,
        exploration: float = 0.5,
        shape: str = "cosine",
        last_epoch: int = -1,
    ) -> None:
        for name, value in (("total_steps", total_steps), ("cycles", cycles)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if cycles > total_steps:
            raise ValueError(f"cycles ({cycles}) cannot exceed total_steps ({total_steps})")
        if not (isinstance(exploration, (int, float)) and 0.0 <= exploration < 1.0):
            raise ValueError(
                f"exploration must be in [0, 1) (0: noise always on), got {exploration!r}"
            )
        if shape not in SHAPES:
            raise ValueError(f"shape must be one of {SHAPES}, got {shape!r}")
        self.total_steps, self.cycles = total_steps, cycles
        self.exploration, self.shape = float(exploration), shape
        if last_epoch == -1:
            for group in optimizer.param_groups:
                if "temperature" in group:
                    group.setdefault("initial_temperature", group["temperature"])
        super().__init__(optimizer, last_epoch)

    @property
    def next_step(self) -> int:
        """The 1-based step the optimizer takes next."""
        return self.last_epoch + 1

    @property
    def sampling(self) -> bool:
        """Whether the next step is in a sampling stage."""
        return self._sampling(self.next_step)

    def _sampling(self, step: int) -> bool:
        return sampling_stage(step, self.total_steps, self.cycles, self.exploration)

    def get_lr(self) -> list[float]:
        factor = lr_factor(self.next_step, self.total_steps, self.cycles, self.shape)
        return [base * factor for base in self.base_lrs]

    def step(self) -> None:  # type: ignore[override]
        """Move to the next step: its rate and its stage's temperature."""
        super().step()
        noisy = self._sampling(self.next_step)
        for group in self.optimizer.param_groups:
            if "initial_temperature" in group:
                group["temperature"] = group["initial_temperature"] if noisy else 0.0
