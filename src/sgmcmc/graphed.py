"""The fused update replayed as a CUDA graph (``cuda_graph=True`` with ``fused=True``).

On a GPU a small model's step is bound by the host's dispatch, and calling the compiled update
of :mod:`sgmcmc.fused` costs more host time (Dynamo's guards, Inductor's wrapper: about 0.8 ms
on an H200) than its kernel takes. A CUDA graph records the kernel launches once and replays
them with one call. A graph reads and writes fixed addresses, so the update reads static
buffers: each step copies the gradients into them (one foreach copy, the only per-step work
besides the replay); the noise seed and the hyper-parameters are device tensors written only
when they change (a loaded state dict, a learning-rate schedule), and the graph advances the
seed's draw counter itself. A graphed chain is the fused chain: the same kernels on the same
values, bit for bit.

The first step of a configuration runs the update directly on the static buffers (compiling
it); the next one captures it, then every step replays it on the current stream. It is
captured again when a parameter's or state tensor's storage moves (``load_state_dict``,
``.to()``) or the configuration changes (the burn-in ends, the temperature turns 0): the graph
is checked against the tensors it was captured for at every step, so it never writes stale
memory.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from sgmcmc import fused, philox
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

    Call it as :func:`sgmcmc.fused.langevin_update`, but with the noise's draw as
    ``(key, number)`` (``None`` at T = 0) and the hyper-parameters as a list ordered as
    :data:`sgmcmc.fused.SCALARS`: it uploads them only when they differ from what the device
    holds. ``captures`` counts the graphs captured so far.
    """

    def __init__(self) -> None:
        self.captures = 0
        self._signature: tuple | None = None
        self._grads: list[Tensor] = []
        self._scalars: Tensor | None = None
        self._values: list[float] | None = None  # what ``_scalars`` holds
        self._seed: Tensor | None = None
        self._seed_draw: int | None = None  # the draw number ``_seed`` holds (None: unknown)
        self._replay: Callable[[], None] | None = None
        self._warm = False  # the update ran once on these buffers

    def __call__(
        self,
        params: list[Tensor],
        grads: list[Tensor],
        averages: list[Tensor],
        draw: tuple[tuple[int, int], int] | None,
        values: list[float],
        **flags: Any,
    ) -> None:
        device = params[0].device
        check_device(device)
        signature = (
            tuple((t.data_ptr(), t.shape) for t in params),
            tuple((t.data_ptr(), t.shape) for t in averages),
            draw is None,
            tuple(sorted(flags.items())),
        )
        if signature != self._signature:
            self._prepare(params, grads, draw is not None, signature)
        torch._foreach_copy_(self._grads, grads)
        if values != self._values:
            copy_values_(self._scalars, values)
            self._values = list(values)
        if draw is not None:
            key, number = draw
            if number != self._seed_draw:
                copy_values_(self._seed, philox.words(key, number))
            # The update adds 1 to the counter's low word; past 2**32 - 1 it must be rewritten.
            self._seed_draw = number + 1 if (number & philox.WORD) != philox.WORD else None
        if self._replay is not None:
            self._replay()
        elif not self._warm:
            self._run(params, averages, flags)  # compiles, outside a graph this once
            self._warm = True
        else:
            try:
                self._replay = capture(lambda: self._run(params, averages, flags), device)
            except RuntimeError as error:
                raise RuntimeError(
                    f"capturing the fused update as a CUDA graph failed ({error}); "
                    "pass cuda_graph=False"
                ) from error
            self.captures += 1
            self._replay()

    def _run(self, params: list[Tensor], averages: list[Tensor], flags: dict[str, Any]) -> None:
        """The update on the static buffers, then the seed's next draw number."""
        fused.langevin_update(params, self._grads, averages, self._seed, self._scalars, **flags)
        if self._seed is not None:
            self._seed[2:3].add_(1)

    def _prepare(
        self, params: list[Tensor], grads: list[Tensor], noisy: bool, signature: tuple
    ) -> None:
        """Static buffers for a new configuration, and no graph yet."""
        device, dtype = params[0].device, params[0].dtype
        self._grads = [torch.empty_like(g) for g in grads]
        self._scalars = torch.zeros(len(fused.SCALARS), dtype=dtype, device=device)
        self._values = None
        self._seed = torch.zeros(4, dtype=torch.int64, device=device) if noisy else None
        self._seed_draw = None
        self._replay = None
        self._warm = False
        self._signature = signature
