"""The Langevin samplers: one base step (:mod:`sgmcmc.samplers.base`) and one thin file per
preconditioner (:mod:`~sgmcmc.samplers.preconditioner` states the contract): identity
(:mod:`~sgmcmc.samplers.sgld`), RMS diagonal (:mod:`~sgmcmc.samplers.psgld`) and K-FAC
(:mod:`~sgmcmc.samplers.ksgld`). The step's paths are siblings behind one function
(:mod:`~sgmcmc.samplers.functional`): foreach, :mod:`~sgmcmc.samplers.fused` (one compiled
function) and :mod:`~sgmcmc.samplers.graphed` (that function replayed as a CUDA graph)."""

from sgmcmc.samplers.base import LangevinSampler
from sgmcmc.samplers.ksgld import KSGLD
from sgmcmc.samplers.preconditioner import Identity, Preconditioner
from sgmcmc.samplers.psgld import PSGLD
from sgmcmc.samplers.sgld import SGLD

__all__ = ["KSGLD", "PSGLD", "SGLD", "Identity", "LangevinSampler", "Preconditioner"]
