"""A run's fate: ``complete``, ``diverged`` or ``collapsed`` (book/methods.md, "Run fates").

The fate is computed from what a run stores, so every stored run has one without retraining:

- ``diverged``: the run stopped at a non-finite loss, parameters or outputs; its divergence
  record gives the epoch and the reason (``run.json``'s ``divergence``). An epoch whose outputs
  are not finite is never recorded (:mod:`sgmcmc_paper.engine.experiment`), so a diverged run's
  metrics end at the last valid epoch.
- ``collapsed``: the run finished, but its model had fallen to chance. **Rule**: the
  single-model test accuracy (the chain's state at the end of an epoch) of the run's *last*
  epoch is at most the chance level plus three binomial standard errors,
  ``p₀ + 3·sqrt(p₀·(1 − p₀)/n)``, and at some earlier epoch it was at least twice the chance
  level ``2·p₀`` (the model had learned, then lost it). The chance level ``p₀`` is the accuracy
  of a constant classifier, the share of the most frequent class among the ``n`` test labels
  the run was scored on (``predictions.npz``'s ``test/label``; ``1/num_classes`` when they are
  not at hand): on MNIST's 10,000 test images ``p₀ = 0.1135`` (the digit 1), so the threshold
  is 0.123 and "learned" means 0.227. The fate's epoch is the first epoch from which every
  epoch to the end is at chance. A run that never rose above twice the chance level (e.g. too
  large a rate from the first step) is ``complete``: it did not collapse, it never learned,
  and its accuracy says so.
- ``complete``: anything else.

The rule is stated once here and in book/methods.md ("Run fates"). :attr:`RunResult.fate
<sgmcmc_paper.engine.experiment.RunResult.fate>` applies it to a result in memory or loaded
from the store; new runs also write it into ``run.json`` (``fate``), for readers outside
Python; the loader recomputes it, so a stored run written before fates existed gets one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

#: A run's fates, in this order everywhere.
FATES = ("complete", "diverged", "collapsed")
#: The status of a run a stored-only book build asked for and the store lacks
#: (:class:`sgmcmc_paper.engine.untrained.NotTrained`): never stored, it travels like a fate.
NOT_TRAINED = "not trained"
#: Classes of each dataset a run may be trained on.
NUM_CLASSES = {"mnist": 10}
#: Test images of each dataset's evaluation split when a config takes them all.
EVALUATION_SIZE = {("mnist", "test"): 10_000, ("mnist", "validation"): 10_000}
#: "At chance": at most the chance level plus this many binomial standard errors.
CHANCE_ERRORS = 3.0
#: "Learned": at least this multiple of the chance level at some epoch.
LEARNED_FACTOR = 2.0


@dataclass(frozen=True)
class Fate:
    """What became of a run: ``status`` (one of :data:`FATES`, or :data:`NOT_TRAINED` for a
    run a stored-only book build lacks), ``epoch`` (where it diverged
    or first fell to chance; ``None`` for a complete run) and ``reason`` (one line, empty for a
    complete run)."""

    status: str
    epoch: int | None = None
    reason: str = ""

    def __post_init__(self) -> None:
        if self.status not in (*FATES, NOT_TRAINED):
            raise ValueError(
                f"fate status must be one of {(*FATES, NOT_TRAINED)}, got {self.status!r}"
            )

    @property
    def ok(self) -> bool:
        """``True`` for a complete run."""
        return self.status == "complete"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Fate:
        return cls(data["status"], data.get("epoch"), data.get("reason", ""))


def chance_level(labels: np.ndarray | None, num_classes: int) -> float:
    """The accuracy of a constant classifier: the most frequent label's share of ``labels``
    (``1/num_classes`` without labels)."""
    if labels is None or len(labels) == 0:
        return 1.0 / num_classes
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes)
    return float(counts.max() / counts.sum())


def chance_threshold(chance: float, n: int) -> float:
    """The highest accuracy still "at chance" on ``n`` images: ``chance`` plus
    :data:`CHANCE_ERRORS` binomial standard errors."""
    return chance + CHANCE_ERRORS * math.sqrt(chance * (1.0 - chance) / n)


def fate_of(
    epochs: Sequence[Mapping[str, Any]],
    divergence: Mapping[str, Any] | None,
    *,
    chance: float,
    n: int,
    steps_per_epoch: int | None = None,
) -> Fate:
    """The fate of a run with per-epoch records ``epochs`` (``metrics["epochs"]``) and
    ``divergence`` (``None`` if it did not diverge), scored on ``n`` test images whose chance
    level is ``chance`` (module docstring)."""
    if divergence is not None:
        epoch = divergence.get("epoch")
        if epoch is None and steps_per_epoch and isinstance(divergence.get("step"), int):
            epoch = math.ceil(divergence["step"] / steps_per_epoch)
        return Fate("diverged", epoch, str(divergence.get("reason", "")))
    accuracy = [(int(e["epoch"]), float(e["single"]["accuracy"])) for e in epochs]
    if not accuracy:
        return Fate("complete")
    threshold = chance_threshold(chance, n)
    learned = LEARNED_FACTOR * chance
    if accuracy[-1][1] > threshold:
        return Fate("complete")
    fell = len(accuracy) - 1
    while fell > 0 and accuracy[fell - 1][1] <= threshold:
        fell -= 1
    before = accuracy[:fell]
    if not before or max(a for _, a in before) < learned:
        return Fate("complete")
    peak_epoch, peak = max(before, key=lambda ea: ea[1])
    last_epoch, last = accuracy[-1]
    reason = (
        f"test accuracy {last:.3f} at epoch {last_epoch} is at chance (at most {threshold:.3f}: "
        f"the most frequent class's share {chance:.3f} plus {CHANCE_ERRORS:g} binomial "
        f"standard errors on {n:,} images) from epoch {accuracy[fell][0]} on, after "
        f"{peak:.3f} at epoch {peak_epoch}"
    )
    return Fate("collapsed", accuracy[fell][0], reason)


def fate(result: Any) -> Fate:
    """The fate of a :class:`~sgmcmc_paper.engine.experiment.RunResult` (stored or in memory),
    from its per-epoch metrics, divergence record and test labels (module docstring)."""
    config = result.config
    labels = (result.predictions or {}).get("test/label")
    n = len(labels) if labels is not None and len(labels) else _test_size(config)
    chance = chance_level(labels, NUM_CLASSES.get(config.dataset, 10))
    return fate_of(
        result.metrics.get("epochs", []),
        result.divergence,
        chance=chance,
        n=n,
        steps_per_epoch=config.steps_per_epoch,
    )


def _test_size(config: Any) -> int:
    full = EVALUATION_SIZE.get((config.dataset, config.evaluate_on), 10_000)
    return min(config.test_size, full) if config.test_size else full
