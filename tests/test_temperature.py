"""Implied temperatures of the paper-convention runs (book/methods.md, "The temperatures the
paper's runs imply": its numbers, derived)."""

import math

import pytest

from sgmcmc_paper.analysis import temperature as T


@pytest.mark.parametrize(("num_data", "expected"), [(60_000, 0.48), (5_000, 0.04), (3_000, 0.024)])
def test_paper_temperatures(num_data, expected):
    assert T.implied_temperature(0.02, num_data) == pytest.approx(expected, rel=1e-12)


def test_noise_scales_at_mnist():
    assert T.correct_noise_std(0.02, 60_000) == pytest.approx(5.77e-4, rel=1e-3)
    assert T.code_noise_std(0.02) == pytest.approx(4e-4)
    ratio = T.code_noise_std(0.02) / T.correct_noise_std(0.02, 60_000)
    assert ratio == pytest.approx(0.69, abs=0.005)


def test_temperature_is_lr_cubed_times_n_and_scales_with_noise_squared():
    assert T.implied_temperature(0.1, 1000) == pytest.approx(0.1**3 * 1000)
    assert T.implied_temperature(0.02, 60_000, noise_scale=1 / 0.96) == pytest.approx(
        0.48 / 0.96**2
    )


def test_welling_teh_form_is_consistent():
    """Δθ = −(ε/2)∇U + N(0, εT) with U = N·mean_loss reproduces the code's step and noise."""
    lr, n = 0.02, 60_000
    eps = T.welling_teh_step(lr, n)
    assert eps / 2 * n == pytest.approx(lr / 2)  # gradient coefficient on ∇mean_loss
    temperature = T.implied_temperature(lr, n)
    assert math.sqrt(eps * temperature) == pytest.approx(T.code_noise_std(lr))


def test_printed_equation_and_minibatch_noise():
    assert T.printed_equation_temperature() == 0.5
    ratio = T.minibatch_to_injected_variance(0.02, gradient_variance=1e-4, batch_size=512)
    assert ratio == pytest.approx((0.01**2 * 1e-4 / 512) / (4e-4) ** 2)


def test_table_and_bad_input():
    table = T.temperature_table({"MNIST": (0.02, 60_000), "small": (0.02, 5_000)})
    assert list(table.index) == ["MNIST", "small"]
    assert table.loc["small", "T"] == pytest.approx(0.04)
    with pytest.raises(ValueError, match="num_data must be"):
        T.implied_temperature(0.02, 0)
    with pytest.raises(ValueError, match="lr must be"):
        T.implied_temperature(float("nan"), 10)


def test_released_psgld_scale_is_the_recursions_fixed_point():
    m = 1.0
    for _ in range(2000):
        m = math.sqrt(1e-10 + 0.96 * m + 0.04 * 1e-8)  # tiny mean-loss gradients
    assert 1 / T.released_psgld_scale() == pytest.approx(m, rel=1e-6)
    assert T.released_psgld_scale() == pytest.approx(1 / 0.96, rel=1e-6)


def test_gradient_noise_variance_on_a_linear_model():
    """For a model whose per-example gradients are known, the estimate matches them."""
    import torch

    torch.manual_seed(0)
    model = torch.nn.Linear(5, 3)
    x, y = torch.randn(4096, 5), torch.randint(0, 3, (4096,))
    per_example = []
    for i in range(512):
        loss = torch.nn.functional.cross_entropy(model(x[i : i + 1]), y[i : i + 1])
        grads = torch.autograd.grad(loss, list(model.parameters()))
        per_example.append(torch.cat([g.reshape(-1) for g in grads]))
    exact = torch.stack(per_example).double().var(0).mean().item()
    estimate = T.gradient_noise_variance(model, x, y, batch_size=16)["all"]
    # 256 batches: the variance estimate's relative SE is about sqrt(2/255) ≈ 9%, the
    # 512-example reference's about 6%; 4 standard errors of their difference ≈ 45%.
    assert estimate == pytest.approx(exact, rel=0.45)
    by_tensor = T.gradient_noise_variance(model, x, y, batch_size=16)
    assert set(by_tensor) == {"weight", "bias", "all"}
    assert by_tensor["all"] == pytest.approx(
        (15 * by_tensor["weight"] + 3 * by_tensor["bias"]) / 18
    )
    assert all(p.grad is None for p in model.parameters())
