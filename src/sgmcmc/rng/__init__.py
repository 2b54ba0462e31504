"""The samplers' noise: standard normal draws from a ``torch.Generator``, in parallel streams
for large CPU draws (:mod:`~sgmcmc.rng.noise`), or generated inside a compiled kernel by
Philox (:mod:`~sgmcmc.rng.philox`)."""

from sgmcmc.rng.noise import NoiseSource, check_generator

__all__ = ["NoiseSource", "check_generator"]
