"""Known-answer machinery of notebook 06 (a): targets, Lyapunov solutions, the chains' step."""

import numpy as np
import pytest
import torch

from sgmcmc.samplers.psgld import PSGLD
from sgmcmc.samplers.sgld import SGLD
from sgmcmc_paper.analysis import exact


@pytest.fixture(scope="module")
def gaussian():
    return exact.gaussian_target(dim=10, condition=100.0, seed=0)


@pytest.fixture(scope="module")
def regression():
    return exact.linear_regression_target(seed=0)


def test_gaussian_target_has_the_requested_spectrum(gaussian):
    eigenvalues = np.linalg.eigvalsh(gaussian.precision)
    assert gaussian.dim == 10
    assert np.allclose(eigenvalues, np.geomspace(1, 100, 10))
    off_diagonal = gaussian.precision - np.diag(np.diag(gaussian.precision))
    assert np.abs(off_diagonal).max() > 1.0  # rotated: a diagonal preconditioner is not enough
    assert np.allclose(gaussian.covariance @ gaussian.precision, np.eye(10))


def test_regression_posterior_is_the_model_s_hessian_and_minimum(regression):
    """Against autograd on the model: U(W) = ½Σ(y − Wx)ᵀΛ(y − Wx) + ½α‖W‖², W row-major."""
    factors = regression.kronecker
    inputs, outputs = (torch.as_tensor(a) for a in regression.data)
    n_out, n_in = outputs.shape[1], inputs.shape[1]
    noise_precision = torch.as_tensor(factors.output_factor)

    def potential(flat):
        residual = outputs - inputs @ flat.view(n_out, n_in).T
        fit = 0.5 * torch.einsum("no,op,np->", residual, noise_precision, residual)
        return fit + 0.5 * factors.prior_precision * (flat**2).sum()

    hessian = torch.autograd.functional.hessian(
        potential, torch.zeros(n_out * n_in, dtype=torch.float64)
    )
    assert np.allclose(hessian.numpy(), regression.precision)
    mean = torch.as_tensor(regression.mean).requires_grad_(True)
    (gradient,) = torch.autograd.grad(potential(mean), mean)
    assert gradient.abs().max() < 1e-8 * hessian.abs().max()
    assert np.allclose(factors.input_factor, (inputs.T @ inputs).numpy() / len(inputs))
    assert regression.condition_number >= 100


def test_kfac_preconditioner_is_the_exact_inverse_on_linear_regression(regression):
    P = exact.preconditioner(regression, "ksgld")
    assert np.allclose(P @ regression.precision, np.eye(regression.dim), atol=1e-10)
    root = regression.kronecker.power(-0.5)
    assert np.allclose(root @ root, P)


def test_preconditioners(gaussian):
    assert np.array_equal(exact.preconditioner(gaussian, "sgld"), np.eye(10))
    psgld = exact.preconditioner(gaussian, "psgld")
    assert np.allclose(np.diag(psgld), 1 / (1e-5 + np.sqrt(np.diag(gaussian.precision))))
    assert np.allclose(exact.preconditioner(gaussian, "ksgld"), gaussian.covariance)
    with pytest.raises(ValueError, match="sampler must be one of"):
        exact.preconditioner(gaussian, "adam")


def test_continuous_stationary_covariances(gaussian):
    """Eq. 1 samples H⁻¹ for any constant P; eq. 2 with P = H⁻¹ gives H⁻², literal P·ξ H⁻³."""
    H, inverse = gaussian.precision, gaussian.covariance
    for sampler in exact.SAMPLERS:
        P = exact.preconditioner(gaussian, sampler)
        eq1 = exact.continuous_stationary_covariance(gaussian, P, exact.RULES["eq1"])
        assert np.allclose(eq1, inverse, rtol=1e-8, atol=1e-10)
    P = exact.preconditioner(gaussian, "ksgld")
    eq2 = exact.continuous_stationary_covariance(gaussian, P, exact.RULES["eq2"])
    literal = exact.continuous_stationary_covariance(gaussian, P, exact.RULES["eq2_literal"])
    assert np.allclose(eq2, inverse @ inverse, atol=1e-10)
    assert np.allclose(literal, inverse @ inverse @ inverse, atol=1e-10)
    assert np.allclose(H @ eq2 + eq2 @ H, 2 * P, atol=1e-10)


