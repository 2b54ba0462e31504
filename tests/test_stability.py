"""The stability of a preconditioned step (``sgmcmc.diagnostics.preconditioned_sharpness``)
against dense matrices, pinned on runs that diverge or converge as it predicts, and the
tracker of ``sgmcmc_paper.analysis.stability`` on a small run."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _targets import dense_kfac_power, spd_matrix
from torch import nn
from torch.func import functional_call

from sgmcmc import KFAC, KSGLD, PSGLD, potential
from sgmcmc.diagnostics import (
    STABILITY_BOUND,
    GGNProduct,
    HessianProduct,
    Sharpness,
    preconditioned_sharpness,
    step_scales,
)
from sgmcmc_paper.analysis.exact import one_thread
from sgmcmc_paper.analysis.stability import StabilityTracker

F64 = torch.float64


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with one_thread():
        yield


# ----------------------------------------------------------------------------- helpers
def _flat(tensors) -> torch.Tensor:
    return torch.cat([t.detach().reshape(-1) for t in tensors])


def _unflat(flat: torch.Tensor, like) -> list[torch.Tensor]:
    sizes = [p.numel() for p in like]
    return [t.view_as(p) for t, p in zip(flat.split(sizes), like, strict=True)]


def _kfac_dense(kfac: KFAC, model: nn.Module, scale: float, power: float) -> torch.Tensor:
    """``P^power`` of a KSGLD, dense, in the order of ``model.parameters()``, built from each
    layer's factors (through ``dense_kfac_power``, not the preconditioner's own products);
    parameters no layer covers get the identity Fisher's eigenvalue."""
    params = list(model.parameters())
    offsets = np.cumsum([0] + [p.numel() for p in params])
    index = {id(p): offset for p, offset in zip(params, offsets, strict=False)}
    total = int(offsets[-1])
    dense = torch.zeros(total, total, dtype=F64)
    covered = set()
    for layer in kfac.layers:
        eigen = layer.eigen
        a = (eigen.q_a * eigen.lambda_a) @ eigen.q_a.T
        g = (eigen.q_g * eigen.lambda_g) @ eigen.q_g.T
        pi = eigen.pi if kfac.damping_mode == "factored" else None
        block = dense_kfac_power(a, g, kfac.damping, power, scale, pi)
        out, inp = layer.weight.shape[0], layer.weight[0].numel() + 1
        positions = []  # row-major [W | b] entry -> its position in the flat parameters
        for i in range(out):
            for j in range(inp):
                if j < inp - 1:
                    positions.append(index[id(layer.weight)] + i * (inp - 1) + j)
                else:
                    positions.append(index[id(layer.bias)] + i)
        positions = torch.tensor(positions)
        dense[positions[:, None], positions[None, :]] = block
        covered |= {id(layer.weight), id(layer.bias)}
    if kfac.damping_mode == "exact":
        identity = scale + kfac.damping
    else:
        identity = scale * (1 + math.sqrt(kfac.damping / scale)) ** 2
    for p in params:
        if id(p) not in covered:
            span = range(index[id(p)], index[id(p)] + p.numel())
            for k in span:
                dense[k, k] = identity**power
    return dense


def _top_eigenvalue(matrix: torch.Tensor) -> float:
    """The algebraically largest eigenvalue of a (non-symmetric) matrix with a real
    spectrum, by numpy."""
    values = np.linalg.eigvals(matrix.numpy())
    assert np.abs(values.imag).max() < 1e-8 * np.abs(values).max()
    return float(values.real.max())


