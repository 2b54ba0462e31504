"""Known answers for statistical tests of linear (Gaussian-target) Langevin chains.

A sampler on a quadratic potential ``U(θ) = ½(θ − μ)ᵀH(θ − μ)`` with a constant preconditioner
is the linear recursion ``θ' = Aθ + b + ε``, ``ε ~ N(0, Q)``. Its exact stationary law is
Gaussian with mean ``(I − A)⁻¹b`` and covariance ``Σ = AΣAᵀ + Q`` (discrete Lyapunov
equation), so tests compare with the discrete chain, not the continuous posterior, and
discretization error is never mistaken for a bug. E.g. SGLD, langevin convention:
``A = I − lr·H``, ``b = lr·H·μ``, ``Q = 2·lr·T·I``; with a diagonal ``P`` and
``precondition="both"``: ``A = I − lr·P·H``, ``b = lr·P·H·μ``, ``Q = 2·lr·T·P``.

Chains are vectorised as the rows of one ``(n_chains, d)`` parameter; the rows are independent
chains. Given its start ``θ_0``, a chain's state after ``t`` steps has the exact law
``N(m + Aᵗ(θ_0 − m), Σ − AᵗΣAᵗᵀ)`` (:func:`law_after`), which is the stationary law once
``‖Aᵗ‖`` is small; standardizing each row by it gives independent ``N(0, I)`` draws, so the
effective sample size is exactly ``n_chains``, with no assumption about burn-in or
autocorrelation.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.linalg
import torch
from torch import Tensor


def spd_matrix(eigenvalues: Tensor, generator: torch.Generator) -> Tensor:
    """``R·diag(eigenvalues)·Rᵀ`` with ``R`` a random rotation (QR of a Gaussian matrix)."""
    d = eigenvalues.numel()
    gaussian = torch.randn(d, d, generator=generator, dtype=torch.float64)
    rotation, upper = torch.linalg.qr(gaussian)
    rotation = rotation * torch.sign(torch.diagonal(upper))  # Haar-distributed rotation
    return (rotation * eigenvalues.to(torch.float64)) @ rotation.T


def conditioned_gaussian(dim: int = 10, condition: float = 100.0) -> tuple[Tensor, Tensor]:
    """``(H, μ)`` of a Gaussian target in float64: Hessian eigenvalues log-spaced from 1 to
    ``condition``, randomly rotated, and a random mean (seeded 0)."""
    generator = torch.Generator().manual_seed(0)
    eigenvalues = torch.logspace(0, math.log10(condition), dim, dtype=torch.float64)
    hessian = spd_matrix(eigenvalues, generator)
    mean = torch.randn(dim, generator=generator, dtype=torch.float64)
    return hessian, mean


def stationary_moments(
    A: np.ndarray, b: np.ndarray, Q: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of the stationary law of ``θ' = Aθ + b + N(0, Q)`` (``ρ(A) < 1``)."""
    A, b, Q = (np.asarray(x, dtype=np.float64) for x in (A, b, Q))
    spectral_radius = np.max(np.abs(np.linalg.eigvals(A)))
    if spectral_radius >= 1:
        raise ValueError(f"the chain is unstable: spectral radius of A is {spectral_radius:.4g}")
    mean = np.linalg.solve(np.eye(len(b)) - A, b)
    covariance = scipy.linalg.solve_discrete_lyapunov(A, Q)
    return mean, (covariance + covariance.T) / 2


def stationary_covariance_batched(A: Tensor, Q: Tensor, tol: float = 1e-12) -> Tensor:
    """``Σ = AΣAᵀ + Q`` for a batch ``(n, d, d)`` of chains, by Smith's doubling iteration.

    ``Σ = Σ_k A^k Q (A^k)ᵀ``; each iteration doubles the number of terms summed, and it stops
    once ``‖A^(2^k)‖ < tol`` for every chain (the remainder is then below ``tol²·‖Σ‖``).
    """
    covariance, power = Q.clone(), A.clone()
    for _ in range(64):
        covariance = covariance + power @ covariance @ power.transpose(-1, -2)
        power = power @ power
        if torch.linalg.matrix_norm(power, ord=2).max() < tol:
            return (covariance + covariance.transpose(-1, -2)) / 2
    raise ValueError("the doubling iteration did not converge: is every chain stable?")


