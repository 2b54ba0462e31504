"""Counter-based standard-normal noise: Philox4x32-10 (Salmon et al., 2011) in torch tensor
operations, so that ``torch.compile`` fuses the generator into the kernel that uses the noise.

Philox maps a 128-bit counter and a 64-bit key to 128 random bits, with no state between
draws: the ``j``-th group of four numbers of a draw is a pure function of ``(j, key, counter)``,
so any number of threads (the OpenMP pool torch already runs on a CPU, or a GPU's) compute it in
parallel, and a draw is the same on every device. Words are 32-bit values held in ``int64``
tensors; a product of two words is formed from 16-bit halves so that no intermediate exceeds
2**63 (signed overflow is undefined in compiled C++).

Standard normals come from Box-Muller on 24-bit uniforms in (0, 1) (like torch's CPU
``normal_``): words ``(w0, w1, w2, w3)`` give ``(r0·cos a0, r0·sin a0, r1·cos a1, r1·sin a1)``
with ``r = sqrt(-2 log u(w0 or w2))`` and ``a = 2π u(w1 or w3)``; tails stop at 5.9 standard
deviations.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from sgmcmc.transfer import host_tensor

ROUNDS = 10
MULTIPLIERS = (0xD2511F53, 0xCD9E8D57)
KEY_INCREMENTS = (0x9E3779B9, 0xBB67AE85)
WORD = 0xFFFFFFFF


def _mulhilo(word: Tensor, multiplier: int) -> tuple[Tensor, Tensor]:
    """High and low 32-bit words of ``word · multiplier`` without exceeding 2**63."""
    low_part = word * (multiplier & 0xFFFF)  # < 2**48
    high_part = word * (multiplier >> 16)  # < 2**48
    middle = ((high_part & 0xFFFF) << 16) + low_part  # < 2**49
    return (high_part >> 16) + (middle >> 32), middle & WORD


def philox4x32(
    counter: tuple[Tensor, Tensor, Tensor, Tensor], key: tuple[Tensor, Tensor]
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Philox4x32-10 of the counter words ``(c0, c1, c2, c3)`` under the key ``(k0, k1)``; all
    are ``int64`` tensors of 32-bit values that broadcast together."""
    c0, c1, c2, c3 = counter
    k0, k1 = key
    for round_ in range(ROUNDS):
        hi0, lo0 = _mulhilo(c0, MULTIPLIERS[0])
        hi1, lo1 = _mulhilo(c2, MULTIPLIERS[1])
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
        if round_ < ROUNDS - 1:
            k0 = (k0 + KEY_INCREMENTS[0]) & WORD
            k1 = (k1 + KEY_INCREMENTS[1]) & WORD
    return c0, c1, c2, c3


def standard_normal(size: int, seed: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
    """A flat vector of ``size`` standard normals on ``seed``'s device: number ``4j + i`` is
    output ``i`` of the Box-Muller pairs of Philox's block ``j`` under counter
    ``(j, seed[2], seed[3], 0)`` and key ``(seed[0], seed[1])``; ``seed`` is an ``int64``
    tensor of four 32-bit values (a draw's key and counter: see :func:`seed_words`)."""
    # ``seed[3] >> 32`` is zero (a 32-bit word) but read from memory: compiled for a GPU, a bare
    # ``arange`` is an int32 index that Inductor multiplies in int32, overflowing in the first
    # round (pytorch/pytorch#175966); an int64 value added to it makes every product int64.
    blocks = torch.arange((size + 3) // 4, dtype=torch.int64, device=seed.device) + (seed[3] >> 32)
    zero = torch.zeros_like(blocks)
    words = philox4x32((blocks, zero + seed[2], zero + seed[3], zero), (seed[0], seed[1]))
    u0, u1, u2, u3 = (((w >> 8).to(torch.float32) + 0.5) * 2.0**-24 for w in words)
    r0, r1 = torch.sqrt(-2.0 * torch.log(u0)), torch.sqrt(-2.0 * torch.log(u2))
    a0, a1 = (2.0 * math.pi) * u1, (2.0 * math.pi) * u3
    pairs = (r0 * torch.cos(a0), r0 * torch.sin(a0), r1 * torch.cos(a1), r1 * torch.sin(a1))
    return torch.stack(pairs, dim=1).flatten()[:size].to(dtype)


def words(key: tuple[int, int], counter: int) -> list[int]:
    """The four 32-bit words of :func:`standard_normal`'s ``seed`` for draw number ``counter``
    (< 2**64) under a 64-bit ``key``: the key's, then the counter's low and high word."""
    return [key[0] & WORD, key[1] & WORD, counter & WORD, (counter >> 32) & WORD]


def seed_words(key: tuple[int, int], counter: int, device: torch.device | str) -> Tensor:
    """:func:`words` as the ``seed`` tensor on ``device``; a GPU's copy is queued without
    waiting (:mod:`sgmcmc.transfer`)."""
    return host_tensor(words(key, counter), torch.int64, device)
