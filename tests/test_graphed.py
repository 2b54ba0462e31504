"""``cuda_graph=True``: a chain whose fused update is replayed from a CUDA graph is the fused
chain bit for bit, through what changes between steps (a learning-rate schedule, T = 0, the end
of the burn-in, a moved parameter, a loaded state dict, the draw counter's low word wrapping),
and its replayed steps never wait for the device.

On a CPU the graph is simulated: :func:`sgmcmc.samplers.graphed.capture` returns the update unrun,
and its "replay" runs it on the static buffers, as a graph reads them at replay. That checks the
bookkeeping around the graph; the CUDA parameters check the capture itself."""

import copy

import pytest
import torch
from _devices import CUDA, NEEDS_COMPILER, forbid_device_waits

from sgmcmc import PSGLD, SGLD
from sgmcmc.rng import philox
from sgmcmc.samplers import graphed

SHAPES = [(64, 3, 5, 5), (64,), (300, 40), (10,), (1 << 18,)]
DEVICES = [pytest.param("cpu", marks=NEEDS_COMPILER), CUDA]


@pytest.fixture(autouse=True)
def simulated_graphs_on_a_cpu(monkeypatch):
    """Let a CPU "capture": the update returned unrun, its replay a direct call."""
    monkeypatch.setattr(graphed, "DEVICE_TYPES", ("cuda", "cpu"))
    real_capture = graphed.capture

    def capture(run, device):
        return run if device.type == "cpu" else real_capture(run, device)

    monkeypatch.setattr(graphed, "capture", capture)


def _params(device: str) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return [torch.randn(shape, generator=g).to(device).requires_grad_() for shape in SHAPES]


def _psgld(params, cuda_graph: bool, device: str, burn_in: int | None = 4) -> PSGLD:
    generator = torch.Generator(device).manual_seed(7)
    return PSGLD(
        params, 1e-3, burn_in=burn_in, generator=generator, fused=True, cuda_graph=cuda_graph
    )


def _gradients(params: list[torch.Tensor], step: int) -> list[torch.Tensor]:
    """The gradients of step number ``step``, new tensors on the parameters' device."""
    values = torch.Generator().manual_seed(step)
    return [torch.randn(p.shape, generator=values).to(p.device) for p in params]


def _advance(sampler, params, steps: range, events=None, held=None) -> None:
    """``steps`` with gradients fixed by the step's number, after ``events[step]`` if any; the
    gradients are new tensors at every step, each at its own address (all kept in ``held``)."""
    held = [] if held is None else held
    for step in steps:
        if events and step in events:
            events[step](sampler, params)
        held.append(_gradients(params, step))
        for p, grad in zip(params, held[-1], strict=True):
            p.grad = grad
        sampler.step()


def _assert_identical(a: list[torch.Tensor], b: list[torch.Tensor]) -> None:
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y, rtol=0, atol=0)


def _set(key: str, value: float):
    def event(sampler, _params):
        for group in sampler.param_groups:
            group[key] = value

    return event


def _move_first_parameter(_sampler, params):
    params[0].data = params[0].data.clone()


@pytest.mark.parametrize("device", DEVICES)
def test_a_graphed_chain_is_the_fused_chain_bit_for_bit(device):
    """12 steps: the lr halves at step 2, T = 0 at step 3 and back at 4 (a graph without
    noise), the burn-in ends after the 4th update (a graph that no longer adapts V), and the
    first parameter's storage moves at step 8 (captured again)."""
    events = {
        2: _set("lr", 5e-4),
        3: _set("temperature", 0.0),
        4: _set("temperature", 1.0),
        8: _move_first_parameter,
    }
    chains = {}
    for cuda_graph in (False, True):
        params = _params(device)
        sampler = _psgld(params, cuda_graph, device)
        _advance(sampler, params, range(12), events)
        chains[cuda_graph] = params, sampler
    (plain, plain_sampler), (replayed, sampler) = chains[False], chains[True]
    _assert_identical(replayed, plain)
    for p, q in zip(replayed, plain, strict=True):
        _assert_identical([sampler.state[p]["square_avg"]], [plain_sampler.state[q]["square_avg"]])
    # Configurations: (T = 1, adapting) at steps 0-2 and 4, (T = 0) at 3, (not adapting) from
    # 5, the moved parameter at 8: a capture at the second step of each one that lasts two.
    assert sampler.cuda_graph_counts["captures"] == 3
    assert sampler.noise_source.state_dict()["counter_noise"][2] == 11  # one draw per T > 0


