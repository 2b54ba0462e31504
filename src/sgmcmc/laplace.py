"""A Kronecker-factored Laplace approximation (Ritter et al. 2018,
https://openreview.net/forum?id=Skdvd2xAZ; Daxberger et al. 2021, "Laplace Redux",
https://arxiv.org/abs/2106.14806) built on :class:`sgmcmc.KFAC`.

Around trained weights ``θ*`` the posterior is ``N(θ*, Σ)`` with, per layer,

    ``Σ⁻¹ = N·A⊗G + λ·I``

``A ⊗ G`` the per-example K-FAC Fisher (:class:`sgmcmc.KFAC`'s factors, averaged over every
batch of the data given to :meth:`KFACLaplace.fit`, not a moving average), ``N`` the number of
data and ``λ`` the precision of the Gaussian prior ``N(0, I/λ)``. Layers are independent
blocks. A draw is ``θ* + Σ^{1/2}ξ``, the matrix-normal noise of :meth:`sgmcmc.KFAC.power`
(``p = −1/2`` in the factors' eigenbasis, scale ``N``, exact damping ``λ``): no Kronecker
product is formed.

The prior precision is chosen as Laplace Redux's default does, by the Laplace approximation to
the **marginal likelihood** of the training data (MacKay 1992),

    ``log p(D | λ) ≈ log p(D | θ*) − ½·(log det Σ⁻¹ − P·log λ + λ‖θ*‖²)``

(``P`` parameters; constants dropped), maximised over a log-spaced grid of ``λ``
(:meth:`KFACLaplace.optimize_prior_precision`); no held-out data is needed. The predictive is
Monte Carlo: average the softmax of the model at draws (:meth:`KFACLaplace.sample`).
The posterior covers every ``nn.Linear`` and ``nn.Conv2d`` of the model (then every trainable
parameter must belong to one) or the ``layers`` given, the others staying at ``θ*``: the
last-layer Laplace, Laplace Redux's default, covers the output layer only. Over a whole
network of millions of weights trained without a prior, the marginal likelihood picks a prior
precision of the order of (well-determined directions) / ``‖θ*‖²``, so the many directions
the data leaves flat get the prior's width, far wider than the weights: draws of the whole
network then predict badly (the "underfitting" of sampled Laplace predictives, Immer et al.
2021, https://arxiv.org/abs/2008.08400), which the last-layer Laplace avoids.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch
from torch import Tensor, nn

from sgmcmc.kfac import KFAC
from sgmcmc.rng.noise import NoiseSource

#: The grid of prior precisions :meth:`KFACLaplace.optimize_prior_precision` searches.
PRIOR_PRECISION_GRID = tuple(10.0 ** (k / 4) for k in range(-16, 17))


class KFACLaplace:
    """The K-FAC Laplace posterior of ``model`` around its current weights (module docstring).

    Args:
        model: the trained network (its weights are ``θ*``; they are not modified).
        num_data: ``N``, the number of training examples.
        layers: the ``nn.Linear``/``nn.Conv2d`` modules of ``model`` the posterior covers
            (``None``: all of them, and every trainable parameter must be in one). The others
            stay at ``θ*``: e.g. ``[model[-1]]`` is the last-layer Laplace, Laplace Redux's
            default, whose Monte Carlo predictive is also that of the linearised network.
        prior_precision: ``λ > 0`` until :meth:`optimize_prior_precision` chooses one.
        fisher: ``"sampled"`` (labels drawn from the model: the Fisher) or ``"empirical"``.
        max_rows: input rows per layer and batch entering ``A`` (:class:`sgmcmc.KFAC`).
        generator: for sampled labels and rows, on the model's device.
    """

    def __init__(
        self,
        model: nn.Module,
        num_data: int,
        *,
        layers: Sequence[nn.Module] | None = None,
        prior_precision: float = 1.0,
        fisher: str = "sampled",
        max_rows: int | None = 4096,
        generator: torch.Generator | None = None,
    ) -> None:
        if isinstance(num_data, bool) or not isinstance(num_data, int) or num_data < 1:
            raise ValueError(f"num_data must be an integer >= 1, got {num_data!r}")
        _check_precision(prior_precision)
        self.model, self.num_data = model, num_data
        self.prior_precision = float(prior_precision)
        self.kfac = KFAC(
            model if layers is None else nn.ModuleList(layers),
            damping=self.prior_precision,
            ema_decay=0.0,
            factor_init="first_batch",
            factor_every=1,
            inverse_every=1 << 62,  # eigendecomposed once, by :meth:`fit`
            fisher=fisher,
            max_rows=max_rows,
            generator=generator,
        )
        covered = {id(p) for layer in self.kfac.layers for p in layer.params}
        missing = [
            n for n, p in model.named_parameters() if p.requires_grad and id(p) not in covered
        ]
        if layers is not None and not covered <= {id(p) for p in model.parameters()}:
            self.kfac.remove()
            raise ValueError("layers must be modules of model")
        if missing and layers is None:
            self.kfac.remove()
            raise ValueError(
                f"parameters {missing} are in no nn.Linear or nn.Conv2d layer: the K-FAC Laplace "
                "covers only those; freeze the others (requires_grad=False)"
            )
        self.log_likelihood = math.nan  # Σ log p(y|x, θ*) over the data, set by :meth:`fit`
        self.fitted = False

    @property
    def num_params(self) -> int:
        return sum(p.numel() for layer in self.kfac.layers for p in layer.params)

    def fit(self, batches: Iterable[tuple[Tensor, Tensor]]) -> KFACLaplace:
        """Average the K-FAC factors over ``batches`` (the training data, each example once)
        weighted by batch size, eigendecompose them, and sum the log-likelihood at ``θ*``."""
        layers = self.kfac.layers
        sums = [(torch.zeros_like(layer.a), torch.zeros_like(layer.g)) for layer in layers]
        seen, log_lik = 0, 0.0
        was_training = self.model.training
        self.model.eval()
        self.kfac.steps = 1  # skip observe's eigendecomposition at its first call
        try:
            for x, y in batches:
                with torch.enable_grad():
                    logits = self.model(x)
                    self.kfac.observe(logits, y)
                log_lik -= float(nn.functional.cross_entropy(logits.detach(), y, reduction="sum"))
                n = x.shape[0]
                for (a, g), layer in zip(sums, layers, strict=True):
                    a.add_(layer.a, alpha=n)
                    g.add_(layer.g, alpha=n)
                seen += n
        finally:
            self.model.train(was_training)
        if seen == 0:
            raise ValueError("fit got no batches: pass the training data as (x, y) batches")
        for (a, g), layer in zip(sums, layers, strict=True):
            self.kfac.set_factors(layer.module, a / seen, g / seen)
        self.log_likelihood, self.fitted = log_lik, True
        return self

    def _check_fitted(self) -> None:
        if not self.fitted:
            raise RuntimeError("the Laplace approximation is not fitted: call fit(batches) first")

    def log_det_precision(self, prior_precision: float | None = None) -> float:
        """``log det Σ⁻¹ = Σ log(N·λ_G λ_Aᵀ + λ)`` over every layer's eigenvalues."""
        self._check_fitted()
        lam = self.prior_precision if prior_precision is None else prior_precision
        total = 0.0
        for layer in self.kfac.layers:
            values = layer.eigen.eigenvalues(float(self.num_data), lam).double()
            total += float(values.log().sum())
        return total

    def log_marginal_likelihood(self, prior_precision: float | None = None) -> float:
        """The Laplace approximation to ``log p(D | λ)`` (module docstring), nats."""
        lam = self.prior_precision if prior_precision is None else float(prior_precision)
        _check_precision(lam)
        norm = sum(float(p.detach().double().square().sum()) for p in self._params())
        log_det_ratio = self.log_det_precision(lam) - self.num_params * math.log(lam)
        return self.log_likelihood - 0.5 * (log_det_ratio + lam * norm)

    def optimize_prior_precision(self, grid: Sequence[float] = PRIOR_PRECISION_GRID) -> float:
        """Set (and return) the ``λ`` of ``grid`` with the largest marginal likelihood."""
        if not grid:
            raise ValueError("grid must hold at least one prior precision")
        values = [self.log_marginal_likelihood(lam) for lam in grid]
        self.prior_precision = float(grid[max(range(len(grid)), key=values.__getitem__)])
        self.kfac.damping = self.prior_precision
        return self.prior_precision

    def _params(self) -> list[Tensor]:
        return [p for layer in self.kfac.layers for p in layer.params]

    def noise(self, standard_normal: Sequence[Tensor]) -> list[Tensor]:
        """``Σ^{1/2}ξ`` for standard-normal ``ξ`` shaped like the layers' parameters (in the
        order of :meth:`parameters`): the deviation of a draw from ``θ*``."""
        self._check_fitted()
        out, draws = [], list(standard_normal)
        for layer in self.kfac.layers:
            parts = [draws.pop(0) for _ in layer.params]
            matrix = layer.to_matrix(parts[0], parts[1] if len(parts) > 1 else None)
            scaled = layer.eigen.power(matrix, -0.5, float(self.num_data), self.prior_precision)
            out.extend(layer.from_matrix(scaled))
        return out

    def parameters(self) -> list[Tensor]:
        """The covered parameters, in the order :meth:`sample` returns their values."""
        return self._params()

    @torch.no_grad()
    def sample(self, generator: torch.Generator | None = None) -> list[Tensor]:
        """One posterior draw: values for :meth:`parameters` (new tensors)."""
        params = self._params()
        xi = [t.clone() for t in NoiseSource(generator).like(params)]
        return [p.detach() + d for p, d in zip(params, self.noise(xi), strict=True)]

    def remove(self) -> None:
        """Remove K-FAC's hooks from the model."""
        self.kfac.remove()


def _check_precision(value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
        raise ValueError(f"prior_precision must be a finite number > 0, got {value!r}")
