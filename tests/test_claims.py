"""``sgmcmc_paper.analysis.claims``: each claim's verdict from synthetic per-seed tables on
which it must come out yes, no and (where too few seeds count, or nothing was measured) n/a,
with its kind, its test, the statistic it is decided on and its evidence in words."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from sgmcmc_paper.analysis import claims, tables
from sgmcmc_paper.analysis.claims import Claim
from sgmcmc_paper.analysis.tables import CONFIGURATIONS
from sgmcmc_paper.protocol import paper

LANGEVIN = ("sgld", "psgld", "ksgld")
SEEDS = (0, 1, 2, 3, 4)
#: Seed-to-seed noise shared by every method of a seed (same initialisation and batch order),
#: and a small method-specific wobble, so paired differences are tight and levels are not.
SHARED = np.array([-0.010, 0.004, 0.012, -0.006, 0.000])
WOBBLE = np.array([0.0004, -0.0003, 0.0001, -0.0002, 0.0000])


def _per_seed(levels: dict[str, float], value: str = "accuracy", seeds=SEEDS, **columns):
    """Rows ``method, seed, <value>, counted, fate`` around ``levels`` (per method); extra
    ``columns`` are constant. ``counted`` and ``fate`` may be given per method as
    ``{method: [bools]}`` / ``{method: status}`` through ``failed={method: (status, n)}``:
    the last ``n`` seeds of that method did not count."""
    failed = columns.pop("failed", {})
    rows = []
    for i, (method, level) in enumerate(levels.items()):
        status, n_failed = failed.get(method, ("complete", 0))
        for k, seed in enumerate(seeds):
            ok = k < len(seeds) - n_failed
            rows.append(
                {
                    **columns,
                    "method": method,
                    "seed": seed,
                    value: level + SHARED[k] + WOBBLE[(k + i) % len(WOBBLE)],
                    "counted": ok,
                    "fate": "complete" if ok else status,
                }
            )
    return pd.DataFrame(rows)


def _both(levels: dict[str, float], **kwargs) -> pd.DataFrame:
    """The same per-seed table in both configurations."""
    return pd.concat(
        [_per_seed(levels, configuration=c, **kwargs) for c in CONFIGURATIONS], ignore_index=True
    )


def test_a_claim_is_a_row_of_the_claims_table():
    record = claims.decide("4.1", "text", True, 0.5, "why", "a test", "tested")
    assert record == Claim("4.1", "text", "yes", 0.5, "why", "a test", "tested")
    assert record.row() == {
        "section": "4.1",
        "claim": "text",
        "kind": "tested",
        "test": "a test",
        "statistic": "0.5",
        "holds": "yes",
        "evidence": "why",
    }
    assert list(record.row()) == list(claims.COLUMNS)
    assert claims.decide("4.1", "text", False, 1, "").verdict == "no"
    untestable = claims.decide("4.1", "text", None, None, "")
    assert untestable.verdict == "n/a" and math.isnan(untestable.statistic)
    assert untestable.row()["statistic"] == "" and untestable.kind == "measured"
    assert [claims.verdict(h) for h in (True, False, None)] == ["yes", "no", "n/a"]
    with pytest.raises(ValueError, match="kind"):
        Claim("4.1", "text", "yes", 0.5, "why", "", "verified")


# ---------------------------------------------------------------------- 00: the search
def _sweep(used: float, budget: float = 5.0) -> dict:
    return {"budget": budget, "budget_used": used}


def test_search_budget():
    (ok,) = claims.search_budget({"a": _sweep(4.0), "b": _sweep(5.2)})
    assert ok.verdict == "yes" and ok.statistic == pytest.approx(5.2 / 5)
    assert ok.evidence == "budget used from 4.00× to 5.20× over 2 sweeps"
    assert ok.kind == "measured" and "1.05 × its budget" in ok.test
    (over,) = claims.search_budget({"a": _sweep(4.0), "b": _sweep(5.3)})
    assert over.verdict == "no" and over.statistic == pytest.approx(5.3 / 5)
    (none,) = claims.search_budget({})
    assert none.verdict == "n/a" and math.isnan(none.statistic)
    assert none.evidence == "no sweep recorded for this profile"
    assert none.section == "4"


# ---------------------------------------------------------------------- 01: Fig. 1
CLOSE = {"sgd": 0.980, "fsgd": 0.982, "sgld": 0.978, "psgld": 0.985, "ksgld": 0.979}
APART = {"sgd": 0.950, "fsgd": 0.952, "sgld": 0.970, "psgld": 0.975, "ksgld": 0.948}


def test_methods_agree():
    agree = claims.methods_agree(_both(CLOSE), "as released", 10)
    assert agree.verdict == "yes" and agree.kind == "tested"
    assert 0.7 < agree.statistic <= 1.0  # the largest bound of a pairwise interval, in points
    assert agree.evidence.startswith("every pair within ±") and "(epoch 10)" in agree.evidence
    assert "paired t, 95 % interval" in agree.test and "±1 point" in agree.test
    apart = claims.methods_agree(_both(APART), "as described", 10)
    assert apart.verdict == "no" and apart.statistic > 2.5
    assert "(contradicted" in apart.evidence and apart.text.endswith("(as described).")
    collapsed = claims.methods_agree(
        _both(CLOSE, failed={"ksgld": ("collapsed", 5)}), "as described", 10
    )
    assert collapsed.verdict == "n/a" and math.isnan(collapsed.statistic)
    assert "too few seeds" in collapsed.evidence and "5 collapsed" in collapsed.evidence


def test_a_tie_within_noise_is_not_agreement_unless_the_interval_says_so():
    """Means one point apart but seeds so noisy that the interval is wide: unresolved, no."""
    frame = _both(CLOSE)
    noisy = frame.method == "sgd"
    frame.loc[noisy, "accuracy"] += np.tile([0.03, -0.03, 0.02, -0.02, 0.0], 2)
    unresolved = claims.methods_agree(frame, "as released", 10)
    assert unresolved.verdict == "no" and "(unresolved" in unresolved.evidence


def test_averaging_helps_little():
    little = claims.averaging_helps_little(_both(CLOSE), "as released")
    assert little.verdict == "yes" and 0.5 < little.statistic <= 1.0
    assert little.evidence.startswith("largest: pSGLD − SGD +0.50 [")
    helps = claims.averaging_helps_little(_both(APART), "as released")
    assert helps.verdict == "no" and helps.statistic > 2.5
    assert helps.evidence.endswith("(contradicted)")
    few = claims.averaging_helps_little(_both(CLOSE, seeds=(0, 1)), "as released")
    assert few.verdict == "n/a" and "fewer than 3" in few.evidence


def _curve(level: float, seeds=SEEDS, spread: float = 1.0):
    frame = pd.DataFrame(
        [
            {"epoch": epoch, "seed": seed, "accuracy": level + spread * SHARED[k] / 4}
            for epoch in (9, 10)
            for k, seed in enumerate(seeds)
        ]
    )
    return tables.over_seeds(frame, "accuracy", ["epoch"])


LOGGED = pd.DataFrame({"run 1": [0.941, 0.945], "run 2": [0.943, 0.947]}, index=[9, 10])


def test_follows_logged_sgd():
    distance = claims.logged_distance(_curve(0.946), LOGGED)
    assert list(distance.index) == [9, 10] and (distance["count"] == 5).all()
    near = claims.follows_logged_sgd(distance, "sgd", "final model")
    assert near.verdict == "yes" and near.statistic <= 2.0
    assert near.text.startswith("SGD as released (final model)") and near.kind == "tested"
    assert "over epochs 9–10" in near.evidence
    far = claims.follows_logged_sgd(claims.logged_distance(_curve(0.90), LOGGED), "fsgd", "x")
    assert far.verdict == "no" and far.statistic > 2.0 and far.evidence.endswith("(contradicted)")
    few = claims.follows_logged_sgd(
        claims.logged_distance(_curve(0.946, seeds=(0, 1)), LOGGED), "sgd", "final model"
    )
    assert few.verdict == "n/a" and "too few seeds counted (epoch 9: 2 of 2)" in few.evidence


def test_accuracy_lists_fig1_claims_in_table_order():
    distances = {m: claims.logged_distance(_curve(0.946), LOGGED) for m in ("sgd", "fsgd")}
    records = claims.accuracy(_both(CLOSE), distances, 10)
    assert [r.section for r in records] == ["4.1"] * 6
    assert [r.verdict for r in records] == ["yes"] * 6
    assert "(as released)" in records[0].text and "(as described)" in records[3].text
    assert records[4].text.startswith("SGD") and records[5].text.startswith("FSGD")


# ---------------------------------------------------------------------- 02: Fig. 2
def test_mess_is_low():
    low = claims.mess_is_low(pd.DataFrame({"mess": [2.5, 9.0, 3.1]}), 100, 2.44)
    assert low.verdict == "yes" and low.statistic == 9.0 and low.kind == "measured"
    assert low.evidence == "largest window mESS 9.00 of 100 draws (floor 2.44)"
    high = claims.mess_is_low(pd.DataFrame({"mess": [2.5, 10.0]}), 100, 2.44)
    assert high.verdict == "no" and high.statistic == 10.0
    after_failure = pd.DataFrame({"mess": [2.5, 30.0], "counted": [True, False]})
    excluded = claims.mess_is_low(after_failure, 100, 2.44)
    assert excluded.verdict == "yes" and excluded.evidence.endswith(
        "1 window(s) after a run's failure excluded"
    )
    nothing = claims.mess_is_low(pd.DataFrame({"mess": [30.0], "counted": [False]}), 100, 2.44)
    assert nothing.verdict == "n/a" and nothing.evidence == "no window counts"


def test_not_stationary():
    def drift(*values, counted=None):
        frame = pd.DataFrame(
            {"window R-hat (weights)": values},
            index=pd.MultiIndex.from_tuples(
                [("as described", f"m{i}") for i in range(len(values))]
            ),
        )
        return frame if counted is None else frame.assign(counted=counted)

    moving = claims.not_stationary(drift(1.5, 1.2, 3.0))
    assert moving.verdict == "yes" and moving.statistic == 1.2 and moving.kind == "measured"
    assert moving.evidence == (
        "window R-hat of the weights from 1.20 to 3.00 over methods and configurations"
    )
    settled = claims.not_stationary(drift(1.5, 1.05))
    assert settled.verdict == "no" and settled.statistic == 1.05
    missing = claims.not_stationary(drift(1.5, math.nan))
    assert missing.verdict == "n/a" and missing.statistic == 1.5
    excluded = claims.not_stationary(drift(1.5, math.nan, counted=[3, 0]))
    assert excluded.verdict == "yes" and excluded.evidence.endswith(
        "no run counts for as described m1"
    )


def test_mixing_lists_both_claims():
    records = claims.mixing(
        pd.DataFrame({"mess": [3.0]}), pd.DataFrame({"window R-hat (weights)": [2.0]}), 100, 2.44
    )
    assert [(r.section, r.verdict) for r in records] == [("4.2", "yes"), ("4.2", "yes")]


# ---------------------------------------------------------------------- 03: Fig. 3
def _small(**levels: float) -> pd.DataFrame:
    return _per_seed({**dict.fromkeys(paper.METHODS, 0.9), **levels})


def test_langevin_underperform():
    below = claims.langevin_underperform(
        _small(sgd=0.95, sgld=0.90, psgld=0.93, ksgld=0.91), "5,000 images, as released"
    )
    assert below.verdict == "yes" and -2.1 < below.statistic < -1.9  # pSGLD's upper end
    assert below.evidence.startswith("SGLD − SGD -5.00 [")
    assert below.text == "The Langevin methods underperform SGD (5,000 images, as released)."
    assert below.kind == "tested" and "every interval < 0" in below.test
    above = claims.langevin_underperform(_small(sgd=0.95, psgld=0.96), "x")
    assert above.verdict == "no" and above.statistic > 0 and "(contradicted)" in above.evidence
    few = claims.langevin_underperform(
        _per_seed({**dict.fromkeys(paper.METHODS, 0.9), "sgd": 0.95}, seeds=(0, 1)), "x"
    )
    assert few.verdict == "n/a" and "fewer than 3" in few.evidence


def test_only_fsgd_matches():
    only = claims.only_fsgd_matches(_small(sgd=0.95, fsgd=0.945), "x")
    assert only.verdict == "yes" and 0.4 < only.statistic < 1.0
    assert only.evidence.endswith("Langevin methods shown more than a point from SGD: 3 of 3")
    fsgd_far = claims.only_fsgd_matches(_small(sgd=0.95, fsgd=0.93), "x")
    assert fsgd_far.verdict == "no" and fsgd_far.statistic > 1.9
    also = claims.only_fsgd_matches(_small(sgd=0.95, fsgd=0.95, ksgld=0.955), "x")
    assert also.verdict == "no" and also.evidence.endswith("2 of 3")
    diverged = claims.only_fsgd_matches(
        _per_seed(
            {**dict.fromkeys(paper.METHODS, 0.9), "sgd": 0.95, "fsgd": 0.95},
            failed={"sgld": ("diverged", 3)},
        ),
        "x",
    )
    assert diverged.verdict == "n/a" and "sgld: 3 diverged" in diverged.evidence


def test_small_mnist_per_size_and_configuration():
    finals = {
        size: _both({**dict.fromkeys(paper.METHODS, 0.9), "sgd": 0.95, "fsgd": 0.95})
        for size in (3000, 5000)
    }
    records = claims.small_mnist(finals, [3000, 5000])
    assert len(records) == 8 and {r.section for r in records} == {"4.3"}
    assert records[0].text.endswith("(3,000 images, as released).")
    assert records[-1].text == "Only FSGD matches SGD (5,000 images, as described)."
    assert [r.verdict for r in records] == ["yes"] * 8


# ---------------------------------------------------------------------- 04: Table 1
def _attacked(adversarial: dict[str, float], failed=None) -> pd.DataFrame:
    """The paper's attack at ε = 0.3 gives ``adversarial`` (per seed around it) for the
    paper's reading of each method; other readings, threats and ε give 0.9."""
    rows = []
    for configuration in CONFIGURATIONS:
        frame = _per_seed(adversarial, failed=failed or {}, configuration=configuration)
        for threat in ("as_released", "per_sample"):
            for eps in (0.1, 0.3):
                for mode in ("single", "averaged"):
                    part = frame.assign(threat=threat, eps=eps, mode=mode)
                    reading = np.array(
                        [mode == tables.paper_mode(m) for m in part.method], dtype=bool
                    )
                    if not (threat == "as_released" and eps == 0.3):
                        reading[:] = False
                    part.loc[~reading, "accuracy"] = 0.9
                    rows.append(part)
    return pd.concat(rows, ignore_index=True)


