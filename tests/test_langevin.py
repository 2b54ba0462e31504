"""The torch.optim protocol of every Langevin sampler: validation, state, schedulers, devices."""

import io
import math
import warnings

import pytest
import torch
from _devices import needs_cuda

from sgmcmc import PSGLD, SGLD, potential

SAMPLERS = {
    "sgld": lambda params, **kw: SGLD(params, lr=0.01, **kw),
    "psgld": lambda params, **kw: PSGLD(params, lr=0.01, **kw),
    "psgld-paper": lambda params, **kw: PSGLD(params, lr=0.01, convention="paper", **kw),
}


def _quadratic_steps(optimizer, params, steps):
    """A few steps on U = Σ‖θ − 1‖² (closure semantics, as users call it)."""

    def closure():
        optimizer.zero_grad()
        loss = sum(((p - 1) ** 2).sum() for p in params)
        loss.backward()
        return loss

    for _ in range(steps):
        optimizer.step(closure)


def _params(seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(3, 4, generator=generator, requires_grad=True) for _ in range(2)]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lr": 0.0}, r"lr must be a finite number > 0"),
        ({"lr": -1.0}, r"lr must be"),
        ({"lr": math.nan}, r"lr must be"),
        ({"lr": math.inf}, r"lr must be"),
        ({"lr": "0.1"}, r"lr must be"),
        ({"temperature": -0.5}, r"temperature must be a finite number >= 0"),
        ({"temperature": math.nan}, r"temperature must be"),
        ({"weight_decay": -1.0}, r"weight_decay must be a finite number >= 0"),
        ({"convention": "tf"}, r"convention must be one of \('langevin', 'paper'\)"),
        ({"precondition": "drift"}, r"precondition must be one of \('both', 'noise'\)"),
        ({"convention": "paper", "precondition": "both"}, r"precondition must be 'noise'"),
        ({"generator": 0}, r"generator must be a torch.Generator"),
    ],
)
@pytest.mark.parametrize("sampler", [SGLD, PSGLD])
def test_bad_arguments_raise_value_error_naming_them(sampler, kwargs, message):
    kwargs = {"lr": 0.1, **kwargs}
    with pytest.raises(ValueError, match=message):
        sampler([torch.zeros(2, requires_grad=True)], **kwargs)


@pytest.mark.parametrize("sampler", [SGLD, PSGLD])
def test_a_group_listing_a_tensor_twice_is_refused(sampler):
    """It would move twice a step; torch only warns. Refused before torch's warning."""
    model = torch.nn.Linear(3, 2)
    p = torch.zeros(2, requires_grad=True)
    message = r"lists the same tensor twice \(positions 0 and 2, shape \(2, 3\)\)"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match=message + ".*pass each parameter once"):
            sampler(list(model.parameters()) * 2, lr=0.1)
        with pytest.raises(ValueError, match=r"positions 0 and 1, shape \(2,\)"):
            sampler([p, p], lr=0.1)
        optimizer = sampler([p], lr=0.1)
        with pytest.raises(ValueError, match="same tensor twice"):
            optimizer.add_param_group({"params": (q for q in model.parameters() for _ in "ab")})
    assert len(optimizer.param_groups) == 1


def test_added_param_groups_are_validated():
    optimizer = SGLD([torch.zeros(2, requires_grad=True)], lr=0.1)
    with pytest.raises(ValueError, match="lr must be"):
        optimizer.add_param_group({"params": [torch.zeros(2, requires_grad=True)], "lr": -1})
    assert len(optimizer.param_groups) == 1  # the refused group is not kept


@pytest.mark.parametrize("name", SAMPLERS)
def test_state_dict_round_trip_continues_the_chain_bit_identically(name):
    params = _params()
    optimizer = SAMPLERS[name](params, generator=torch.Generator().manual_seed(1))
    _quadratic_steps(optimizer, params, 3)
    snapshot = [p.detach().clone() for p in params]
    buffer = io.BytesIO()
    torch.save(optimizer.state_dict(), buffer)
    _quadratic_steps(optimizer, params, 4)
    continued = [p.detach().clone() for p in params]

    restored_params = [p.clone().requires_grad_() for p in snapshot]
    restored = SAMPLERS[name](restored_params, generator=torch.Generator().manual_seed(99))
    buffer.seek(0)
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    _quadratic_steps(restored, restored_params, 4)
    for a, b in zip(continued, restored_params, strict=True):
        assert torch.equal(a, b)

    # Without the generator's state the chain differs: the test above is not vacuous.
    fresh_params = [p.clone().requires_grad_() for p in snapshot]
    fresh = SAMPLERS[name](fresh_params, generator=torch.Generator().manual_seed(99))
    _quadratic_steps(fresh, fresh_params, 4)
    assert not torch.equal(continued[0], fresh_params[0])


