"""``sgmcmc_paper.analysis.robustness``: the gradient-masking checklist on synthetic tables
(each check yes, no and n/a), then end to end on a tiny model and its saturated copy."""

from __future__ import annotations

import copy
import math

import pandas as pd
import pytest
import torch
from test_attacks import train_mlp, two_class_images

from sgmcmc_paper.analysis import robustness
from sgmcmc_paper.analysis.attacks import FGSM, AttackSpec
from sgmcmc_paper.analysis.claims import Claim

N = 1000  # images behind each synthetic accuracy


def sweep_table(rows, images=N, **columns):
    """Rows ``(attack, steps, threat, mode, eps, accuracy)`` as :func:`robustness.eps_sweep`
    gives them."""
    table = pd.DataFrame(
        rows, columns=["attack", "steps", "threat", "mode", "eps", "accuracy"]
    ).assign(images=images, **columns)
    table["correct"] = (table["accuracy"] * table["images"]).round().astype(int)
    return table


def curve(attack, steps, accuracies, threat="per_sample", mode="averaged"):
    return [(attack, steps, threat, mode, e, a) for e, a in accuracies.items()]


# ---------------------------------------------------------------------- (a) iterative ≥ one step
def test_iterative_at_least_as_strong():
    fgsm = curve("FGSM", 1, {0.0: 0.97, 0.1: 0.60, 0.3: 0.10})
    stronger = sweep_table(fgsm + curve("PGD-40", 40, {0.0: 0.97, 0.1: 0.40, 0.3: 0.0}))
    check = robustness.iterative_at_least_as_strong(stronger, "SGD")
    assert check.verdict == "yes" and check.statistic == pytest.approx(-0.1)  # the largest
    assert check.text == "Iterative attacks are at least as strong as FGSM at every ε (SGD)."
    assert check.section == "4.4"
    assert "over 2 comparisons" in check.evidence  # ε = 0 is not compared
    # Within the binomial tolerance (2·sqrt(2·0.6·0.4/1000) ≈ 4.4 points) is not a failure...
    close = sweep_table(fgsm + curve("PGD-40", 40, {0.1: 0.63, 0.3: 0.05}))
    assert robustness.iterative_at_least_as_strong(close).verdict == "yes"
    # ...beyond it is: PGD weaker than FGSM is the sign of masking.
    weaker = sweep_table(fgsm + curve("PGD-40", 40, {0.1: 0.60, 0.3: 0.80}))
    check = robustness.iterative_at_least_as_strong(weaker)
    assert check.verdict == "no" and check.statistic == pytest.approx(0.70)
    assert "masking suspected" in check.evidence and "ε = 0.3" in check.evidence
    # With 50 images the same gap is within tolerance.
    assert (
        robustness.iterative_at_least_as_strong(
            sweep_table(fgsm + curve("PGD-40", 40, {0.1: 0.66}), images=50)
        ).verdict
        == "yes"
    )
    only_fgsm = robustness.iterative_at_least_as_strong(sweep_table(fgsm))
    assert only_fgsm.verdict == "n/a" and math.isnan(only_fgsm.statistic)


def test_checks_pool_seeds_and_compare_like_with_like():
    # Two seeds of 500 images each are pooled: FGSM (200 + 300)/1000 = 0.50, PGD
    # (150 + 300)/1000 = 0.45.
    rows = []
    for seed, (f, p) in enumerate(((0.40, 0.30), (0.60, 0.60))):
        rows.append(
            sweep_table(
                curve("FGSM", 1, {0.1: f}) + curve("PGD", 10, {0.1: p}), images=500, seed=seed
            )
        )
    pooled = pd.concat(rows)
    check = robustness.iterative_at_least_as_strong(pooled)
    assert check.verdict == "yes" and check.statistic == pytest.approx(-0.05)
    # Tables without a ``correct`` column pool accuracy × images.
    assert robustness.iterative_at_least_as_strong(pooled.drop(columns="correct")) == check
    # Threat models and modes are not mixed: a strong PGD on one does not excuse another.
    mixed = sweep_table(
        curve("FGSM", 1, {0.1: 0.5}, "per_sample")
        + curve("PGD", 10, {0.1: 0.0}, "per_sample")
        + curve("FGSM", 1, {0.1: 0.5}, "predictive")
        + curve("PGD", 10, {0.1: 0.9}, "predictive")
    )
    assert robustness.iterative_at_least_as_strong(mixed).verdict == "no"


