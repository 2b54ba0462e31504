"""Predictive metrics: accuracy, NLL, calibration, Brier, and out-of-distribution detection.

Conventions. ``probs`` is an ``(n, C)`` array of class probabilities (one model's softmax or the
averaged predictive), ``y`` the ``(n,)`` integer labels; numpy arrays and torch tensors (any
device) are accepted. Scalar metrics return Python floats, per-example scores float64 numpy
arrays. Logarithms are natural (nats).
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

ArrayLike = np.ndarray | torch.Tensor

#: Probabilities are floored here before taking logs, so one confidently wrong example gives a
#: large finite NLL (−log 1e-12 ≈ 27.6) instead of an infinite mean.
MIN_PROB = 1e-12


def _numpy(a: ArrayLike, dtype=np.float64) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    return np.asarray(a, dtype=dtype)


def _probs_labels(probs: ArrayLike, y: ArrayLike | None = None):
    p = _numpy(probs)
    if p.ndim != 2 or p.shape[0] == 0:
        raise ValueError(f"probs must be a non-empty (n, C) array, got shape {p.shape}")
    if y is None:
        return p, None
    labels = _numpy(y, dtype=np.int64)
    if labels.shape != (p.shape[0],):
        raise ValueError(f"y must have shape ({p.shape[0]},) to match probs, got {labels.shape}")
    if labels.min() < 0 or labels.max() >= p.shape[1]:
        raise ValueError(
            f"labels must lie in [0, {p.shape[1]}), got {labels.min()}..{labels.max()}"
        )
    return p, labels


def accuracy(probs: ArrayLike, y: ArrayLike) -> float:
    """Share of examples whose most probable class is the label (ties: the lowest index)."""
    p, labels = _probs_labels(probs, y)
    return float(np.mean(p.argmax(axis=1) == labels))


def nll(probs: ArrayLike, y: ArrayLike) -> float:
    """Mean negative log-probability of the label, ``−mean log max(p[y], MIN_PROB)``, in nats."""
    p, labels = _probs_labels(probs, y)
    return float(-np.mean(np.log(np.maximum(p[np.arange(len(labels)), labels], MIN_PROB))))


def brier(probs: ArrayLike, y: ArrayLike) -> float:
    """Brier score: squared error to the one-hot label, summed over classes, mean over examples.

    Ranges over [0, 2]; a uniform predictor over C classes scores ``1 − 1/C``.
    """
    p, labels = _probs_labels(probs, y)
    one_hot = np.eye(p.shape[1])[labels]
    return float(np.mean(np.sum((p - one_hot) ** 2, axis=1)))


def ece(probs: ArrayLike, y: ArrayLike, n_bins: int = 15) -> float:
    """Expected calibration error of the top-class confidence, ``n_bins`` equal-width bins.

    ``Σ_b (n_b / n)·|accuracy_b − mean confidence_b|`` over bins ``(k/B, (k+1)/B]`` (the first
    also holds confidence 0); 15 bins as in Guo et al. (2017).
    """
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    p, labels = _probs_labels(probs, y)
    confidence = p.max(axis=1)
    correct = (p.argmax(axis=1) == labels).astype(np.float64)
    bins = np.clip(np.ceil(confidence * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    gap = np.bincount(bins, weights=correct - confidence, minlength=n_bins)
    return float(np.sum(np.abs(gap)) / len(labels))


def max_probability(probs: ArrayLike) -> np.ndarray:
    """Per-example top-class probability (Hendrycks & Gimpel's baseline; higher = in-dist.)."""
    p, _ = _probs_labels(probs)
    return p.max(axis=1)


def predictive_entropy(probs: ArrayLike) -> np.ndarray:
    """Per-example entropy ``−Σ_c p_c log p_c`` in nats (``0·log 0 = 0``; higher = OOD)."""
    p, _ = _probs_labels(probs)
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.sum(np.where(p > 0, p * np.log(p), 0.0), axis=1)


def mutual_information(sample_probs: ArrayLike) -> np.ndarray:
    """Per-example mutual information between label and parameters, in nats (higher = OOD).

    ``sample_probs`` is ``(S, n, C)``, one predictive per posterior sample; returns
    ``H(mean_s p_s) − mean_s H(p_s)`` ``(n,)``, ≥ 0 by concavity of entropy (rounding below 0 is
    clipped). Without storing the samples, use :class:`PredictiveAverage`.
    """
    p = _numpy(sample_probs)
    if p.ndim != 3 or p.shape[0] == 0:
        raise ValueError(f"sample_probs must be a non-empty (S, n, C) array, got shape {p.shape}")
    mean_entropy = np.mean([predictive_entropy(ps) for ps in p], axis=0)
    return np.maximum(predictive_entropy(p.mean(axis=0)) - mean_entropy, 0.0)


def ood_metrics(
    score_in: ArrayLike, score_out: ArrayLike, higher_is_in: bool = True
) -> dict[str, float]:
    """Out-of-distribution detection quality of a per-example score.

    ``higher_is_in=True`` for max-probability, ``False`` for entropy or mutual information.
    Returns (scikit-learn where it has the metric):

    - ``auroc``: area under the ROC curve, in-distribution positive (``roc_auc_score``);
    - ``aupr_in``: average precision with in-distribution positive (``average_precision_score``);
    - ``aupr_out``: average precision with out-of-distribution positive, score negated;
    - ``fpr95``: share of OOD examples accepted as in-distribution at the strictest threshold
      that still accepts at least 95% of in-distribution examples (the smallest ROC false-
      positive rate with true-positive rate ≥ 0.95; ``roc_curve``, in-distribution positive).
    """
    s_in = _numpy(score_in).ravel()
    s_out = _numpy(score_out).ravel()
    if s_in.size == 0 or s_out.size == 0:
        raise ValueError("ood_metrics needs at least one in- and one out-of-distribution score")
    sign = 1.0 if higher_is_in else -1.0
    score = sign * np.concatenate([s_in, s_out])
    is_in = np.concatenate([np.ones(s_in.size), np.zeros(s_out.size)])
    fpr, tpr, _ = roc_curve(is_in, score, drop_intermediate=False)
    return {
        "auroc": float(roc_auc_score(is_in, score)),
        "aupr_in": float(average_precision_score(is_in, score)),
        "aupr_out": float(average_precision_score(1.0 - is_in, -score)),
        "fpr95": float(fpr[np.searchsorted(tpr, 0.95, side="left")]),
    }


class PredictiveAverage:
    """Running average of predictive probabilities over posterior samples, without storing them.

    Keeps ``Σ_s p_s`` ``(n, C)`` and ``Σ_s H(p_s)`` ``(n,)`` on the device of the first update
    (float64, float32 on MPS), which is all the averaged predictive and the mutual information
    need. ``update`` one sample at a time, as the sampler produces them.
    """

    def __init__(self) -> None:
        self.count = 0
        self._sum_probs: torch.Tensor | None = None
        self._sum_entropy: torch.Tensor | None = None

    def update(self, probs: torch.Tensor) -> None:
        """Add one sample's ``(n, C)`` class probabilities."""
        if probs.ndim != 2:
            raise ValueError(f"probs must be (n, C), got shape {tuple(probs.shape)}")
        if self._sum_probs is None:
            dtype = torch.float32 if probs.device.type == "mps" else torch.float64
            self._sum_probs = torch.zeros(probs.shape, dtype=dtype, device=probs.device)
            self._sum_entropy = torch.zeros(probs.shape[0], dtype=dtype, device=probs.device)
        elif probs.shape != self._sum_probs.shape:
            raise ValueError(
                f"probs shape {tuple(probs.shape)} differs from earlier updates "
                f"{tuple(self._sum_probs.shape)}; use one PredictiveAverage per evaluation set"
            )
        p = probs.detach().to(self._sum_probs.dtype)
        self._sum_probs += p
        self._sum_entropy -= torch.special.xlogy(p, p).sum(dim=1)
        self.count += 1

    def state_dict(self) -> dict:
        """The running sums and count (to resume an interrupted run)."""
        return {"count": self.count, "sum_probs": self._sum_probs, "sum_entropy": self._sum_entropy}

    def load_state_dict(self, state: dict) -> None:
        self.count = int(state["count"])
        self._sum_probs, self._sum_entropy = state["sum_probs"], state["sum_entropy"]

    def _check(self) -> None:
        if self.count == 0:
            raise ValueError("PredictiveAverage is empty: call update() with a sample first")

    def mean(self) -> torch.Tensor:
        """The averaged predictive ``mean_s p_s``, ``(n, C)``."""
        self._check()
        return self._sum_probs / self.count

    def mutual_information(self) -> torch.Tensor:
        """``H(mean_s p_s) − mean_s H(p_s)`` per example, ``(n,)``, in nats, clipped at 0."""
        mean = self.mean()
        entropy_of_mean = -torch.special.xlogy(mean, mean).sum(dim=1)
        return (entropy_of_mean - self._sum_entropy / self.count).clamp_min(0.0)
