"""KSGLD: one-step rules against dense matrices, the exact law of the chain on Bayesian
multi-output linear regression (where K-FAC is exact), the paper CNN, protocol, bad input."""

from __future__ import annotations

import copy
import io

import pytest
import torch
import torch.nn.functional as F
from _devices import needs_cuda
from _targets import assert_standard_normal, spd_matrix, stationary_moments
from torch import nn

from sgmcmc import KFAC, KSGLD, potential
from sgmcmc.samplers.preconditioner import GroupStep
from sgmcmc_paper.analysis.exact import one_thread
from sgmcmc_paper.protocol.models import PaperCNN

F64 = torch.float64


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with one_thread():
        yield


def _dense_inverse_power(a, g, scale, damping, power):
    """``(s·G⊗A + δI)^power`` acting on row-major ``vec`` of ``out × in`` matrices."""
    dense = scale * torch.kron(g, a) + damping * torch.eye(a.shape[0] * g.shape[0], dtype=F64)
    values, vectors = torch.linalg.eigh(dense)
    return (vectors * values**power) @ vectors.T


class _Small(nn.Module):
    """Two linear layers K-FAC covers and one parameter it does not (``gain``)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.first, self.second = nn.Linear(3, 2), nn.Linear(2, 2)
        self.gain = nn.Parameter(torch.tensor([1.5, -0.5]))
        self.to(F64)

    def forward(self, x):
        return self.second(torch.tanh(self.first(x))) * self.gain


def _small_with_factors(damping=0.4, **kfac_options):
    """``_Small`` with random SPD factors set on both layers; returns model, kfac, factors."""
    model = _Small()
    kfac = KFAC(model, damping=damping, **kfac_options)
    generator = torch.Generator().manual_seed(1)
    factors = {}
    for layer, in_eigs, out_eigs in (
        (model.first, [0.1, 0.5, 2.0, 3.0], [0.3, 1.7]),
        (model.second, [0.2, 1.0, 4.0], [0.5, 2.0]),
    ):
        a = spd_matrix(torch.tensor(in_eigs), generator)
        g = spd_matrix(torch.tensor(out_eigs), generator)
        kfac.set_factors(layer, a, g)
        factors[layer] = (a, g)
    return model, kfac, factors


def _gradient_matrix(layer):
    return torch.cat([layer.weight.grad, layer.bias.grad[:, None]], dim=1).reshape(-1)


def _parameter_matrix(layer):
    return torch.cat([layer.weight, layer.bias[:, None]], dim=1).detach().reshape(-1)


@pytest.mark.parametrize(
    ("convention", "precondition"), [("langevin", "both"), ("langevin", "noise"), ("paper", None)]
)
def test_one_step_drift_equals_the_formula(convention, precondition):
    """At ``T = 0`` one step is ``−lr·P·g`` (both), ``−lr·g`` (noise), ``−(lr/2)·g`` (paper),
    with ``P`` the dense ``(N·G⊗A + δI)⁻¹`` per layer and ``(N + δ)⁻¹`` for ``gain``."""
    model, kfac, factors = _small_with_factors()
    lr, num_data, damping = 0.3, 7, 0.4
    optimizer = KSGLD(
        model.parameters(), lr, kfac=kfac, convention=convention, precondition=precondition,
        num_data=num_data if convention == "langevin" else None, temperature=0.0,
    )  # fmt: skip
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(2), dtype=F64)
    model(x).square().sum().backward()
    before = {layer: _parameter_matrix(layer) for layer in factors}
    gain_before, gain_grad = model.gain.detach().clone(), model.gain.grad.clone()
    optimizer.step()
    for layer, (a, g) in factors.items():
        gradient = _gradient_matrix(layer)
        if precondition == "both":
            expected = -lr * _dense_inverse_power(a, g, num_data, damping, -1.0) @ gradient
        else:
            expected = -(lr if convention == "langevin" else lr / 2) * gradient
        torch.testing.assert_close(_parameter_matrix(layer) - before[layer], expected)
    factor = {"both": lr / (num_data + damping), "noise": lr, None: lr / 2}[precondition]
    torch.testing.assert_close(model.gain.detach() - gain_before, -factor * gain_grad)


@pytest.mark.parametrize("convention", ["langevin", "paper"])
def test_noise_has_the_preconditioned_covariance(convention):
    """With zero gradients the increments are the noise alone, i.i.d. across steps: covariance
    ``2·lr·T·P`` (langevin, ``P^{1/2}ξ``, ``s = N``) or ``lr⁴·T·P²`` (paper, ``P·ξ``, ``s = 1``),
    ``P = (s·G⊗A + δI)⁻¹`` on each layer and ``(s + δ)⁻¹`` on ``gain``. 3,000 steps whitened by
    the exact covariance must be standard normal (5 SE)."""
    model, kfac, factors = _small_with_factors()
    lr, temperature, damping = 0.3, 0.7, 0.4
    scale = 7 if convention == "langevin" else 1
    optimizer = KSGLD(
        model.parameters(), lr, kfac=kfac, num_data=scale if scale > 1 else None,
        convention=convention, temperature=temperature, generator=torch.Generator().manual_seed(3),
    )  # fmt: skip
    layers = list(factors)
    increments = []
    for _ in range(3000):
        for p in model.parameters():
            p.grad = torch.zeros_like(p)
        before = torch.cat([*map(_parameter_matrix, layers), model.gain.detach()])
        optimizer.step()
        after = torch.cat([*map(_parameter_matrix, layers), model.gain.detach()])
        increments.append(after - before)
    increments = torch.stack(increments)
    blocks = [_dense_inverse_power(a, g, scale, damping, -1.0) for a, g in factors.values()]
    blocks.append(torch.eye(2, dtype=F64) / (scale + damping))
    precondition = torch.block_diag(*blocks)
    if convention == "langevin":
        covariance = 2 * lr * temperature * precondition
    else:
        covariance = lr**4 * temperature * precondition @ precondition
    values, vectors = torch.linalg.eigh(covariance)
    assert_standard_normal(increments @ vectors / values.sqrt())


@pytest.mark.parametrize("power", [1.0, 0.5])
def test_precondition_hook_applies_dense_power(power):
    model, kfac, factors = _small_with_factors()
    optimizer = KSGLD(model.parameters(), 0.1, kfac=kfac, num_data=11)
    params = list(model.parameters())
    tensors = [torch.randn_like(p) for p in params]
    step = GroupStep(optimizer.param_groups[0], optimizer.state, params, [], None)
    result = dict(zip(params, optimizer.preconditioner.apply(step, tensors, power), strict=True))
    given = dict(zip(params, tensors, strict=True))
    for layer, (a, g) in factors.items():
        matrix = torch.cat([given[layer.weight], given[layer.bias][:, None]], 1).reshape(-1)
        expected = _dense_inverse_power(a, g, 11, 0.4, -power) @ matrix
        got = torch.cat([result[layer.weight], result[layer.bias][:, None]], 1).reshape(-1)
        torch.testing.assert_close(got, expected)
    torch.testing.assert_close(result[model.gain], given[model.gain] * (11 + 0.4) ** -power)


# ----------------------------------------------------------- Bayesian linear regression
# y = W·[x; 1] + ε, ε ~ N(0, Σ) with Σ non-isotropic (3 outputs), W ~ N(0, α⁻¹I). The Fisher
# of W is exactly Kronecker-factored, so with the factors frozen at their exact values
# (A = mean x̃x̃ᵀ over the N data, G = Σ⁻¹) and damping = α, P = (N·A⊗G + αI)⁻¹ = H⁻¹, the
# posterior covariance. CHAINS independent chains are the output blocks of one Linear layer
# (G = I_CHAINS ⊗ Σ⁻¹, still exact); full-batch gradients make each chain the linear recursion
# θ' = θ − lr·M·(Hθ − b) + sqrt(2·lr)·P^{1/2}ξ, M = P ("both") or I ("noise"). Chains start at
# the posterior mean (the mean of both laws); after BURN_IN steps what is left of the start's
# covariance deficit is ρ_max^(2·BURN_IN) < 1e-10 (checked), so the kept states are stationary.
N, D_IN, D_OUT, ALPHA, CHAINS, BURN_IN, STEPS = 40, 3, 3, 2.0, 100, 250, 1200


@pytest.fixture(scope="module")
def regression():
    generator = torch.Generator().manual_seed(4)
    inputs = (
        torch.randn(N, D_IN, generator=generator, dtype=F64)
        * torch.tensor([0.6, 1.0, 1.4], dtype=F64)
        + 0.3
    )
    noise_covariance = spd_matrix(torch.tensor([0.5, 1.0, 2.0]), generator)
    weights = torch.randn(D_OUT, D_IN + 1, generator=generator, dtype=F64)
    augmented = torch.cat([inputs, torch.ones(N, 1, dtype=F64)], 1)
    noise = torch.randn(N, D_OUT, generator=generator, dtype=F64)
    targets = augmented @ weights.T + noise @ torch.linalg.cholesky(noise_covariance).T
    precision = torch.linalg.inv(noise_covariance).contiguous()
    a = augmented.T @ augmented / N
    hessian = N * torch.kron(precision, a) + ALPHA * torch.eye(D_OUT * (D_IN + 1), dtype=F64)
    linear_term = (precision @ targets.T @ augmented).reshape(-1)  # −∇U at W = 0, row-major
    return dict(
        inputs=inputs, targets=targets, precision=precision, a=a, hessian=hessian,
        mean=torch.linalg.solve(hessian, linear_term),
    )  # fmt: skip


def _run_regression_chains(regression, precondition, lr, seed):
    """Run the stacked chains; returns the (STEPS·CHAINS, 12) states after the burn-in."""
    torch.manual_seed(seed)
    model = nn.Linear(D_IN, D_OUT * CHAINS).to(F64)
    with torch.no_grad():  # start every chain at the posterior mean
        mean = regression["mean"].reshape(D_OUT, D_IN + 1).repeat(CHAINS, 1)
        model.weight.copy_(mean[:, :D_IN])
        model.bias.copy_(mean[:, D_IN])
    kfac = KFAC(model, damping=ALPHA)
    kfac.set_factors(
        model, regression["a"], torch.kron(torch.eye(CHAINS, dtype=F64), regression["precision"])
    )
    optimizer = KSGLD(
        model.parameters(), lr, kfac=kfac, num_data=N, precondition=precondition,
        generator=torch.Generator().manual_seed(seed),
    )  # fmt: skip
    states = torch.empty(STEPS, CHAINS, D_OUT * (D_IN + 1), dtype=F64)
    for step in range(BURN_IN + STEPS):
        outputs = model(regression["inputs"]).reshape(N, CHAINS, D_OUT)
        residuals = regression["targets"][:, None, :] - outputs
        likelihood = 0.5 * torch.einsum(
            "nci,ij,ncj->", residuals, regression["precision"], residuals
        )
        prior = 0.5 * ALPHA * sum(p.square().sum() for p in model.parameters())
        optimizer.zero_grad()
        (likelihood + prior).backward()
        optimizer.step()
        if step >= BURN_IN:
            matrix = torch.cat([model.weight, model.bias[:, None]], 1).detach()
            states[step - BURN_IN] = matrix.reshape(CHAINS, -1)
    return states.reshape(-1, states.shape[-1])


def _second_moment_errors(states, mean, covariance, hessian, rho):
    """Errors, in standard errors, of the sample mean and covariance of ``states`` in the
    eigenbasis of ``H`` (where both targets are diagonal and each coordinate is an independent
    Gaussian AR(1) with coefficient ``rho[k]``). For n samples: mean SE ``sqrt(τ_k/n)``,
    ``τ_k = (1 + ρ_k)/(1 − ρ_k)``; variance SE ``sqrt(2τ_kk/n)`` and covariance SE
    ``sqrt(τ_kl/n)`` with ``τ_kl = (1 + ρ_kρ_l)/(1 − ρ_kρ_l)`` (integrated autocorrelation of
    products of independent AR(1) processes), all in units of the target's standard deviations."""
    _, vectors = torch.linalg.eigh(hessian)
    rotated_covariance = vectors.T @ covariance @ vectors
    torch.testing.assert_close(rotated_covariance, torch.diag(rotated_covariance.diagonal()))
    scales = rotated_covariance.diagonal().sqrt()
    z = (states - mean) @ vectors / scales
    n = z.shape[0]
    products = torch.outer(rho, rho)
    tau = (1 + products) / (1 - products)
    second_moment_se = (tau * (1 + torch.eye(len(rho), dtype=F64)) / n).sqrt()
    mean_se = ((1 + rho) / (1 - rho) / n).sqrt()
    return z.mean(0) / mean_se, (z.T @ z / n - torch.eye(len(rho), dtype=F64)) / second_moment_se