# ---------------------------------------------------------------------- (b) unbounded ε
def test_unbounded_reaches_zero():
    bounded = {0.0: 0.97, 0.3: 0.2}
    reaches = sweep_table(
        curve("FGSM", 1, {**bounded, 1.0: 0.3}) + curve("PGD", 40, {**bounded, 1.0: 0.0})
    )
    check = robustness.unbounded_reaches_zero(reaches, "pSGLD")
    assert check.verdict == "yes" and check.statistic == 0.0  # the strongest attack counts
    stuck = sweep_table(curve("FGSM", 1, {**bounded, 1.0: 0.3}) + curve("PGD", 40, {1.0: 0.12}))
    check = robustness.unbounded_reaches_zero(stuck)
    assert check.verdict == "no" and check.statistic == pytest.approx(0.12)
    assert "12.0%" in check.evidence
    short = robustness.unbounded_reaches_zero(sweep_table(curve("PGD", 40, bounded)))
    assert short.verdict == "n/a" and "stops at ε = 0.3" in short.evidence


# ---------------------------------------------------------------------- (c) transfer
def test_transfer_not_stronger():
    white = sweep_table(
        curve("FGSM", 1, {0.1: 0.5, 0.3: 0.2}, "per_sample")
        + curve("PGD", 40, {0.1: 0.3, 0.3: 0.0}, "predictive")
        + curve("PGD", 40, {0.1: 0.0, 0.3: 0.0}, "as_released")  # not a white-box reference
    )
    weaker = sweep_table(
        curve("FGSM", 1, {0.1: 0.7, 0.3: 0.4}, "transfer")
        + curve("PGD", 40, {0.1: 0.6, 0.3: 0.1}, "transfer")
    )
    check = robustness.transfer_not_stronger(weaker, white, "KSGLD")
    assert check.verdict == "yes" and check.statistic == pytest.approx(-0.1)
    assert check.text == "Transfer attacks from SGD's model do not beat white-box ones (KSGLD)."
    stronger = sweep_table(curve("FGSM", 1, {0.1: 0.05, 0.3: 0.0}, "transfer"))
    check = robustness.transfer_not_stronger(stronger, white)
    assert check.verdict == "no" and check.statistic == pytest.approx(0.25)
    assert "masking suspected" in check.evidence
    none = robustness.transfer_not_stronger(stronger.iloc[:0], white)
    assert none.verdict == "n/a" and math.isnan(none.statistic)


# ---------------------------------------------------------------------- (d) saturation
def saturation_table(zero, ones=0.0):
    return pd.DataFrame(
        [
            {"mode": m, "max_prob_one": ones, "zero_gradient": z, "median_margin": 5.0, "images": N}
            for m, z in (("single", zero), ("per_sample", zero / 2), ("predictive", 0.0))
        ]
    )


def test_not_saturated():
    # Max probability 1 in float32 is reported but not decided on: the sign survives.
    check = robustness.not_saturated(saturation_table(0.0, ones=0.4), "SGLD")
    assert check.verdict == "yes" and "40.0%" in check.evidence
    check = robustness.not_saturated(saturation_table(0.6, ones=0.9))
    assert check.verdict == "no" and check.statistic == pytest.approx(0.6)
    assert "60.0% of images (single" in check.evidence
    assert robustness.not_saturated(saturation_table(0.0).iloc[:0]).verdict == "n/a"


# ---------------------------------------------------------------------- the verdict
def test_robustness_claim_needs_every_decided_check():
    def claim(verdict):
        return Claim("4.4", f"check {verdict}.", verdict, 0.0, "")

    allowed = robustness.robustness_claim([claim("yes"), claim("n/a")], "KSGLD")
    assert allowed.verdict == "yes" and allowed.statistic == 0
    assert allowed.evidence == "passes 1 of 2 checks (1 n/a)"
    refused = robustness.robustness_claim([claim("yes"), claim("no"), claim("no")])
    assert refused.verdict == "no" and refused.statistic == 2
    assert refused.evidence.startswith("no robustness claim: fails check no")
    assert robustness.robustness_claim([claim("n/a")]).verdict == "n/a"


def test_checklists_split_the_tables_by_method():
    good = curve("FGSM", 1, {0.3: 0.1, 1.0: 0.0}) + curve("PGD", 40, {0.3: 0.0, 1.0: 0.0})
    masked = curve("FGSM", 1, {0.3: 0.9, 1.0: 0.9}) + curve("PGD", 40, {0.3: 0.95, 1.0: 0.9})
    sweep = pd.concat([sweep_table(good, method="sgd"), sweep_table(masked, method="ksgld")])
    transfer = sweep_table(curve("PGD", 40, {0.3: 0.05}, "transfer"), method="ksgld")
    saturation = pd.concat(
        [saturation_table(0.0).assign(method="sgd"), saturation_table(0.5).assign(method="ksgld")]
    )
    claims = robustness.checklists(sweep, transfer, saturation)
    assert len(claims) == 10
    sgd, ksgld = claims[:5], claims[5:]
    assert [c.verdict for c in sgd] == ["yes", "yes", "n/a", "yes", "yes"]
    assert [c.verdict for c in ksgld] == ["no", "no", "no", "no", "no"]
    assert ksgld[-1].text.endswith("(ksgld).") and ksgld[-1].statistic == 4
    assert [c.row()["holds"] for c in sgd] == ["yes", "yes", "n/a", "yes", "yes"]


