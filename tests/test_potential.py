"""potential(): value, gradient, validation, and SGLD on a Bayesian linear regression."""

import math

import pytest
import torch
from _targets import assert_standard_normal, law_after, standardize

from sgmcmc import SGLD, potential
from sgmcmc_paper.analysis.exact import one_thread

F64 = torch.float64


def test_value_and_gradient():
    generator = torch.Generator().manual_seed(0)
    params = [torch.randn(3, 2, generator=generator, requires_grad=True) for _ in range(2)]
    mean_loss = sum((p**3).mean() for p in params)
    u = potential(mean_loss, num_data=1000, params=params, prior_std=0.5)
    expected = 1000 * mean_loss + sum((p**2).sum() for p in params) / (2 * 0.25)
    torch.testing.assert_close(u, expected)
    gradients = torch.autograd.grad(u, params)
    for p, g in zip(params, gradients, strict=True):
        torch.testing.assert_close(g, 1000 * 3 * p**2 / p.numel() + p / 0.25)


def test_prior_term_is_twice_differentiable_and_skips_frozen_tensors():
    params = [torch.randn(3, 4, dtype=F64, requires_grad=True), torch.randn(5, dtype=F64)]
    params[1].requires_grad_()

    def u(a, b):
        return potential((a**2).sum() * b.sum(), 10, [a, b], prior_std=0.7)

    assert torch.autograd.gradcheck(u, params)
    assert torch.autograd.gradgradcheck(u, params)
    frozen = torch.ones(3)
    value = potential(torch.tensor(0.0), 10, [params[0], frozen], prior_std=1.0)
    torch.testing.assert_close(value, (params[0] ** 2).sum() / 2)


def test_flat_prior():
    param = torch.ones(4, requires_grad=True)
    assert potential(param.mean(), 10, [param], prior_std=None).item() == 10.0


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"num_data": 0}, "num_data"),
        ({"num_data": 2.5}, "num_data"),
        ({"num_data": True}, "num_data"),
        ({"prior_std": 0.0}, "prior_std"),
        ({"prior_std": -1.0}, "prior_std"),
        ({"prior_std": math.nan}, "prior_std"),
    ],
)
def test_bad_arguments(kwargs, argument):
    param = torch.ones(2, requires_grad=True)
    with pytest.raises(ValueError, match=argument):
        potential(param.mean(), **{"num_data": 10, "params": [param], **kwargs})


def test_loss_must_be_a_scalar():
    param = torch.ones(2, requires_grad=True)
    with pytest.raises(ValueError, match="reduction='mean'"):
        potential(param * 2, 10, [param])


def test_sgld_on_bayesian_linear_regression_matches_the_exact_discrete_law():
    """y = Xw + N(0, σ²), prior w ~ N(0, τ²I). With U = potential(mean Gaussian NLL, N, …) the
    full-batch SGLD chain is θ' = θ − lr·(Hθ − Xᵀy/σ²) + sqrt(2·lr)·ξ, H = XᵀX/σ² + I/τ², whose
    exact law (fixed point the posterior mean H⁻¹Xᵀy/σ²) the 4000 independent chains match
    within 5 SE: a wrong N scaling or prior term would move both the mean and the covariance."""
    generator = torch.Generator().manual_seed(0)
    n_data, d, chains, steps, noise_sd, prior_sd = 40, 3, 4000, 600, 0.5, 2.0
    X = torch.randn(n_data, d, generator=generator, dtype=F64)
    y = X @ torch.tensor([1.0, -2.0, 0.5], dtype=F64) + noise_sd * torch.randn(
        n_data, generator=generator, dtype=F64
    )
    hessian = X.T @ X / noise_sd**2 + torch.eye(d, dtype=F64) / prior_sd**2
    posterior_mean = torch.linalg.solve(hessian, X.T @ y / noise_sd**2)
    lr = 1.0 / torch.linalg.eigvalsh(hessian).max().item()
    weights = torch.zeros(chains, d, dtype=F64, requires_grad=True)
    optimizer = SGLD([weights], lr=lr, generator=torch.Generator().manual_seed(1))
    with one_thread():
        for _ in range(steps):
            optimizer.zero_grad()
            residuals = y[:, None] - X @ weights.T  # (N, chains): column c is chain c
            mean_nll_per_chain = (residuals**2).mean(0) / (2 * noise_sd**2)
            # Chains are independent rows, so their potentials add.
            potential(mean_nll_per_chain.sum(), n_data, [weights], prior_sd).backward()
            optimizer.step()
    eye = torch.eye(d, dtype=F64)
    law_mean, law_covariance, contraction = law_after(
        eye - lr * hessian, 2 * lr * eye, posterior_mean, torch.zeros(chains, d, dtype=F64), steps
    )
    assert contraction < 1e-6
    assert_standard_normal(standardize(weights.detach(), law_mean, law_covariance))
