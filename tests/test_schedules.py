"""sgmcmc.schedules.CyclicalSchedule: Zhang et al.'s cosine rate and stages, on every sampler."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from sgmcmc import KFAC, KSGLD, PSGLD, SGLD
from sgmcmc.posterior import potential
from sgmcmc.schedules import CyclicalSchedule, lr_factor, sampling_stage

TOTAL, CYCLES = 40, 4  # cycles of 10 steps


def _chain(kind: str, schedule: dict | None, steps: int = TOTAL, seed: int = 0):
    """A linear-regression posterior sampled by ``kind``; returns the parameters after each
    step and the (lr, temperature) each step used."""
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    x, y = torch.randn(64, 3), torch.randn(64, 2)
    generator = torch.Generator().manual_seed(seed)
    kfac = None
    if kind == "sgld":
        optimizer = SGLD(model.parameters(), lr=1e-3, generator=generator)
    elif kind == "psgld":
        optimizer = PSGLD(model.parameters(), lr=1e-3, generator=generator)
    else:
        kfac = KFAC(model, damping=1.0, factor_every=1, inverse_every=5)
        optimizer = KSGLD(model.parameters(), lr=1e-3, kfac=kfac, num_data=64, generator=generator)
    scheduler = None if schedule is None else CyclicalSchedule(optimizer, TOTAL, CYCLES, **schedule)
    path, used = [], []
    for _ in range(steps):
        optimizer.zero_grad()
        out = model(x)
        if kfac is not None:
            kfac.observe(out)
        loss = potential(((out - y) ** 2).sum(1).mean() / 2, 64, model.parameters())
        loss.backward()
        group = optimizer.param_groups[0]
        used.append((group["lr"], group["temperature"]))
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        path.append(torch.cat([p.detach().reshape(-1).clone() for p in model.parameters()]))
    return torch.stack(path), used


@pytest.mark.parametrize("kind", ["sgld", "psgld", "ksgld"])
def test_noise_on_and_constant_rate_is_the_plain_sampler(kind):
    """exploration=0 and shape="constant": the chain is the plain sampler's, bit for bit."""
    plain, _ = _chain(kind, None)
    cyclical, _ = _chain(kind, {"exploration": 0.0, "shape": "constant"})
    assert torch.equal(plain, cyclical)


@pytest.mark.parametrize("kind", ["sgld", "psgld", "ksgld"])
def test_cosine_rate_and_stages(kind):
    """Each step uses Zhang et al.'s rate lr_0/2·(cos(π·((k−1) mod L)/L) + 1) and no noise in
    the first half of its cycle (exploration 0.5)."""
    _, used = _chain(kind, {"exploration": 0.5})
    for k, (lr, temperature) in enumerate(used, start=1):
        r = ((k - 1) % 10) / 10
        assert lr == pytest.approx(1e-3 / 2 * (math.cos(math.pi * r) + 1), rel=1e-12)
        assert temperature == (1.0 if r >= 0.5 else 0.0)
        assert sampling_stage(k, TOTAL, CYCLES, 0.5) == (r >= 0.5)
        assert lr_factor(k, TOTAL, CYCLES) == pytest.approx(lr / 1e-3, rel=1e-12)


def test_exploration_is_gradient_descent():
    """A step of the exploration stage is noise-free: two chains with different noise seeds
    agree until the first sampling-stage step, and differ after it."""
    a, _ = _chain("sgld", {"exploration": 0.5}, steps=6, seed=0)
    b, _ = _chain("sgld", {"exploration": 0.5}, steps=6, seed=1)
    assert torch.equal(a[:5], b[:5])  # steps 1-5: r < 0.5
    assert not torch.equal(a[5], b[5])  # step 6: r = 0.5, sampling


def test_sampling_property_and_state_dict_resume():
    model = nn.Linear(2, 1)
    optimizer = SGLD(model.parameters(), lr=0.1)
    scheduler = CyclicalSchedule(optimizer, TOTAL, CYCLES, exploration=0.3)
    for _ in range(13):
        optimizer.step()
        scheduler.step()
    assert scheduler.next_step == 14 and scheduler.sampling == sampling_stage(
        14, TOTAL, CYCLES, 0.3
    )
    fresh = SGLD(model.parameters(), lr=0.1)
    restored = CyclicalSchedule(fresh, TOTAL, CYCLES, exploration=0.3)
    restored.load_state_dict(scheduler.state_dict())
    assert restored.next_step == 14


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"cycles": 0}, "cycles must be"),
        ({"cycles": 50}, "cannot exceed"),
        ({"exploration": 1.0}, "exploration must be"),
        ({"shape": "linear"}, "shape must be"),
    ],
)
def test_bad_arguments_are_one_line_errors(kwargs, match):
    optimizer = SGLD(nn.Linear(2, 1).parameters(), lr=0.1)
    args = {"total_steps": TOTAL, "cycles": CYCLES, **kwargs}
    with pytest.raises(ValueError, match=match):
        CyclicalSchedule(optimizer, **args)
