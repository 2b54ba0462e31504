"""sgmcmc.laplace.KFACLaplace: its covariance and marginal likelihood against a dense Kronecker
product built independently, and against laplace-torch's KronLaplace (Daxberger et al. 2021)."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from _devices import needs_cuda
from torch import nn

from sgmcmc.laplace import KFACLaplace

N, LAMBDA = 40, 0.7


def _problem(seed: int = 0, bias: bool = True):
    g = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Linear(3, 4, bias=bias), nn.Tanh(), nn.Linear(4, 3, bias=bias))
    model = model.double()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64))
    x = torch.randn(N, 3, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (N,), generator=g)
    return model, x, y


def _fitted(model, x, y, batch: int = N) -> KFACLaplace:
    laplace = KFACLaplace(model, N, prior_precision=LAMBDA, fisher="empirical", max_rows=None)
    return laplace.fit([(x[i : i + batch], y[i : i + batch]) for i in range(0, N, batch)])


def _covariance(laplace: KFACLaplace) -> torch.Tensor:
    """The covariance of the draws, ``M Mᵀ`` for the linear map ``ξ ↦ Σ^{1/2}ξ`` applied to
    every basis vector, in the order of ``parameters_to_vector``."""
    params = laplace.parameters()
    sizes = [p.numel() for p in params]
    columns = []
    for j in range(sum(sizes)):
        flat = torch.zeros(sum(sizes), dtype=torch.float64)
        flat[j] = 1.0
        xi = [part.reshape(p.shape) for part, p in zip(flat.split(sizes), params, strict=True)]
        columns.append(torch.cat([d.reshape(-1) for d in laplace.noise(xi)]))
    m = torch.stack(columns, dim=1)
    return m @ m.T


def _dense_precision(model, x, y) -> torch.Tensor:
    """``N·A⊗G + λI`` per layer from the layers' inputs and per-example output gradients,
    computed here without K-FAC, in ``parameters_to_vector`` order."""
    linears = [m for m in model if isinstance(m, nn.Linear)]
    inputs, outputs = [], []

    def record(module, args, out):
        inputs.append(args[0])
        outputs.append(out)

    hooks = [m.register_forward_hook(record) for m in linears]
    logits = model(x)
    for h in hooks:
        h.remove()
    grads = torch.autograd.grad(F.cross_entropy(logits, y, reduction="sum"), outputs)
    blocks = []
    for a_in, g_out, layer in zip(inputs, grads, linears, strict=True):
        a_rows = torch.cat([a_in.detach(), torch.ones(N, 1, dtype=torch.float64)], dim=1)
        a = a_rows.T @ a_rows / N
        g = g_out.T @ g_out / N
        precision = N * torch.kron(a, g) + LAMBDA * torch.eye(a.shape[0] * g.shape[0])
        out, inp = layer.weight.shape
        # column-stacked vec of [W | b] -> weight row-major then bias
        order = [c * out + r for r in range(out) for c in range(inp)] + [
            inp * out + r for r in range(out)
        ]
        blocks.append(precision[order][:, order])
    return torch.block_diag(*blocks)


def test_covariance_is_the_inverse_of_the_dense_kronecker_precision():
    model, x, y = _problem()
    laplace = _fitted(model, x, y)
    dense = _dense_precision(model, x, y)
    torch.testing.assert_close(_covariance(laplace), torch.linalg.inv(dense), rtol=1e-6, atol=1e-9)


def test_factors_average_over_batches_weighted_by_size():
    model, x, y = _problem(1)
    whole, split = _fitted(model, x, y), _fitted(model, x, y, batch=15)  # 15, 15, 10
    torch.testing.assert_close(_covariance(split), _covariance(whole), rtol=1e-6, atol=1e-9)
    assert split.log_likelihood == pytest.approx(whole.log_likelihood, rel=1e-12)


def test_marginal_likelihood_matches_the_dense_formula_and_its_grid_maximum():
    model, x, y = _problem(2)
    laplace = _fitted(model, x, y)
    dense = _dense_precision(model, x, y)
    theta = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    log_lik = -float(F.cross_entropy(model(x).detach(), y, reduction="sum"))
    p = theta.numel()
    expected = log_lik - 0.5 * (
        float(torch.linalg.slogdet(dense)[1]) - p * math.log(LAMBDA) + LAMBDA * float(theta @ theta)
    )
    assert laplace.log_marginal_likelihood() == pytest.approx(expected, rel=1e-8)
    grid = [0.01, 0.1, 1.0, 10.0, 100.0]
    best = laplace.optimize_prior_precision(grid)
    assert laplace.log_marginal_likelihood(best) == max(map(laplace.log_marginal_likelihood, grid))


def test_draws_have_the_covariance_within_sampling_error():
    """20,000 draws: each covariance entry within 5 standard errors of ``Σ_ij`` (the standard
    error of a sample covariance is ``sqrt((Σ_ii Σ_jj + Σ_ij²)/n)`` for Gaussians)."""
    model, x, y = _problem(3)
    laplace = _fitted(model, x, y)
    sigma = _covariance(laplace)
    theta = torch.cat([p.detach().reshape(-1) for p in laplace.parameters()])
    generator = torch.Generator().manual_seed(0)
    n = 20_000
    draws = torch.stack(
        [torch.cat([d.reshape(-1) for d in laplace.sample(generator)]) for _ in range(n)]
    )
    centred = draws - theta
    sample = centred.T @ centred / n
    se = ((sigma.diagonal()[:, None] * sigma.diagonal()[None, :] + sigma**2) / n).sqrt()
    assert float(((sample - sigma).abs() / se).max()) < 5.0


def test_uncovered_parameters_are_an_error():
    model = nn.Sequential(nn.Linear(2, 2), nn.LayerNorm(2))
    with pytest.raises(ValueError, match="in no nn.Linear"):
        KFACLaplace(model, 10)


def test_matches_laplace_torch_kron_laplace():
    """laplace-torch's KronLaplace with the empirical Fisher (its curvlinops backend) on the same
    model and data: the same posterior covariance. Without biases: laplace-torch gives a bias
    its own block, where K-FAC here makes it an extra input column of ``A``."""
    laplace_torch = pytest.importorskip("laplace")
    model, x, y = _problem(4, bias=False)
    ours = _fitted(model, x, y)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=N)
    theirs = laplace_torch.Laplace(
        model,
        "classification",
        subset_of_weights="all",
        hessian_structure="kron",
        prior_precision=LAMBDA,
        backend=laplace_torch.curvature.CurvlinopsEF,
    )
    theirs.fit(loader)
    torch.testing.assert_close(
        _covariance(ours),
        torch.linalg.inv(theirs.posterior_precision.to_matrix()).double(),
        rtol=1e-6,
        atol=1e-8,
    )


def test_a_subset_of_layers_has_that_layer_s_block_and_leaves_the_others():
    """``layers=[last]``: the covariance is the last layer's dense block, the marginal
    likelihood counts only its parameters, and the first layer is not a coordinate."""
    model, x, y = _problem(5)
    last = KFACLaplace(
        model, N, layers=[model[2]], prior_precision=LAMBDA, fisher="empirical", max_rows=None
    ).fit([(x, y)])
    assert [p is q for p, q in zip(last.parameters(), model[2].parameters(), strict=True)] == [
        True,
        True,
    ]
    dense = _dense_precision(model, x, y)
    block = dense[-15:, -15:]  # the last layer: 3 x 4 weights and 3 biases
    torch.testing.assert_close(_covariance(last), torch.linalg.inv(block), rtol=1e-6, atol=1e-9)
    assert last.num_params == 15


@needs_cuda
def test_the_covariance_is_the_same_on_a_gpu():
    """The fit and the draws' linear map on CUDA agree with the CPU's (float64)."""
    model, x, y = _problem(6)
    gpu_model = copy.deepcopy(model).cuda()  # before the CPU fit hooks the model
    cpu = _fitted(model, x, y)
    gpu = KFACLaplace(gpu_model, N, prior_precision=LAMBDA, fisher="empirical", max_rows=None)
    gpu.fit([(x.cuda(), y.cuda())])
    params = gpu.parameters()
    generator = torch.Generator().manual_seed(0)
    xi = [torch.randn(p.shape, dtype=torch.float64, generator=generator) for p in params]
    on_gpu = [d.cpu() for d in gpu.noise([t.cuda() for t in xi])]
    for a, b in zip(cpu.noise(xi), on_gpu, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-9)
    draw = gpu.sample(torch.Generator("cuda").manual_seed(0))
    assert all(d.is_cuda for d in draw)