DEFEATED = {"sgd": 0.03, "fsgd": 0.04, "sgld": 0.05, "psgld": 0.035, "ksgld": 0.045}


def test_paper_attack_reads_the_paper_s_attack_and_prediction():
    attack = claims.paper_attack(_attacked(DEFEATED), "as released")
    assert set(attack.threat) == {"as_released"} and set(attack.eps) == {0.3}
    means = attack.groupby("method")["accuracy"].mean()
    assert means.to_dict() == pytest.approx(DEFEATED, abs=1e-3)


def test_fgsm_defeats():
    defeated = claims.fgsm_defeats(claims.paper_attack(_attacked(DEFEATED), "as released"), "x")
    assert defeated.verdict == "yes" and 0.05 < defeated.statistic < 0.10
    assert defeated.evidence.startswith("adversarial accuracy from 3.0% to 5.0% (means)")
    assert defeated.kind == "tested" and "logit" in defeated.test
    robust = claims.fgsm_defeats(
        claims.paper_attack(_attacked({**DEFEATED, "ksgld": 0.12}), "as released"), "x"
    )
    assert robust.verdict == "no" and robust.statistic > 0.10
    collapsed = claims.fgsm_defeats(
        claims.paper_attack(_attacked(DEFEATED, {"ksgld": ("collapsed", 5)}), "as described"), "x"
    )
    assert collapsed.verdict == "n/a"
    assert collapsed.evidence == "too few seeds for KSGLD: 0 of 5 (5 collapsed)"


