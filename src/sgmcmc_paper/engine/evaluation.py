"""Online evaluation of posterior samples: per-epoch curves and averaging windows.

Nothing here stores weights beyond one window's samples for the ``"predictive"`` FGSM threat
model and the robustness evaluation (:mod:`sgmcmc_paper.engine.robustness`), which need them
all at once; they are dropped when the window closes. Every sample is
evaluated as it is produced and folded into
:class:`~sgmcmc_paper.analysis.metrics.PredictiveAverage` s.

A window reports, per set, ``averaged`` (the predictive averaged over its samples) and
``single`` (its last sample alone: the SGD row of the paper). Scalars go to ``run.json``;
compact per-example summaries (predicted label as uint8, max probability, entropy and mutual
information as float16) go to ``predictions.npz``: see :meth:`WindowEvaluator.finish`.

A sample whose predictions are not finite (NaN or infinite logits: a diverging chain whose
weights are still finite) raises :class:`NonFiniteOutputs`; the run engine stops the run there
as diverged, so no metric is ever computed from them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from sgmcmc_paper.analysis import metrics
from sgmcmc_paper.analysis.attacks import PER_SAMPLE_THREAT_MODELS, fgsm_predictive
from sgmcmc_paper.analysis.metrics import PredictiveAverage
from sgmcmc_paper.engine.attack_progress import AttackProgress, fingerprint
from sgmcmc_paper.engine.monitor import Timer
from sgmcmc_paper.engine.robustness import Report, RobustnessPlan, evaluate
from sgmcmc_paper.engine.rundata import RunData
from sgmcmc_paper.protocol.config import Window

#: Images per forward pass when evaluating, by device type (speed and memory, not results,
#: depend on it). On a CPU a smaller batch keeps the activations below glibc's largest mmap
#: threshold (:mod:`sgmcmc.allocator`): 2048 images make the first convolution's output 200 MB,
#: mapped and zeroed afresh at every batch, which costs a third of an evaluation pass.
EVAL_BATCH = {"cpu": 512}
DEFAULT_EVAL_BATCH = 2048


class NonFiniteOutputs(ArithmeticError):
    """A sample's predictions on ``what`` hold NaN or infinity (the run diverged there)."""

    def __init__(self, what: str) -> None:
        self.what = what
        super().__init__(f"non-finite model outputs on {what}")


def finite(probs: Tensor, what: str) -> Tensor:
    """``probs``, after checking that every entry is finite (:class:`NonFiniteOutputs`)."""
    if not bool(torch.isfinite(probs).all()):
        raise NonFiniteOutputs(what)
    return probs


def eval_batches(x: Tensor) -> tuple[Tensor, ...]:
    """``x`` split into evaluation batches for its device (:data:`EVAL_BATCH`)."""
    return x.split(EVAL_BATCH.get(x.device.type, DEFAULT_EVAL_BATCH))


