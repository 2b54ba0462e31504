"""Cross-checks against peer libraries: SGLD against ``posteriors``, K-FAC's factors and damped
inverses against ``curvlinops-for-pytorch``.

Each peer is in the ``[dev]`` extra, pinned in constraints.txt; a test whose peer is missing
skips and names the command that installs it. (ESS: test_diagnostics.py already checks ours and
ArviZ's ``az.ess`` against known answers, and where and why the two differ.)

**SGLD and posteriors 0.1.3** (``posteriors.sgmcmc.sgld``, Welling & Teh 2011). Its step is

    ``θ ← θ + lr'·∇log p(θ) + sqrt(T'·lr'·(2 − T'·lr'·β))·ξ``,  ``ξ = torch.randn_like(θ)``,

with ``β`` an estimate of the gradient noise (0 here). Our convention ``"langevin"``,
``θ ← θ − lr·∇U + sqrt(2·lr·T)·ξ`` with ``U = −log p``, is the same rule with ``lr' = lr``,
``T' = T``, ``β = 0``. Our convention ``"paper"``, ``θ ← θ − (lr/2)·g + lr²·sqrt(T)·ξ`` with ``g``
the gradient of the mean loss, is posteriors' rule on ``log p = −mean loss`` with ``lr' = lr/2``
and ``T' = lr³·T`` (so that ``2·lr'·T' = lr⁴·T``). posteriors draws its noise from torch's
global generator, one ``randn_like`` per tensor, and so does our sampler with ``generator=None``
for a single parameter smaller than :data:`sgmcmc.rng.noise.PARALLEL_MIN`: seeded alike, the
two chains are the same chain.

**K-FAC and curvlinops 3.0.1** (``KFACLinearOperator``, ``kfac_approx="expand"``,
``separate_weight_and_bias=False``: the bias as a last, constant-1 input column, as ours). For a
batch of ``N`` examples with ``T`` positions each (output locations of a convolution, leading
dimensions of a ``Linear``'s input), curvlinops' factors are
``A = Σ_{n,t} ã ãᵀ / (N·T)`` and ``G = c·Σ_{n,t} g gᵀ`` with ``g`` the gradient of the loss with
respect to the layer's output and ``c = 1`` for ``reduction="sum"``, ``c = N`` for ``"mean"``
(where ``g`` is ``1/N`` of the summed loss's). So its ``A`` is ours and its ``G`` is ours with a
mean loss and ``N`` times ours with a summed one: both libraries put ``T`` into ``G``
(KFC, Grosse & Martens 2016), so no rescaling of the convolution factors is needed.
``fisher_type="empirical"`` is our ``fisher="empirical"``; ``"mc"`` with one sample is our
``"sampled"``, and with the same seed both draw the same labels (``torch.multinomial`` on the
softmax, from a generator seeded alike). ``KFACInverseLinearOperator`` with
``use_exact_damping=True`` is ``(A⊗G + δI)⁻¹``, our ``damping_mode="exact"``; with
``use_heuristic_damping=True`` it is ``((A + π√δ·I) ⊗ (G + √δ/π·I))⁻¹`` with Martens &
Grosse's ``π = sqrt((tr A/dim A)/(tr G/dim G))``, our ``"factored"``. Our scale ``s`` (``N`` in
KSGLD's langevin convention) maps as ``(s·A⊗G + δI)⁻¹ = (A⊗G + (δ/s)·I)⁻¹ / s``, in both modes.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from _targets import (
    assert_standard_normal,
    conditioned_gaussian,
    deviation_from_standard_normal,
    law_after,
    standardize,
)
from torch import nn

from sgmcmc import KFAC, SGLD
from sgmcmc.rng.noise import PARALLEL_MIN
from sgmcmc_paper.analysis.exact import one_thread

F64 = torch.float64
POSTERIORS = "posteriors==0.1.3"
CURVLINOPS = "curvlinops-for-pytorch==3.0.1"


def _peer(module: str, pin: str):
    """Import a peer or skip, naming the command that installs it."""
    with warnings.catch_warnings():
        # tensordict (a dependency of posteriors) warns about posteriors' dataclass defaults
        warnings.simplefilter("ignore", FutureWarning)
        return pytest.importorskip(
            module,
            reason=f"needs {pin} ([dev] extra): .venv/bin/pip install -c constraints.txt {pin}",
        )


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with one_thread():
        yield


# ----------------------------------------------------------------------------- SGLD vs posteriors
@pytest.fixture(scope="module")
def gaussian_target():
    """d = 10, Hessian eigenvalues 1…100 (condition number 100), randomly rotated."""
    return conditioned_gaussian()


def _log_density(hessian, mean):
    """``log p`` of independent chains, the rows of ``θ``: ``−Σ_rows ½(θ − μ)ᵀH(θ − μ)``."""

    def log_p(theta, batch=None):
        centred = theta - mean
        return -0.5 * torch.einsum("ni,ij,nj->", centred, hessian, centred)

    return log_p


def _posteriors_chain(log_p, start, lr, temperature, steps):
    """``steps`` of posteriors' SGLD (``β = 0``) from ``start``; noise from the global generator."""
    sgld = _peer("posteriors", POSTERIORS).sgmcmc.sgld
    transform = sgld.build(
        lambda theta, batch: (log_p(theta), torch.empty(0)), lr=lr, temperature=temperature
    )
    state = transform.init(start.clone())
    for _ in range(steps):
        state, _ = transform.update(state, None)
    return state.params


