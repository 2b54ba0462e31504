"""Merged eigenvalue tails (``KFAC(eigen_rtol=...)``): exact powers of the merged factors,
the ``rtol`` bound on the damped eigenvalues, standard normal noise coordinates, and KSGLD's
step with them."""

from __future__ import annotations

import math

import pytest
import torch
from _targets import assert_standard_normal, dense_kfac_power, spd_matrix
from torch import nn

from sgmcmc import KFAC, KSGLD
from sgmcmc_paper.analysis.exact import one_thread

DTYPE = torch.float64
RTOL = 0.1
DAMPING = 0.1
# Eigenvalues with a flat tail the damping swamps (merged) and without one (kept whole).
FLAT_A = [1e-3, 1.1e-3, 1.2e-3, 0.9e-3, 1.05e-3, 0.5, 2.0, 5.0]  # 7 inputs + bias
STEEP_A = [0.05, 0.2, 0.6, 1.0, 1.5, 2.5, 4.0, 6.0]
FLAT_G = [2e-3, 2.1e-3, 1.9e-3, 2.05e-3, 1.0, 3.0]
STEEP_G = [0.3, 0.7, 1.2, 2.0, 2.6, 3.0]
SPECTRA = {
    "both": (FLAT_A, FLAT_G),
    "A only": (FLAT_A, STEEP_G),
    "G only": (STEEP_A, FLAT_G),
}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with one_thread():
        yield


