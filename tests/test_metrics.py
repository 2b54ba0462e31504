"""Metrics against hand-computed values and against known answers on synthetic predictors."""

import math

import numpy as np
import pytest
import torch
from _devices import needs_cuda
from scipy.stats import norm

from sgmcmc_paper.analysis.metrics import (
    MIN_PROB,
    PredictiveAverage,
    accuracy,
    brier,
    ece,
    max_probability,
    mutual_information,
    nll,
    ood_metrics,
    predictive_entropy,
)

PROBS = np.array([[0.72, 0.28], [0.17, 0.83], [0.65, 0.35]])
LABELS = np.array([0, 0, 0])


def test_small_example_by_hand():
    before = PROBS.copy()
    assert accuracy(PROBS, LABELS) == pytest.approx(2 / 3)
    assert nll(PROBS, LABELS) == pytest.approx(
        -(math.log(0.72) + math.log(0.17) + math.log(0.65)) / 3
    )
    # Brier: per example (p0 - 1)^2 + p1^2, then the mean.
    by_hand = ((0.28**2 + 0.28**2) + (0.83**2 + 0.83**2) + (0.35**2 + 0.35**2)) / 3
    assert brier(PROBS, LABELS) == pytest.approx(by_hand)
    # Ten bins: each example alone in its bin; |accuracy - confidence| = .28, .83, .35.
    assert ece(PROBS, LABELS, n_bins=10) == pytest.approx((0.28 + 0.83 + 0.35) / 3)
    # One bin: |mean accuracy - mean confidence|.
    assert ece(PROBS, LABELS, n_bins=1) == pytest.approx(abs(2 / 3 - (0.72 + 0.83 + 0.65) / 3))
    np.testing.assert_allclose(max_probability(PROBS), [0.72, 0.83, 0.65])
    np.testing.assert_array_equal(PROBS, before)  # inputs are never modified


def test_torch_inputs_give_python_floats():
    p, y = torch.tensor(PROBS, dtype=torch.float32), torch.tensor(LABELS)
    value = nll(p, y)
    assert isinstance(value, float)
    assert value == pytest.approx(nll(PROBS, LABELS), rel=1e-6)


def test_nll_floors_zero_probabilities():
    assert nll(np.array([[1.0, 0.0]]), np.array([1])) == pytest.approx(-math.log(MIN_PROB))


def test_brier_of_uniform_predictor():
    n_classes = 10
    probs = np.full((4, n_classes), 1 / n_classes)
    assert brier(probs, np.arange(4)) == pytest.approx(1 - 1 / n_classes)


def test_bad_labels_are_rejected():
    with pytest.raises(ValueError, match="labels must lie"):
        accuracy(PROBS, np.array([0, 2, 0]))
    with pytest.raises(ValueError, match="shape"):
        nll(PROBS, np.array([0, 1]))


def _synthetic_predictor(rng, n, n_classes, accuracy_of_confidence):
    """Top-class confidence c ~ U(0.5, 1), other classes share 1 - c; correct w.p. a(c)."""
    confidence = rng.uniform(0.5, 1.0, n)
    predicted = rng.integers(0, n_classes, n)
    probs = np.repeat(((1 - confidence) / (n_classes - 1))[:, None], n_classes, axis=1)
    probs[np.arange(n), predicted] = confidence
    correct = rng.random(n) < accuracy_of_confidence(confidence)
    wrong = (predicted + rng.integers(1, n_classes, n)) % n_classes
    return probs, np.where(correct, predicted, wrong)


# ECE = Σ_b (n_b/n)|Z_b| with Z_b the bin's mean of (correct - confidence), SD ≤ 0.5/sqrt(n_b).
# E[ECE] ≤ Σ_b sqrt(n_b)·0.5/n ≤ 0.5·sqrt(B/n) (Cauchy-Schwarz) when calibrated, and
# SD(ECE) ≤ sqrt(Σ_b (n_b/n)²·0.25/n_b) = 0.5/sqrt(n); tolerance: that bias bound + 5 SD.
N_ECE, BINS = 100_000, 15


def test_ece_of_calibrated_predictor_is_near_zero():
    probs, y = _synthetic_predictor(np.random.default_rng(0), N_ECE, 10, lambda c: c)
    assert ece(probs, y, BINS) < 0.5 * math.sqrt(BINS / N_ECE) + 5 * 0.5 / math.sqrt(N_ECE)


def test_ece_recovers_planted_overconfidence():
    planted = 0.2
    probs, y = _synthetic_predictor(np.random.default_rng(1), N_ECE, 10, lambda c: c - planted)
    # Every bin's gap is -0.2 in expectation, far from 0, so |.| adds no bias: 5 SD only.
    assert ece(probs, y, BINS) == pytest.approx(planted, abs=5 * 0.5 / math.sqrt(N_ECE))
    assert accuracy(probs, y) == pytest.approx(0.75 - planted, abs=5 * 0.5 / math.sqrt(N_ECE))


