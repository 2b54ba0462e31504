"""Robustness in the runs (#27): PGD, the ε sweep, transfer attacks and saturation stored at a
window, Table 1's PGD column, and robustness claims gated on the gradient-masking checklist."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from _engine import install_synthetic, tiny_config

from sgmcmc_paper.analysis import claims, robustness, tables
from sgmcmc_paper.analysis.claims import decide
from sgmcmc_paper.engine import robustness as engine_robustness
from sgmcmc_paper.engine.rundata import load_run_data
from sgmcmc_paper.engine.store import find_result, run_or_load
from sgmcmc_paper.protocol import plan
from sgmcmc_paper.protocol.config import EVALUATION_FIELDS, ConfigError, RunConfig
from sgmcmc_paper.protocol.profiles import as_released, get_profile

ROBUST = {"robustness_size": 8, "pgd_steps": 3, "robustness_eps": (0.0, 0.1, 0.3, 1.0)}


@pytest.fixture
def stored_pair(tmp_path, monkeypatch):
    """A tiny SGLD run attacked with the PGD examples of a tiny SGD run, which the store
    trains first because the SGLD run needs it."""
    install_synthetic(monkeypatch)
    source = tiny_config("sgd", **ROBUST)
    target = tiny_config("sgld", **ROBUST)
    monkeypatch.setattr(
        engine_robustness, "transfer_source", lambda c: source if c.key() == target.key() else None
    )
    monkeypatch.setattr(engine_robustness, "is_transfer_source", lambda c: c.key() == source.key())
    assert find_result(source, tmp_path) is None
    result = run_or_load(target, device="cpu", progress=False, root=tmp_path)
    return find_result(source, tmp_path), result


def test_robustness_fields_stay_out_of_the_key_and_are_checked():
    config = tiny_config("sgd")
    assert {"robustness_size", "pgd_steps", "robustness_eps"} <= EVALUATION_FIELDS
    assert config.replace(**ROBUST).key() == config.key()
    assert RunConfig.from_dict(config.replace(**ROBUST).to_dict()) == config.replace(**ROBUST)
    with pytest.raises(ConfigError, match="pgd_steps must be an integer >= 1"):
        config.replace(pgd_steps=0)
    with pytest.raises(ConfigError, match="robustness_eps must be a list of numbers >= 0"):
        config.replace(robustness_eps=(-0.1,))


def test_profiles_evaluate_robustness_on_the_main_training_set_only():
    ci = get_profile("ci")
    assert ci.config("sgd").robustness_size == ci.robustness_size > 0
    assert ci.config("sgd", train_size=1_500).robustness_size == 0  # smallMNIST


def test_each_seed_is_attacked_with_its_as_released_sgd_run():
    sgd, sgld = as_released("sgd", "ci", seed=1), as_released("sgld", "ci", seed=1)
    assert engine_robustness.is_transfer_source(sgd)
    assert engine_robustness.transfer_source(sgd) is None  # never itself
    assert not engine_robustness.is_transfer_source(sgld)
    assert engine_robustness.transfer_source(sgld).key() == sgd.key()
    assert engine_robustness.transfer_source(sgld.replace(attack_size=8)) is None  # other images
    assert engine_robustness.transfer_source(sgld.replace(robustness_size=0)) is None


def test_a_window_stores_pgd_the_sweep_transfer_and_saturation(stored_pair):
    source, result = stored_pair
    record = result.metrics["windows"]["table1"]["robustness"]
    assert record["images"] == 8 and record["pgd"] == {"steps": 3, "restarts": 1, "step": 2.5}
    sweep = pd.DataFrame(record["sweep"])
    assert set(sweep.attack) == {"FGSM", "PGD-3"}
    single = sweep[(sweep.threat == "per_sample") & (sweep["mode"] == "single")]
    predictive = sweep[sweep.threat == "predictive"]
    assert sorted(set(single.eps)) == sorted(set(predictive.eps)) == [0.0, 0.1, 0.3, 1.0]
    per_sample = sweep[(sweep.threat == "per_sample") & (sweep["mode"] == "averaged")]
    assert set(per_sample.eps) == {0.3}  # fgsm_eps: every sample attacked, averaged
    assert sweep.accuracy.between(0, 1).all() and (sweep.images == 8).all()
    clean = sweep[sweep.eps == 0]
    for _, rows in clean.groupby(["threat", "mode"]):
        assert rows.accuracy.nunique() == 1  # ε = 0: every attack leaves the clean images
    assert record["transfer_source"] == source.key
    transfer = pd.DataFrame(record["transfer"])
    assert set(transfer.eps) == {0.1, 0.2, 0.3} and set(transfer["mode"]) == {"single", "averaged"}
    assert (transfer.threat == "transfer").all() and (transfer.attack == "PGD-3").all()
    assert [row["mode"] for row in record["saturation"]] == ["single", "per_sample", "predictive"]
    assert "table1/transfer/0.3" not in result.predictions  # only the source stores examples
    timing = result.provenance["timing"]  # the attacks' wall time: provenance, not a result
    assert "seconds" not in record and 0 < timing["robustness"] <= timing["window_eval"]


def test_sgd_stores_its_examples_on_the_pixel_grid_inside_the_ball(stored_pair):
    source, _ = stored_pair
    attack = load_run_data(source.config, torch.device("cpu"), False).attack
    x = attack.x[:8].squeeze(1).numpy()
    assert np.array_equal(source.predictions["table1/transfer/index"], attack.index[:8])
    for eps in (0.1, 0.2, 0.3):
        images = source.predictions[f"table1/transfer/{eps:g}"]
        assert images.dtype == np.uint8 and images.shape == (8, 28, 28)
        moved = np.abs(images / 255.0 - x)
        assert moved.max() <= eps + 1e-6 and moved.max() > eps - 2 / 255
    assert source.metrics["windows"]["table1"]["robustness"]["transfer_source"] is None


def test_quantise_truncates_toward_zero():
    x = torch.tensor([[[[0.0, 100 / 255, 1.0]]]])
    x_adv = x + torch.tensor([[[[0.3, -0.3, -0.0999]]]])
    q = engine_robustness.quantise(x, x_adv)
    assert q.tolist() == [[[76, 100 - 76, 255 - 25]]]


def _ci_results():
    seeds = get_profile("ci").seeds
    configs = plan.notebook_runs("04_adversarial", "ci", seeds)
    return {k: r for k, c in configs.items() if (r := find_result(c)) is not None}


def test_pgd_is_at_most_fgsm_on_the_stored_ci_runs_or_the_checklist_flags_it():
    results = _ci_results()
    parts = robustness.reading_tables(results)
    if parts["sweep"].empty:
        pytest.skip("results/ci holds no robustness outputs (sgmcmc fill --profile ci)")
    checks = robustness.method_checklists(parts["sweep"], parts["transfer"], parts["saturation"])
    assert checks
    sweep = parts["sweep"]
    compared = 0
    for (configuration, method), method_checks in checks.items():
        rows = sweep[(sweep.configuration == configuration) & (sweep.method == method)]
        at = rows[rows.eps == 0.3].groupby(["threat", "attack"]).accuracy.mean().unstack()
        for _, accuracy in at.iterrows():
            compared += 1
            if accuracy["PGD-5"] > accuracy["FGSM"]:  # the checklist must flag it: no claim
                assert method_checks[0].verdict == "no" or method_checks[-1].verdict != "yes"
    assert compared >= len(checks)
    table = tables.table1(results)
    assert (tables.PGD_COLUMN in table["as released"].columns) and table.notna().any().any()


def test_table1_says_not_evaluated_for_runs_without_robustness(tmp_path, monkeypatch):
    install_synthetic(monkeypatch)
    config = tiny_config("sgd")
    result = run_or_load(config, device="cpu", progress=False, root=tmp_path)
    results = {("as released", "sgd", 0): result}
    table = tables.table1(results)
    assert table.loc["SGD", ("as released", tables.PGD_COLUMN)] == tables.NOT_EVALUATED
    parts = robustness.reading_tables(results)
    assert (
        robustness.method_checklists(parts["sweep"], parts["transfer"], parts["saturation"]) == {}
    )
    assert robustness.evaluated(results)["robustness"].tolist() == ["not evaluated"]
    assert claims.robustness(robustness.strongest_white_box(parts["sweep"], 0.3), {}) == []


# ---------------------------------------------------------------------- the gated claim
def _sweep(fgsm: float, pgd: float, at_one: float, seeds=(0, 1, 2)) -> pd.DataFrame:
    rows = []
    for seed in seeds:
        for attack, steps, acc in (("FGSM", 1, fgsm), ("PGD-40", 40, pgd)):
            for eps, value in ((0.3, acc), (1.0, at_one)):
                rows.append(
                    {
                        "configuration": "eq. 1",
                        "method": "ksgld",
                        "seed": seed,
                        "attack": attack,
                        "steps": steps,
                        "threat": "predictive",
                        "mode": "averaged",
                        "eps": eps,
                        "accuracy": value,
                        "correct": round(value * 1000),
                        "images": 1000,
                        "counted": True,
                        "reading": True,
                        "fate": "complete",
                    }
                )
    return pd.DataFrame(rows)


def _saturation(zero: float) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "configuration": "eq. 1",
                "method": "ksgld",
                "seed": 0,
                "mode": "predictive",
                "max_prob_one": 0.0,
                "zero_gradient": zero,
                "median_margin": 1.0,
                "images": 1000,
                "counted": True,
                "reading": True,
            }
        ]
    )


def _claim(sweep: pd.DataFrame, saturation: pd.DataFrame):
    transfer = pd.DataFrame(columns=sweep.columns)
    checks = robustness.method_checklists(sweep, transfer, saturation)
    strongest = robustness.strongest_white_box(sweep, 0.3)
    return checks[("eq. 1", "ksgld")], claims.robustness(strongest, checks)[0]


def test_a_robust_method_that_passes_every_check_gets_its_claim():
    checks, claim = _claim(_sweep(fgsm=0.9, pgd=0.8, at_one=0.0), _saturation(0.0))
    assert [c.verdict for c in checks] == ["yes", "yes", "n/a", "yes", "yes"]
    assert claim.verdict == "yes" and claim.statistic >= claims.ROBUST_ACCURACY


def test_a_method_fgsm_cannot_move_but_pgd_can_gets_no_claim():
    # FGSM leaves 85 %, PGD 1 %: iterative stronger, the checks pass, but it is not robust
    _, claim = _claim(_sweep(fgsm=0.85, pgd=0.01, at_one=0.0), _saturation(0.0))
    assert claim.verdict == "no" and "checks pass" in claim.evidence


@pytest.mark.parametrize(
    ("sweep", "zero", "failing"),
    [
        (_sweep(fgsm=0.1, pgd=0.8, at_one=0.0), 0.0, "Iterative attacks"),  # PGD weaker: masked
        (_sweep(fgsm=0.9, pgd=0.8, at_one=0.6), 0.0, "Accuracy falls"),  # never reaches 0
        (_sweep(fgsm=0.9, pgd=0.8, at_one=0.0), 0.4, "The softmax is not saturated"),
    ],
)
def test_a_method_whose_checks_fail_gets_no_robustness_claim(sweep, zero, failing):
    checks, claim = _claim(sweep, _saturation(zero))
    assert any(c.verdict == "no" and c.text.startswith(failing) for c in checks)
    assert claim.verdict == "no" and claim.evidence.startswith("no robustness claim")


def test_the_claim_needs_seeds_and_decided_checks():
    _, claim = _claim(_sweep(fgsm=0.9, pgd=0.8, at_one=0.0, seeds=(0,)), _saturation(0.0))
    assert claim.verdict == "n/a" and "too few seeds" in claim.evidence
    undecided = decide("4.4", "gate", None, None, "no check could be decided")
    rows = robustness.strongest_white_box(_sweep(0.9, 0.8, 0.0), 0.3)
    assert claims.robust(rows, [undecided], "KSGLD").verdict == "n/a"
