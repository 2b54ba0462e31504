"""pSGLD: the learned preconditioner, the frozen chain's exact law, and the paper's recursion."""

import math

import pytest
import torch
from _targets import (
    assert_standard_normal,
    deviation_from_standard_normal,
    law_after,
    run_quadratic_chains,
    spd_matrix,
    standardize,
)

from sgmcmc import PSGLD
from sgmcmc_paper.analysis.exact import one_thread

F64 = torch.float64


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with one_thread():
        yield


# ------------------------------------------------------------------ statistical (langevin)
D, CHAINS, ADAPT, FROZEN, LAST = 6, 4000, 2000, 2000, 500
LR = 8e-3  # lr·P·H then has eigenvalues in ~[1e-3, 0.8] for every chain (asserted below)


@pytest.fixture(scope="module")
def target():
    """H = S^{1/2} C S^{1/2}: curvatures S from 1 to 10⁴ (posterior scales spanning 100×),
    C a random correlation matrix (eigenvalues 0.5…2 before normalisation)."""
    generator = torch.Generator().manual_seed(0)
    correlation = spd_matrix(torch.linspace(0.5, 2, D, dtype=F64), generator)
    scale = correlation.diagonal().sqrt()
    correlation = correlation / scale[:, None] / scale[None, :]
    curvature = torch.logspace(0, 4, D, dtype=F64).sqrt()
    hessian = curvature[:, None] * correlation * curvature[None, :]
    mean = torch.randn(D, generator=generator, dtype=F64)
    return hessian, mean, generator


@pytest.fixture(scope="module")
def adapted(target):
    """pSGLD (langevin, both) run from posterior draws for ADAPT steps with V adapting; it
    freezes itself (burn_in=ADAPT). Records the mean of g² over the last LAST steps."""
    hessian, mean, generator = target
    cholesky = torch.linalg.cholesky(torch.linalg.inv(hessian))
    start = mean + torch.randn(CHAINS, D, generator=generator, dtype=F64) @ cholesky.T
    theta = start.clone().requires_grad_()
    optimizer = PSGLD([theta], lr=LR, burn_in=ADAPT, generator=torch.Generator().manual_seed(1))
    run_quadratic_chains(optimizer, theta, hessian, mean, ADAPT - LAST)
    mean_squared_gradient = torch.zeros(CHAINS, D, dtype=F64)
    for _ in range(LAST):
        theta.grad = (theta.detach() - mean) @ hessian
        mean_squared_gradient += theta.grad**2 / LAST
        optimizer.step()
    return theta.detach().clone(), optimizer.state_dict(), mean_squared_gradient


def test_learned_v_is_the_expected_squared_gradient(adapted):
    """At stationarity of (θ, V), E[V] = α·E[V] + (1 − α)·E[g²], so E[V − mean g²] = 0.
    The per-chain differences are independent across chains: their mean is within 5 of its
    standard errors (sd/√n over the 4000 chains) of 0, for every coordinate."""
    _, state, mean_squared_gradient = adapted
    square_avg = state["state"][0]["square_avg"]
    assert state["state"][0]["step"] == ADAPT
    difference = square_avg - mean_squared_gradient
    z = difference.mean(0) / (difference.std(0) / math.sqrt(CHAINS))
    assert z.abs().max() < 5, z
    # V spans the scales (≈ 10⁴× between the stiffest and the flattest coordinate).
    assert square_avg.mean(0).max() / square_avg.mean(0).min() > 1e3