@pytest.mark.parametrize("convention", ["langevin", "paper"])
def test_lr_scheduler_changes_the_step(convention):
    param = torch.zeros(10)
    grad = torch.randn(10, generator=torch.Generator().manual_seed(0))
    optimizer = SGLD([param], lr=0.1, convention=convention, temperature=0)
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=0.5)
    half = convention == "paper"  # the paper's drift is (lr/2)·g
    for lr in [0.1, 0.05, 0.025]:
        before = param.clone()
        param.grad = grad
        optimizer.step()
        torch.testing.assert_close(before - param, (lr / 2 if half else lr) * grad)
        scheduler.step()


def test_step_evaluates_the_closure_with_gradients_and_returns_its_loss():
    param = torch.ones(3, requires_grad=True)
    optimizer = SGLD([param], lr=0.1, temperature=0)

    def closure():
        optimizer.zero_grad()
        loss = (param**2).sum()
        loss.backward()
        return loss

    assert optimizer.step(closure).item() == 3.0
    torch.testing.assert_close(param.detach(), torch.full((3,), 0.8))  # 1 − 0.1·2


def test_parameters_without_gradient_are_skipped_and_groups_keep_their_settings():
    moving, still = torch.zeros(5), torch.zeros(5)
    cold = torch.zeros(5)
    optimizer = SGLD(
        [{"params": [moving, still]}, {"params": [cold], "temperature": 0.0, "lr": 0.5}], lr=0.1
    )
    moving.grad, cold.grad = torch.ones(5), torch.ones(5)
    optimizer.step()
    assert torch.equal(still, torch.zeros(5))
    assert not torch.equal(moving, torch.full((5,), -0.1))  # noisy
    assert torch.equal(cold, torch.full((5,), -0.5))  # T = 0: gradient descent at its own lr


@pytest.mark.parametrize("name", SAMPLERS)
def test_weight_decay_is_the_potentials_gaussian_prior(name):
    """weight_decay = 1/σ² on N·loss gives the chain of potential(loss, N, prior_std=σ)."""
    runs = []
    for prior_std, weight_decay in [(0.5, 0.0), (None, 4.0)]:
        params = _params()
        optimizer = SAMPLERS[name](
            params, weight_decay=weight_decay, generator=torch.Generator().manual_seed(1)
        )
        for _ in range(3):
            optimizer.zero_grad()
            mean_loss = sum(((p - 1) ** 2).mean() for p in params)
            potential(mean_loss, 100, params, prior_std=prior_std).backward()
            optimizer.step()
        runs.append(params)
    for a, b in zip(*runs, strict=True):
        torch.testing.assert_close(a, b)


def test_weight_decay_step():
    param, grad = torch.ones(4), torch.full((4,), 2.0)
    param.grad = grad
    SGLD([param], lr=0.1, temperature=0, weight_decay=3.0).step()
    torch.testing.assert_close(param, 1 - 0.1 * (grad + 3.0))


def test_zero_temperature_draws_no_noise():
    generator = torch.Generator().manual_seed(5)
    state = generator.get_state()
    param = torch.zeros(5)
    param.grad = torch.ones(5)
    PSGLD([param], lr=0.1, temperature=0, generator=generator).step()
    assert torch.equal(generator.get_state(), state)


def test_mixed_dtypes_in_one_group():
    params = [torch.zeros(4, dtype=torch.float64), torch.zeros(4, dtype=torch.float32)]
    for p in params:
        p.grad = torch.zeros_like(p)
    SGLD(params, lr=0.1, generator=torch.Generator().manual_seed(0)).step()
    assert [p.dtype for p in params] == [torch.float64, torch.float32]
    assert all(p.abs().sum() > 0 for p in params)


@needs_cuda
@pytest.mark.parametrize("name", SAMPLERS)
def test_cuda(name):
    cpu = _params()
    cuda = [p.detach().cuda().requires_grad_() for p in cpu]
    _quadratic_steps(SAMPLERS[name](cpu, temperature=0), cpu, 3)
    _quadratic_steps(SAMPLERS[name](cuda, temperature=0), cuda, 3)
    for a, b in zip(cpu, cuda, strict=True):
        torch.testing.assert_close(a, b.cpu())

    runs = []
    for _ in range(2):
        params = [p.detach().cuda().requires_grad_() for p in _params()]
        generator = torch.Generator(device="cuda").manual_seed(3)
        _quadratic_steps(SAMPLERS[name](params, generator=generator), params, 3)
        runs.append(params)
    assert all(torch.equal(a, b) for a, b in zip(*runs, strict=True))

    params = [p.detach().cuda().requires_grad_() for p in _params()]
    optimizer = SAMPLERS[name](params, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="generator is on cpu"):
        _quadratic_steps(optimizer, params, 1)