def test_langevin_not_robust():
    attack = claims.paper_attack(_attacked(DEFEATED), "as released")
    better = claims.langevin_not_robust(attack, "as released")
    assert better.verdict == "no" and better.statistic > 1.0
    assert better.evidence.startswith("SGLD − SGD +2.00 [") and "(contradicted)" in better.evidence
    flat = claims.langevin_not_robust(
        claims.paper_attack(_attacked({**DEFEATED, "sgld": 0.035, "ksgld": 0.035}), "as released"),
        "x",
    )
    assert flat.verdict == "yes" and 0.5 < flat.statistic <= 1.0
    few = claims.langevin_not_robust(
        claims.paper_attack(_attacked(DEFEATED, {"sgld": ("diverged", 3)}), "as released"), "x"
    )
    assert few.verdict == "n/a" and "2 seed(s) counted for both" in few.evidence


def test_adversarial_from_the_attack_table():
    records = claims.adversarial(_attacked({**DEFEATED, "sgld": 0.035, "ksgld": 0.035}))
    assert [(r.section, r.verdict) for r in records] == [("4.4", "yes")] * 4
    assert records[2].text.endswith("(as described).")


# ---------------------------------------------------------------------- 05: Fig. 4
CONFIDENCE = {"sgd": 0.9, "fsgd": 0.7, "sgld": 0.6, "psgld": 0.65, "ksgld": 0.5}


