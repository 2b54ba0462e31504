"""sgmcmc: preconditioned stochastic-gradient Langevin samplers for PyTorch.

The samplers are ``torch.optim.Optimizer`` subclasses::

    from sgmcmc import SGLD, PSGLD, KSGLD, KFAC, potential

Subpackages: :mod:`sgmcmc.samplers` (the Langevin step and its preconditioners),
:mod:`sgmcmc.kfac` (Kronecker-factored curvature), :mod:`sgmcmc.rng` (the noise);
:mod:`sgmcmc.schedules` (cyclical step sizes for any sampler), :mod:`sgmcmc.laplace` (the
K-FAC Laplace approximation, a Gaussian posterior from the same factors);
:mod:`sgmcmc.diagnostics` (ESS, mESS, ArviZ conversion) for analysing chains. The library
depends on torch and numpy only; the experiments of Palacci & Hess (2018) live in the separate
harness package ``sgmcmc_paper`` (``pip install 'sgmcmc[paper]'``).
"""

from importlib import import_module

__version__ = "0.1.0"

_EXPORTS = {
    "SGLD": "sgmcmc.samplers",
    "PSGLD": "sgmcmc.samplers",
    "KSGLD": "sgmcmc.samplers",
    "LangevinSampler": "sgmcmc.samplers",
    "KFAC": "sgmcmc.kfac",
    "potential": "sgmcmc.posterior",
    "KFACLaplace": "sgmcmc.laplace",
    "CyclicalSchedule": "sgmcmc.schedules",
}

__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str):
    """Import public names lazily, so ``import sgmcmc`` stays cheap."""
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'sgmcmc' has no attribute {name!r}")
