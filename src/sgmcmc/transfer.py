"""Small host values (a step's hyper-parameters, a noise seed) onto a device without stalling
it: a copy from pageable host memory waits for the device's queue to drain, one from pinned
memory is queued behind the kernels already launched, so a launch-bound GPU loop keeps its
lead."""

from __future__ import annotations

import torch
from torch import Tensor


def host_tensor(
    values: list[float] | list[int], dtype: torch.dtype, device: torch.device | str
) -> Tensor:
    """``torch.tensor(values, dtype=dtype)`` on ``device``; on a CUDA device through pinned
    memory and an asynchronous copy (torch's host allocator keeps the buffer until it is done)."""
    device = torch.device(device)
    return _staged(values, dtype, device).to(device, non_blocking=True)


def copy_values_(target: Tensor, values: list[float] | list[int]) -> Tensor:
    """``target.copy_(values)`` for a 1-D ``target`` of as many elements, in place (a CUDA
    graph may read ``target``'s address), queued without waiting on a CUDA device."""
    return target.copy_(_staged(values, target.dtype, target.device), non_blocking=True)


def _staged(values: list[float] | list[int], dtype: torch.dtype, device: torch.device) -> Tensor:
    """``values`` in host memory, pinned when they are bound for a CUDA device."""
    return torch.tensor(values, dtype=dtype, pin_memory=device.type == "cuda")