@pytest.mark.parametrize("device", DEVICES)
def test_gradients_where_they_were_are_read_in_place_and_moved_ones_from_copies(device):
    """Gradients written into two sets of tensors, A or B, by step: A A A A A B B B A B. The
    graph captured at step 1 reads A in place; B at step 5 moved, so it is copied for a second
    graph, and so is every B after it (one graph reads in place, and it reads A), while A at
    step 8 is read in place again: 2 captures, 4 copied steps, and the fused chain bit for
    bit."""
    schedule = "AAAAABBBAB"
    chains = {}
    for cuda_graph in (False, True):
        params = _params(device)
        sampler = _psgld(params, cuda_graph, device, burn_in=None)  # one configuration
        sets = {name: [torch.zeros_like(p) for p in params] for name in "AB"}
        for step, name in enumerate(schedule):
            for p, grad, value in zip(params, sets[name], _gradients(params, step), strict=True):
                p.grad = grad.copy_(value)
            sampler.step()
        chains[cuda_graph] = params, sampler
    _assert_identical(chains[True][0], chains[False][0])
    assert chains[True][1].cuda_graph_counts == {"captures": 2, "copied_steps": 4}


@pytest.mark.parametrize("device", DEVICES)
def test_a_graphed_chain_resumes_bit_identically_from_its_state_dict(device):
    params = _params(device)
    sampler = _psgld(params, True, device)
    _advance(sampler, params, range(3))
    state = copy.deepcopy(sampler.state_dict())
    saved = [p.detach().clone() for p in params]
    _advance(sampler, params, range(3, 7))

    resumed_params = [p.clone().requires_grad_() for p in saved]
    resumed = _psgld(resumed_params, True, device)
    resumed.load_state_dict(copy.deepcopy(state))  # torch loads the very tensors given
    _advance(resumed, resumed_params, range(3, 7))
    _assert_identical(resumed_params, params)

    # Rewinding the same sampler: the graph reads the loaded state and the restored counter.
    for p, s in zip(params, saved, strict=True):
        p.data.copy_(s)
    sampler.load_state_dict(copy.deepcopy(state))
    _advance(sampler, params, range(3, 7))
    _assert_identical(params, resumed_params)


@pytest.mark.parametrize("device", DEVICES)
def test_the_draw_counter_carries_into_its_high_word_as_in_the_fused_chain(device):
    """The graph adds 1 to the counter's low word; at 2**32 - 1 the step rewrites the seed."""
    chains = []
    for cuda_graph in (False, True):
        params = _params(device)
        sampler = SGLD(
            params,
            1e-3,
            generator=torch.Generator(device).manual_seed(7),
            fused=True,
            cuda_graph=cuda_graph,
        )
        _advance(sampler, params, range(1))
        sampler.noise_source._counter_noise[2] = philox.WORD - 2
        _advance(sampler, params, range(1, 6))
        assert sampler.noise_source.state_dict()["counter_noise"][2] == philox.WORD + 3
        chains.append(params)
    _assert_identical(*chains)


@pytest.mark.parametrize("device", [CUDA])
def test_replayed_steps_never_wait_for_the_device(device):
    """Both graphs, the one reading gradients in place (set A) and the one reading copies (set
    B), are captured first (a capture synchronises), then replayed without waiting."""
    params = _params(device)
    sampler = _psgld(params, True, device, burn_in=None)  # one configuration
    sets = {name: [torch.zeros_like(p) for p in params] for name in "AB"}
    values = [_gradients(params, step) for step in range(8)]  # made before: a copy waits

    def step(number: int, name: str) -> None:
        for p, grad, value in zip(params, sets[name], values[number], strict=True):
            p.grad = grad.copy_(value)
        sampler.step()

    for number, name in enumerate("AAB"):  # compiles, captures in place, captures the copy
        step(number, name)
    assert sampler.cuda_graph_counts == {"captures": 2, "copied_steps": 1}
    with forbid_device_waits():
        for number, name in enumerate("AABAB", start=3):
            if number == 5:
                for group in sampler.param_groups:
                    group["lr"] = 5e-4  # a schedule's change is queued, not waited for
            step(number, name)
    assert sampler.cuda_graph_counts == {"captures": 2, "copied_steps": 3}


def test_bad_cuda_graph_arguments_name_the_fix(monkeypatch):
    monkeypatch.setattr(graphed, "DEVICE_TYPES", ("cuda",))
    params = _params("cpu")
    with pytest.raises(ValueError, match="pass fused=True as well"):
        SGLD(params, 1e-3, cuda_graph=True)
    with pytest.raises(ValueError, match="needs parameters on a CUDA device, got cpu"):
        PSGLD(params, 1e-3, fused=True, cuda_graph=True)
    with pytest.raises(ValueError, match="cuda_graph must be True or False"):
        SGLD(params, 1e-3, fused=True, cuda_graph=1)


@NEEDS_COMPILER
def test_a_failed_capture_names_the_fix(monkeypatch):
    def capture(run, device):
        raise RuntimeError("operation not permitted when stream is capturing")

    monkeypatch.setattr(graphed, "capture", capture)
    params = _params("cpu")
    sampler = SGLD(params, 1e-3, temperature=0.0, fused=True, cuda_graph=True)
    _advance(sampler, params, range(1))  # runs directly
    with pytest.raises(RuntimeError, match="CUDA graph failed .*; pass cuda_graph=False"):
        _advance(sampler, params, range(1, 2))
