"""``fused=True``: given the same (Philox) noise draws, the compiled update equals the foreach
path up to rounding, for every branch it compiles (identity, ``V``, the paper's ``m``, drift or
noise preconditioned, frozen, T = 0, weight decay); a fused chain has the exact law of the
discrete chain and resumes bit-identically; samplers without a fused update refuse it."""

import copy

import pytest
import torch
from _devices import COMPILE_DEVICES, CUDA, NEEDS_COMPILER, forbid_device_waits
from _targets import (
    assert_standard_normal,
    law_after,
    run_quadratic_chains,
    spd_matrix,
    standardize,
)

from sgmcmc import KFAC, KSGLD, PSGLD, SGLD
from sgmcmc.rng import philox

SHAPES = [(64, 3, 5, 5), (64,), (300, 40), (10,)]  # one tensor above the stream threshold


def _params(device: str = "cpu") -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    params = [torch.randn(shape, generator=g) for shape in SHAPES]
    params.append(torch.randn(1 << 18, generator=g))
    return [p.to(device).requires_grad_() for p in params]


def _philox_like(source):
    """The foreach path's noise replaced by the fused step's draws (one flat Philox draw per
    step, split in parameter order), so that the two paths differ only by rounding."""

    def like(tensors):
        flat = philox.standard_normal(
            sum(t.numel() for t in tensors), source.counter_seed(tensors[0].device)
        )
        chunks = flat.split([t.numel() for t in tensors])
        return [c.view_as(t).to(t.dtype) for c, t in zip(chunks, tensors, strict=True)]

    return like


def _chain(make, fused: bool, device: str, steps: int = 3) -> tuple[list[torch.Tensor], dict]:
    params = _params(device)
    sampler = make(params, fused, torch.Generator(device).manual_seed(7))
    if not fused:
        sampler.noise_source.like = _philox_like(sampler.noise_source)
    grads = torch.Generator().manual_seed(1)
    for _ in range(steps):
        for p in params:
            p.grad = torch.randn(p.shape, generator=grads).to(device)  # the same in both chains
        sampler.step()
    return [p.detach() for p in params], sampler.state_dict()


VARIANTS = {
    "sgld langevin, weight decay": lambda ps, f, g: SGLD(
        ps, 1e-3, weight_decay=0.5, generator=g, fused=f
    ),
    "psgld langevin both": lambda ps, f, g: PSGLD(ps, 1e-3, generator=g, fused=f),
    "psgld paper": lambda ps, f, g: PSGLD(ps, 0.05, convention="paper", generator=g, fused=f),
    "psgld paper, Li et al.'s average": lambda ps, f, g: PSGLD(
        ps, 0.05, convention="paper", average="square", generator=g, fused=f
    ),
    "psgld langevin, released recursion": lambda ps, f, g: PSGLD(
        ps, 1e-3, average="released", generator=g, fused=f
    ),
    "psgld langevin noise, burn-in 1, T = 0": lambda ps, f, g: PSGLD(
        ps, 1e-3, precondition="noise", temperature=0.0, burn_in=1, fused=f
    ),
}


@pytest.mark.parametrize("device", COMPILE_DEVICES)
@pytest.mark.parametrize("variant", VARIANTS)
def test_given_the_same_draws_fused_equals_the_foreach_path_up_to_rounding(variant, device):
    make = VARIANTS[variant]
    plain, plain_state = _chain(make, False, device)
    fused, fused_state = _chain(make, True, device)
    start = [p.detach() for p in _params(device)]
    eps = torch.finfo(torch.float32).eps
    for p, f, s in zip(plain, fused, start, strict=True):
        move = (p - s).detach()
        assert move.abs().max() > 0
        # Rounding only: a few float32 ulps of θ (θ + step is rounded either way), 1e-3 of each
        # element's move (P's products and sqrt, summed in another order), 1e-5 of the largest
        # move (drift and noise of opposite signs cancelling). A wrong formula errs by the move.
        bound = 8 * eps * s.abs() + 1e-3 * move.abs() + 1e-5 * move.abs().max()
        worst = float(((f - p).abs() / bound).max())
        assert worst <= 1, f"fused differs by {worst:.1f}x the rounding bound"
    for i, state in plain_state["state"].items():
        for key, value in state.items():
            if isinstance(value, torch.Tensor) and value.is_floating_point():
                torch.testing.assert_close(fused_state["state"][i][key], value, rtol=1e-5, atol=0)
            else:
                assert fused_state["state"][i][key] == value, key