def test_both_samples_the_exact_discrete_law_of_the_posterior_chain(regression):
    """``precondition="both"`` with ``P = H⁻¹``: ``θ' − μ = (1 − lr)(θ − μ) + sqrt(2lr)H^{-1/2}ξ``,
    stationary covariance ``H⁻¹/(1 − lr/2)``, every coordinate AR(1) with ``ρ = 1 − lr``.
    120,000 correlated draws (CHAINS × STEPS); tolerance 5 SE (see _second_moment_errors)."""
    hessian, mean, lr = regression["hessian"], regression["mean"], 0.5
    d = len(mean)
    precondition = torch.linalg.inv(hessian)
    transition = torch.eye(d, dtype=F64) - lr * precondition @ hessian
    law_mean, law_covariance = stationary_moments(
        transition.numpy(),
        (lr * precondition @ hessian @ mean).numpy(),
        (2 * lr * precondition).numpy(),
    )
    torch.testing.assert_close(torch.from_numpy(law_covariance), precondition / (1 - lr / 2))
    states = _run_regression_chains(regression, "both", lr, seed=5)
    rho = torch.full((d,), 1 - lr, dtype=F64)
    mean_errors, moment_errors = _second_moment_errors(
        states, torch.from_numpy(law_mean), torch.from_numpy(law_covariance), hessian, rho
    )
    assert mean_errors.abs().max() < 5, mean_errors
    assert moment_errors.abs().max() < 5, moment_errors


