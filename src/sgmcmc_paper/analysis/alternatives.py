"""Notebook 09, "Against the alternatives": one table of quality and compute per method, its
compute–quality Pareto front, and the chapter's claims.

Rows (:data:`ROWS`): the paper's SGD, FSGD, SGLD, pSGLD and KSGLD ("as described"), the deep
ensemble and the K-FAC Laplace approximation, and cyclical SGLD, pSGLD and KSGLD
(:mod:`sgmcmc_paper.protocol.alternatives`). Quality is read at the end of each run:
test accuracy, NLL, ECE and Brier from the ``table1`` window (SGD: its last model; the others:
their predictive), out-of-distribution AUROC of the maximum probability from the ``fig4``
window (notMNIST-style letters and Fashion-MNIST), and PGD accuracy at ε = 0.1 and 0.3 from the
window's robustness record where the run has one (SGD against its own model, the others
against their whole predictive), NaN ("not evaluated") where not.

Compute (:func:`compute_seconds`) is measured wall-clock time of one run on its device:
training (``provenance.timing.train``: every ensemble member, the Laplace fit and draws) plus
prediction, the models in the predictive times the measured time of one model's pass over the
test set (``epoch_eval / epoch_samples``, the run's own per-epoch evaluations). Attacks,
traces and the other evaluation sets are not charged.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from sgmcmc_paper.analysis.claims import PAIRED, Claim, decide
from sgmcmc_paper.analysis.tables import counts_at, paired_interval, run_fate
from sgmcmc_paper.protocol.paper import ALTERNATIVE_LABELS, LANGEVIN_METHODS, METHOD_LABELS

#: (label, method) -> row name, in table order.
ROWS: dict[tuple[str, str], str] = {
    **{("as described", m): METHOD_LABELS[m] for m in METHOD_LABELS},
    **{("alternatives", m): ALTERNATIVE_LABELS[m] for m in ("ensemble", "laplace")},
    **{("cyclical", m): "c" + METHOD_LABELS[m] for m in LANGEVIN_METHODS},
}
LANGEVIN_ROWS = tuple(
    name for (label, m), name in ROWS.items() if m in LANGEVIN_METHODS
)  # fmt: skip
OTHER_ROWS = tuple(name for name in ROWS.values() if name not in LANGEVIN_ROWS)
OOD_SETS = {"notmnist": "notMNIST AUROC", "fashion": "Fashion AUROC"}
PGD_EPS = (0.1, 0.3)
QUALITY = ("accuracy", "nll", "ece", "brier", *OOD_SETS.values(), *(f"PGD {e:g}" for e in PGD_EPS))
#: How claims name each quality.
QUALITY_LABELS = {"nll": "NLL", "ece": "ECE", "brier": "Brier score", "accuracy": "test accuracy"}
#: Whether a larger value of each quality is better.
HIGHER_IS_BETTER = {q: q not in ("nll", "ece", "brier") for q in QUALITY}


def _mode(row: str) -> str:
    return "single" if row == "SGD" else "averaged"


def predictive_models(result, row: str) -> int:
    """Models in the row's predictive: 1 for SGD, else the ``table1`` window's samples."""
    if row == "SGD":
        return 1
    return int(result.metrics["windows"].get("table1", {}).get("samples", 0))


def compute_seconds(result, row: str) -> dict[str, float]:
    """``train_s``, ``predict_s`` and their sum ``compute_s`` (module docstring); NaN where
    the run recorded no timing."""
    timing = (result.provenance or {}).get("timing", {})
    train = float(timing.get("train", math.nan))
    samples = timing.get("epoch_samples") or 0
    per_model = float(timing.get("epoch_eval", math.nan)) / samples if samples else math.nan
    predict = predictive_models(result, row) * per_model
    return {"train_s": train, "predict_s": predict, "compute_s": train + predict}


def _pgd(window: Mapping[str, Any], row: str, eps: float) -> float:
    """PGD accuracy at ``eps`` from a window's robustness record (NaN: not evaluated)."""
    threat = "per_sample" if row == "SGD" else "predictive"
    for r in window.get("robustness", {}).get("sweep", []):
        if (
            str(r.get("attack", "")).startswith("PGD")
            and r.get("threat") == threat
            and r.get("mode") == _mode(row)
            and math.isclose(float(r.get("eps", math.nan)), eps)
        ):
            return float(r["accuracy"])
    return math.nan