def _layer(spectra: str) -> tuple[nn.Linear, KFAC, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(3)
    values_a, values_g = SPECTRA[spectra]
    a = spd_matrix(torch.tensor(values_a, dtype=DTYPE), generator)
    g = spd_matrix(torch.tensor(values_g, dtype=DTYPE), generator)
    layer = nn.Linear(7, 6).to(DTYPE)
    return layer, a, g


def _merged(factor: torch.Tensor, tail: float | None, kept: int) -> torch.Tensor:
    """The factor with its ``n − kept`` smallest eigenvalues replaced by ``tail``."""
    values, vectors = torch.linalg.eigh(factor)
    if tail is not None:
        values = values.clone()
        values[: len(values) - kept] = tail
    return (vectors * values) @ vectors.T


def _dense_power(a, g, power, scale, mode, pi):
    """``(s·G⊗A + δI)^p`` on row-major ``vec`` of ``out × in``, damped as ``mode`` says."""
    return dense_kfac_power(a, g, DAMPING, power, scale, None if mode == "exact" else pi)


def _setup(spectra: str, mode: str, scale: float):
    layer, a, g = _layer(spectra)
    kfac = KFAC(layer, damping=DAMPING, damping_mode=mode, eigen_rtol=RTOL)
    kfac.set_factors(layer, a, g)
    eigen = kfac.eigenbasis(kfac.layer(layer), scale)
    k_a, k_g = eigen.kept
    merged_a, merged_g = _merged(a, eigen.tail_a, k_a), _merged(g, eigen.tail_g, k_g)
    pi = math.sqrt((a.trace().item() / 8) / (g.trace().item() / 6))
    return layer, kfac, eigen, (a, g), (merged_a, merged_g), pi


@pytest.mark.parametrize("mode", ["exact", "factored"])
@pytest.mark.parametrize("spectra", SPECTRA)
def test_flat_tails_are_merged_and_steep_ones_kept(spectra, mode):
    _, _, eigen, *_ = _setup(spectra, mode, scale=1.0)
    assert (eigen.tail_a is not None) == (spectra != "G only")
    assert (eigen.tail_g is not None) == (spectra != "A only")
    assert eigen.kept == (3 if eigen.tail_a else 8, 2 if eigen.tail_g else 6)


@pytest.mark.parametrize("mode", ["exact", "factored"])
@pytest.mark.parametrize("scale", [1.0, 30.0])
@pytest.mark.parametrize("power", [-1.0, -0.5])
@pytest.mark.parametrize("spectra", SPECTRA)
def test_merged_powers_equal_dense_powers_of_the_merged_factors(spectra, power, scale, mode):
    layer, kfac, _, _, (merged_a, merged_g), pi = _setup(spectra, mode, scale)
    x = torch.randn(6, 8, generator=torch.Generator().manual_seed(4), dtype=DTYPE)
    expected = _dense_power(merged_a, merged_g, power, scale, mode, pi) @ x.reshape(-1)
    torch.testing.assert_close(kfac.power(layer, x, power, scale).reshape(-1), expected)


@pytest.mark.parametrize("mode", ["exact", "factored"])
@pytest.mark.parametrize("scale", [1.0, 30.0])
def test_merging_moves_each_damped_eigenvalue_by_at_most_rtol_per_factor(scale, mode):
    """The merged factors share the originals' eigenvectors, so the damped matrices' eigenvalues
    pair up; each factor's merge moves them by ``≤ rtol``, both together by ``≤ (1+rtol)²−1``."""
    _, kfac, _, (a, g), (merged_a, merged_g), pi = _setup("both", mode, scale)
    values_a, values_g = torch.linalg.eigvalsh(a), torch.linalg.eigvalsh(g)
    new_a, new_g = torch.linalg.eigvalsh(merged_a), torch.linalg.eigvalsh(merged_g)

    def damped(lg, la):
        if mode == "exact":
            return scale * torch.outer(lg, la) + DAMPING
        gamma = math.sqrt(DAMPING / scale)
        return scale * torch.outer(lg + gamma / pi, la + gamma * pi)

    original = damped(values_g, values_a)
    assert (damped(values_g, new_a) / original - 1).abs().max() <= RTOL + 1e-12
    assert (damped(new_g, values_a) / original - 1).abs().max() <= RTOL + 1e-12
    assert (damped(new_g, new_a) / original - 1).abs().max() <= (1 + RTOL) ** 2 - 1 + 1e-12


def test_noise_coordinates_are_those_of_a_standard_normal_matrix():
    """20,000 draws through ``noise_coordinates`` and back: ``N(0, I)`` on all 48 entries
    (5 SE); scaled by ``p = −½`` and whitened by the merged matrix's ``Σ^{-1/2}``: ``N(0, I)``."""
    _, kfac, eigen, _, (merged_a, merged_g), pi = _setup("both", "exact", 30.0)
    generator = torch.Generator().manual_seed(5)
    samples, scaled = [], []
    root = eigen.damped_power(-0.5, 30.0, DAMPING, "exact")
    shapes = eigen.noise_shapes()
    assert len(shapes) == 4
    draws = [torch.randn(20_000, *shape, generator=generator, dtype=DTYPE) for shape in shapes]
    for i in range(20_000):
        blocks = eigen.noise_coordinates([d[i] for d in draws])
        samples.append(eigen.matrix(blocks).reshape(-1))
        scaled.append(eigen.matrix(blocks.mul_(root)).reshape(-1))
    assert_standard_normal(torch.stack(samples))
    whitening = _dense_power(merged_a, merged_g, 0.5, 30.0, "exact", pi)
    assert_standard_normal(torch.stack(scaled) @ whitening)


def test_zero_rtol_is_exact_kfac():
    layer, a, g = _layer("both")
    kfac = KFAC(layer, damping=DAMPING)
    kfac.set_factors(layer, a, g)
    assert kfac.eigenbasis(kfac.layer(layer), 1.0) is kfac.layer(layer).eigen


@pytest.mark.parametrize("rtol", [-0.1, 1.0, True, "0.1"])
def test_bad_rtol_is_rejected(rtol):
    with pytest.raises(ValueError, match="eigen_rtol"):
        KFAC(nn.Linear(2, 2), eigen_rtol=rtol)


@pytest.mark.parametrize("mode", ["exact", "factored"])
def test_ksgld_drift_uses_the_merged_preconditioner(mode):
    """Langevin ``both`` at ``T = 0``: one step is ``−lr·P'·∇U`` with ``P'`` the dense inverse of
    the merged damped matrix, ``s = N``."""
    layer, kfac, _, _, (merged_a, merged_g), pi = _setup("both", mode, 30.0)
    grad = torch.randn(6, 8, generator=torch.Generator().manual_seed(6), dtype=DTYPE)
    layer.weight.grad, layer.bias.grad = grad[:, :7].clone(), grad[:, 7].clone()
    before = torch.cat([layer.weight.detach(), layer.bias.detach()[:, None]], 1)
    optimizer = KSGLD(layer.parameters(), lr=0.01, kfac=kfac, num_data=30, temperature=0.0)
    optimizer.step()
    after = torch.cat([layer.weight.detach(), layer.bias.detach()[:, None]], 1)
    expected = -0.01 * _dense_power(merged_a, merged_g, -1.0, 30.0, mode, pi) @ grad.reshape(-1)
    torch.testing.assert_close((after - before).reshape(-1), expected)


def test_ksgld_noise_has_the_merged_covariance():
    """Paper convention, zero gradient: 20,000 steps add ``lr²·P'·ξ`` each; the increments,
    whitened by ``(lr²·P')^{-1}`` applied as the dense merged ``P'^{-1}``, are ``N(0, I)``."""
    layer, kfac, _, _, (merged_a, merged_g), pi = _setup("both", "factored", 1.0)
    generator = torch.Generator().manual_seed(7)
    lr = 0.1
    optimizer = KSGLD(layer.parameters(), lr=lr, kfac=kfac, convention="paper", generator=generator)
    increments = []
    for _ in range(20_000):
        before = torch.cat([layer.weight.detach(), layer.bias.detach()[:, None]], 1)
        layer.weight.grad = torch.zeros_like(layer.weight)
        layer.bias.grad = torch.zeros_like(layer.bias)
        optimizer.step()
        after = torch.cat([layer.weight.detach(), layer.bias.detach()[:, None]], 1)
        increments.append((after - before).reshape(-1))
    # covariance lr⁴·P'²: whiten with P'^{+1} / lr²
    whitening = _dense_power(merged_a, merged_g, 1.0, 1.0, "factored", pi) / lr**2
    assert_standard_normal(torch.stack(increments) @ whitening)