def test_noise_samples_the_lyapunov_law_and_misses_the_posterior(regression):
    """``precondition="noise"``: ``θ' − μ = (I − lr·H)(θ − μ) + sqrt(2lr)H^{-1/2}ξ``, whose
    stationary covariance solves the discrete Lyapunov equation (≈ ``H⁻²``, not ``H⁻¹``).
    lr = 1/λ_max(H), so the H-eigencoordinates are AR(1) with ``ρ_k = 1 − lr·λ_k``."""
    hessian, mean = regression["hessian"], regression["mean"]
    eigenvalues = torch.linalg.eigvalsh(hessian)
    lr = 1 / eigenvalues.max().item()
    d = len(mean)
    precondition = torch.linalg.inv(hessian)
    transition = torch.eye(d, dtype=F64) - lr * hessian
    law_mean, law_covariance = stationary_moments(
        transition.numpy(), (lr * hessian @ mean).numpy(), (2 * lr * precondition).numpy()
    )
    law_mean, law_covariance = torch.from_numpy(law_mean), torch.from_numpy(law_covariance)
    states = _run_regression_chains(regression, "noise", lr, seed=6)
    rho = 1 - lr * eigenvalues
    assert rho.abs().max() ** (2 * BURN_IN) < 1e-10
    mean_errors, moment_errors = _second_moment_errors(
        states, law_mean, law_covariance, hessian, rho
    )
    assert mean_errors.abs().max() < 5, mean_errors
    assert moment_errors.abs().max() < 5, moment_errors
    # the posterior variances along H's eigenvectors, in the chain's standard errors
    _, vectors = torch.linalg.eigh(hessian)
    chain_variances = ((states - mean) @ vectors).square().mean(0)
    law_variances = (vectors.T @ law_covariance @ vectors).diagonal()
    standard_errors = law_variances * (2 * (1 + rho**2) / (1 - rho**2) / len(states)).sqrt()
    misses = (chain_variances - 1 / eigenvalues).abs() / standard_errors
    assert misses.max() > 5, misses