def summary(results: Mapping[tuple, Any]):
    """One row per run: ``row``, ``seed``, fate and ``counted`` (a run counts if it completed,
    :data:`~sgmcmc_paper.analysis.tables.FAILED_RUN_RULE`), :data:`QUALITY`, compute
    (:func:`compute_seconds`) and the device it ran on."""
    import pandas as pd

    rows = []
    for (label, method, seed), result in results.items():
        name = ROWS[(label, method)]
        fate = run_fate(result)
        windows = result.metrics.get("windows", {})
        final, ood = windows.get("table1", {}), windows.get("fig4", {})
        test = final.get("sets", {}).get("test", {}).get(_mode(name), {})
        row = {
            "row": name,
            "label": label,
            "method": method,
            "seed": seed,
            "fate": fate.status,
            "fate_epoch": fate.epoch,
            "counted": counts_at(fate, result.config.epochs),
            **{m: test.get(m, math.nan) for m in ("accuracy", "nll", "ece", "brier")},
        }
        for set_name, column in OOD_SETS.items():
            detection = ood.get("sets", {}).get(set_name, {}).get("detection", {})
            score = detection.get(_mode(name), {}).get("max_prob", {})
            row[column] = score.get("auroc", math.nan)
        for eps in PGD_EPS:
            row[f"PGD {eps:g}"] = _pgd(final, name, eps)
        row.update(compute_seconds(result, name))
        provenance = result.provenance or {}
        row["device"] = provenance.get("device_name") or provenance.get("device") or "—"
        rows.append(row)
    return pd.DataFrame(rows)


def means(frame, quality: str):
    """Per row, the mean over counted runs of ``quality`` and of ``compute_s``."""
    counted = frame[frame["counted"].astype(bool)]
    grouped = counted.groupby("row", sort=False)[[quality, "compute_s"]].mean()
    return grouped.dropna()


def pareto_front(frame, quality: str) -> list[str]:
    """The rows on the compute–``quality`` Pareto front of the means: no other row is at
    least as cheap and at least as good, and strictly one of them."""
    table = means(frame, quality)
    sign = 1.0 if HIGHER_IS_BETTER[quality] else -1.0
    front = []
    for name, row in table.iterrows():
        dominated = any(
            other["compute_s"] <= row["compute_s"]
            and sign * other[quality] >= sign * row[quality]
            and (
                other["compute_s"] < row["compute_s"] or sign * other[quality] > sign * row[quality]
            )
            for other_name, other in table.iterrows()
            if other_name != name
        )
        if not dominated:
            front.append(name)
    return front


# ---------------------------------------------------------------------- claims
def _cost(frame, row: str) -> float:
    values = frame[(frame["row"] == row) & frame["counted"].astype(bool)]["compute_s"]
    return float(values.mean()) if len(values) else math.nan


def matches_ensemble(frame, quality: str = "notMNIST AUROC", margin: float = 0.01) -> Claim:
    """(tested) At no more compute than the deep ensemble, the best Langevin sampler (highest
    mean ``quality`` among the Langevin rows whose mean compute is at most the ensemble's)
    matches it: the interval of the paired difference sampler − ensemble lies within
    ``± margin``. No when it does not (either side better, or too wide to tell); n/a without an
    ensemble, a sampler that cheap, or 3 seeds. Statistic: the interval's largest distance
    from 0."""
    name = QUALITY_LABELS.get(quality, quality)
    text = f"At equal compute, the best Langevin sampler matches a deep ensemble on {name}."
    test = f"{PAIRED}, best sampler − ensemble; yes if within ± {margin:g}"
    budget = _cost(frame, "Deep ensemble")
    if budget != budget:
        return decide("alternatives", text, None, None, "no ensemble run counts", test, "tested")
    cheap = [r for r in LANGEVIN_ROWS if _cost(frame, r) <= budget]
    if not cheap:
        evidence = f"no Langevin sampler costs at most the ensemble's {budget:.1f} s"
        return decide("alternatives", text, None, None, evidence, test, "tested")
    table = means(frame, quality)
    ranked = [r for r in cheap if r in table.index]
    if not ranked:
        return decide("alternatives", text, None, None, "no sampler measured it", test, "tested")
    best = max(ranked, key=lambda r: table.loc[r, quality])
    interval = paired_interval(frame, quality, best, "Deep ensemble", column="row")
    if not interval.testable:
        evidence = f"{best} − ensemble {interval.text(1, 3)}: {interval.note}"
        return decide("alternatives", text, None, None, evidence, test, "tested")
    distance = max(abs(interval.low), abs(interval.high))
    holds = -margin < interval.low and interval.high < margin
    if holds:
        status = "within the margin"
    elif interval.low >= margin or interval.high <= -margin:
        status = "outside the margin: " + (
            "sampler better" if interval.low > 0 else "ensemble better"
        )
    else:
        status = "wider than the margin: unresolved"
    evidence = (
        f"{best} ({_cost(frame, best):.1f} s) − ensemble ({budget:.1f} s) "
        f"{interval.text(1, 3)} over {interval.seeds} seeds, {status}"
    )
    return decide("alternatives", text, holds, distance, evidence, test, "tested")


