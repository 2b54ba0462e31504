"""The samplers' noise source: standard normal, a function of the seed, resumable."""

from __future__ import annotations

import math
import multiprocessing
import os

import pytest
import torch

from sgmcmc import SGLD
from sgmcmc.rng import noise
from sgmcmc.rng.noise import PARALLEL_MIN, STREAMS, NoiseSource

SIZE = 4 * PARALLEL_MIN + 3  # parallel; parts of unequal length


def _draw(seed: int, size: int = SIZE) -> torch.Tensor:
    return NoiseSource(torch.Generator().manual_seed(seed)).standard_normal_(
        torch.empty(size, dtype=torch.float64)
    )


def test_small_draws_are_the_generators_own():
    expected = torch.randn(100, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    torch.testing.assert_close(_draw(3, 100), expected, rtol=0, atol=0)


def test_each_stream_is_standard_normal_and_independent_of_the_others():
    """Per part of n ≈ PARALLEL_MIN draws: mean within 5/sqrt(n), variance within 5·sqrt(2/n)
    of 1 (standard errors of a normal sample); between parts, correlation within 5/sqrt(n)."""
    parts = _draw(0).tensor_split(STREAMS)
    for part in parts:
        n = part.numel()
        assert abs(part.mean().item()) < 5 / math.sqrt(n)
        assert abs(part.var().item() - 1) < 5 * math.sqrt(2 / n)
    n = min(part.numel() for part in parts)
    for a, b in zip(parts, parts[1:], strict=False):
        correlation = torch.corrcoef(torch.stack([a[:n], b[:n]]))[0, 1].item()
        assert abs(correlation) < 5 / math.sqrt(n)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_draws_depend_on_the_seed_not_on_the_thread_count(threads):
    reference = _draw(7)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        torch.testing.assert_close(_draw(7), reference, rtol=0, atol=0)
    finally:
        torch.set_num_threads(before)
    assert not torch.equal(_draw(8), reference)


def test_state_dict_round_trip_continues_the_draws():
    source = NoiseSource(torch.Generator().manual_seed(1))
    source.standard_normal_(torch.empty(SIZE))
    state = source.state_dict()
    expected = source.standard_normal_(torch.empty(SIZE))
    restored = NoiseSource(torch.Generator().manual_seed(99))
    restored.load_state_dict(state)
    torch.testing.assert_close(restored.standard_normal_(torch.empty(SIZE)), expected)


def test_sampler_state_dict_carries_the_streams():
    def sampler(seed: int) -> tuple[SGLD, torch.Tensor]:
        param = torch.zeros(SIZE)
        param.grad = torch.ones(SIZE)
        return SGLD([param], lr=1e-3, generator=torch.Generator().manual_seed(seed)), param

    optimizer, param = sampler(0)
    optimizer.step()
    state = optimizer.state_dict()
    assert len(state["noise_streams"]) == STREAMS
    resumed_from = param.clone()
    optimizer.step()
    other, other_param = sampler(5)
    other_param.copy_(resumed_from)
    other.load_state_dict(state)
    other.step()
    torch.testing.assert_close(other_param, param, rtol=0, atol=0)


def test_tampered_stream_state_is_rejected():
    source = NoiseSource(None)
    with pytest.raises(ValueError, match="noise_streams"):
        source.load_state_dict({"noise_streams": [torch.Generator().get_state()]})


def _pool_answers() -> int:
    return noise._thread_pool().submit(int, "1").result(timeout=20)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_gets_helper_threads_of_its_own():
    """The parent's helper threads do not exist in a forked child; work sent to them there
    would never run."""
    _draw(2)  # the parent's helper threads now exist
    with multiprocessing.get_context("fork").Pool(1) as pool:
        assert pool.apply_async(_pool_answers).get(timeout=60) == 1


def test_like_redraws_into_the_same_views_as_fresh_draws_would_be():
    """``like`` reuses its buffers for the same shapes, and draws what one flat ``randn`` per
    call would: the chain does not depend on the reuse."""
    shapes = [(3, 4), (5,), (2, 1, 3)]
    tensors = [torch.empty(shape) for shape in shapes]
    source = NoiseSource(torch.Generator().manual_seed(7))
    reference = torch.Generator().manual_seed(7)
    first = source.like(tensors)
    assert [t.shape for t in first] == [torch.Size(s) for s in shapes]
    expected = torch.randn(23, generator=reference)
    torch.testing.assert_close(torch.cat([t.flatten() for t in first]), expected, rtol=0, atol=0)
    pointers = [t.data_ptr() for t in first]
    second = source.like(tensors)
    assert [t.data_ptr() for t in second] == pointers  # no new buffers, no new views
    expected = torch.randn(23, generator=reference)
    torch.testing.assert_close(torch.cat([t.flatten() for t in second]), expected, rtol=0, atol=0)
    other = source.like([torch.empty(6, dtype=torch.float64)])  # new shapes: new buffers
    assert other[0].dtype == torch.float64 and other[0].shape == (6,)