# --------------------------------------------------------------------- the paper CNN
def test_paper_cnn_trains_and_its_factors_are_updated():
    """The released code never updated its K-FAC estimate (Palacci & Hess 2018); here every layer's
    factors leave their initial identity and move again, and the chain stays finite."""
    generator = torch.Generator().manual_seed(7)
    model = PaperCNN(generator=generator)
    kfac = KFAC(model, factor_every=1, inverse_every=100, generator=generator)
    optimizer = KSGLD(
        model.parameters(), lr=0.02, kfac=kfac, convention="paper", generator=generator
    )
    x = torch.rand(16, 1, 28, 28, generator=generator)
    y = torch.randint(0, 10, (16,), generator=generator)
    snapshots = []
    for _ in range(3):
        logits = model(x)
        kfac.observe(logits)
        loss = F.cross_entropy(logits, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        assert torch.isfinite(loss)
        snapshots.append({layer.name: (layer.a.clone(), layer.g.clone()) for layer in kfac.layers})
    assert len(kfac.layers) == 4
    for layer in kfac.layers:
        first, last = snapshots[0][layer.name], snapshots[-1][layer.name]
        assert not torch.equal(first[0], torch.eye(len(first[0])))
        assert not torch.equal(first[1], torch.eye(len(first[1])))
        assert not torch.equal(first[0], last[0]) and not torch.equal(first[1], last[1])
        assert layer.eigen.q_a is not None and layer.updates == 3
    assert all(torch.isfinite(p).all() for p in model.parameters())


# ------------------------------------------------------------------------- protocol
def _train(model, kfac, optimizer, steps, seed, prior_std=1.0):
    data = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.randn(6, 3, generator=data, dtype=F64)
        y = torch.randint(0, 2, (6,), generator=data)
        logits = model(x)
        kfac.observe(logits)
        loss = potential(F.cross_entropy(logits, y), 50, model.parameters(), prior_std=prior_std)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return [p.detach().clone() for p in model.parameters()]


def _sampler(model, **options):
    kfac = KFAC(
        model, damping=1.0, factor_every=1, inverse_every=2,
        generator=torch.Generator().manual_seed(8),
    )  # fmt: skip
    return kfac, KSGLD(
        model.parameters(), 1e-3, kfac=kfac, num_data=50,
        generator=torch.Generator().manual_seed(9), **options,
    )  # fmt: skip


def test_weight_decay_is_the_potentials_gaussian_prior():
    """``weight_decay = 1/σ²`` on ``N·loss`` gives the chain of ``potential(..., prior_std=σ)``:
    the base step adds ``λ·θ`` to the gradient before K-FAC preconditions it."""
    chains = []
    for prior_std, weight_decay in [(0.5, 0.0), (None, 4.0)]:
        model = _Small()
        kfac, optimizer = _sampler(model, weight_decay=weight_decay)
        chains.append(_train(model, kfac, optimizer, 4, seed=13, prior_std=prior_std))
    for with_prior, with_decay in zip(*chains, strict=True):
        torch.testing.assert_close(with_decay, with_prior)
    model = _Small()
    kfac, optimizer = _sampler(model)
    unregularised = _train(model, kfac, optimizer, 4, seed=13, prior_std=None)
    assert not torch.allclose(unregularised[0], chains[1][0])


def test_state_dict_round_trip_continues_bit_identically():
    model = _Small()
    kfac, optimizer = _sampler(model)
    _train(model, kfac, optimizer, 3, seed=10)
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()}, buffer)
    expected = _train(model, kfac, optimizer, 3, seed=11)

    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    restored = _Small()
    restored.load_state_dict(saved["model"])
    kfac, optimizer = _sampler(restored)
    _train(restored, kfac, optimizer, 1, seed=12)  # move everything away, then restore
    optimizer.load_state_dict(saved["optimizer"])
    restored.load_state_dict(saved["model"])
    for got, want in zip(_train(restored, kfac, optimizer, 3, seed=11), expected, strict=True):
        assert torch.equal(got, want)


