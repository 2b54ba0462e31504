"""sgmcmc: preconditioned stochastic-gradient Langevin samplers for PyTorch.

The samplers are ``torch.optim.Optimizer`` subclasses::

    from sgmcmc import SGLD, PSGLD, KSGLD, KFAC

and the rest of the package (data, run engine, diagnostics) reproduces
Palacci & Hess (2018), "Scalable Natural Gradient Langevin Dynamics in Practice".
"""

from importlib import import_module

__version__ = "0.1.0"

_EXPORTS = {
    "SGLD": "sgmcmc.sgld",
    "PSGLD": "sgmcmc.psgld",
    "KSGLD": "sgmcmc.ksgld",
    "KFAC": "sgmcmc.kfac",
    "potential": "sgmcmc.posterior",
    "PaperCNN": "sgmcmc.models",
}

__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str):
    """Import public names lazily, so ``import sgmcmc`` stays cheap."""
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'sgmcmc' has no attribute {name!r}")
