"""Philox4x32-10 noise: Random123's known answers, standard normal, a function of key and
counter only, the same compiled as eager, resumable through the noise source's state."""

from __future__ import annotations

import math

import pytest
import torch
from _devices import COMPILE_DEVICES
from scipy import stats

from sgmcmc.rng import philox
from sgmcmc.rng.noise import NoiseSource

WORD = 0xFFFFFFFF
# Random123's kat_vectors for philox4x32 with 10 rounds: counter words, key words, output words.
KNOWN_ANSWERS = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((WORD,) * 4, (WORD, WORD), (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    (
        (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
        (0xA4093822, 0x299F31D0),
        (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1),
    ),
]
N = 1 << 20


def _words(values) -> tuple[torch.Tensor, ...]:
    return tuple(torch.tensor([v], dtype=torch.int64) for v in values)


@pytest.mark.parametrize("counter, key, expected", KNOWN_ANSWERS)
def test_philox_matches_random123_known_answers(counter, key, expected):
    output = philox.philox4x32(_words(counter), _words(key))
    assert tuple(int(word) for word in output) == expected


def test_standard_normal_is_standard_normal():
    """N = 2**20 draws: mean within 5/sqrt(N), variance within 5·sqrt(2/N), Kolmogorov-Smirnov
    distance below its 0.1 % critical value 1.95/sqrt(N); the four outputs of a block and
    neighbouring blocks uncorrelated within 5/sqrt(n)."""
    z = philox.standard_normal(N, philox.seed_words((12345, 678), 9, "cpu"), torch.float64)
    assert abs(z.mean().item()) < 5 / math.sqrt(N)
    assert abs(z.var().item() - 1) < 5 * math.sqrt(2 / N)
    assert stats.kstest(z.numpy(), "norm").statistic < 1.95 / math.sqrt(N)
    blocks = z.view(-1, 4)
    n = blocks.shape[0] - 1
    pairs = [(blocks[:, i], blocks[:, j]) for i in range(4) for j in range(i + 1, 4)]
    pairs.append((blocks[:-1, 0], blocks[1:, 0]))
    for a, b in pairs:
        correlation = torch.corrcoef(torch.stack([a[:n], b[:n]]))[0, 1].item()
        assert abs(correlation) < 5 / math.sqrt(n)


def test_draws_are_a_function_of_key_and_counter():
    def draw(key, counter):
        return philox.standard_normal(1001, philox.seed_words(key, counter, "cpu"))

    torch.testing.assert_close(draw((1, 2), 3), draw((1, 2), 3), rtol=0, atol=0)
    torch.testing.assert_close(
        draw((1, 2), 3)[:500],
        philox.standard_normal(500, philox.seed_words((1, 2), 3, "cpu")),
        rtol=0,
        atol=0,
    )  # a prefix of a longer draw
    for other in [draw((1, 2), 4), draw((1, 3), 3), draw((2, 2), 3), draw((1, 2), 3 + 2**32)]:
        assert not torch.equal(other, draw((1, 2), 3))


def test_seed_words_split_the_counter_into_32_bit_words():
    seed = philox.seed_words((2**32 + 5, 7), 2**40 + 3, "cpu")
    assert seed.tolist() == [5, 7, 3, 2**8]


@pytest.mark.parametrize("device", COMPILE_DEVICES)
def test_compiled_draws_equal_eager_draws(device):
    """The words are integers, so exact; the floats differ only by the compiled log, sqrt,
    sin and cos (a few ulps of values below 6). 300,001 blocks: block numbers times Philox's
    multipliers' low halves exceed 2**31, which an int32 index would wrap (pytorch#175966)."""
    seed = philox.seed_words((99, 100), 5, device)
    size = 4 * 300_001
    compiled = torch.compile(philox.standard_normal)(size, seed)
    eager = philox.standard_normal(size, seed)
    assert eager.isfinite().all() and eager.abs().max() < 6
    torch.testing.assert_close(compiled, eager, rtol=0, atol=1e-5)


def test_noise_source_keys_from_the_generator_counts_draws_and_resumes():
    source = NoiseSource(torch.Generator().manual_seed(4))
    first, second = source.counter_seed(torch.device("cpu")), source.counter_seed("cpu")
    assert first[:2].tolist() == second[:2].tolist()
    assert (first[2].item(), second[2].item()) == (0, 1)
    state = source.state_dict()
    assert state["counter_noise"] == [*first[:2].tolist(), 2]
    expected = source.counter_seed("cpu")
    resumed = NoiseSource(torch.Generator().manual_seed(0))
    resumed.load_state_dict(state)
    torch.testing.assert_close(resumed.counter_seed("cpu"), expected, rtol=0, atol=0)
    other = NoiseSource(torch.Generator().manual_seed(5)).counter_seed("cpu")
    assert other[:2].tolist() != first[:2].tolist()
    with pytest.raises(ValueError, match="counter_noise must be"):
        resumed.load_state_dict({"counter_noise": [1, 2]})