def law_after(
    A: Tensor, Q: Tensor, fixed_point: Tensor, start: Tensor, steps: int
) -> tuple[Tensor, Tensor, float]:
    """Exact law of ``θ_t`` given ``θ_0 = start`` for ``θ' = fixed_point + A(θ − fixed_point) + ε``.

    Returns ``(mean, covariance, contraction)``: ``mean = m + Aᵗ(θ_0 − m)``, covariance
    ``Σ − AᵗΣAᵗᵀ`` with ``Σ`` the stationary (Lyapunov) covariance, and ``max ‖Aᵗ‖₂``, which
    says how much of the start is left (``→ 0``: the stationary law). ``A`` and ``Q`` are
    ``(d, d)`` or one per chain ``(n, d, d)``; ``start`` is ``(n, d)``.
    """
    stationary = stationary_covariance_batched(A, Q)
    power = torch.linalg.matrix_power(A, steps)
    mean = fixed_point + (power @ (start - fixed_point).unsqueeze(-1)).squeeze(-1)
    covariance = stationary - power @ stationary @ power.transpose(-1, -2)
    contraction = torch.linalg.matrix_norm(power, ord=2).max().item()
    return mean, covariance, contraction


def standardize(samples: Tensor, mean: Tensor, covariance: Tensor) -> Tensor:
    """``Λ^{-1/2}Uᵀ(x − m)`` with ``Σ = UΛUᵀ``: coordinates along the eigenvectors of ``Σ`` in
    units of their standard deviations. ``mean`` and ``covariance`` may be one per sample."""
    eigenvalues, eigenvectors = torch.linalg.eigh(covariance)
    centred = (samples - mean).unsqueeze(-1)
    rotated = (eigenvectors.transpose(-1, -2) @ centred).squeeze(-1)
    return rotated / eigenvalues.sqrt()


def deviation_from_standard_normal(z: Tensor) -> float:
    """Largest deviation, in standard errors, of the rows of ``z`` from mean 0, covariance ``I``.

    Standard errors for ``n`` independent Gaussian rows: mean ``1/√n``; variance ``√(2/n)``;
    off-diagonal covariance ``1/√n``.
    """
    n, d = z.shape
    covariance = torch.cov(z.T, correction=1).reshape(d, d)
    variances = covariance.diagonal()
    off_diagonal = covariance - torch.diag(variances)
    deviations = torch.cat(
        [
            z.mean(0).abs() * math.sqrt(n),
            (variances - 1).abs() / math.sqrt(2 / n),
            off_diagonal.abs().flatten() * math.sqrt(n),
        ]
    )
    return deviations.max().item()


def assert_standard_normal(z: Tensor, n_se: float = 5.0) -> None:
    """Mean, variances and covariances of the rows of ``z`` all within ``n_se`` standard errors
    of ``N(0, I)``: with ``≤ 100`` such checks, a false alarm has probability ``< 1e-4``."""
    deviation = deviation_from_standard_normal(z)
    variances = torch.var(z, dim=0)
    assert deviation < n_se, f"{deviation:.2f} SE from N(0, I); variances {variances}"


def run_quadratic_chains(
    optimizer: torch.optim.Optimizer, theta: Tensor, hessian: Tensor, mean: Tensor, steps: int
) -> Tensor:
    """Run ``steps`` steps on ``U = Σ_rows ½(θ − μ)ᵀH(θ − μ)`` (gradient set directly)."""
    for _ in range(steps):
        theta.grad = (theta.detach() - mean) @ hessian
        optimizer.step()
    return theta.detach().clone()


def dense_kfac_power(a, g, damping, power, scale, pi=None):
    """``(s·G⊗A + δI)^p`` as a dense matrix acting on row-major ``vec`` of ``out × in``
    matrices (row-major: ``vec_r(G X A) = (G⊗A) vec_r(X)``); ``pi`` given: factored damping."""
    eye_a, eye_g = (torch.eye(m.shape[0], dtype=torch.float64) for m in (a, g))
    if pi is None:
        dense = scale * torch.kron(g, a) + damping * torch.kron(eye_g, eye_a)
    else:
        gamma = math.sqrt(damping / scale)
        dense = scale * torch.kron(g + gamma / pi * eye_g, a + gamma * pi * eye_a)
    values, vectors = torch.linalg.eigh(dense)
    return (vectors * values**power) @ vectors.T