def _confidence(**levels: float):
    return _per_seed({**CONFIDENCE, **levels}, value="value")


def test_sgd_most_confident():
    most = claims.sgd_most_confident(_confidence(), "as released")
    assert most.verdict == "yes" and 0.19 < most.statistic < 0.2
    assert most.evidence.startswith("mean max probability, SGD − FSGD +0.200 [")
    assert most.kind == "tested" and "SGD − each other method" in most.test
    less = claims.sgd_most_confident(_confidence(ksgld=0.95), "as released")
    assert less.verdict == "no" and less.statistic < 0 and less.evidence.endswith("(contradicted)")
    tie = claims.sgd_most_confident(_confidence(ksgld=0.9), "as released")
    assert tie.verdict == "no" and tie.evidence.endswith("(unresolved)")  # a tie is no win
    collapsed = claims.sgd_most_confident(
        _per_seed(CONFIDENCE, value="value", failed={"ksgld": ("collapsed", 5)}), "x"
    )
    assert collapsed.verdict == "n/a"


def test_averaging_less_confident():
    less = claims.averaging_less_confident(_confidence(), "as released")
    assert less.verdict == "yes" and -0.2 < less.statistic < -0.19
    more = claims.averaging_less_confident(_confidence(fsgd=0.92), "as released")
    assert more.verdict == "no" and more.statistic > 0
    few = claims.averaging_less_confident(
        _per_seed(CONFIDENCE, value="value", seeds=(0, 1)), "as released"
    )
    assert few.verdict == "n/a" and math.isnan(few.statistic)