def _our_chain(log_p, start, lr, temperature, steps, convention, generator=None):
    """``steps`` of our SGLD on ``U = −log p`` (langevin) or the loss ``−log p`` (paper)."""
    theta = start.clone().requires_grad_(True)
    sampler = SGLD(
        [theta], lr=lr, temperature=temperature, convention=convention, generator=generator
    )
    for _ in range(steps):
        sampler.zero_grad()
        (-log_p(theta)).backward()
        sampler.step()
    return theta.detach()


@pytest.mark.parametrize(
    "convention, lr, temperature",
    [("langevin", 0.008, 1.0), ("langevin", 0.008, 0.3), ("paper", 0.03, 1.0)],
)
def test_sgld_is_posteriors_sgld_given_the_same_noise(gaussian_target, convention, lr, temperature):
    """300 steps of 64 chains; the mapping of the module docstring; the same global seed.
    In the paper convention the loss is ``−log p``, each chain's own term (as a mean loss would
    be); ``(lr/2)·λ_max = 1.5 < 2`` keeps that chain stable."""
    hessian, mean = gaussian_target
    log_p = _log_density(hessian, mean)
    start = torch.randn(64, 10, generator=torch.Generator().manual_seed(1), dtype=F64)
    assert start.numel() < PARALLEL_MIN  # one draw from the global generator per step
    if convention == "langevin":
        peer_lr, peer_temperature = lr, temperature
    else:
        peer_lr, peer_temperature = lr / 2, lr**3 * temperature
    with torch.random.fork_rng():
        torch.manual_seed(2)
        peer = _posteriors_chain(log_p, start, peer_lr, peer_temperature, steps=300)
        torch.manual_seed(2)
        ours = _our_chain(log_p, start, lr, temperature, steps=300, convention=convention)
        torch.manual_seed(3)  # other noise: the chains part, so agreement is not a tautology
        other = _our_chain(log_p, start, lr, temperature, steps=300, convention=convention)
    scale = (peer - start).abs().max()
    assert 0.1 < scale < 100  # the chains moved, and stayed stable (lr·λ_max < 2)
    torch.testing.assert_close(ours, peer, rtol=0, atol=1e-12 * scale)  # measured ≤ 9e-16
    assert (other - peer).abs().max() > 1e-6 * scale


# lr·λ spans 0.008…0.8 (the fast modes' discrete variance is 1.67× the posterior's, so the law
# tells the discrete chain from the posterior); 1500 steps leave ‖Aᵗ‖ ≈ 6e-6 of the start;
# 4000 chains are 4000 independent draws from the exact law after 1500 steps.
LR, STEPS, CHAINS = 0.008, 1500, 4000


@pytest.mark.slow
def test_posteriors_and_our_sgld_sample_the_exact_discrete_law(gaussian_target):
    """Independent noise: both chains' final states are within 5 standard errors (the sample
    size is the number of chains, independent draws) of the exact law of the discrete chain
    ``θ' = (I − lr·H)θ + lr·H·μ + N(0, 2·lr·I)``; mean, eigen-variances and covariances of the
    standardised states, 65 checks each. The continuous posterior ``N(μ, H⁻¹)`` is missed by
    far more, which says the check can tell a wrong step size or temperature."""
    hessian, mean = gaussian_target
    log_p = _log_density(hessian, mean)
    start = torch.zeros(CHAINS, 10, dtype=F64)
    eye = torch.eye(10, dtype=F64)
    law_mean, law_covariance, contraction = law_after(
        eye - LR * hessian, 2 * LR * eye, mean, start, STEPS
    )
    assert contraction < 1e-5
    with torch.random.fork_rng():
        torch.manual_seed(4)
        peer = _posteriors_chain(log_p, start, LR, 1.0, STEPS)
    ours = _our_chain(
        log_p, start, LR, 1.0, STEPS, "langevin", generator=torch.Generator().manual_seed(5)
    )
    for final in (peer, ours):
        # measured: posteriors 2.6 SE, ours 2.3 SE at most; from the posterior 30 and 28 SE
        assert_standard_normal(standardize(final, law_mean, law_covariance))
        posterior = torch.linalg.inv(hessian)
        assert deviation_from_standard_normal(standardize(final, mean, posterior)) > 10


# ------------------------------------------------------------------------ K-FAC vs curvlinops
class _Positions(nn.Module):
    """``(n, C, H, W) → (n, H·W, C)``: a ``Linear`` after it sees ``H·W`` positions per example."""

    def forward(self, x):
        return x.flatten(2).transpose(1, 2)