def laplace_better_calibrated(frame) -> Claim:
    """(tested) The K-FAC Laplace predictive has a lower ECE than SGD's model: the paired
    interval Laplace − SGD lies below 0. Statistic: its upper end."""
    text = "The K-FAC Laplace approximation is better calibrated (ECE) than SGD."
    test = f"{PAIRED}, ECE Laplace − SGD; yes if < 0"
    interval = paired_interval(frame, "ece", "K-FAC Laplace", "SGD", column="row")
    if not interval.testable:
        evidence = f"Laplace − SGD {interval.text(1, 4)}: {interval.note}"
        return decide("alternatives", text, None, None, evidence, test, "tested")
    holds = interval.high < 0
    status = "below 0" if holds else ("above 0: contradicted" if interval.low > 0 else "spans 0")
    evidence = f"Laplace − SGD {interval.text(1, 4)} over {interval.seeds} seeds, {status}"
    return decide("alternatives", text, holds, interval.high, evidence, test, "tested")


def cyclical_helps(frame, quality: str = "nll") -> Claim:
    """(tested) The cyclical schedule improves ``quality`` over the plain sampler for most of
    SGLD, pSGLD and KSGLD: a win is a paired interval cyclical − plain wholly on the better
    side of 0. Yes with a majority of wins, no when the wins cannot reach one even if every
    untestable method won, n/a otherwise. Statistic: the wins."""
    better = "higher" if HIGHER_IS_BETTER[quality] else "lower"
    name = QUALITY_LABELS.get(quality, quality)
    text = f"Cyclical schedules improve {name} over the plain samplers for most methods."
    test = f"{PAIRED}, cyclical − plain per method; a win if wholly {better}"
    wins, untestable, parts = 0, 0, []
    for method in LANGEVIN_METHODS:
        plain = METHOD_LABELS[method]
        interval = paired_interval(frame, quality, "c" + plain, plain, column="row")
        if not interval.testable:
            untestable += 1
            parts.append(f"{plain} n/a ({interval.note})")
            continue
        win = interval.low > 0 if HIGHER_IS_BETTER[quality] else interval.high < 0
        wins += win
        parts.append(f"{plain} {interval.text(1, 3)}")
    majority = len(LANGEVIN_METHODS) // 2 + 1
    holds = True if wins >= majority else (False if wins + untestable < majority else None)
    evidence = f"{wins} of {len(LANGEVIN_METHODS)} win: " + "; ".join(parts)
    return decide("alternatives", text, holds, wins, evidence, test, "tested")


def samplers_dominated(frame, quality: str = "nll") -> Claim:
    """(tested) Every Langevin row is dominated on compute and ``quality``: some non-Langevin
    row (SGD, FSGD, ensemble, Laplace) costs at most as much (means) and is better (paired
    interval wholly on the better side of 0). No when some sampler with measured runs is
    dominated by none although every comparison with a cheaper row is testable; n/a
    otherwise. Statistic: the samplers dominated."""
    name = QUALITY_LABELS.get(quality, quality)
    text = f"Every Langevin sampler is dominated on compute and {name} by an alternative."
    test = f"{PAIRED}, alternative − sampler for each cheaper alternative (mean compute)"
    higher = HIGHER_IS_BETTER[quality]
    measured = set(means(frame, quality).index)
    dominated, free, open_, parts = 0, [], [], []
    for row in LANGEVIN_ROWS:
        if row not in measured:
            continue
        cost, by, untestable = _cost(frame, row), None, False
        for other in OTHER_ROWS:
            if other not in measured or not _cost(frame, other) <= cost:
                continue
            interval = paired_interval(frame, quality, other, row, column="row")
            if not interval.testable:
                untestable = True
            elif interval.low > 0 if higher else interval.high < 0:
                by = other
                break
        if by is not None:
            dominated += 1
            parts.append(f"{row} by {by}")
        elif untestable:
            open_.append(row)
        else:
            free.append(row)
    if not (dominated or free or open_):
        return decide("alternatives", text, None, None, "no sampler measured", test, "tested")
    holds = False if free else (True if not open_ else None)
    evidence = f"{dominated} dominated" + (f" ({'; '.join(parts)})" if parts else "")
    if free:
        evidence += f"; not dominated: {', '.join(free)}"
    if open_:
        evidence += f"; untestable (fewer than 3 seeds): {', '.join(open_)}"
    return decide("alternatives", text, holds, dominated, evidence, test, "tested")


def claims(frame) -> list[Claim]:
    """The chapter's claims: :func:`matches_ensemble` on notMNIST-style AUROC, Fashion-MNIST
    AUROC and NLL, :func:`laplace_better_calibrated`, :func:`cyclical_helps` on NLL and
    :func:`samplers_dominated` on NLL."""
    return [
        matches_ensemble(frame, "notMNIST AUROC"),
        matches_ensemble(frame, "Fashion AUROC"),
        matches_ensemble(frame, "nll", margin=0.01),
        laplace_better_calibrated(frame),
        cyclical_helps(frame, "nll"),
        samplers_dominated(frame, "nll"),
    ]