AUROC = {"sgd": 0.70, "fsgd": 0.79, "sgld": 0.79, "psgld": 0.80, "ksgld": 0.78}


def test_detection_significant():
    significant = claims.detection_significant(_per_seed(AUROC, value="value"), "as released")
    assert significant.verdict == "yes" and 0.07 < significant.statistic < 0.08
    assert significant.evidence.startswith("AUROC, SGLD − SGD +0.090 [")
    assert significant.text.endswith("(as released; abstract).")
    noisy = _per_seed(AUROC, value="value")
    noisy.loc[noisy.method == "sgd", "value"] += [0.2, -0.2, 0.15, -0.15, 0.0]
    not_significant = claims.detection_significant(noisy, "as described")
    assert not_significant.verdict == "no" and not_significant.evidence.endswith("(unresolved)")
    one_seed = claims.detection_significant(_per_seed(AUROC, value="value", seeds=(0,)), "x")
    assert one_seed.verdict == "n/a" and math.isnan(one_seed.statistic)
    assert "1 seed(s) counted for both, fewer than 3" in one_seed.evidence


def test_out_of_distribution_from_the_window_table():
    confidence = _both(CONFIDENCE, value="value").assign(set="notmnist", metric="mean_max_prob")
    auroc = _both(AUROC, value="value").assign(set="notmnist", metric="max_prob/auroc")
    fashion = confidence.assign(set="fashion", value=1.0)
    records = claims.out_of_distribution(pd.concat([confidence, auroc, fashion]))
    assert [r.verdict for r in records] == ["yes"] * 6
    assert records[3].text.startswith("SGD is the most confident")
    assert "(as described)" in records[3].text


