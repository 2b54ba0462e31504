"""Shared by the run-engine tests: synthetic data in place of MNIST, and tiny configs.

The synthetic set is learnable (each class is a fixed random template plus noise), so a few
steps move accuracy; Fashion-MNIST is reported missing, to exercise the skip path.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from sgmcmc_paper.engine import rundata
from sgmcmc_paper.errors import UserError
from sgmcmc_paper.protocol.config import RunConfig, Window
from sgmcmc_paper.protocol.profiles import get_profile

N_TRAIN, N_EVAL, N_OOD = 512, 256, 128


def _images(rng: np.random.Generator, labels: np.ndarray, templates: np.ndarray) -> np.ndarray:
    noise = rng.integers(0, 96, size=(len(labels), 28, 28))
    return np.clip(templates[labels] + noise, 0, 255).astype(np.uint8)


def fake_mnist(validation: bool):
    rng = np.random.default_rng(0)
    templates = rng.integers(0, 160, size=(10, 28, 28))
    y_train = rng.integers(0, 10, N_TRAIN)
    y_eval = rng.integers(0, 10, N_EVAL)
    return _images(rng, y_train, templates), y_train, _images(rng, y_eval, templates), y_eval


def fake_ood(name: str) -> np.ndarray:
    if name == "fashion":
        raise UserError("Fashion-MNIST is not installed (synthetic test data)")
    return np.random.default_rng(1).integers(0, 256, size=(N_OOD, 28, 28)).astype(np.uint8)


def install_synthetic(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rundata, "load_mnist_arrays", fake_mnist)
    monkeypatch.setattr(rundata, "load_ood_arrays", fake_ood)
    monkeypatch.setattr(rundata, "ood_available", lambda: {"notmnist": True, "fashion": False})


#: The ci profile with tinier sizes: 4 steps of 32 images per epoch, both windows.
TINY = dataclasses.replace(
    get_profile("ci"),
    train_size=128,
    epochs=2,
    test_size=32,
    attack_size=8,
    ood_size=16,
    probe_size=4,
    eval_every=2,
    trace_every=1,
    trace_per_tensor=3,
    robustness_size=0,  # tests that need it ask for it (test_robustness_engine)
    windows=(
        Window("fig4", samples=None, every=1, end_epoch=None, sets=("test", "ood")),
        Window("table1", samples=3, every=2, end_epoch=None, sets=("test", "fgsm")),
    ),
)


def tiny_config(method: str, **overrides) -> RunConfig:
    """A run of :data:`TINY` (windows fitted to the run's length unless given)."""
    return TINY.config(method, **{"batch_size": 32, **overrides})