def _frozen_run(target, adapted, precondition, lr, seed):
    """Continue the adapted chains with V frozen (restored through load_state_dict)."""
    hessian, mean, _ = target
    start, state, _ = adapted
    theta = start.clone().requires_grad_()
    optimizer = PSGLD([theta], lr=lr, burn_in=ADAPT, generator=torch.Generator())
    optimizer.load_state_dict(state)
    optimizer.param_groups[0].update(precondition=precondition, lr=lr)
    optimizer.generator.manual_seed(seed)
    square_avg = state["state"][0]["square_avg"]
    final = run_quadratic_chains(optimizer, theta, hessian, mean, FROZEN)
    assert torch.equal(optimizer.state[theta]["square_avg"], square_avg)  # frozen
    preconditioner = 1 / (1e-5 + square_avg.sqrt())  # P = diag(1/(λ + sqrt(V))), per chain
    eye = torch.eye(D, dtype=F64)
    if precondition == "both":
        A = eye - lr * preconditioner[:, :, None] * hessian  # θ' = θ − lr·P·H(θ − μ) + …
    else:
        A = (eye - lr * hessian).expand(CHAINS, D, D)  # θ' = θ − lr·H(θ − μ) + …
    Q = torch.diag_embed(2 * lr * preconditioner)  # noise sqrt(2·lr)·P^{1/2}·ξ
    return start, final, A, Q


def test_frozen_chain_matches_exact_discrete_law(target, adapted):
    """Each chain has its own frozen P; its final state's exact law given its start is
    N(μ + Aᵗ(θ₀ − μ), Σ − AᵗΣAᵗᵀ), Σ the Lyapunov solution for that P (here ‖Aᵗ‖ < 0.1, so
    mostly Σ). Standardized, the 4000 independent final states are N(0, I) within 5 SE."""
    hessian, mean, _ = target
    start, final, A, Q = _frozen_run(target, adapted, "both", LR, seed=2)
    eigenvalues = torch.linalg.eigvals(torch.eye(D, dtype=F64) - A).real
    assert 0 < eigenvalues.min() and eigenvalues.max() < 1  # the design: stable, non-trivial
    law_mean, law_covariance, contraction = law_after(A, Q, mean, start, FROZEN)
    assert contraction < 0.1
    assert_standard_normal(standardize(final, law_mean, law_covariance))


def test_noise_only_preconditioning_samples_another_law(target, adapted):
    """precondition="noise": drift −lr·H(θ − μ) (lr = 1/λ_max(H)), noise 2·lr·P. The chains
    match that chain's exact law (within 5 SE) and miss the posterior N(μ, H⁻¹) by more than
    5 SE (continuous-time stationary covariance solves HΣ + ΣH = 2P, not Σ = H⁻¹). The slowest
    mode (λ_max/λ_min ≈ 1.5·10⁴) is far from mixed after 2000 steps; the exact law accounts
    for that, and the stiff modes, which have mixed, carry the difference from the posterior."""
    hessian, mean, _ = target
    lr = 1 / torch.linalg.eigvalsh(hessian).max().item()
    start, final, A, Q = _frozen_run(target, adapted, "noise", lr, seed=3)
    law_mean, law_covariance, _ = law_after(A, Q, mean, start, FROZEN)
    assert_standard_normal(standardize(final, law_mean, law_covariance))
    posterior = standardize(final, mean, torch.linalg.inv(hessian))
    assert deviation_from_standard_normal(posterior) > 5


# --------------------------------------------------------------------------- exact steps
def test_langevin_first_step_uses_updated_v():
    """V starts at 0 and is updated before use: V = (1 − α)·g², P = 1/(λ + sqrt(V))."""
    param = torch.randn(50, dtype=F64)
    grad = torch.randn(50, dtype=F64)
    start = param.clone()
    lr, alpha, eps, temperature = 0.01, 0.9, 1e-3, 0.3
    optimizer = PSGLD(
        [param],
        lr=lr,
        alpha=alpha,
        eps=eps,
        temperature=temperature,
        generator=torch.Generator().manual_seed(4),
    )
    param.grad = grad
    optimizer.step()
    square_avg = (1 - alpha) * grad**2
    torch.testing.assert_close(optimizer.state[param]["square_avg"], square_avg)
    preconditioner = 1 / (eps + square_avg.sqrt())
    xi = torch.randn(50, generator=torch.Generator().manual_seed(4), dtype=F64)
    expected = (
        start
        - lr * preconditioner * grad
        + math.sqrt(2 * lr * temperature) * preconditioner.sqrt() * xi
    )
    torch.testing.assert_close(param, expected)