# ---------------------------------------------------------------------- 06: gradient or noise
def _exact(eq1_error: float, eq2_error: float, lyapunov_error: float = 1.0) -> pd.DataFrame:
    """One target: SGLD eq. 1, pSGLD eq. 1 and eq. 2, errors in units of a 0.01 standard
    error, verdicts as ``exact.comparison_table`` draws them (3 standard errors)."""
    rows = []
    for sampler, rule, error in (
        ("sgld", "eq1", 0.5),
        ("psgld", "eq1", eq1_error),
        ("psgld", "eq2", eq2_error),
        ("psgld", "eq2_printed", eq2_error + 10),
    ):
        rows.append(
            {
                "sampler": sampler,
                "rule": rule,
                "error vs posterior": 0.01 * error,
                "se (posterior)": 0.01,
                "matches posterior": error <= 3,
                "error vs Lyapunov": 0.01 * lyapunov_error,
                "se (Lyapunov)": 0.01,
                "matches Lyapunov": lyapunov_error <= 3,
            }
        )
    return pd.DataFrame(rows)


def test_eq1_samples_posterior():
    matches = claims.eq1_samples_posterior(_exact(2.0, 40.0))
    assert matches.verdict == "yes" and matches.statistic == pytest.approx(2.0)
    assert matches.evidence == "every eq. 1 chain within 2.0 standard errors of H⁻¹"
    assert matches.kind == "tested" and "3 Monte Carlo standard errors" in matches.test
    misses = claims.eq1_samples_posterior(_exact(4.0, 40.0))
    assert misses.verdict == "no" and misses.statistic == pytest.approx(4.0)


def test_eq2_samples_posterior():
    misses = claims.eq2_samples_posterior(_exact(2.0, 40.0))
    assert misses.verdict == "no" and misses.statistic == pytest.approx(40.0)
    assert misses.evidence == "eq. 2 chains miss H⁻¹ by at least 40 standard errors"
    matches = claims.eq2_samples_posterior(_exact(2.0, 1.0).query("rule != 'eq2_printed'"))
    assert matches.verdict == "yes" and matches.statistic == pytest.approx(1.0)


def test_chains_sample_lyapunov():
    every = claims.chains_sample_lyapunov(_exact(2.0, 40.0, lyapunov_error=2.5))
    assert every.verdict == "yes" and every.statistic == pytest.approx(2.5)
    assert every.evidence == "largest error 2.5 standard errors"
    off = claims.chains_sample_lyapunov(_exact(2.0, 40.0, lyapunov_error=6.0))
    assert off.verdict == "no" and off.statistic == pytest.approx(6.0)


def _summary(eq1: list[float], eq2: list[float], method: str = "psgld", counted=None):
    rows = [
        {
            "label": label,
            "method": m,
            "seed": seed,
            "accuracy": accuracy,
            "counted": True if counted is None or label != "eq. 1" else counted[seed],
            "fate": "complete"
            if counted is None or label != "eq. 1" or counted[seed]
            else "diverged",
        }
        for m in ("psgld", "ksgld")
        for label, values in (("eq. 1", eq1), ("eq. 2", eq2))
        for seed, accuracy in enumerate(values if m == method else [0.9] * len(values))
    ]
    return pd.DataFrame(rows)


def test_eq1_more_accurate():
    eq1, eq2 = [0.95, 0.96, 0.97], [0.90, 0.905, 0.92]
    diff = np.subtract(eq1, eq2)
    low = diff.mean() - stats.t.ppf(0.975, 2) * diff.std(ddof=1) / math.sqrt(3)
    better = claims.eq1_more_accurate(_summary(eq1, eq2), "psgld")
    assert better.verdict == "yes" and better.statistic == pytest.approx(100 * low)
    assert better.evidence.startswith("eq. 1 − eq. 2 +5.17 [") and "over 3 seeds" in better.evidence
    assert better.text == "On the CNN, pSGLD with eq. 1 is more accurate than with eq. 2."
    worse = claims.eq1_more_accurate(_summary(eq2, eq1, method="ksgld"), "ksgld")
    assert worse.verdict == "no" and worse.evidence.endswith("(contradicted)")
    noisy = claims.eq1_more_accurate(_summary([0.95, 0.90, 0.97], [0.93, 0.94, 0.92]), "psgld")
    assert noisy.verdict == "no" and noisy.evidence.endswith("(unresolved)")
    diverged = claims.eq1_more_accurate(_summary(eq1, eq2, counted=[True, False, True]), "psgld")
    assert diverged.verdict == "n/a" and "eq. 1: 1 diverged" in diverged.evidence
    one = claims.eq1_more_accurate(_summary([0.95], [0.90]), "psgld")
    assert one.verdict == "n/a" and math.isnan(one.statistic)
    assert one.evidence.startswith("eq. 1 − eq. 2 +5.00 points (1 seed)")


