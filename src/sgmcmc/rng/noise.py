"""Standard-normal noise for the samplers: one flat draw per device and dtype.

A CPU ``torch.Generator`` (mt19937) fills a draw on one thread, one number after the other:
for a model of millions of parameters a noticeable part of a step. So a CPU draw of at least
:data:`PARALLEL_MIN` numbers is cut into :data:`STREAMS` equal parts, part ``i`` filled from
stream ``i``, a CPU generator of its own, on as many threads as torch uses
(``torch.get_num_threads()``, at most :data:`STREAMS`). The streams are seeded once, at the
first such draw, from the sampler's generator (or torch's global one): seeds ``b, b+1, …`` for
a 32-bit ``b`` drawn from it, since a CPU generator's seed has 32 bits. A chain is thus a
function of its seed, whatever the thread count. GPU draws and smaller CPU draws come from
the generator itself.

Fused steps generate their noise inside a compiled kernel by Philox (:mod:`sgmcmc.rng.philox`):
:meth:`NoiseSource.counter_seed` gives each draw its seed, a 64-bit key drawn once from the
generator and a counter of draws.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch
from torch import Tensor

from sgmcmc.rng import philox

STREAMS = 4
PARALLEL_MIN = 1 << 18

_pool: tuple[int, ThreadPoolExecutor] | None = None  # (owning process id, pool)
_pool_lock = threading.Lock()


class NoiseSource:
    """Standard-normal tensors shaped like parameters, from ``generator`` (``None``: torch's
    global generator) and, for large CPU draws, from the streams it seeds (module docstring).
    """

    STATE_KEYS = ("generator_state", "noise_streams", "counter_noise")  # :meth:`state_dict`'s

    def __init__(self, generator: torch.Generator | None) -> None:
        self.generator = check_generator(generator)
        self._streams: list[torch.Generator] | None = None
        self._counter_noise: list[int] | None = None  # Philox key words and draws so far
        self._buffers: tuple[list, list[Tensor], list[Tensor]] | None = None  # see :meth:`like`

    def like(self, tensors: list[Tensor]) -> list[Tensor]:
        """Standard-normal tensors shaped like ``tensors``: one flat draw per device and dtype,
        in the order of ``tensors``, split into views.

        The views are of buffers kept for the next call with the same shapes, which draws into
        them again: they are valid until then. A step thus dispatches one operation per flat
        draw instead of a split and a view per tensor (on a GPU, host time a launch-bound step
        pays for)."""
        signature = [(t.shape, t.dtype, t.device) for t in tensors]
        if self._buffers is None or self._buffers[0] != signature:
            self._buffers = (signature, *_flat_buffers(tensors))
        _, flats, views = self._buffers
        for flat in flats:
            self.standard_normal_(flat)
        return views

    def standard_normal_(self, flat: Tensor) -> Tensor:
        """Fill the contiguous vector ``flat`` with standard normals, in place, and return it."""
        device = flat.device
        if self.generator is not None and self.generator.device.type != device.type:
            raise ValueError(
                f"generator is on {self.generator.device} but parameters are on {device}; "
                f"pass torch.Generator(device={str(device)!r})"
            )
        if device.type != "cpu" or flat.numel() < PARALLEL_MIN:
            return flat.normal_(generator=self.generator)
        parts = list(zip(flat.tensor_split(STREAMS), self.streams(), strict=True))
        lanes = min(STREAMS, torch.get_num_threads())
        jobs = [_thread_pool().submit(_fill, parts[lane::lanes]) for lane in range(1, lanes)]
        _fill(parts[0::lanes])
        for job in jobs:
            job.result()
        return flat

    def streams(self) -> list[torch.Generator]:
        """The CPU streams, seeded from the generator on first use."""
        if self._streams is None:
            base = int(torch.randint(0, 2**32 - STREAMS, (1,), generator=self.generator))
            self._streams = [torch.Generator().manual_seed(base + i) for i in range(STREAMS)]
        return self._streams

    def next_draw(self) -> tuple[tuple[int, int], int]:
        """The key and number of the next counter-based draw, counted as made: the key is
        drawn from the generator on first use, the number is the count of draws before."""
        if self._counter_noise is None:
            on = self.generator.device if self.generator is not None else "cpu"
            key = torch.randint(0, 2**32, (2,), generator=self.generator, device=on).tolist()
            self._counter_noise = [*key, 0]
        k0, k1, draws = self._counter_noise
        self._counter_noise[2] = draws + 1
        return (k0, k1), draws

    def counter_seed(self, device: torch.device | str) -> Tensor:
        """The seed of the next counter-based draw (:func:`sgmcmc.rng.philox.standard_normal`) on
        ``device`` (:meth:`next_draw`'s key and number)."""
        return philox.seed_words(*self.next_draw(), device)

    def state_dict(self) -> dict[str, Any]:
        """The generator's state (when one was given), the streams' (once seeded) and the
        counter-based draws' key and count (once used)."""
        state: dict[str, Any] = {}
        if self.generator is not None:
            state["generator_state"] = self.generator.get_state()
        if self._streams is not None:
            state["noise_streams"] = [stream.get_state() for stream in self._streams]
        if self._counter_noise is not None:
            state["counter_noise"] = list(self._counter_noise)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved; streams or a key not saved are drawn anew
        later."""
        if state.get("generator_state") is not None and self.generator is not None:
            self.generator.set_state(state["generator_state"])
        counter_noise = state.get("counter_noise")
        if counter_noise is not None and (
            len(counter_noise) != 3 or not all(isinstance(word, int) for word in counter_noise)
        ):
            raise ValueError(f"counter_noise must be [key0, key1, draws], got {counter_noise!r}")
        self._counter_noise = None if counter_noise is None else list(counter_noise)
        streams = state.get("noise_streams")
        if streams is None:
            self._streams = None
            return
        if len(streams) != STREAMS:
            raise ValueError(f"noise_streams holds {len(streams)} states, expected {STREAMS}")
        self._streams = [torch.Generator() for _ in streams]
        for stream, stream_state in zip(self._streams, streams, strict=True):
            stream.set_state(stream_state)


def check_generator(generator: torch.Generator | None) -> torch.Generator | None:
    """``generator`` itself, or ``ValueError`` when it is neither a ``torch.Generator`` nor
    ``None``."""
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator or None, got {generator!r}")
    return generator


def _flat_buffers(tensors: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
    """One flat buffer per device and dtype of ``tensors``, and views of them shaped like
    ``tensors``, in their order."""
    buckets: dict[tuple[torch.device, torch.dtype], list[int]] = {}
    for index, t in enumerate(tensors):
        buckets.setdefault((t.device, t.dtype), []).append(index)
    flats: list[Tensor] = []
    views: list[Tensor] = [None] * len(tensors)  # type: ignore[list-item]
    for (device, dtype), indices in buckets.items():
        sizes = [tensors[i].numel() for i in indices]
        flat = torch.empty(sum(sizes), device=device, dtype=dtype)
        flats.append(flat)
        for i, chunk in zip(indices, flat.split(sizes), strict=True):
            views[i] = chunk.view_as(tensors[i])
    return flats, views


def _fill(parts: list[tuple[Tensor, torch.Generator]]) -> None:
    for part, stream in parts:
        part.normal_(generator=stream)


def _thread_pool() -> ThreadPoolExecutor:
    """The helper threads, made anew in a forked child (threads do not survive a fork)."""
    global _pool
    with _pool_lock:
        if _pool is None or _pool[0] != os.getpid():
            threads = ThreadPoolExecutor(STREAMS - 1, thread_name_prefix="sgmcmc-noise")
            _pool = (os.getpid(), threads)
        return _pool[1]