def test_lr_scheduler_scales_the_step():
    model, kfac, _ = _small_with_factors()
    optimizer = KSGLD(model.parameters(), 0.2, kfac=kfac, num_data=7, temperature=0.0)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    x = torch.randn(5, 3, dtype=F64)
    moves = []
    for _ in range(2):
        start = [p.detach().clone() for p in model.parameters()]
        optimizer.zero_grad()
        model(x).sum().backward()
        optimizer.step()
        scheduler.step()
        moves.append([p.detach() - s for p, s in zip(model.parameters(), start, strict=True)])
        with torch.no_grad():
            for p, s in zip(model.parameters(), start, strict=True):
                p.copy_(s)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.05)
    for first, second in zip(*moves, strict=True):
        torch.testing.assert_close(second, first / 2)


def test_warns_when_kfac_is_never_updated():
    model = _Small()
    optimizer = KSGLD(model.parameters(), 1e-3, kfac=KFAC(model), num_data=10)
    model(torch.randn(2, 3, dtype=F64)).sum().backward()
    with pytest.warns(UserWarning, match="never estimated"):
        optimizer.step()


@needs_cuda
def test_cuda_matches_cpu_drift_and_trains():
    model, kfac, _ = _small_with_factors()
    cpu = copy.deepcopy(model)
    cpu_kfac = KFAC(cpu, damping=0.4)
    for layer, source in zip(cpu_kfac.layers, kfac.layers, strict=True):
        cpu_kfac.set_factors(layer.module, source.a, source.g)
    model.cuda()
    cuda_kfac = KFAC(model, damping=0.4, factor_every=1, generator=torch.Generator("cuda"))
    for layer, source in zip(cuda_kfac.layers, cpu_kfac.layers, strict=True):
        cuda_kfac.set_factors(layer.module, source.a.cuda(), source.g.cuda())
    x = torch.randn(5, 3, dtype=F64)
    for net, factors in ((cpu, cpu_kfac), (model, cuda_kfac)):
        optimizer = KSGLD(net.parameters(), 0.1, kfac=factors, num_data=7, temperature=0.0)
        net(x.to(next(net.parameters()).device)).square().sum().backward()
        optimizer.step()
    for got, want in zip(model.parameters(), cpu.parameters(), strict=True):
        torch.testing.assert_close(got.cpu(), want)
    optimizer = KSGLD(
        model.parameters(), 1e-3, kfac=cuda_kfac, num_data=7,
        generator=torch.Generator("cuda").manual_seed(0),
    )  # fmt: skip
    for _ in range(3):
        logits = model(x.cuda())
        cuda_kfac.observe(logits)
        optimizer.zero_grad()
        F.cross_entropy(logits, torch.zeros(5, dtype=torch.long, device="cuda")).backward()
        optimizer.step()
    assert all(torch.isfinite(p).all() for p in model.parameters())