def test_gradient_or_noise_lists_exact_then_cnn_claims():
    records = claims.gradient_or_noise(
        _exact(2.0, 40.0), _summary([0.95, 0.96, 0.97], [0.90, 0.905, 0.92])
    )
    assert [(r.section, r.verdict) for r in records] == [
        ("eq. 1", "yes"),
        ("eq. 2", "no"),
        ("all", "yes"),
        ("CNN", "yes"),
        ("CNN", "no"),  # KSGLD: the same accuracy under both rules, a tie
    ]


# ---------------------------------------------------------------------- 07: noise conventions
def _temperatures(*values: float) -> pd.DataFrame:
    return pd.DataFrame({"T": values}, index=["MNIST", "small described", "small released"])


def test_mnist_temperature():
    about = claims.mnist_temperature(_temperatures(0.02**3 * 60_000, 0.04, 0.024)["T"])
    assert about.verdict == "yes" and about.statistic == pytest.approx(0.48)
    assert about.evidence == "T = lr³·N = 0.480"
    assert about.kind == "derived" and about.test.startswith("arithmetic on the released")
    off = claims.mnist_temperature(_temperatures(0.49, 0.04, 0.024)["T"])
    assert off.verdict == "no" and off.statistic == 0.49


def test_small_mnist_colder():
    """Derived from constants: never n/a (nothing to be missing)."""
    colder = claims.small_mnist_colder(_temperatures(0.48, 0.0408, 0.0238)["T"])
    assert colder.verdict == "yes" and colder.statistic == pytest.approx(0.0008)
    assert colder.evidence == "T = 0.041 and 0.024" and colder.kind == "derived"
    off = claims.small_mnist_colder(_temperatures(0.48, 0.04, 0.026)["T"])
    assert off.verdict == "no" and off.statistic == pytest.approx(0.002)


def _noise(all_weights: float) -> pd.DataFrame:
    return pd.DataFrame(
        {"minibatch / injected variance per step": [0.05, 20.0, all_weights]},
        index=["conv1.weight", "fc2.bias", "all weights"],
    )


def test_minibatch_noise_order():
    same = claims.minibatch_noise_order(_noise(3.0))
    assert same.verdict == "yes" and same.statistic == 3.0 and same.kind == "measured"
    assert same.evidence == (
        "ratio over all weights 3.00e+00, per tensor from 5.0e-02 to 2.0e+01 (at initialisation)"
    )
    larger = claims.minibatch_noise_order(_noise(12.0))
    assert larger.verdict == "no" and larger.statistic == 12.0


def _conventions(calibrated: dict[str, float], failed=None) -> pd.DataFrame:
    """``run_summary``-like rows: the paper convention at 0.95 accuracy and NLL 0.2 for every
    method, the calibrated chain at ``calibrated`` (accuracy; NLL 0.1)."""
    paper_rows = _per_seed(dict.fromkeys(LANGEVIN, 0.95), label="as described")
    calibrated_rows = _per_seed(calibrated, label="langevin T=1", failed=failed or {})
    frame = pd.concat([paper_rows, calibrated_rows], ignore_index=True)
    return frame.assign(nll=np.where(frame.label == "as described", 0.2, 0.1))