class _Quadratic(nn.Module):
    """Two linear layers K-FAC covers and one parameter it does not (``gain``); the
    loss is a quadratic in all of them."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.first, self.second = nn.Linear(3, 2), nn.Linear(2, 2)
        self.gain = nn.Parameter(torch.tensor([1.5, -0.5]))
        self.to(F64)


def _quadratic_loss(model, hessian, shift):
    theta = torch.cat([p.reshape(-1) for p in model.parameters()])
    return 0.5 * theta @ hessian @ theta + shift @ theta


def _quadratic_case(convention, precondition, damping_mode, weight_decay, indefinite=False):
    model = _Quadratic()
    dimension = sum(p.numel() for p in model.parameters())
    generator = torch.Generator().manual_seed(3)
    eigenvalues = torch.logspace(-2, 1, dimension, dtype=F64)
    if indefinite:  # a negative eigenvalue larger in magnitude than the top one
        eigenvalues[0] = -30.0
    hessian = spd_matrix(eigenvalues, generator)
    shift = torch.randn(dimension, generator=generator, dtype=F64)
    kfac = KFAC(model, damping=0.3, damping_mode=damping_mode)
    for layer, in_eigs, out_eigs in (
        (model.first, [0.1, 0.5, 2.0, 3.0], [0.3, 1.7]),
        (model.second, [0.2, 1.0, 4.0], [0.5, 2.0]),
    ):
        a = spd_matrix(torch.tensor(in_eigs), generator)
        g = spd_matrix(torch.tensor(out_eigs), generator)
        kfac.set_factors(layer, a, g)
    num_data = 7 if convention == "langevin" else None
    sampler = KSGLD(
        model.parameters(),
        lr=0.05,
        kfac=kfac,
        num_data=num_data,
        convention=convention,
        precondition=precondition,
        weight_decay=weight_decay,
    )
    return model, kfac, sampler, hessian, shift


# ------------------------------------------------------------- cross-checks, exact
@pytest.mark.parametrize(
    ("convention", "precondition", "damping_mode", "weight_decay", "forced"),
    [
        ("langevin", "both", "exact", 0.0, None),
        ("langevin", "both", "exact", 0.7, None),
        ("langevin", "noise", "exact", 0.0, None),
        ("langevin", "noise", "exact", 0.0, True),
        ("paper", None, "factored", 0.0, None),
        ("paper", None, "factored", 0.0, True),
        ("langevin", "both", "factored", 0.0, False),
    ],
)
def test_sharpness_of_a_quadratic_is_the_top_eigenvalue_of_c_p_h(
    convention, precondition, damping_mode, weight_decay, forced
):
    """On ``U = ½θᵀHθ + bᵀθ`` with K-FAC factors set to known matrices, the estimate is
    numpy's largest eigenvalue of ``c·P^a·(H + λI)``: ``c = lr`` (langevin) or ``lr/2``
    (paper), ``a = 1`` where the drift is preconditioned (or forced), ``λ`` the weight decay;
    ``P`` built densely from the factors, the uncovered parameter included."""
    model, kfac, sampler, hessian, shift = _quadratic_case(
        convention, precondition, damping_mode, weight_decay
    )
    scale = 7.0 if convention == "langevin" else 1.0
    scales = step_scales(sampler)[0]
    powered = scales.drift_preconditioned if forced is None else forced
    identity = torch.eye(len(hessian), dtype=F64)
    p_dense = _kfac_dense(kfac, model, scale, -1.0) if powered else identity
    c = abs(scales.drift)
    expected = _top_eigenvalue(c * p_dense @ (hessian + weight_decay * identity))

    product = HessianProduct(lambda: _quadratic_loss(model, hessian, shift), model.parameters())
    sharp = preconditioned_sharpness(
        sampler, product, precondition=forced, max_iterations=40, rtol=1e-10
    )
    assert sharp.value == pytest.approx(expected, rel=1e-9)
    assert sharp.step == pytest.approx(0.05 if convention == "langevin" else 0.025)
    assert sharp.lr == 0.05
    assert sharp.preconditioned == powered
    assert sharp.curvature == pytest.approx(expected / c, rel=1e-9)
    assert sharp.largest_stable_lr == pytest.approx(0.05 * 2 / expected, rel=1e-9)
    assert sharp.stable == (expected < 2)


def test_an_indefinite_hessian_gives_the_largest_eigenvalue_not_the_largest_magnitude():
    """A negative eigenvalue larger in magnitude than the top one: ``value`` is still the
    top (what sets the step's stability), ``lowest`` the negative one."""
    model, kfac, sampler, hessian, shift = _quadratic_case("langevin", "both", "exact", 0.0, True)
    p_dense = _kfac_dense(kfac, model, 7.0, -1.0)
    values = np.linalg.eigvals((0.05 * p_dense @ hessian).numpy()).real
    product = HessianProduct(lambda: _quadratic_loss(model, hessian, shift), model.parameters())
    sharp = preconditioned_sharpness(sampler, product, max_iterations=40, rtol=1e-10)
    assert values.min() < -abs(values.max())
    assert sharp.value == pytest.approx(values.max(), rel=1e-9)
    assert sharp.lowest == pytest.approx(values.min(), rel=1e-9)


def test_psgld_with_two_groups_at_different_rates():
    """pSGLD's diagonal ``P = 1/(ε + sqrt(V))`` from a set state, two groups with their own
    ``lr``: the estimate is the top eigenvalue of ``C·P·H`` (``C`` each group's ``lr``);
    ``lr`` and ``step`` are then ``None``."""
    model = _Quadratic()
    first, second = list(model.first.parameters()), [*model.second.parameters(), model.gain]
    sampler = PSGLD([{"params": first, "lr": 0.01}, {"params": second, "lr": 0.03}], lr=0.01)
    generator = torch.Generator().manual_seed(5)
    diagonal = []
    for group in sampler.param_groups:
        for p in group["params"]:
            average = torch.rand(p.shape, generator=generator, dtype=F64) * 4
            sampler.state[p] = {"step": 1, "square_avg": average}
            diagonal.append((1.0 / (1e-5 + average.sqrt())).reshape(-1) * group["lr"])
    ordered = first + second
    dimension = sum(p.numel() for p in ordered)
    hessian = spd_matrix(torch.logspace(-1, 2, dimension, dtype=F64), generator)

    def loss():
        theta = torch.cat([p.reshape(-1) for p in ordered])
        return 0.5 * theta @ hessian @ theta

    expected = _top_eigenvalue(torch.diag(torch.cat(diagonal)) @ hessian)
    sharp = preconditioned_sharpness(
        sampler, HessianProduct(loss, ordered), max_iterations=40, rtol=1e-10
    )
    assert sharp.value == pytest.approx(expected, rel=1e-9)
    assert sharp.lr is None and sharp.step is None and sharp.curvature is None


def test_product_params_must_follow_the_sampler():
    model, _, sampler, hessian, shift = _quadratic_case("langevin", "both", "exact", 0.0)
    backwards = list(model.parameters())[::-1]
    product = HessianProduct(lambda: _quadratic_loss(model, hessian, shift), backwards)
    with pytest.raises(ValueError, match="param_groups order"):
        preconditioned_sharpness(sampler, product)
    with pytest.raises(ValueError, match="max_iterations"):
        preconditioned_sharpness(sampler, lambda v: v, max_iterations=0)


# --------------------------------------------------- cross-checks, a small conv model
class _SmallConv(nn.Sequential):
    def __init__(self):
        torch.manual_seed(2)
        super().__init__(
            nn.Conv2d(1, 2, 3), nn.Tanh(), nn.Flatten(), nn.Linear(2 * 3 * 3, 3)
        )  # fmt: skip
        self.to(F64)


def _conv_case(num_data=100, damping=0.1):
    model = _SmallConv()
    generator = torch.Generator().manual_seed(4)
    x = torch.randn(16, 1, 5, 5, generator=generator, dtype=F64)
    y = torch.randint(0, 3, (16,), generator=generator)
    kfac = KFAC(
        model,
        damping=damping,
        factor_every=1,
        inverse_every=1,
        factor_init="first_batch",
        max_rows=None,
        generator=torch.Generator().manual_seed(6),
    )
    for _ in range(3):
        kfac.observe(model(x))
    sampler = KSGLD(model.parameters(), lr=1e-3, kfac=kfac, num_data=num_data, temperature=0.0)
    return model, kfac, sampler, x, y


def _dense_curvatures(model, x, y, num_data):
    """The dense Hessian of the potential (prior std 1) and its Gauss-Newton matrix."""
    params = dict(model.named_parameters())
    names = list(params)
    shapes = [p.shape for p in params.values()]
    start = _flat(params.values())

    def unpack(theta):
        sizes = [math.prod(s) for s in shapes]
        return {n: t.view(s) for n, t, s in zip(names, theta.split(sizes), shapes, strict=True)}

    def outputs(theta):
        return functional_call(model, unpack(theta), (x,))

    def potential_of(theta):
        return num_data * F.cross_entropy(outputs(theta), y) + 0.5 * theta.pow(2).sum()

    hessian = torch.autograd.functional.hessian(potential_of, start)
    jacobian = torch.autograd.functional.jacobian(outputs, start).reshape(-1, start.numel())
    logits = outputs(start).detach()
    output_hessian = torch.autograd.functional.hessian(
        lambda z: num_data * F.cross_entropy(z.view_as(logits), y), logits.reshape(-1)
    )
    ggn = jacobian.T @ output_hessian @ jacobian + torch.eye(start.numel(), dtype=F64)
    return hessian, ggn


def test_products_and_sharpness_on_a_conv_model_match_dense_matrices():
    """A conv + linear model, K-FAC factors estimated from its own predictive (exact
    damping, langevin convention): Hessian- and Gauss-Newton-vector products equal the dense
    matrices' (``torch.autograd.functional``), and the sharpness is numpy's top eigenvalue
    of ``lr·P·H`` with ``P`` built from the factors."""
    num_data = 100
    model, kfac, sampler, x, y = _conv_case(num_data)
    params = list(model.parameters())
    hessian, ggn = _dense_curvatures(model, x, y, num_data)

    def potential_loss():
        return potential(F.cross_entropy(model(x), y), num_data, params, prior_std=1.0)

    hessian_product = HessianProduct(potential_loss, params)
    ggn_product = GGNProduct(
        lambda: model(x),
        lambda out: num_data * F.cross_entropy(out, y),
        params,
        prior_precision=1.0,
    )
    v = torch.randn(len(hessian), generator=torch.Generator().manual_seed(8), dtype=F64)
    torch.testing.assert_close(_flat(hessian_product(_unflat(v, params))), hessian @ v)
    torch.testing.assert_close(_flat(ggn_product(_unflat(v, params))), ggn @ v)

    p_dense = _kfac_dense(kfac, model, float(num_data), -1.0)
    for product, dense in ((hessian_product, hessian), (ggn_product, ggn)):
        expected = _top_eigenvalue(1e-3 * p_dense @ dense)
        sharp = preconditioned_sharpness(sampler, product, max_iterations=60, rtol=1e-10)
        assert sharp.value == pytest.approx(expected, rel=1e-8)
    # the Gauss-Newton matrix is positive definite; this Hessian is not
    assert preconditioned_sharpness(sampler, ggn_product, max_iterations=60).lowest > 0


def test_products_agree_with_curvlinops():
    """The same products as curvlinops' ``HessianLinearOperator`` and ``GGNLinearOperator``
    (mean cross-entropy of one batch)."""
    curvlinops = pytest.importorskip("curvlinops")
    model, _, _, x, y = _conv_case()
    params = list(model.parameters())
    data = [(x, y)]
    loss_function = nn.CrossEntropyLoss()
    ours = {
        "hessian": HessianProduct(lambda: F.cross_entropy(model(x), y), params),
        "ggn": GGNProduct(lambda: model(x), lambda out: F.cross_entropy(out, y), params),
    }
    theirs = {
        "hessian": curvlinops.HessianLinearOperator(model, loss_function, params, data),
        "ggn": curvlinops.GGNLinearOperator(model, loss_function, params, data),
    }
    generator = torch.Generator().manual_seed(9)
    for name in ours:
        v = [torch.randn(p.shape, generator=generator, dtype=F64) for p in params]
        expected = theirs[name] @ [t.clone() for t in v]
        torch.testing.assert_close(_flat(ours[name](v)), _flat(expected))


# --------------------------------------------------------------- the pinned check
_N = 64


def _regression():
    """A tanh network on a regression batch, with K-FAC of a unit-variance Gaussian
    likelihood: its loss has no saturation that would stop an unstable step from growing."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(_N, 4, generator=generator, dtype=F64)
    y = torch.stack([torch.sin(x[:, 0]) + x[:, 1], x[:, 2] * x[:, 3]], 1)
    y = y + 0.1 * torch.randn(_N, 2, generator=generator, dtype=F64)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2)).to(F64)
    return model, x, y


def _regression_loss(model, x, y, convention):
    mean = 0.5 * (model(x) - y).pow(2).sum(1).mean()
    if convention == "langevin":
        return potential(mean, _N, model.parameters(), prior_std=1.0)
    return mean


@pytest.mark.parametrize(
    ("convention", "precondition"), [("langevin", "both"), ("langevin", "noise"), ("paper", None)]
)
def test_the_check_flags_a_diverging_step_and_passes_a_converging_one(convention, precondition):
    """KSGLD at ``T = 0`` (gradient descent with its preconditioner, K-FAC factors frozen
    after 3 estimates) on full-batch regression: the learning rate at which the sharpness
    reaches 2 is computed; at half of it the check passes and 40 steps lower the loss; at 3
    times it the check fails and the loss grows by more than a millionfold (or overflows)."""
    model, x, y = _regression()
    kfac = KFAC(
        model,
        damping=1.0,
        likelihood=lambda out: torch.distributions.Normal(out, 1.0),
        factor_every=1,
        inverse_every=1,
        factor_init="first_batch",
        generator=torch.Generator().manual_seed(1),
    )
    for _ in range(3):
        kfac.observe(model(x))
    sampler = KSGLD(
        model.parameters(),
        lr=1.0,
        kfac=kfac,
        num_data=_N if convention == "langevin" else None,
        convention=convention,
        precondition=precondition,
        temperature=0.0,
    )
    start = {k: v.clone() for k, v in model.state_dict().items()}

    def loss():
        return _regression_loss(model, x, y, convention)

    params = list(model.parameters())
    limit = preconditioned_sharpness(sampler, HessianProduct(loss, params)).largest_stable_lr
    for factor, should_converge in ((0.5, True), (3.0, False)):
        model.load_state_dict(start)
        sampler.param_groups[0]["lr"] = factor * limit
        sharp = preconditioned_sharpness(sampler, HessianProduct(loss, params))
        assert sharp.value == pytest.approx(factor * STABILITY_BOUND, rel=1e-6)
        assert sharp.stable == should_converge
        initial = loss().item()
        for _ in range(40):
            sampler.zero_grad()
            loss().backward()
            sampler.step()
        final = loss().item()
        if should_converge:
            assert math.isfinite(final) and final < initial
        else:
            assert not math.isfinite(final) or final > 1e6 * initial


def test_a_diverged_model_is_not_stable():
    model, _, sampler, hessian, shift = _quadratic_case("langevin", "both", "exact", 0.0)
    with torch.no_grad():
        model.gain.fill_(math.inf)
    product = HessianProduct(lambda: _quadratic_loss(model, hessian, shift), model.parameters())
    sharp = preconditioned_sharpness(sampler, lambda v: [t * math.nan for t in product(v)])
    assert math.isnan(sharp.value) and not sharp.stable
    assert isinstance(sharp, Sharpness)


# ------------------------------------------------------------------------ the tracker
def _tracked_run(steps, every, drift=True, observed=None, factor_init="identity"):
    """A paper-convention KSGLD on the small conv model, tracked; K-FAC factors every step
    (the first ``observed`` steps; ``None``: all), inverse every 4. ``drift=False``: a
    zero loss, so the chain is its noise alone."""
    model = _SmallConv()
    generator = torch.Generator().manual_seed(4)
    x = torch.randn(16, 1, 5, 5, generator=generator, dtype=F64)
    y = torch.randint(0, 3, (16,), generator=generator)
    kfac = KFAC(
        model,
        damping=0.05,
        factor_every=1,
        inverse_every=4,
        factor_init=factor_init,
        generator=torch.Generator().manual_seed(6),
    )
    sampler = KSGLD(
        model.parameters(),
        lr=0.05,
        kfac=kfac,
        convention="paper",
        generator=torch.Generator().manual_seed(7),
    )

    def loss(model, x, y):
        value = F.cross_entropy(model(x), y)
        return value if drift else 0.0 * value

    tracker = StabilityTracker(model, sampler, loss, every=every, also_preconditioned=True)
    for step in range(steps):
        sampler.zero_grad()
        output = model(x)
        if observed is None or step < observed:
            kfac.observe(output)
        loss(model, x, y).backward()
        sampler.step()
        tracker.after_step(step, x, y)
    return tracker, kfac, sampler


def test_the_tracker_records_a_tidy_frame():
    tracker, _, _ = _tracked_run(steps=7, every=3)
    frame = tracker.frame()
    assert list(frame.columns) == ["step", "layer", "quantity", "value"]
    assert sorted(frame.step.unique()) == [0, 3, 6]
    model_rows = frame[frame.layer == "model"]
    expected = {"loss", "sharpness", "sharpness_lowest", "sharpness_preconditioned"}
    assert expected <= set(model_rows.quantity)
    assert np.isfinite(model_rows.value).all()
    for layer in ("0", "3"):
        rows = frame[frame.layer == layer].set_index(["step", "quantity"]).value
        for quantity in ("a_min", "a_max", "g_min", "g_max", "damped_min", "noise_spread"):
            assert (0, quantity) in rows.index
        # inverses at observe calls 0 and 4: at step 3 three steps old, at step 6 two
        assert rows[(0, "steps_since_inverse")] == 0
        assert rows[(3, "steps_since_inverse")] == 3
        assert rows[(6, "steps_since_inverse")] == 2
        assert rows[(0, "factor_change")] == pytest.approx(0.0, abs=1e-12)
        assert rows[(3, "factor_change")] > 0
        assert rows[(0, "a_min")] <= rows[(0, "a_max")]
        assert rows[(6, "spread")] > rows[(0, "spread")] > 0


def test_pure_noise_spreads_as_the_tracker_predicts():
    """With a zero gradient and factors frozen after the first step the chain is the random
    walk ``θ_t − θ_0 = Σ lr²·P·ξ``: the spread's square has mean ``noise_spread²`` and a
    known standard deviation; the measured value is within 4 of them. So is the mean square
    along the unconstrained eigen-coordinates (within a factor 2 of the smallest damped
    eigenvalue)."""
    steps = 301
    tracker, kfac, sampler = _tracked_run(
        steps=steps, every=steps - 1, drift=False, observed=1, factor_init="first_batch"
    )
    frame = tracker.frame().query(f"step == {steps - 1}").set_index(["layer", "quantity"]).value
    scales = step_scales(sampler)[0]
    for layer in kfac.layers:
        damped = layer.eigen.eigenvalues(1.0, kfac.damping, kfac.damping_mode).double()
        per_step = scales.noise**2 * damped.pow(-2.0)  # variance per eigen-coordinate
        mean = steps * float(per_step.sum())
        sd = math.sqrt(2 * float((steps * per_step).pow(2).sum()))
        assert frame[(layer.name, "noise_spread")] ** 2 == pytest.approx(mean, rel=1e-9)
        assert abs(frame[(layer.name, "spread")] ** 2 - mean) < 4 * sd
        # the same along the unconstrained eigen-coordinates (damped eigenvalue < 2·floor)
        unconstrained = damped < 2 * damped.min()
        assert 0 < unconstrained.sum() < unconstrained.numel()
        variances = steps * per_step[unconstrained]
        mean_square, count = float(variances.mean()), int(unconstrained.sum())
        sd = math.sqrt(2 * float(variances.pow(2).sum())) / count
        assert frame[(layer.name, "unconstrained_noise_rms")] ** 2 == pytest.approx(mean_square)
        assert abs(frame[(layer.name, "unconstrained_rms")] ** 2 - mean_square) < 4 * sd
