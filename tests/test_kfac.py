"""K-FAC: factors against explicit per-example (per-location) autograd, inverse powers against
dense matrices, matrix-normal noise, sampled Fisher expectations, schedule and bad input."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from _targets import assert_standard_normal, dense_kfac_power, spd_matrix
from torch import nn

from sgmcmc import KFAC
from sgmcmc_paper.analysis.exact import one_thread

DTYPE = torch.float64


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with one_thread():
        yield


def _classifier(first: nn.Module, input_shape: tuple[int, ...], classes: int = 4) -> nn.Sequential:
    """``first → tanh → flatten → linear`` logits, in float64, for inputs ``(n, *input_shape)``."""
    torch.manual_seed(0)
    model = nn.Sequential(first, nn.Tanh(), nn.Flatten(), nn.LazyLinear(classes))
    model(torch.zeros(1, *input_shape))  # materialise the lazy layer
    return model.to(DTYPE)


def _reference_factors(model: nn.Module, layer: nn.Module, x, y):
    """``A``, ``G`` of ``layer`` from per-example autograd: ``g`` is the gradient of the example's
    negative log-likelihood with respect to the layer output at each position; a convolution's
    input patch ``a`` at a location is the gradient of that location's output with respect to
    the weight (no unfolding)."""
    a_sum, g_sum, rows = 0.0, 0.0, 0
    for n in range(x.shape[0]):
        captured = {}
        handle = layer.register_forward_hook(
            lambda m, i, o, captured=captured: captured.update(input=i[0], out=o)
        )
        logits = model(x[n : n + 1])
        handle.remove()
        out = captured["out"]
        nll = F.cross_entropy(logits, y[n : n + 1], reduction="sum")
        (g,) = torch.autograd.grad(nll, out, retain_graph=True)
        if isinstance(layer, nn.Conv2d):
            for i in range(out.shape[2]):
                for j in range(out.shape[3]):
                    (w,) = torch.autograd.grad(out[0, 0, i, j], layer.weight, retain_graph=True)
                    a = w[0].reshape(-1)
                    if layer.bias is not None:
                        a = torch.cat([a, a.new_ones(1)])
                    a_sum = a_sum + torch.outer(a, a)
                    g_sum = g_sum + torch.outer(g[0, :, i, j], g[0, :, i, j])
                    rows += 1
        else:
            a = captured["input"][0]
            if layer.bias is not None:
                a = torch.cat([a, a.new_ones(1)])
            a_sum = a_sum + torch.outer(a, a)
            g_sum = g_sum + torch.outer(g[0], g[0])
            rows += 1
    return a_sum / rows, g_sum / x.shape[0]


def test_linear_factors_equal_explicit_expectations():
    model = _classifier(nn.Linear(5, 6), (5,))
    kfac = KFAC(model, fisher="empirical", factor_every=1, max_rows=None, factor_init="first_batch")
    x = torch.randn(9, 5, generator=torch.Generator().manual_seed(1), dtype=DTYPE)
    y = torch.arange(9) % 4
    kfac.observe(model(x), y)
    for layer in (model[0], model[3]):
        a, g = _reference_factors(model, layer, x, y)
        torch.testing.assert_close(kfac.layer(layer).a, a)
        torch.testing.assert_close(kfac.layer(layer).g, g)


CONV_CASES = {
    "padding 1": dict(padding=1),
    "stride 2, padding 2": dict(stride=2, padding=2),
    "same, dilation 2": dict(padding="same", dilation=2),
    "reflect, no bias": dict(padding=1, padding_mode="reflect", bias=False),
    "valid, rectangular": dict(kernel_size=(3, 2), padding="valid"),
}


@pytest.mark.parametrize("options", CONV_CASES.values(), ids=CONV_CASES.keys())
def test_conv2d_factors_equal_per_location_autograd(options):
    options = {"kernel_size": 3, **options}
    model = _classifier(nn.Conv2d(2, 3, **options), (2, 7, 7))
    kfac = KFAC(model, fisher="empirical", factor_every=1, max_rows=None, factor_init="first_batch")
    x = torch.randn(3, 2, 7, 7, generator=torch.Generator().manual_seed(2), dtype=DTYPE)
    y = torch.tensor([0, 3, 1])
    kfac.observe(model(x), y)
    a, g = _reference_factors(model, model[0], x, y)
    torch.testing.assert_close(kfac.layer(model[0]).a, a)
    torch.testing.assert_close(kfac.layer(model[0]).g, g)


def test_subsampled_conv_rows_are_unbiased():
    """With ``max_rows`` below the 75 (example, location) rows, an update's ``A`` is the mean
    over rows drawn uniformly; over 300 independent draws the average must equal the full
    ``A`` within 5 standard errors (SE from the draws' spread)."""
    model = _classifier(nn.Conv2d(2, 3, kernel_size=3, padding=1, stride=2), (2, 9, 9))
    x = torch.randn(3, 2, 9, 9, generator=torch.Generator().manual_seed(3), dtype=DTYPE)
    y = torch.tensor([0, 1, 2])
    full = KFAC(model, fisher="empirical", factor_every=1, max_rows=None, factor_init="first_batch")
    full.observe(model(x), y)
    full.remove()
    generator = torch.Generator().manual_seed(4)
    sampled = KFAC(
        model, fisher="empirical", factor_every=1, max_rows=10, generator=generator,
        factor_init="first_batch",
    )  # fmt: skip
    sampled.observe(model(x), y)  # the update path uses the subsample ...
    layer = sampled.layer(model[0])
    torch.testing.assert_close(layer.g, full.layer(model[0]).g)  # (G is never subsampled)
    assert not torch.allclose(layer.a, full.layer(model[0]).a)
    draws = []  # ... whose mean is unbiased
    for _ in range(300):
        rows = layer.input_rows(x, 10, generator)
        assert rows.shape == (10, 2 * 3 * 3 + 1)
        draws.append(rows.T @ rows / len(rows))
    draws = torch.stack(draws)
    standard_error = draws.std(0) / math.sqrt(len(draws)) + 1e-12
    z = (draws.mean(0) - full.layer(model[0]).a) / standard_error
    assert z.abs().max() < 5, z.abs().max()


def test_sampled_fisher_of_the_last_layer_has_the_softmax_expectation():
    """For the logits layer ``g = softmax − onehot(y)``, so with ``y`` drawn from the model,
    ``E[G] = mean_x (diag p − p pᵀ)``. 5 distinct inputs repeated 20,000 times: the standard
    error of each entry is exact, ``sqrt(mean_x Var_y(g_i g_j) / n)``; tolerance 5 SE."""
    model = _classifier(nn.Linear(5, 6), (5,))
    kfac = KFAC(
        model, factor_every=1, factor_init="first_batch", generator=torch.Generator().manual_seed(5)
    )
    x = torch.randn(5, 5, generator=torch.Generator().manual_seed(6), dtype=DTYPE)
    repeats = 20_000
    kfac.observe(model(x.repeat(repeats, 1)))
    with torch.no_grad():
        p = torch.softmax(model(x), dim=1)  # (5, C)
    onehots = torch.eye(p.shape[1], dtype=DTYPE)
    g = p[:, None, :] - onehots[None]  # (x, y, C): g for each input and label
    products = g[..., :, None] * g[..., None, :]  # (x, y, C, C)
    mean = torch.einsum("xy,xyij->xij", p, products)
    variance = torch.einsum("xy,xyij->xij", p, products**2) - mean**2
    expected = mean.mean(0)
    standard_error = (variance.mean(0) / (5 * repeats)).sqrt() + 1e-12
    z = (kfac.layer(model[3]).g - expected) / standard_error
    assert z.abs().max() < 5, z.abs().max()
    torch.testing.assert_close(expected, (torch.diag_embed(p) - p[:, :, None] * p[:, None]).mean(0))


def test_sampled_fisher_of_a_custom_likelihood():
    """Gaussian likelihood ``y ~ N(Wx, Σ)``: ``g = Σ⁻¹(Wx − y)`` has ``E[ggᵀ] = Σ⁻¹ = Λ`` and
    ``Var(g_i g_j) = Λ_ii Λ_jj + Λ_ij²``; 40,000 examples, tolerance 5 SE."""
    torch.manual_seed(7)
    model = nn.Linear(3, 3).to(DTYPE)
    covariance = spd_matrix(torch.tensor([0.5, 1.0, 3.0]), torch.Generator().manual_seed(8))
    scale_tril = torch.linalg.cholesky(covariance)

    def likelihood(mean):
        return torch.distributions.MultivariateNormal(mean, scale_tril=scale_tril)

    kfac = KFAC(model, factor_every=1, likelihood=likelihood, factor_init="first_batch")
    n = 40_000
    kfac.observe(model(torch.randn(n, 3, dtype=DTYPE)))
    precision = torch.linalg.inv(covariance)
    variance = torch.outer(precision.diagonal(), precision.diagonal()) + precision**2
    z = (kfac.layer(model).g - precision) / (variance / n).sqrt()
    assert z.abs().max() < 5, z.abs().max()


@pytest.fixture
def tiny_layer():
    """A 2×3 linear layer (bias: 4 input columns) with random SPD factors set on it."""
    generator = torch.Generator().manual_seed(9)
    layer = nn.Linear(3, 2).to(DTYPE)
    a = spd_matrix(torch.tensor([0.05, 0.3, 1.0, 4.0]), generator)
    g = spd_matrix(torch.tensor([0.2, 2.5]), generator)
    return layer, a, g


@pytest.mark.parametrize("damping_mode", ["exact", "factored"])
@pytest.mark.parametrize("scale", [1.0, 50.0])
@pytest.mark.parametrize("power", [-1.0, -0.5])
def test_eigenbasis_powers_equal_dense_matrix_powers(tiny_layer, power, scale, damping_mode):
    layer, a, g = tiny_layer
    kfac = KFAC(layer, damping=0.3, damping_mode=damping_mode)
    kfac.set_factors(layer, a, g)
    x = torch.randn(2, 4, generator=torch.Generator().manual_seed(10), dtype=DTYPE)
    pi = None
    if damping_mode == "factored":  # Martens & Grosse's π: the trace-norm ratio
        pi = math.sqrt((a.trace() / 4) / (g.trace() / 2))
    expected = dense_kfac_power(a, g, 0.3, power, scale, pi) @ x.reshape(-1)
    torch.testing.assert_close(kfac.power(layer, x, power, scale).reshape(-1), expected)


def test_matrix_normal_noise_has_the_damped_inverse_covariance(tiny_layer):
    """``p = −½`` applied to standard normal matrices: 20,000 draws whitened by the exact
    covariance ``(s·G⊗A + δI)⁻¹`` must be standard normal (5 SE, see assert_standard_normal)."""
    layer, a, g = tiny_layer
    kfac = KFAC(layer, damping=0.3)
    kfac.set_factors(layer, a, g)
    xi = torch.randn(20_000, 2, 4, generator=torch.Generator().manual_seed(11), dtype=DTYPE)
    samples = kfac.power(layer, xi, -0.5, scale=7.0).reshape(len(xi), -1)
    whitening = dense_kfac_power(a, g, 0.3, 0.5, 7.0)  # Σ^{-1/2}
    assert_standard_normal(samples @ whitening)


def test_schedule_and_initial_state():
    model = _classifier(nn.Linear(5, 6), (5,))
    kfac = KFAC(model, factor_every=2, inverse_every=3, generator=torch.Generator().manual_seed(0))
    layer = kfac.layer(model[0])
    assert torch.equal(layer.a, torch.eye(6, dtype=DTYPE)) and layer.eigen.q_a is None
    x = torch.randn(8, 5, dtype=DTYPE)
    bases = []
    for _ in range(6):
        kfac.observe(model(x))
        bases.append(layer.eigen)
    assert layer.updates == 3  # observe calls 0, 2, 4
    refreshed = [i for i in range(1, 6) if bases[i] is not bases[i - 1]]
    assert bases[0].q_a is not None and refreshed == [3]  # eigenbases at calls 0 and 3
    with torch.no_grad():
        model(x)  # not recorded: gradients disabled
    assert not kfac._recorded


@pytest.mark.parametrize("factor_init", ["first_batch", "identity"])
def test_moving_average_of_the_factors(factor_init):
    """``F ← d·F + (1 − d)·F_batch``, from the first batch's ``F`` or from ``I``."""
    model = _classifier(nn.Linear(5, 6), (5,))
    kfac = KFAC(model, fisher="empirical", factor_every=1, ema_decay=0.75, factor_init=factor_init)
    batches = [
        torch.randn(8, 5, generator=torch.Generator().manual_seed(i), dtype=DTYPE) for i in (0, 1)
    ]
    labels = torch.arange(8) % 4
    singles = []
    for x in batches:
        single = KFAC(model, fisher="empirical", factor_every=1, factor_init="first_batch")
        single.observe(model(x), labels)
        single.remove()
        singles.append(single.layer(model[0]).a)
    for x in batches:
        kfac.observe(model(x), labels)
    start = (
        singles[0]
        if factor_init == "first_batch"
        else 0.75 * torch.eye(6, dtype=DTYPE) + 0.25 * singles[0]
    )
    torch.testing.assert_close(kfac.layer(model[0]).a, 0.75 * start + 0.25 * singles[1])


def test_frozen_bias_is_not_a_coordinate():
    layer = nn.Linear(3, 2)
    layer.bias.requires_grad_(False)
    kfac = KFAC(layer, factor_every=1)
    kfac.observe(layer(torch.randn(4, 3)))
    assert kfac.layer(layer).a.shape == (3, 3)


def test_misuse_gives_clear_errors():
    model = _classifier(nn.Linear(5, 6), (5,))
    x = torch.randn(4, 5, dtype=DTYPE)
    empirical = KFAC(model, fisher="empirical")
    with pytest.raises(ValueError, match=r"kfac.observe\(output, y\)"):
        empirical.observe(model(x))
    empirical.remove()
    kfac = KFAC(model)
    logits = model(x)
    F.cross_entropy(logits, torch.zeros(4, dtype=torch.long)).backward()
    with pytest.raises(RuntimeError, match="before loss.backward"):
        kfac.observe(logits)
    inplace = nn.Sequential(nn.Linear(5, 6), nn.ReLU(inplace=True), nn.Linear(6, 4))
    with pytest.raises(RuntimeError, match="in place"):
        KFAC(inplace).observe(inplace(torch.randn(4, 5)))
    kfac.remove()
    kfac = KFAC(model)
    with torch.no_grad():
        logits = model(x)
    with pytest.raises(RuntimeError, match="no recorded layer"):
        kfac.observe(logits)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"damping": 0.0}, "damping must be a finite number > 0"),
        ({"damping": -1e-3}, "damping must be a finite number > 0"),
        ({"damping": math.inf}, "damping must be a finite number > 0"),
        ({"damping": math.nan}, "damping must be a finite number > 0"),
        ({"ema_decay": 1.0}, r"ema_decay must be a number in \[0, 1\)"),
        ({"factor_every": 0}, "factor_every must be an integer >= 1"),
        ({"inverse_every": 2.5}, "inverse_every must be an integer >= 1"),
        ({"fisher": "exact"}, "fisher must be one of"),
        ({"likelihood": "poisson"}, "likelihood must be 'categorical' or a callable"),
        ({"damping_mode": "pi"}, "damping_mode must be one of"),
        ({"factor_init": "zeros"}, "factor_init must be one of"),
        ({"max_rows": 0}, "max_rows must be None or an integer >= 1"),
    ],
)
def test_bad_arguments_raise_value_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        KFAC(nn.Linear(2, 2), **kwargs)


def test_model_without_supported_layer_is_rejected():
    with pytest.raises(ValueError, match="no supported layer.*nn.Linear or nn.Conv2d"):
        KFAC(nn.Sequential(nn.ReLU(), nn.Conv2d(4, 4, 3, groups=2), nn.BatchNorm1d(3)))


def test_a_diverged_model_gets_kfacs_error_not_the_samplers():
    """NaN logits draw uniform labels (multinomial's device-side assert on a GPU would end the
    process), and the factor update then names the divergence."""
    model = _classifier(nn.Linear(5, 6), (5,))
    kfac = KFAC(model, factor_every=1, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        model[0].weight[0, 0] = math.nan
    with pytest.raises(RuntimeError, match="not finite: the model diverged"):
        kfac.observe(model(torch.randn(4, 5, dtype=DTYPE)))