def test_fused_is_refused_where_there_is_no_fused_update():
    model = torch.nn.Linear(3, 2)
    kfac = KFAC(model)
    with pytest.raises(ValueError, match="fused=True is not available for KSGLD"):
        KSGLD([{"params": model.parameters(), "fused": True}], 1e-3, kfac=kfac, num_data=10)
    with pytest.raises(ValueError, match="fused must be True or False"):
        SGLD(_params(), 1e-3, fused="yes")


@NEEDS_COMPILER
def test_fused_sgld_chain_has_the_exact_discrete_law():
    """As test_sgld's exact-law test, through the compiled step and its Philox noise: d = 10,
    Hessian eigenvalues 1…100 randomly rotated, lr 0.008, 1500 steps (‖Aᵗ‖ < 1e-5), 4000
    independent chains; mean and covariance within 5 SE of Σ = AΣAᵀ + Q."""
    lr, steps, chains = 0.008, 1500, 4000
    generator = torch.Generator().manual_seed(0)
    hessian = spd_matrix(torch.logspace(0, 2, 10, dtype=torch.float64), generator)
    mean = torch.randn(10, generator=generator, dtype=torch.float64)
    theta = torch.zeros(chains, 10, dtype=torch.float64, requires_grad=True)
    sampler = SGLD([theta], lr=lr, generator=torch.Generator().manual_seed(1), fused=True)
    final = run_quadratic_chains(sampler, theta, hessian, mean, steps)
    eye = torch.eye(10, dtype=torch.float64)
    law_mean, law_covariance, contraction = law_after(
        eye - lr * hessian, 2 * lr * eye, mean, torch.zeros_like(final), steps
    )
    assert contraction < 1e-5
    assert_standard_normal(standardize(final, law_mean, law_covariance))


@NEEDS_COMPILER
def test_fused_chain_resumes_bit_identically_from_its_state_dict():
    def make(params):
        return PSGLD(params, 1e-3, generator=torch.Generator().manual_seed(3), fused=True)

    def advance(sampler, params, steps, seed):
        grads = torch.Generator().manual_seed(seed)
        for _ in range(steps):
            for p in params:
                p.grad = torch.randn(p.shape, generator=grads)
            sampler.step()

    params = _params()
    sampler = make(params)
    advance(sampler, params, 2, seed=0)
    state = copy.deepcopy(sampler.state_dict())  # torch's holds the live state tensors
    assert state["counter_noise"][2] == 2
    saved = [p.detach().clone() for p in params]
    advance(sampler, params, 2, seed=1)
    resumed_params = [p.clone().requires_grad_() for p in saved]
    resumed = make(resumed_params)
    resumed.load_state_dict(state)
    advance(resumed, resumed_params, 2, seed=1)
    for p, q in zip(params, resumed_params, strict=True):
        torch.testing.assert_close(q, p, rtol=0, atol=0)


@pytest.mark.parametrize("device", [CUDA])
@pytest.mark.parametrize("fused", [False, True], ids=["foreach", "fused"])
@pytest.mark.parametrize("variant", list(VARIANTS)[:3])
def test_a_gpu_step_never_waits_for_the_device(variant, fused, device):
    """A launch-bound GPU loop runs ahead of the device only if no step synchronises: after a
    first step (compilation, the Philox key, pinned buffers), steps raise under torch's sync
    debug mode if they wait (e.g. a copy from pageable memory, ``.item()``)."""
    params = _params(device)
    sampler = VARIANTS[variant](params, fused, torch.Generator(device).manual_seed(7))
    for p in params:
        p.grad = torch.randn_like(p)
    sampler.step()
    with forbid_device_waits():
        for _ in range(3):
            sampler.step()


@NEEDS_COMPILER
def test_configurations_beyond_dynamos_recompile_limit_each_compile_once(monkeypatch):
    """Each configuration compiles its own copy of the update: with the limit at 1, a second
    configuration of the same code would fail under ``fullgraph=True``."""
    from sgmcmc.samplers import fused

    fused._compiled.cache_clear()
    monkeypatch.setattr(torch._dynamo.config, "cache_size_limit", 1)
    params = _params()
    for p in params:
        p.grad = torch.ones_like(p)
    for make in (
        lambda: SGLD(params, 1e-3, fused=True),
        lambda: SGLD(params, 1e-3, temperature=0.0, fused=True),
        lambda: PSGLD(params, 1e-3, fused=True),
    ):
        make().step()
    assert fused._compiled.cache_info().currsize == 3
