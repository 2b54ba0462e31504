"""Device parameters for tests: where ``torch.compile`` can run, CUDA alone, and a check that
GPU code does not wait for the device."""

import contextlib
import shutil

import pytest
import torch

NEEDS_COMPILER = pytest.mark.skipif(
    not (shutil.which("g++") or shutil.which("c++")),
    reason="torch.compile needs a C++ compiler on a CPU (make system-deps installs g++)",
)

#: Marks of a CUDA-only test: selected by ``-m cuda``, skipped without a CUDA device.
CUDA_MARKS = (
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
)

CUDA = pytest.param("cuda", marks=CUDA_MARKS)


def needs_cuda(test):
    """Decorator form of :data:`CUDA_MARKS`."""
    for mark in CUDA_MARKS:
        test = mark(test)
    return test


COMPILE_DEVICES = [pytest.param("cpu", marks=NEEDS_COMPILER), CUDA]


@contextlib.contextmanager
def forbid_device_waits():
    """Inside, an operation that makes the host wait for the GPU (a copy from pageable
    memory, ``.item()``, a synchronize) raises, through torch's sync debug mode."""
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode("default")
