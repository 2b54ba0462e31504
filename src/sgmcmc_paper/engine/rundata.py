"""A run's data, resident on its device: the training set and the fixed evaluation subsets.

Images become float32 ``(n, 1, 28, 28)`` in ``[0, 1]`` (uint8 / 255), labels int64. Training
uses the first ``train_size`` examples of the training split (the paper's smallMNIST is "the
first 5,000"). Evaluation subsets are drawn with a fixed seed (:data:`SUBSET_SEED`, not the
run's), so every run of every method and seed is scored on the same images: the test subset
is the first ``test_size`` of a fixed permutation of the evaluation split, the attacked images
and the function-space probe are its first ``attack_size`` and ``probe_size`` (subsets of the
test subset), and each out-of-distribution set is a fixed random subset of ``ood_size``.

Out-of-distribution sets that are not installed (they come from Debian packages) are skipped
with a note in the result instead of failing the run.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from sgmcmc_paper.errors import UserError
from sgmcmc_paper.protocol.config import RunConfig

SUBSET_SEED = 20180606
#: The out-of-distribution sets, by the name results use.
OOD_SETS = ("notmnist", "fashion")


@dataclass
class EvalSet:
    """Images (and labels, for in-distribution sets) on the run's device, with their indices
    into the source arrays (stored with the results, so examples can be looked up)."""

    x: Tensor
    y: Tensor | None
    index: np.ndarray

    def __len__(self) -> int:
        return len(self.x)

    def head(self, n: int) -> EvalSet:
        return EvalSet(self.x[:n], None if self.y is None else self.y[:n], self.index[:n])


@dataclass
class RunData:
    x_train: Tensor
    y_train: Tensor
    test: EvalSet
    attack: EvalSet
    probe: EvalSet
    ood: dict[str, EvalSet] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def load_mnist_arrays(validation: bool):
    """``(x_train, y_train, x_eval, y_eval)`` as numpy (uint8 images, int labels)."""
    from sgmcmc_paper.data import load_mnist

    return load_mnist(validation=validation)


def load_ood_arrays(name: str) -> np.ndarray:
    """The images of one out-of-distribution set (uint8 ``(n, 28, 28)``); ``UserError`` if
    it is not installed."""
    from sgmcmc_paper import data

    if name == "notmnist":
        return data.load_notmnist()[0]
    if name == "fashion":
        return data.load_fashion_mnist()[2]
    raise ValueError(f"unknown out-of-distribution set {name!r}; known: {OOD_SETS}")


def ood_available() -> dict[str, bool]:
    """Which out-of-distribution sets would load now (:func:`sgmcmc_paper.data.available`)."""
    from sgmcmc_paper.data import available

    ready = available()
    return {name: ready.get(name, False) for name in OOD_SETS}


def _images(x: np.ndarray, device: torch.device) -> Tensor:
    t = torch.as_tensor(np.asarray(x))
    if t.dtype == torch.uint8:
        t = t.float().div_(255.0)
    return t.to(device=device, dtype=torch.float32).reshape(-1, 1, 28, 28)


def _labels(y: np.ndarray, device: torch.device) -> Tensor:
    return torch.as_tensor(np.asarray(y)).to(device=device, dtype=torch.int64)


def _subset(n_total: int, size: int | None, salt: int) -> np.ndarray:
    order = np.random.default_rng([SUBSET_SEED, salt]).permutation(n_total)
    return order if size is None else order[: min(size, n_total)]


def load_run_data(config: RunConfig, device: torch.device, need_ood: bool) -> RunData:
    """Everything ``config`` trains and evaluates on, moved to ``device`` once."""
    x_train, y_train, x_eval, y_eval = load_mnist_arrays(config.evaluate_on == "validation")
    n = config.num_train
    if n > len(x_train):
        raise UserError(
            f"train_size {n} exceeds the {len(x_train)} training examples available; lower it"
        )
    test_index = _subset(len(x_eval), config.test_size, salt=0)
    test = EvalSet(
        _images(x_eval[test_index], device), _labels(y_eval[test_index], device), test_index
    )
    attack = test.head(config.attack_size or len(test))
    data = RunData(
        x_train=_images(x_train[:n], device),
        y_train=_labels(y_train[:n], device),
        test=test,
        attack=attack,
        probe=test.head(config.probe_size),
    )
    if need_ood:
        for salt, name in enumerate(OOD_SETS, start=1):
            try:
                images = load_ood_arrays(name)
            except UserError as exc:
                data.skipped.append(name)
                data.notes.append(f"{name} skipped: {exc}")
                continue
            index = _subset(len(images), config.ood_size, salt=salt)
            data.ood[name] = EvalSet(_images(images[index], device), None, index)
    return data