def test_calibrated_wins():
    most = claims.calibrated_wins(
        _conventions({"sgld": 0.96, "psgld": 0.97, "ksgld": 0.90}), LANGEVIN, "accuracy", True
    )
    assert most.verdict == "yes" and most.statistic == 2 and most.kind == "tested"
    assert most.evidence.startswith("2 of 3 methods win: SGLD +1.00 [")
    assert most.text == (
        "Calibrated chains (T = 1) beat the paper convention in accuracy for most methods."
    )
    few = claims.calibrated_wins(
        _conventions({"sgld": 0.96, "psgld": 0.94, "ksgld": 0.90}), LANGEVIN, "accuracy", True
    )
    assert few.verdict == "no" and few.statistic == 1
    tie = claims.calibrated_wins(
        _conventions({"sgld": 0.95, "psgld": 0.95, "ksgld": 0.96}), LANGEVIN, "accuracy", True
    )
    assert tie.verdict == "no" and tie.statistic == 1  # ties are not wins
    lower_nll = claims.calibrated_wins(
        _conventions(dict.fromkeys(LANGEVIN, 0.9)), LANGEVIN, "nll", False
    )
    assert lower_nll.verdict == "yes" and lower_nll.statistic == 3
    undecided = claims.calibrated_wins(
        _conventions({"sgld": 0.96, "psgld": 0.94, "ksgld": 0.97}, {"ksgld": ("diverged", 3)}),
        LANGEVIN,
        "accuracy",
        True,
    )
    assert undecided.verdict == "n/a" and "KSGLD n/a" in undecided.evidence


def test_noise_conventions_skip_metrics_the_runs_lack():
    temperatures = _temperatures(0.48, 0.04, 0.024)
    summary = _conventions({"sgld": 0.96, "psgld": 0.97, "ksgld": 0.90})
    records = claims.noise_conventions(temperatures, _noise(3.0), summary, LANGEVIN)
    assert [(r.section, r.verdict, r.kind) for r in records] == [
        ("§2", "yes", "derived"),
        ("§2", "yes", "derived"),
        ("§2", "yes", "measured"),
        ("beyond", "yes", "tested"),
        ("beyond", "yes", "tested"),
    ]
    without_nll = claims.noise_conventions(
        temperatures, _noise(3.0), summary.drop(columns="nll"), LANGEVIN
    )
    assert len(without_nll) == 4 and without_nll[-1].text.endswith("in accuracy for most methods.")


def _fates(label: str, statuses: list[str]) -> pd.DataFrame:
    return pd.DataFrame(
        {"run": label, "seed": range(len(statuses)), "fate": statuses, "fate epoch": math.nan}
    )


def test_completes_every_seed_says_no_on_one_diverged_seed_and_waits_for_untrained_ones():
    label = "after: eq. 1 T=1"
    assert claims.completes_every_seed(_fates(label, ["complete"] * 5), label, 5).verdict == "yes"
    one_failed = claims.completes_every_seed(
        _fates(label, ["complete"] * 4 + ["diverged"]), label, 5
    )
    assert one_failed.verdict == "no" and one_failed.statistic == 4
    pending = claims.completes_every_seed(
        _fates(label, ["complete"] * 3 + ["not trained"] * 2), label, 5
    )
    assert pending.verdict == claims.UNTRAINED


def _after_summary(ksgld: list[float], sgld: list[float]) -> pd.DataFrame:
    rows = [
        {"label": label, "method": method, "seed": seed, "accuracy": value, "counted": True}
        for label, method, values in (
            ("after: as described", "ksgld", ksgld),
            ("as described", "sgld", sgld),
        )
        for seed, value in enumerate(values)
    ]
    return pd.DataFrame(rows)


def test_fixed_ksgld_matches_sgld_unless_sgld_is_significantly_better():
    sgld = [0.990, 0.991, 0.989, 0.992, 0.990]
    close = claims.fixed_ksgld_matches_sgld(
        _after_summary([0.989, 0.992, 0.988, 0.991, 0.991], sgld)
    )
    assert close.verdict == "yes" and close.kind == "tested"
    worse = claims.fixed_ksgld_matches_sgld(
        _after_summary([0.960, 0.962, 0.958, 0.961, 0.959], sgld)
    )
    assert worse.verdict == "no" and worse.statistic < 0
    few = claims.fixed_ksgld_matches_sgld(_after_summary([0.99, 0.99], sgld[:2]))
    assert few.verdict == "n/a"