def test_langevin_noise_only_keeps_the_plain_gradient():
    param = torch.randn(20, dtype=F64)
    grad = torch.randn(20, dtype=F64)
    expected = param.add(grad, alpha=-0.1)
    optimizer = PSGLD([param], lr=0.1, precondition="noise", temperature=0)
    param.grad = grad
    optimizer.step()
    torch.testing.assert_close(param, expected, rtol=0, atol=0)


def test_paper_two_steps_follow_the_released_recursion():
    """m₀ = 1, m ← sqrt(1e-10 + 0.96·m + 0.04·g²), θ ← θ − (lr/2)·g + lr²·ξ/m (the released code of
    Palacci & Hess 2018)."""
    param = torch.randn(30, dtype=F64)
    lr = 0.02
    optimizer = PSGLD(
        [param], lr=lr, convention="paper", generator=torch.Generator().manual_seed(6)
    )
    reference = torch.Generator().manual_seed(6)
    m, expected = torch.ones(30, dtype=F64), param.clone()
    for _ in range(2):
        grad = torch.randn(30, dtype=F64)
        param.grad = grad
        optimizer.step()
        m = torch.sqrt(1e-10 + 0.96 * m + 0.04 * grad**2)
        xi = torch.randn(30, generator=reference, dtype=F64)
        expected = expected - lr / 2 * grad + lr**2 * xi / m
        torch.testing.assert_close(optimizer.state[param]["m"], m)
        torch.testing.assert_close(param, expected)


def test_paper_noise_standard_deviation_is_lr_squared_over_m():
    """Zero gradient: m = sqrt(1e-10 + 0.96) after one step, noise sd lr²/m. Over 10⁶
    elements the sample sd is within 5 SE (sd/√(2n)) of it and the mean within 5·sd/√n of 0."""
    n, lr = 1_000_000, 0.02
    param = torch.zeros(n, dtype=F64)
    param.grad = torch.zeros(n, dtype=F64)
    optimizer = PSGLD(
        [param], lr=lr, convention="paper", generator=torch.Generator().manual_seed(7)
    )
    optimizer.step()
    sd = lr**2 / math.sqrt(1e-10 + 0.96)
    assert abs(param.std().item() - sd) < 5 * sd / math.sqrt(2 * n)
    assert abs(param.mean().item()) < 5 * sd / math.sqrt(n)
    # One step from m = 1 with zero gradient: m = sqrt(0.96), so 2% more than SGLD's lr².
    assert sd / lr**2 == pytest.approx(1.0206, abs=1e-4)


# ------------------------------------------------------------------------------ freezing
def test_burn_in_freezes_after_that_many_updates():
    param = torch.zeros(5)
    optimizer = PSGLD([param], lr=0.01, burn_in=3, temperature=0)
    history = []
    for k in range(5):
        param.grad = torch.full((5,), float(k + 1))
        optimizer.step()
        history.append(optimizer.state[param]["square_avg"].clone())
    assert not torch.equal(history[1], history[2])
    assert torch.equal(history[2], history[3]) and torch.equal(history[3], history[4])
    assert optimizer.state[param]["step"] == 3