@pytest.mark.parametrize("rule", exact.RULES)
def test_discrete_solution_solves_its_equation_and_tends_to_the_continuous(gaussian, rule):
    spec = exact.RULES[rule]
    P = exact.preconditioner(gaussian, "psgld")
    continuous = exact.continuous_stationary_covariance(gaussian, P, spec)
    gaps = []
    for fraction in (0.1, 0.01):
        lr = exact.step_size(gaussian, P, spec, fraction)
        A, Q = exact.transition(gaussian, P, spec, lr)
        sigma = exact.discrete_stationary_covariance(A, Q)
        assert np.allclose(A @ sigma @ A.T + Q, sigma, rtol=1e-9, atol=1e-12)
        gaps.append(np.linalg.norm(sigma - continuous) / np.linalg.norm(continuous))
    assert gaps[1] < gaps[0] / 5  # the discretization error is O(lr): 10× smaller step


def test_unstable_step_is_refused(gaussian):
    P = np.eye(gaussian.dim)
    A, Q = exact.transition(gaussian, P, exact.RULES["eq1"], lr=1.0)
    with pytest.raises(ValueError, match="unstable"):
        exact.discrete_stationary_covariance(A, Q)


@pytest.mark.parametrize("rule", exact.RULES)
def test_frozen_matrix_step_is_the_transition(gaussian, rule):
    """One step of the library's Langevin step with a matrix P equals θ ↦ Aθ + sqrt(2lr)·Rξ."""
    spec = exact.RULES[rule]
    P = exact.preconditioner(gaussian, "ksgld")
    lr = exact.step_size(gaussian, P, spec, 0.5)
    A, _ = exact.transition(gaussian, P, spec, lr)
    noise_factor = exact.matrix_power(P, 0.5 if spec.noise == "sqrt" else 1.0)
    theta0 = torch.randn(8, 10, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    theta = theta0.clone().requires_grad_(True)
    generator = torch.Generator().manual_seed(4)
    xi = torch.randn(8 * 10, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    optimizer = exact.FrozenMatrixLangevin(
        [theta], lr, P, noise=spec.noise, precondition=spec.precondition, generator=generator
    )
    mean = torch.as_tensor(gaussian.mean)
    theta.grad = (theta0 - mean) @ torch.as_tensor(gaussian.precision)
    optimizer.step()
    centred = (theta0 - mean).numpy()
    expected = (
        mean.numpy() + centred @ A.T + np.sqrt(2 * lr) * xi.view(8, 10).numpy() @ noise_factor
    )
    assert np.allclose(theta.detach().numpy(), expected, atol=1e-12)


def _quadratic_chains(optimizer, theta, target, steps=5):
    mean, precision = torch.as_tensor(target.mean), torch.as_tensor(target.precision)
    for _ in range(steps):
        theta.grad = (theta.detach() - mean) @ precision
        optimizer.step()
    return theta.detach()


@pytest.mark.parametrize("precondition", ["both", "noise"])
def test_frozen_matrix_step_equals_the_library_samplers(gaussian, precondition):
    """With P = I it is SGLD; with pSGLD's P it is PSGLD whose V is frozen at diag(H)."""
    start = torch.randn(4, 10, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    def chains(make):
        theta = start.clone().requires_grad_(True)
        optimizer = make([theta], 1e-3, precondition=precondition, generator=_generator())
        return _quadratic_chains(optimizer, theta, gaussian)

    def frozen(P):
        return lambda *args, **kwargs: exact.FrozenMatrixLangevin(*args, P=P, **kwargs)

    assert torch.allclose(chains(frozen(np.eye(10))), chains(SGLD), atol=1e-12)

    def frozen_psgld(params, *args, **kwargs):
        optimizer = PSGLD(params, *args, **kwargs)
        optimizer.state[params[0]]["step"] = 0
        square_avg = torch.diag(torch.as_tensor(gaussian.precision)).expand(4, 10).clone()
        optimizer.state[params[0]]["square_avg"] = square_avg
        optimizer.freeze_preconditioner()
        return optimizer

    P = exact.preconditioner(gaussian, "psgld")
    assert torch.allclose(chains(frozen(P)), chains(frozen_psgld), atol=1e-12)


def _generator():
    return torch.Generator().manual_seed(7)


def test_simulated_chains_match_lyapunov_and_eq2_misses_the_posterior(gaussian, regression):
    """Statistical check, fixed seeds. Without bias the relative error is ≈ 1 standard error
    (its MC scale, from 16 independent groups of chains); we accept up to 3. Eq. 2 with
    P = H⁻¹ samples H⁻², an O(1) miss, required to exceed 5 standard errors."""
    for target in (gaussian, regression):
        eq1 = exact.simulate(target, "ksgld", "eq1", step_fraction=0.05, chains=256, groups=16)
        error, se = eq1.relative_error("lyapunov")
        assert error <= 3 * se
        error, se = eq1.relative_error("posterior")
        assert error <= 3 * se
        eq2 = exact.simulate(target, "ksgld", "eq2", step_fraction=1.0, chains=256, groups=16)
        error, se = eq2.relative_error("lyapunov")
        assert error <= 3 * se
        error, se = eq2.relative_error("posterior")
        assert error > 5 * se


def test_variance_ratios_and_table(gaussian):
    estimate = exact.simulate(gaussian, "ksgld", "eq1", step_fraction=0.2, chains=128, groups=8)
    ratios = estimate.variance_ratios()
    assert np.allclose(ratios["continuous"], 1.0)
    assert np.allclose(ratios["lyapunov"], 1 / (1 - estimate.lr / 2))  # A = (1 − lr)·I
    assert np.all(np.abs(ratios["estimate"] - ratios["lyapunov"]) < 5 * ratios["se"])
    table = exact.comparison_table([estimate])
    assert list(table["sampler"]) == ["ksgld"]
    assert bool(table["matches Lyapunov"].iloc[0])


def test_bad_arguments(gaussian):
    with pytest.raises(ValueError, match="rule must be one of"):
        exact.simulate(gaussian, "sgld", "eq3")
    with pytest.raises(ValueError, match="multiple of groups"):
        exact.simulate(gaussian, "sgld", chains=100, groups=32)
    with pytest.raises(ValueError, match="noise must be"):
        exact.FrozenMatrixLangevin(
            [torch.zeros(2, 10, requires_grad=True)], 0.1, np.eye(10), noise="x"
        )


def test_simulate_or_load_stores_and_reuses(gaussian, tmp_path, monkeypatch):
    budget = exact.ChainBudget(chains=64, groups=8, step_fraction=0.5, relaxation_times=2.0)
    first = exact.simulate_or_load(gaussian, "ksgld", "eq2", budget, seed=1, folder=tmp_path)
    assert len(list(tmp_path.glob("*.npz"))) == 1 and not list(tmp_path.glob(".*"))
    monkeypatch.setattr(exact, "simulate", lambda *a, **k: pytest.fail("should load, not rerun"))
    again = exact.simulate_or_load(gaussian, "ksgld", "eq2", budget, seed=1, folder=tmp_path)
    assert np.array_equal(first.group_estimates, again.group_estimates)
    assert (first.lr, first.burn_in, first.steps) == (again.lr, again.burn_in, again.steps)
    assert np.allclose(first.lyapunov, again.lyapunov)
    other = exact.cache_key(gaussian, "ksgld", "eq2", budget, seed=2)
    assert other != exact.cache_key(gaussian, "ksgld", "eq2", budget, seed=1)


def test_plot_variance_ratios(gaussian):
    import matplotlib

    matplotlib.use("Agg")
    budget = exact.ChainBudget(chains=32, groups=4, step_fraction=0.5, relaxation_times=1.0)
    estimates = [exact.simulate_or_load(gaussian, "ksgld", rule, budget) for rule in ("eq1", "eq2")]
    fig = exact.plot_variance_ratios(estimates)
    assert len(fig.axes) == 1 and fig.axes[0].get_yscale() == "log"
    matplotlib.pyplot.close(fig)
