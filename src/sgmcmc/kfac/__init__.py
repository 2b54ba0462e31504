"""K-FAC for ``nn.Linear`` and ``nn.Conv2d``: Kronecker factors and their damped inverse powers.

``from sgmcmc import KFAC`` (or ``sgmcmc.kfac.KFAC``). Modules: :mod:`~sgmcmc.kfac.factors`
(what enters ``A`` and ``G`` per layer type), :mod:`~sgmcmc.kfac.eigen` (inverse powers in the
eigenbasis), :mod:`~sgmcmc.kfac.estimator` (hooks, moving averages, schedule).
"""

from sgmcmc.kfac.eigen import Blocks, Eigenbasis
from sgmcmc.kfac.estimator import KFAC
from sgmcmc.kfac.factors import LayerFactors

__all__ = ["KFAC", "Blocks", "Eigenbasis", "LayerFactors"]