def test_freeze_preconditioner_stops_and_resumes_updates():
    param = torch.zeros(5)
    optimizer = PSGLD([param], lr=0.01, temperature=0)
    param.grad = torch.ones(5)
    optimizer.step()
    frozen_value = optimizer.state[param]["square_avg"].clone()
    optimizer.freeze_preconditioner()
    optimizer.step()
    assert torch.equal(optimizer.state[param]["square_avg"], frozen_value)
    optimizer.freeze_preconditioner(False)
    optimizer.step()
    assert not torch.equal(optimizer.state[param]["square_avg"], frozen_value)


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"alpha": 1.0}, "alpha"),
        ({"alpha": -0.1}, "alpha"),
        ({"eps": 0.0}, "eps"),
        ({"burn_in": 0}, "burn_in"),
        ({"burn_in": 2.5}, "burn_in"),
    ],
)
def test_bad_hyper_parameters_name_the_argument(kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        PSGLD([torch.zeros(2, requires_grad=True)], lr=0.1, **kwargs)


def test_convention_sets_the_default_constants():
    langevin = PSGLD([torch.zeros(2)], lr=0.1).param_groups[0]
    paper = PSGLD([torch.zeros(2)], lr=0.1, convention="paper").param_groups[0]
    assert (langevin["alpha"], langevin["eps"], langevin["precondition"]) == (0.99, 1e-5, "both")
    assert (paper["alpha"], paper["eps"], paper["precondition"]) == (0.96, 1e-10, "noise")


# ------------------------------------------------------- the rule chosen apart from the convention
def test_paper_convention_with_li_et_al_s_average():
    """average="square", convention="paper": V₀ = 0, V ← 0.99·V + 0.01·g², P = 1/(1e-5 + √V)
    (Li et al.'s α and λ), θ ← θ − (lr/2)·g + lr²·P·ξ (the paper convention's step)."""
    param = torch.randn(30, dtype=F64)
    lr = 0.02
    optimizer = PSGLD(
        [param],
        lr=lr,
        convention="paper",
        average="square",
        generator=torch.Generator().manual_seed(8),
    )
    group = optimizer.param_groups[0]
    assert (group["average"], group["alpha"], group["eps"]) == ("square", 0.99, 1e-5)
    reference = torch.Generator().manual_seed(8)
    square_avg, expected = torch.zeros(30, dtype=F64), param.clone()
    for _ in range(2):
        grad = torch.randn(30, dtype=F64)
        param.grad = grad
        optimizer.step()
        square_avg = 0.99 * square_avg + 0.01 * grad**2
        xi = torch.randn(30, generator=reference, dtype=F64)
        expected = expected - lr / 2 * grad + lr**2 * xi / (1e-5 + square_avg.sqrt())
        torch.testing.assert_close(optimizer.state[param]["square_avg"], square_avg)
        torch.testing.assert_close(param, expected)
    assert "m" not in optimizer.state[param]


def test_langevin_convention_with_the_released_recursion():
    """average="released", convention="langevin": m₀ = 1, m ← sqrt(1e-10 + 0.96·m + 0.04·g²),
    θ ← θ − lr·g/m + sqrt(2·lr)·ξ/√m."""
    param, grad = torch.randn(30, dtype=F64), torch.randn(30, dtype=F64)
    start, lr = param.clone(), 1e-3
    optimizer = PSGLD(
        [param], lr=lr, average="released", generator=torch.Generator().manual_seed(9)
    )
    param.grad = grad
    optimizer.step()
    m = torch.sqrt(1e-10 + 0.96 + 0.04 * grad**2)
    xi = torch.randn(30, generator=torch.Generator().manual_seed(9), dtype=F64)
    torch.testing.assert_close(optimizer.state[param]["m"], m)
    torch.testing.assert_close(param, start - lr * grad / m + math.sqrt(2 * lr) * xi / m.sqrt())


def test_default_average_is_the_convention_s_and_bad_names_are_refused():
    assert PSGLD([torch.zeros(2)], lr=0.1).param_groups[0]["average"] == "square"
    paper = PSGLD([torch.zeros(2)], lr=0.1, convention="paper").param_groups[0]
    assert paper["average"] == "released"
    with pytest.raises(ValueError, match="average must be one of"):
        PSGLD([torch.zeros(2)], lr=0.1, average="rmsprop")


def test_state_dict_saved_before_average_existed_keeps_the_convention_s_rule():
    """A group restored without ``average`` (older checkpoints) steps with its convention's."""
    param = torch.zeros(4)
    optimizer = PSGLD([param], lr=0.02, convention="paper", temperature=0)
    param.grad = torch.ones(4)
    optimizer.step()
    state = optimizer.state_dict()
    del state["param_groups"][0]["average"]
    restored = PSGLD([param], lr=0.02, convention="paper", temperature=0)
    restored.load_state_dict(state)
    restored.step()
    m = torch.sqrt(torch.tensor(1e-10 + 0.96 * math.sqrt(1e-10 + 1.0) + 0.04))
    torch.testing.assert_close(restored.state[param]["m"], m.expand(4))


FROZEN_RULES = {
    # (convention, average, precondition): the chain's drift and noise, given a frozen P.
    "paper convention, Li et al.'s average": ("paper", "square", "noise"),
    "langevin convention, released recursion": ("langevin", "released", "both"),
}


@pytest.mark.parametrize("rule", FROZEN_RULES)
def test_frozen_chain_of_either_average_matches_its_exact_discrete_law(target, rule):
    """Adapt the rule for 500 steps, freeze it, run FROZEN more: per chain, P = 1/D (D from the
    frozen state) and the step is linear, θ' = μ + A(θ − μ) + N(0, Q), with
    paper: A = I − (lr/2)·H, Q = lr⁴·P² (the code's lr²·P·ξ noise; it does not sample the
    posterior, and nothing says it does: this is its own law);
    langevin, both: A = I − lr·P·H, Q = 2·lr·P (samples N(μ, H⁻¹) up to discretization).
    Standardized by that law, the 4000 independent final states are N(0, I) within 5 SE."""
    convention, average, precondition = FROZEN_RULES[rule]
    hessian, mean, generator = target
    cholesky = torch.linalg.cholesky(torch.linalg.inv(hessian))
    start = mean + torch.randn(CHAINS, D, generator=generator, dtype=F64) @ cholesky.T
    theta = start.clone().requires_grad_()
    lam_max = torch.linalg.eigvalsh(hessian).max().item()
    # paper: (lr/2)·λ_max = 0.5; langevin: a small adaptation rate, the frozen one set below
    lr = 1 / lam_max if convention == "paper" else 1e-4
    optimizer = PSGLD(
        [theta],
        lr=lr,
        convention=convention,
        average=average,
        burn_in=500,
        generator=torch.Generator().manual_seed(10),
    )
    start = run_quadratic_chains(optimizer, theta, hessian, mean, 500)
    key = "square_avg" if average == "square" else "m"
    state = optimizer.state[theta][key].clone()
    group = optimizer.param_groups[0]
    denominator = state.sqrt() + group["eps"] if average == "square" else state
    preconditioner = 1 / denominator
    eye = torch.eye(D, dtype=F64)
    if convention == "paper":
        A = (eye - lr / 2 * hessian).expand(CHAINS, D, D)
        Q = torch.diag_embed(lr**4 * preconditioner**2)
    else:
        stiffest = torch.linalg.eigvals(preconditioner[:, :, None] * hessian).real.max()
        lr = 0.8 / stiffest.item()  # lr·P·H has eigenvalues in (0, 0.8] for every chain
        group["lr"] = lr
        A = eye - lr * preconditioner[:, :, None] * hessian
        Q = torch.diag_embed(2 * lr * preconditioner)
    optimizer.generator.manual_seed(11)
    final = run_quadratic_chains(optimizer, theta, hessian, mean, FROZEN)
    assert torch.equal(optimizer.state[theta][key], state)  # frozen
    law_mean, law_covariance, _ = law_after(A, Q, mean, start, FROZEN)
    assert_standard_normal(standardize(final, law_mean, law_covariance))