# ------------------------------------------------------------------------ bad input
def test_bad_input_raises_value_error():
    model = _Small()
    kfac = KFAC(model)
    with pytest.raises(ValueError, match=r"KSGLD needs kfac=KFAC\(model"):
        KSGLD(model.parameters(), 0.1, kfac=None, num_data=10)
    with pytest.raises(ValueError, match="num_data must be an integer >= 1"):
        KSGLD(model.parameters(), 0.1, kfac=kfac)
    with pytest.raises(ValueError, match="weight and bias in the same parameter group"):
        KSGLD(
            [{"params": [model.first.weight]}, {"params": [model.first.bias]}],
            0.1, kfac=kfac, num_data=10,
        )  # fmt: skip
    with pytest.raises(ValueError, match="lr must be"):
        KSGLD(model.parameters(), 0.0, kfac=kfac, num_data=10)
    with pytest.raises(ValueError, match="damping must be a finite number > 0"):
        KFAC(model, damping=0.0)
    KSGLD(model.parameters(), 0.1, kfac=kfac, convention="paper")  # num_data not needed


def test_a_kfac_built_for_another_model_is_refused_at_construction():
    """One line that says so and how to fix it, not an error in ``observe`` later on."""
    sampled, other = _Small(), _Small()
    with pytest.raises(ValueError, match=r"kfac was built for another model") as error:
        KSGLD(sampled.parameters(), 0.1, kfac=KFAC(other), num_data=10)
    assert "'first', 'second'" in str(error.value)
    assert "pass kfac=KFAC(model) for the model whose parameters are sampled" in str(error.value)
    assert "\n" not in str(error.value)
    # A KFAC of the model whose parameters are (partly) sampled is fine.
    KSGLD(sampled.second.parameters(), 0.1, kfac=KFAC(sampled), num_data=10)


def test_temperature_is_validated_like_the_other_samplers():
    model = _Small()
    with pytest.raises(ValueError, match="temperature must be"):
        KSGLD(model.parameters(), 0.1, kfac=KFAC(model), num_data=3, temperature=-1.0)
