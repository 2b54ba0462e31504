"""The fused update replayed as a CUDA graph (``cuda_graph=True`` with ``fused=True``).

On a GPU a small model's step is bound by the host's dispatch, and calling the compiled update
of :mod:`sgmcmc.samplers.fused` costs more host time (Dynamo's guards, Inductor's wrapper) than
its kernel takes. A CUDA graph records the kernel launches once and replays them with one call.
A graph reads and writes fixed addresses: it reads the gradients where they are when they are
where they were at capture (always, after ``zero_grad(set_to_none=False)``; after
``set_to_none=True``, when the caching allocator hands back the same blocks); gradients that
moved are first copied into static buffers that a second graph reads. The noise seed and the
hyper-parameters are device tensors written only when they change (a loaded state dict, a
learning-rate schedule), and the graph advances the seed's draw counter itself. A graphed chain
is the fused chain: the same kernels on the same values, bit for bit.

The first step of a configuration runs the update directly (compiling it); the first step
whose gradients are where they were the step before captures the graph that reads them in
place, the first step whose gradients moved captures the graph that reads the copies: at most
two graphs a configuration, and later steps replay one of them on the current stream. Both are
captured again when a parameter's or state tensor's storage moves (``load_state_dict``,
``.to()``) or the configuration changes (the burn-in ends, the temperature turns 0): the graphs
are checked against the tensors they were captured for at every step, so they never read or
write stale memory.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from sgmcmc.rng import philox
from sgmcmc.samplers import fused
from sgmcmc.transfer import copy_values_

#: Device types a graph can be captured on; tests on a CPU add "cpu" with a :func:`capture`
#: that records nothing.
DEVICE_TYPES = ("cuda",)


def capture(run: Callable[[], None], device: torch.device) -> Callable[[], None]:
    """Record ``run``'s kernels on ``device`` as a CUDA graph, without running them; return its
    replay (on the current stream). ``thread_local`` capture lets other threads (a data
    loader's) use CUDA meanwhile."""
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.device(device), torch.cuda.graph(graph, capture_error_mode="thread_local"):
        run()
    return graph.replay


def check_device(device: torch.device) -> None:
    """``ValueError`` unless a graph can be captured on ``device``."""
    if device.type not in DEVICE_TYPES:
        raise ValueError(
            f"cuda_graph=True needs parameters on a CUDA device, got {device}; "
            "pass cuda_graph=False"
        )


class GraphedUpdate:
    """The fused update of one parameter group, replayed from a CUDA graph.

    Call it as :func:`sgmcmc.samplers.fused.langevin_update`, but with the noise's draw as
    ``(key, number)`` (``None`` at T = 0) and the scalars as a list of floats: it uploads them
    only when they differ from what the device holds. ``captures`` counts the graphs captured
    so far, ``copied_steps`` the steps whose gradients were copied into static buffers.
    """

    def __init__(self) -> None:
        self.captures = 0
        self.copied_steps = 0
        self._signature: tuple | None = None  # the tensors and flags the graphs are for
        self._scalars: Tensor | None = None
        self._values: list[float] | None = None  # what ``_scalars`` holds
        self._seed: Tensor | None = None
        self._seed_draw: int | None = None  # the draw number ``_seed`` holds (None: unknown)
        self._warm = False  # the update ran once (compiled) for this configuration
        self._previous_layout: list | None = None  # where the last step's gradients were
        self._in_place: tuple[list, Callable[[], None]] | None = None  # (layout, replay)
        self._grads: list[Tensor] = []  # static copies, when the gradients move
        self._copy_replay: Callable[[], None] | None = None

    def __call__(
        self,
        params: list[Tensor],
        grads: list[Tensor],
        states: list[Tensor],
        draw: tuple[tuple[int, int], int] | None,
        values: list[float],
        **flags: Any,
    ) -> None:
        device = params[0].device
        tensors = [(t.data_ptr(), t.shape) for t in (*params, *states)]
        signature = (tensors, len(params), draw is None, len(values), flags)
        if signature != self._signature:
            check_device(device)
            self._prepare(params, draw is not None, len(values), signature)
        if values != self._values:
            copy_values_(self._scalars, values)
            self._values = list(values)
        if draw is not None:
            key, number = draw
            if number != self._seed_draw:
                copy_values_(self._seed, philox.words(key, number))
            # The update adds 1 to the counter's low word; past 2**32 - 1 it must be rewritten.
            self._seed_draw = number + 1 if (number & philox.WORD) != philox.WORD else None
        layout = [(g.data_ptr(), g.shape, g.stride()) for g in grads]  # dtype: the params
        if self._in_place is not None and layout == self._in_place[0]:
            self._in_place[1]()
        elif not self._warm:
            self._run(params, grads, states, flags)  # compiles, outside a graph this once
            self._warm = True
        elif self._in_place is None and layout == self._previous_layout:
            # Where they were last step: a graph that reads the gradients where they are (once
            # per configuration, so that an allocator that keeps moving them never recaptures).
            replay = self._capture(lambda: self._run(params, grads, states, flags), device)
            self._in_place = layout, replay
            replay()
        else:
            self._step_on_copies(params, grads, states, flags, device)
        self._previous_layout = layout

    def _step_on_copies(
        self,
        params: list[Tensor],
        grads: list[Tensor],
        states: list[Tensor],
        flags: dict[str, Any],
        device: torch.device,
    ) -> None:
        """The step for gradients that moved: copy them where a graph reads them, replay it."""
        if not self._grads:
            self._grads = [torch.empty_like(g) for g in grads]
        torch._foreach_copy_(self._grads, grads)
        self.copied_steps += 1
        if self._copy_replay is None:
            static = self._grads
            self._copy_replay = self._capture(
                lambda: self._run(params, static, states, flags), device
            )
        self._copy_replay()

    def _capture(self, run: Callable[[], None], device: torch.device) -> Callable[[], None]:
        try:
            replay = capture(run, device)
        except RuntimeError as error:
            raise RuntimeError(
                f"capturing the fused update as a CUDA graph failed ({error}); "
                "pass cuda_graph=False"
            ) from error
        self.captures += 1
        return replay

    def _run(
        self,
        params: list[Tensor],
        grads: list[Tensor],
        states: list[Tensor],
        flags: dict[str, Any],
    ) -> None:
        """The update, then the seed's next draw number."""
        fused.langevin_update(params, grads, states, self._seed, self._scalars, **flags)
        if self._seed is not None:
            self._seed[2:3].add_(1)

    def _prepare(self, params: list[Tensor], noisy: bool, scalars: int, signature: tuple) -> None:
        """Device tensors for a new configuration, and no graph yet."""
        device, dtype = params[0].device, params[0].dtype
        self._scalars = torch.zeros(scalars, dtype=dtype, device=device)
        self._values = None
        self._seed = torch.zeros(4, dtype=torch.int64, device=device) if noisy else None
        self._seed_draw = None
        self._warm = False
        self._previous_layout = None
        self._in_place = None
        self._grads = []
        self._copy_replay = None
        self._signature = signature
