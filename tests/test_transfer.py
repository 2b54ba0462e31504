"""Host values onto a device: the same values, and on a GPU no wait for the device."""

import pytest
import torch
from _devices import CUDA, forbid_device_waits

from sgmcmc.transfer import host_tensor


@pytest.mark.parametrize("device", ["cpu", CUDA])
def test_host_tensor_holds_the_values_on_the_device(device):
    values = [0.5, -2.0, 3.25]
    t = host_tensor(values, torch.float64, torch.device(device))
    assert t.device.type == device and t.dtype == torch.float64
    assert t.tolist() == values
    words = host_tensor([2**32 - 1, 7], torch.int64, torch.device(device))
    assert words.tolist() == [2**32 - 1, 7]


@pytest.mark.parametrize("device", [CUDA])
def test_host_tensor_does_not_wait_for_the_gpu(device):
    host_tensor([1.0], torch.float32, torch.device(device))  # the pinned pool's first block
    with forbid_device_waits():
        host_tensor([1.0, 2.0], torch.float32, torch.device(device))
