"""``fused=True``: the compiled update equals the foreach path up to rounding, for every branch
it compiles (identity, ``V``, the paper's ``m``, drift or noise preconditioned, frozen, T = 0,
weight decay), with the same noise draws; samplers without a fused update refuse it."""

import shutil

import pytest
import torch

from sgmcmc import KFAC, KSGLD, PSGLD, SGLD

SHAPES = [(64, 3, 5, 5), (64,), (300, 40), (10,)]  # one tensor above the stream threshold


DEVICES = [
    pytest.param(
        "cpu",
        marks=pytest.mark.skipif(
            not (shutil.which("g++") or shutil.which("c++")),
            reason="torch.compile needs a C++ compiler on a CPU (make system-deps installs g++)",
        ),
    ),
    pytest.param(
        "cuda",
        marks=[
            pytest.mark.cuda,
            pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
        ],
    ),
]


def _params(device: str = "cpu") -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    params = [torch.randn(shape, generator=g) for shape in SHAPES]
    params.append(torch.randn(1 << 18, generator=g))
    return [p.to(device).requires_grad_() for p in params]


def _chain(make, fused: bool, device: str, steps: int = 3) -> tuple[list[torch.Tensor], dict]:
    params = _params(device)
    sampler = make(params, fused, torch.Generator(device).manual_seed(7))
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
    "psgld langevin noise, burn-in 1, T = 0": lambda ps, f, g: PSGLD(
        ps, 1e-3, precondition="noise", temperature=0.0, burn_in=1, fused=f
    ),
}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("variant", VARIANTS)
def test_fused_equals_the_foreach_path_up_to_rounding(variant, device):
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
