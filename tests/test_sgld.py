"""SGLD: exact one-step rules in both conventions, and the exact law of the discrete chain."""

import math

import numpy as np
import pytest
import torch
from _targets import (
    assert_standard_normal,
    conditioned_gaussian,
    deviation_from_standard_normal,
    law_after,
    run_quadratic_chains,
    standardize,
    stationary_moments,
)

from sgmcmc import SGLD
from sgmcmc_paper.analysis.exact import one_thread

F64 = torch.float64


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with one_thread():
        yield


@pytest.fixture(scope="module")
def gaussian_target():
    """d = 10, Hessian eigenvalues 1…100 (condition number 100), randomly rotated."""
    return conditioned_gaussian()


def _run_sgld(hessian, mean, lr, temperature, n_chains, steps, seed):
    theta = torch.zeros(n_chains, len(mean), dtype=F64, requires_grad=True)
    optimizer = SGLD(
        [theta], lr=lr, temperature=temperature, generator=torch.Generator().manual_seed(seed)
    )
    return theta.detach().clone(), run_quadratic_chains(optimizer, theta, hessian, mean, steps)


# lr·λ spans 0.008…0.8: the fast modes' discrete variance is 1/(1 − lr·λ/2) = 1.67× the
# posterior's, so the test tells the discrete chain from the posterior; 1500 steps leave
# ‖Aᵗ‖ = 0.992¹⁵⁰⁰ ≈ 6e-6 of the start. 4000 chains: 4000 independent final states.
LR, STEPS, CHAINS = 0.008, 1500, 4000


@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_langevin_chain_matches_exact_discrete_law(gaussian_target, temperature):
    hessian, mean = gaussian_target
    start, final = _run_sgld(hessian, mean, LR, temperature, CHAINS, STEPS, seed=1)
    eye = torch.eye(10, dtype=F64)
    A, Q = eye - LR * hessian, 2 * LR * temperature * eye
    law_mean, law_covariance, contraction = law_after(A, Q, mean, start, STEPS)
    assert contraction < 1e-5  # the law is the stationary one
    # Mean, eigen-variances and all covariances within 5 SE of the exact discrete answer.
    assert_standard_normal(standardize(final, law_mean, law_covariance))
    # The same samples miss the continuous posterior N(μ, T·H⁻¹) (discretization error).
    posterior = temperature * torch.linalg.inv(hessian)
    assert deviation_from_standard_normal(standardize(final, mean, posterior)) > 10


def test_temperature_scales_the_stationary_covariance(gaussian_target):
    """T = 0.5 halves every stationary variance (Q ∝ T in Σ = AΣAᵀ + Q); sampled above."""
    hessian, mean = gaussian_target
    A = np.eye(10) - LR * hessian.numpy()
    b = LR * hessian.numpy() @ mean.numpy()
    mean_1, covariance_1 = stationary_moments(A, b, 2 * LR * np.eye(10))
    mean_half, covariance_half = stationary_moments(A, b, LR * np.eye(10))
    np.testing.assert_allclose(mean_half, mean.numpy(), rtol=1e-10)
    np.testing.assert_allclose(mean_1, mean.numpy(), rtol=1e-10)
    np.testing.assert_allclose(covariance_half, covariance_1 / 2, rtol=1e-10)


def _noise_from(seed, shapes, dtype=torch.float32):
    """The noise the sampler draws: one flat N(0, 1) vector for the group, split in order."""
    sizes = [math.prod(shape) for shape in shapes]
    flat = torch.randn(sum(sizes), generator=torch.Generator().manual_seed(seed), dtype=dtype)
    return [chunk.view(shape) for chunk, shape in zip(flat.split(sizes), shapes, strict=True)]


@pytest.mark.parametrize("convention", ["langevin", "paper"])
def test_one_step_is_the_documented_formula(convention):
    generator = torch.Generator().manual_seed(3)
    params = [torch.randn(4, 3, generator=generator), torch.randn(5, generator=generator)]
    grads = [torch.randn_like(p) for p in params]
    lr, temperature = 0.02, 0.7
    optimizer = SGLD(
        params,
        lr=lr,
        convention=convention,
        temperature=temperature,
        generator=torch.Generator().manual_seed(11),
    )
    before = [p.clone() for p in params]
    for p, g in zip(params, grads, strict=True):
        p.grad = g
    optimizer.step()
    noise = _noise_from(11, [p.shape for p in params])
    for p, p0, g, xi in zip(params, before, grads, noise, strict=True):
        if convention == "langevin":  # θ − lr·∇U + sqrt(2·lr·T)·ξ
            expected = p0 - lr * g + math.sqrt(2 * lr * temperature) * xi
        else:  # θ − (lr/2)·g + lr²·sqrt(T)·ξ
            expected = p0 - lr / 2 * g + lr**2 * math.sqrt(temperature) * xi
        torch.testing.assert_close(p, expected)


@pytest.mark.parametrize("convention", ["langevin", "paper"])
def test_zero_temperature_is_gradient_descent(convention):
    param = torch.randn(100)
    grad = torch.randn(100)
    optimizer = SGLD([param], lr=0.1, convention=convention, temperature=0.0)
    expected = param.add(grad, alpha=-0.1 if convention == "langevin" else -0.05)
    param.grad = grad
    optimizer.step()
    torch.testing.assert_close(param, expected, rtol=0, atol=0)


def test_paper_noise_standard_deviation_is_lr_squared():
    """Over 10⁶ elements with zero gradient: sd lr² = 4e-4 at lr 0.02. The sample sd of n
    Gaussian draws has standard error sd/√(2n); the mean, sd/√n; both within 5 SE."""
    n, lr = 1_000_000, 0.02
    param = torch.zeros(n, dtype=F64)
    param.grad = torch.zeros(n, dtype=F64)
    SGLD([param], lr=lr, convention="paper", generator=torch.Generator().manual_seed(5)).step()
    sd = lr**2
    assert abs(param.std().item() - sd) < 5 * sd / math.sqrt(2 * n)
    assert abs(param.mean().item()) < 5 * sd / math.sqrt(n)