@torch.no_grad()
def predict_probs(model: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """Softmax probabilities ``(n, C)`` of ``model`` on ``x``, in :func:`eval_batches`."""
    return torch.cat([F.softmax(model(chunk), dim=1) for chunk in eval_batches(x)])


def classification_metrics(probs: Tensor, y: Tensor) -> dict[str, float]:
    """Accuracy, NLL (nats), ECE (15 bins), Brier and mean max-probability."""
    p, labels = probs.double().cpu().numpy(), y.cpu().numpy()
    return {
        "accuracy": metrics.accuracy(p, labels),
        "nll": metrics.nll(p, labels),
        "ece": metrics.ece(p, labels),
        "brier": metrics.brier(p, labels),
        "mean_max_prob": float(p.max(axis=1).mean()),
    }


class SamplePredictions:
    """Clean-set predictions of one sample, each computed at most once (windows share them)."""

    def __init__(self, model: nn.Module, data: RunData) -> None:
        self.model, self.data = model, data
        self._cache: dict[str, Tensor] = {}

    def probs(self, name: str) -> Tensor:
        if name not in self._cache:
            x = self.data.test.x if name == "test" else self.data.ood[name].x
            self._cache[name] = finite(predict_probs(self.model, x), f"the {name} set")
        return self._cache[name]


class EpochAverage:
    """The test-set predictive averaged over one epoch's samples (Fig. 1's averaged curve)."""

    def __init__(self) -> None:
        self.average = PredictiveAverage()

    def add(self, sample: SamplePredictions) -> None:
        self.average.update(sample.probs("test"))

    def metrics(self, y: Tensor) -> dict[str, float]:
        return {**classification_metrics(self.average.mean(), y), "samples": self.average.count}


class WindowEvaluator:
    """Accumulates one :class:`~sgmcmc_paper.protocol.config.Window`'s samples on its sets;
    the robustness evaluation is timed as ``timer``'s phase ``robustness`` (the run's
    ``provenance.timing.robustness``) and, with an ``attack_progress`` path, records its
    finished attacks there so that an interrupted run resumes them
    (:mod:`sgmcmc_paper.engine.attack_progress`), telling ``report`` of each."""

    def __init__(
        self,
        window: Window,
        data: RunData,
        fgsm_eps: tuple[float, ...],
        robustness: RobustnessPlan | None = None,
        timer: Timer | None = None,
        attack_progress: Path | None = None,
        report: Report | None = None,
    ) -> None:
        self.window, self.data, self.fgsm_eps = window, data, fgsm_eps
        self.robustness, self.timer = robustness, timer
        self.attack_progress, self.report = attack_progress, report
        self.clean_sets = []
        if "test" in window.sets:
            self.clean_sets.append("test")
        if "ood" in window.sets:
            self.clean_sets.extend(data.ood)
        self.clean = {name: PredictiveAverage() for name in self.clean_sets}
        self.last: dict[str, Tensor] = {}
        self.attacked = {
            (threat, eps): PredictiveAverage()
            for threat in PER_SAMPLE_THREAT_MODELS
            for eps in fgsm_eps
            if "fgsm" in window.sets
        }
        self.snapshots: list[list[Tensor]] = []
        self.steps: list[int] = []

    def add(self, step: int, model: nn.Module, sample: SamplePredictions) -> None:
        """Fold in the sample the model holds at ``step``."""
        self.steps.append(step)
        for name in self.clean_sets:
            probs = sample.probs(name)
            self.clean[name].update(probs)
            self.last[name] = probs
        if "fgsm" in self.window.sets:
            attack = self.data.attack
            signs = attack_directions(model, attack.x, attack.y)
            for (threat, eps), average in self.attacked.items():
                x_adv = attack.x + eps * signs[threat]
                if threat == "per_sample":
                    x_adv.clamp_(0.0, 1.0)
                probs = finite(predict_probs(model, x_adv), f"FGSM images ({threat}, {eps:g})")
                average.update(probs)
                self.last[f"fgsm/{threat}/{eps:g}"] = probs
            self.snapshots.append([p.detach().clone() for p in model.parameters()])

    def state_dict(self) -> dict:
        """Everything added so far (to resume an interrupted run): tensors, lists and numbers."""
        return {
            "clean": {name: average.state_dict() for name, average in self.clean.items()},
            "attacked": [
                [threat, eps, average.state_dict()]
                for (threat, eps), average in self.attacked.items()
            ],
            "last": dict(self.last),
            "snapshots": [list(params) for params in self.snapshots],
            "steps": list(self.steps),
        }

    def load_state_dict(self, state: dict) -> None:
        for name, average in state["clean"].items():
            self.clean[name].load_state_dict(average)
        for threat, eps, average in state["attacked"]:
            self.attacked[(threat, eps)].load_state_dict(average)
        self.last = dict(state["last"])
        self.snapshots = [list(params) for params in state["snapshots"]]
        self.steps = [int(step) for step in state["steps"]]

    def finish(self, model: nn.Module) -> tuple[dict, dict[str, np.ndarray]]:
        """Scalar metrics (for ``run.json``) and per-example arrays (for ``predictions.npz``).

        Array names: ``<window>/<set>/<averaged|single>/<pred|max_prob|entropy|mi>``; ``mi``
        only for ``averaged``, ``pred`` only for labelled sets. With FGSM and a
        :class:`~sgmcmc_paper.engine.robustness.RobustnessPlan`, ``robustness`` holds PGD, the
        ε sweep, transfer attacks and saturation (:mod:`sgmcmc_paper.engine.robustness`).
        """
        w = self.window.name
        out: dict = {"samples": len(self.steps), "steps": list(self.steps), "sets": {}}
        arrays: dict[str, np.ndarray] = {}
        scores: dict[str, dict[str, dict[str, np.ndarray]]] = {}
        for name in self.clean_sets:
            average = self.clean[name]
            modes = {
                "averaged": (average.mean(), average.mutual_information().cpu().numpy()),
                "single": (self.last[name], None),
            }
            for mode, (probs, mi) in modes.items():
                stats, per_example = self._summarise(name, probs, mi)
                out["sets"].setdefault(name, {})[mode] = stats
                scores.setdefault(name, {})[mode] = per_example
                for field, values in per_example.items():
                    arrays[f"{w}/{name}/{mode}/{field}"] = values.astype(np.float16)
                if name == "test":
                    pred = probs.argmax(dim=1).to(torch.uint8).cpu().numpy()
                    arrays[f"{w}/{name}/{mode}/pred"] = pred
        for name in self.clean_sets:
            if name != "test":
                out["sets"][name]["detection"] = _detection(scores["test"], scores[name])
        if "fgsm" in self.window.sets:
            out["fgsm"] = self._fgsm_metrics(model)
            if self.robustness is not None:
                attack = self.data.attack
                models = [_bind(model, params) for params in self.snapshots]
                batch = EVAL_BATCH.get(attack.x.device.type, DEFAULT_EVAL_BATCH)
                with self.timer("robustness") if self.timer is not None else nullcontext():
                    out["robustness"], extra = evaluate(
                        self.robustness,
                        models,
                        attack.x,
                        attack.y,
                        attack.index,
                        w,
                        batch,
                        self._progress(attack.x, attack.y, batch),
                        self.report,
                    )
                arrays.update(extra)
        self.snapshots.clear()
        return out, arrays

    def _progress(self, x: Tensor, y: Tensor, batch: int) -> AttackProgress | None:
        """The attacks this window finished before an interruption (none without a path)."""
        if self.attack_progress is None:
            return None
        plan = dataclasses.replace(self.robustness, transfer=None)
        settings = (self.window, plan, batch, x.device.type, torch.__version__)
        return AttackProgress(self.attack_progress, fingerprint(self.snapshots, x, y, *settings))

    def _summarise(
        self, name: str, probs: Tensor, mi: np.ndarray | None
    ) -> tuple[dict[str, float], dict[str, np.ndarray]]:
        """Scalar metrics and per-example scores (max probability, entropy, MI) of a set."""
        scores = {
            "max_prob": metrics.max_probability(probs),
            "entropy": metrics.predictive_entropy(probs),
        }
        if mi is not None:
            scores["mi"] = mi
        if name == "test":
            stats = classification_metrics(probs, self.data.test.y)
        else:
            stats = {"mean_max_prob": float(scores["max_prob"].mean())}
        stats["mean_entropy"] = float(scores["entropy"].mean())
        if mi is not None:
            stats["mean_mi"] = float(mi.mean())
        return stats, scores

    def _fgsm_metrics(self, model: nn.Module) -> dict:
        y = self.data.attack.y
        result: dict = {}
        for (threat, eps), average in self.attacked.items():
            result.setdefault(threat, {})[f"{eps:g}"] = {
                "averaged": classification_metrics(average.mean(), y),
                "single": classification_metrics(self.last[f"fgsm/{threat}/{eps:g}"], y),
            }
        models = [_bind(model, params) for params in self.snapshots]
        for eps in self.fgsm_eps:
            x_adv = _batched(
                lambda x, y_, e=eps: fgsm_predictive(models, x, y_, e, clip=True),
                self.data.attack.x,
                y,
            )
            average = PredictiveAverage()
            for m in models:
                average.update(
                    finite(predict_probs(m, x_adv), f"FGSM images (predictive, {eps:g})")
                )
            result.setdefault("predictive", {})[f"{eps:g}"] = {
                "averaged": classification_metrics(average.mean(), y)
            }
        return result


def _detection(
    scores_in: dict[str, dict[str, np.ndarray]], scores_out: dict[str, dict[str, np.ndarray]]
) -> dict[str, dict[str, dict[str, float]]]:
    """AUROC, AUPR and FPR95 of each score, per mode
    (:func:`sgmcmc_paper.analysis.metrics.ood_metrics`)."""
    return {
        mode: {
            score: metrics.ood_metrics(
                scores_in[mode][score], values, higher_is_in=score == "max_prob"
            )
            for score, values in by_score.items()
        }
        for mode, by_score in scores_out.items()
    }


def attack_directions(model: nn.Module, x: Tensor, y: Tensor) -> dict[str, Tensor]:
    """FGSM's ``sign(∇_x loss)`` for both per-sample threat models, from one forward pass.

    ``"as_released"``: cross-entropy (summed) toward the model's predicted labels;
    ``"per_sample"``: toward the true labels ``y``. ``x + eps·sign`` (clipped for
    ``"per_sample"``) is exactly :func:`sgmcmc_paper.analysis.attacks.attack`'s image, for every
    ``eps`` at the cost of one forward and two backward passes.
    """
    signs: dict[str, list[Tensor]] = {t: [] for t in PER_SAMPLE_THREAT_MODELS}
    last = PER_SAMPLE_THREAT_MODELS[-1]
    with torch.enable_grad():
        for xb, yb in zip(eval_batches(x), eval_batches(y), strict=True):
            x_req = xb.detach().requires_grad_(True)
            logits = model(x_req)
            targets = {"as_released": logits.argmax(dim=1).detach(), "per_sample": yb}
            for threat in PER_SAMPLE_THREAT_MODELS:
                loss = F.cross_entropy(logits, targets[threat], reduction="sum")
                (grad,) = torch.autograd.grad(loss, x_req, retain_graph=threat != last)
                signs[threat].append(grad.sign())
    return {t: torch.cat(parts) for t, parts in signs.items()}


def _bind(model: nn.Module, params: list[Tensor]) -> Callable[[Tensor], Tensor]:
    """``model`` called with stored parameter values (no copy of the module)."""
    names = [name for name, _ in model.named_parameters()]
    bound = dict(zip(names, params, strict=True))
    return lambda x: functional_call(model, bound, (x,))


def _batched(fn: Callable[..., Tensor], x: Tensor, y: Tensor | None) -> Tensor:
    xs = eval_batches(x)
    ys: Iterable = [None] * len(xs) if y is None else eval_batches(y)
    return torch.cat([fn(xb, yb) for xb, yb in zip(xs, ys, strict=True)])