def _model() -> nn.Sequential:
    """Two convolutions (``"same"`` padding with a bias; stride 2, dilation 2, no bias), a
    ``Linear`` applied at each of 16 positions, and a ``Linear`` to 7 logits; float64."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return nn.Sequential(
            nn.Conv2d(3, 4, 3, padding="same"),
            nn.ReLU(),
            nn.Conv2d(4, 5, 3, stride=2, dilation=2, padding=1, bias=False),
            nn.Tanh(),
            _Positions(),
            nn.Linear(5, 6),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(6 * 16, 7),
        ).to(F64)


@pytest.fixture(scope="module")
def batch():
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(12, 3, 9, 9, generator=generator, dtype=F64)
    return x, torch.randint(0, 7, (12,), generator=generator)


def _our_kfac(model, x, y, fisher, seed=0, **options) -> KFAC:
    """One batch's factors, unsmoothed: ``first_batch``, ``ema_decay=0``, every row."""
    kfac = KFAC(
        model,
        fisher=fisher,
        factor_init="first_batch",
        ema_decay=0.0,
        max_rows=None,
        generator=torch.Generator().manual_seed(seed),
        **options,
    )
    kfac.observe(model(x), y)
    kfac.remove()
    return kfac


def _curvlinops_kfac(model, x, y, fisher_type, reduction, seed=0):
    curvlinops = _peer("curvlinops", CURVLINOPS)
    operator = curvlinops.KFACLinearOperator(
        model,
        nn.CrossEntropyLoss(reduction=reduction),
        list(model.parameters()),
        [(x, y)],
        fisher_type=fisher_type,
        mc_samples=1,
        kfac_approx="expand",
        separate_weight_and_bias=False,
        seed=seed,
        # its determinism check would compute (and cache) the factors; a later
        # compute_kronecker_factors() adds to the cache instead of replacing it
        check_deterministic=False,
    )
    operator.compute_kronecker_factors()
    return operator


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("fisher, fisher_type", [("empirical", "empirical"), ("sampled", "mc")])
def test_kfac_factors_are_curvlinops_factors(batch, fisher, fisher_type, reduction):
    x, y = batch
    model = _model()
    ours = _our_kfac(model, x, y, fisher, seed=3)
    theirs = _curvlinops_kfac(model, x, y, fisher_type, reduction, seed=3)
    per_example = {"mean": 1.0, "sum": 1.0 / len(x)}[reduction]
    assert sorted(theirs._mapping) == sorted(layer.name for layer in ours.layers)
    for layer in ours.layers:
        a = theirs._input_covariances[layer.name]
        g = theirs._gradient_covariances[layer.name] * per_example
        assert layer.a.shape == a.shape and layer.g.shape == g.shape, layer.name
        assert layer.g.abs().max() > 1e-4  # a real signal, not two zeros
        # measured: A bit for bit; G within 1e-15 of its largest entry
        torch.testing.assert_close(layer.a, a, rtol=1e-12, atol=1e-14 * a.abs().max())
        torch.testing.assert_close(layer.g, g, rtol=1e-12, atol=1e-14 * g.abs().max())


@pytest.mark.parametrize("scale", [1.0, 1000.0])
@pytest.mark.parametrize(
    "damping_mode, peer_damping",
    [("exact", {"use_exact_damping": True}), ("factored", {"use_heuristic_damping": True})],
)
def test_kfac_damped_inverse_is_curvlinops_inverse(batch, damping_mode, peer_damping, scale):
    """``(s·A⊗G + δI)⁻¹`` (or its factored damping) on random weight-shaped matrices."""
    x, y = batch
    model = _model()
    damping = 0.3
    ours = _our_kfac(model, x, y, "empirical", damping=damping, damping_mode=damping_mode)
    theirs = _peer("curvlinops", CURVLINOPS).KFACInverseLinearOperator(
        _curvlinops_kfac(model, x, y, "empirical", "mean"),
        damping=damping / scale,
        **peer_damping,
    )
    params = list(model.parameters())
    generator = torch.Generator().manual_seed(2)
    vectors = [torch.randn(p.shape, generator=generator, dtype=F64) for p in params]
    solved = [v / scale for v in theirs @ vectors]
    index = {id(p): i for i, p in enumerate(params)}
    for layer in ours.layers:

        def matrix(tensors, layer=layer):
            weight, *bias = (tensors[index[id(p)]] for p in layer.params)
            return layer.to_matrix(weight, bias[0] if bias else None)

        expected = matrix(solved)
        got = ours.power(layer.module, matrix(vectors), -1.0, scale)
        # measured: within 2e-15 of the largest entry at s = 1, 2e-13 at s = 1000, where δ/s
        # is 1000 times smaller beside the many zero eigenvalues of a 12-example A
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-10 * expected.abs().max())