def test_entropy_and_mutual_information_known_answers():
    n_classes = 7
    np.testing.assert_allclose(
        predictive_entropy(np.full((2, n_classes), 1 / n_classes)), math.log(7)
    )
    np.testing.assert_allclose(predictive_entropy(np.eye(3)), 0.0)
    disagreeing = np.array([[[1.0, 0.0]], [[0.0, 1.0]]])  # two confident samples, opposite
    np.testing.assert_allclose(mutual_information(disagreeing), [math.log(2)])
    agreeing = np.repeat(np.random.default_rng(2).dirichlet(np.ones(5), 4)[None], 3, axis=0)
    np.testing.assert_allclose(mutual_information(agreeing), 0.0, atol=1e-12)


def test_predictive_average_matches_stored_samples():
    rng = np.random.default_rng(3)
    samples = rng.dirichlet(np.full(10, 0.3), size=(20, 50))  # (S, n, C)
    average = PredictiveAverage()
    for s in samples:
        average.update(torch.tensor(s, dtype=torch.float32))
    assert average.count == 20
    assert average.mean().device == torch.device("cpu")
    as_float32 = samples.astype(np.float32).astype(np.float64)
    np.testing.assert_allclose(average.mean().numpy(), as_float32.mean(axis=0), rtol=1e-12)
    mi = average.mutual_information().numpy()
    np.testing.assert_allclose(mi, mutual_information(as_float32), rtol=1e-9, atol=1e-12)
    assert (mi >= 0).all() and (mi > 0).any()


def test_predictive_average_mutual_information_zero_when_samples_agree():
    probs = torch.softmax(torch.randn(30, 10, generator=torch.Generator().manual_seed(4)), dim=1)
    average = PredictiveAverage()
    for _ in range(5):
        average.update(probs)
    mi = average.mutual_information()
    assert mi.shape == (30,)
    assert (mi >= 0).all() and mi.max() < 1e-12


def test_predictive_average_rejects_misuse():
    average = PredictiveAverage()
    with pytest.raises(ValueError, match="empty"):
        average.mean()
    average.update(torch.full((3, 2), 0.5))
    with pytest.raises(ValueError, match="differs"):
        average.update(torch.full((4, 2), 0.5))


N_OOD = 5000


def test_ood_metrics_on_identical_scores():
    rng = np.random.default_rng(5)
    result = ood_metrics(rng.standard_normal(N_OOD), rng.standard_normal(N_OOD))
    # Null SD of the AUROC (Mann-Whitney): sqrt((n1 + n2 + 1) / (12 n1 n2)); 5 SD.
    assert result["auroc"] == pytest.approx(0.5, abs=5 * math.sqrt((2 * N_OOD + 1) / 12) / N_OOD)
    # FPR95 = 0.95: binomial SD of the OOD share and of the in-distribution 5% quantile, 5 SD.
    assert result["fpr95"] == pytest.approx(0.95, abs=5 * math.sqrt(2 * 0.05 * 0.95 / N_OOD))


def test_ood_metrics_on_separated_scores_both_orientations():
    rng = np.random.default_rng(6)
    s_in, s_out = rng.uniform(1, 2, N_OOD), rng.uniform(0, 1, N_OOD)
    perfect = {"auroc": 1.0, "aupr_in": 1.0, "aupr_out": 1.0, "fpr95": 0.0}
    assert ood_metrics(s_in, s_out) == perfect
    assert ood_metrics(-s_in, -s_out, higher_is_in=False) == perfect
    swapped = ood_metrics(s_out, s_in)
    assert swapped["auroc"] == 0.0 and swapped["fpr95"] == 1.0


def test_ood_metrics_on_gaussian_shift():
    shift = 2.0
    rng = np.random.default_rng(7)
    result = ood_metrics(rng.normal(shift, 1, N_OOD), rng.standard_normal(N_OOD))
    auroc = norm.cdf(shift / math.sqrt(2))
    # Birnbaum-Klose bound Var(AUROC) <= A(1 - A) / min(n_in, n_out); 5 SD.
    assert result["auroc"] == pytest.approx(auroc, abs=5 * math.sqrt(auroc * (1 - auroc) / N_OOD))
    # Threshold t = shift - z_.95 accepts 95% of in-dist.; FPR = P(N(0,1) > t). Its SD: the
    # binomial OOD share, plus the 5% quantile's SD sqrt(.05·.95/n)/φ(z_.05) times φ(t).
    t = shift - norm.ppf(0.95)
    fpr = norm.sf(t)
    quantile_sd = math.sqrt(0.05 * 0.95 / N_OOD) / norm.pdf(norm.ppf(0.05)) * norm.pdf(t)
    sd = math.hypot(quantile_sd, math.sqrt(fpr * (1 - fpr) / N_OOD))
    assert result["fpr95"] == pytest.approx(fpr, abs=5 * sd)


@needs_cuda
def test_predictive_average_stays_on_cuda_and_metrics_accept_cuda_tensors():
    probs = torch.softmax(torch.randn(8, 4, 10, device="cuda"), dim=2)
    average = PredictiveAverage()
    for p in probs:
        average.update(p)
    assert average.mean().device.type == "cuda"
    assert average.mutual_information().device.type == "cuda"
    y = torch.zeros(4, dtype=torch.long, device="cuda")
    assert nll(average.mean(), y) == pytest.approx(nll(average.mean().cpu(), y.cpu()))
    np.testing.assert_allclose(
        average.mutual_information().cpu().numpy(), mutual_information(probs), atol=1e-6
    )
