"""Device parameters for tests: where ``torch.compile`` can run, and CUDA alone."""

import shutil

import pytest
import torch

NEEDS_COMPILER = pytest.mark.skipif(
    not (shutil.which("g++") or shutil.which("c++")),
    reason="torch.compile needs a C++ compiler on a CPU (make system-deps installs g++)",
)

CUDA = pytest.param(
    "cuda",
    marks=[
        pytest.mark.cuda,
        pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
    ],
)

COMPILE_DEVICES = [pytest.param("cpu", marks=NEEDS_COMPILER), CUDA]