# ---------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def tiny():
    """A trained MLP (two posterior "samples"), a saturated copy (logits × 1e4) and 200
    test images; one thread (tiny matrices)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    models = [train_mlp(seed) for seed in range(2)]
    saturated = copy.deepcopy(models[0])
    with torch.no_grad():
        saturated[-1].weight.mul_(1e4)
        saturated[-1].bias.mul_(1e4)
    x, y = two_class_images(200, torch.Generator().manual_seed(100))
    yield models, saturated, x, y
    torch.set_num_threads(threads)


PGD_SHORT = AttackSpec("pgd", steps=10, restarts=3)
EPS = (0.0, 0.1, 0.3, 1.0)


def test_sweep_tables(tiny):
    models, _, x, y = tiny
    sweep = robustness.eps_sweep(models, x, y, EPS, attacks=(FGSM, PGD_SHORT))
    assert list(sweep.columns) == robustness.SWEEP_COLUMNS
    # Per-sample threat models: single and averaged; predictive: averaged.
    assert len(sweep) == 2 * (2 * 2 + 1) * len(EPS)
    clean = sweep[sweep.eps == 0]
    assert clean.accuracy.nunique() <= 2 and clean.accuracy.min() > 0.95
    assert (sweep[sweep.eps == 0.3].accuracy < 0.05).all()
    assert sweep.equals(robustness.eps_sweep(models, x, y, EPS, attacks=(FGSM, PGD_SHORT)))
    assert (sweep.correct == (sweep.accuracy * sweep.images).round()).all()
    # Transfer from a model to itself is the white-box predictive attack.
    transfer = robustness.transfer_sweep(models, models, x, y, (0.1,), attacks=(PGD_SHORT,))
    averaged = transfer[transfer["mode"] == "averaged"].iloc[0]
    white = sweep[(sweep.threat == "predictive") & (sweep.eps == 0.1) & (sweep.steps == 10)]
    assert averaged["accuracy"] == white["accuracy"].item() == averaged["source accuracy"]


def test_a_saturated_model_is_flagged_and_fgsm_is_weaker_than_pgd_on_it(tiny):
    models, saturated, x, y = tiny
    source = models[1:]  # the "SGD" model the transfer attacks come from
    tables = {}
    for name, ms in (("trained", models[:1]), ("saturated", [saturated])):
        tables[name] = (
            robustness.eps_sweep(ms, x, y, EPS, attacks=(FGSM, PGD_SHORT)),
            robustness.transfer_sweep(source, ms, x, y, (0.1, 0.3), attacks=(FGSM, PGD_SHORT)),
            robustness.saturation(ms, x, y),
        )
    sweep, _, saturation = tables["saturated"]
    # Logits × 1e4: the float32 softmax is one-hot, the gradient underflows to exactly zero,
    # FGSM does not move the images while PGD's random starts find the boundary.
    assert (saturation.zero_gradient > 0.9).all() and (saturation.max_prob_one == 1).all()
    at = sweep[(sweep.eps == 0.3) & (sweep.threat == "per_sample") & (sweep["mode"] == "single")]
    fgsm, pgd = at.set_index("attack").accuracy[["FGSM", PGD_SHORT.label]]
    assert fgsm > 0.95 and pgd < fgsm - 0.05
    checks = robustness.checklist(*tables["saturated"], "saturated")
    verdicts = {c.text.split(" (")[0]: c.verdict for c in checks}
    assert verdicts["The softmax is not saturated: gradient-sign attacks see a gradient"] == "no"
    assert verdicts["Transfer attacks from SGD's model do not beat white-box ones"] == "no"
    assert checks[-1].verdict == "no" and checks[-1].evidence.startswith("no robustness claim")
    # The trained model passes every check.
    trained = robustness.checklist(*tables["trained"], "trained")
    assert [c.verdict for c in trained] == ["yes"] * 5, [c.evidence for c in trained]
    saturation = tables["trained"][2]
    assert (saturation.zero_gradient == 0).all() and (saturation.max_prob_one == 0).all()
