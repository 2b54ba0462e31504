"""Stored runs as tidy tables, and the notebook session: on tiny runs over synthetic data."""

from __future__ import annotations

import math
import os

import numpy as np
import pandas as pd
import pytest
from _engine import install_synthetic, tiny_config
from scipy import stats

from sgmcmc_paper.analysis import tables
from sgmcmc_paper.book.session import Session, claim
from sgmcmc_paper.protocol import paper

SEEDS = (0, 1)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Three tiny runs (SGD = FSGD with seed 0, SGLD with seeds 0 and 1) in a store, through
    ``Session.run``."""
    monkeypatch = pytest.MonkeyPatch()
    install_synthetic(monkeypatch)
    root = tmp_path_factory.mktemp("results")
    previous = os.environ.get("SGMCMC_RESULTS")
    session = Session("ci", device="cpu", output_dir=root, quiet=True)
    configs = {
        ("as released", method, seed): tiny_config(method, seed=seed)
        for method, seeds in (("sgd", (0,)), ("fsgd", (0,)), ("sgld", SEEDS))
        for seed in seeds
    }
    results = tables.run_all(session, configs)
    yield session, configs, results
    monkeypatch.undo()
    if previous is None:
        os.environ.pop("SGMCMC_RESULTS", None)
    else:
        os.environ["SGMCMC_RESULTS"] = previous


def test_session_trains_once_and_loads_shared_keys(store):
    session, configs, results = store
    assert os.environ["SGMCMC_RESULTS"] == str(session.store)
    # SGD and FSGD are one training: 3 runs trained, FSGD's loaded.
    assert len(session.trained) == 3 and len(session.loaded) == 1
    again = session.run(configs[("as released", "sgld", 0)])
    assert again.metrics == results[("as released", "sgld", 0)].metrics
    assert "trained 3 run(s)" in session.finish()
    info = session.provenance()
    assert info["profile"].startswith("ci:") and info["seeds"] == "0"
    frame = session.claims([claim("4.1", "a claim", True, "why"), claim("4.2", "b", None, "")])
    assert list(frame["holds"]) == ["yes", "n/a"]


def test_session_glues_claims_provenance_and_tables_as_html(store, monkeypatch):
    import myst_nb

    session, _, _ = store
    glued = {}
    monkeypatch.setattr(
        myst_nb, "glue", lambda name, value, display=True: glued.update({name: (value, display)})
    )
    session.claims([claim("4.1", "a claim", True, "why")])
    line = session.finish()
    session.glue("table", tables.run_summary({("x", "sgd", 0): session_result(store)}))
    assert {name: display for name, (_, display) in glued.items()} == dict.fromkeys(
        ("claims", "provenance", "table"), False
    )
    claims = glued["claims"][0].data
    heading = (
        "<p><em>At the ci profile: a preview at a smaller size"  # every table says its profile
    )
    assert claims.startswith(heading) and '<table class="dataframe">' in claims
    assert "<td>a claim</td>" in claims
    assert glued["provenance"][0].data == f"<p>{line}</p>" and "runs were made 3 on" in line
    assert "<th>accuracy</th>" in glued["table"][0].data


def session_result(store):
    _, configs, results = store
    return results[("as released", "sgd", 0)]


def test_epoch_table_and_over_seeds(store):
    _, configs, results = store
    epochs = tables.epoch_table(results)
    assert set(epochs.columns) >= {"configuration", "method", "seed", "epoch", "mode", "accuracy"}
    assert len(epochs) == len(results) * 2 * 2  # runs × epochs × modes
    sgd = epochs[(epochs.method == "sgd") & epochs.paper_mode]
    assert set(sgd["mode"]) == {"single"}
    summary = tables.over_seeds(epochs, "accuracy", ["method", "mode", "epoch"])
    row = summary[summary.method == "sgld"].iloc[0]
    assert row["count"] == 2 and row["low"] <= row["mean"] <= row["high"]
    assert (
        row["seeds"] == 2
        and row["seeds counted"] == "2 of 2"
        and 0 <= row["low"] <= row["high"] <= 1
    )
    one_seed = tables.over_seeds(epochs[epochs.seed == 0], "accuracy", ["method", "mode", "epoch"])
    assert one_seed["low"].isna().all()


def test_window_fgsm_and_prediction_tables(store):
    _, _, results = store
    windows = tables.window_table(results, "fig4")
    assert {"test", "notmnist"} <= set(windows.set)
    assert "max_prob/auroc" in set(windows.metric)
    attacked = tables.fgsm_table(results)
    assert set(attacked.threat) == set(tables.THREATS) and set(attacked.eps) == {0.3}
    values = tables.predictions(results, "fig4/notmnist/averaged/max_prob")
    assert len(values) == len(results) * 16 and values["value"].between(0, 1).all()


def test_table1_puts_paper_numbers_beside_ours(store):
    _, _, results = store
    table = tables.table1(results)
    assert list(table.index) == [label for _, _, label in tables.TABLE1_ROWS]
    assert table.loc["SGD", ("paper", "test")] == paper.TABLE1_PUBLISHED["sgd"][0]
    # The published FSGD test accuracy is the single model's, its FGSM accuracy the average's.
    assert table.loc["FSGD (single model)", ("paper", "test")] == 96.5
    assert pd.isna(table.loc["FSGD (averaged)", ("paper", "test")])
    assert table.loc["FSGD (averaged)", ("paper", "FGSM")] == 2.0
    assert table.loc["SGLD", ("code", "test")] == 97.22
    cell = table.loc["SGLD", ("as released", "test")]  # two seeds: an interval, in [0, 100]
    mean, low, high = (
        float(x) for x in cell.replace("[", "").replace("]", "").replace(",", "").split()
    )
    assert 0 <= low <= mean <= high <= 100
    assert table.loc["SGLD", ("as released", "seeds")] == "2 of 2"
    side = tables.table1_side_by_side(table)
    assert list(side.columns.get_level_values(0))[:2] == ["paper", "paper's code"]
    assert side.loc["SGLD", ("as released", "test")] == cell


def test_mixing_diagnostics(store):
    _, _, results = store
    run = results[("as released", "sgld", 0)]
    trace, steps = tables.weight_trace(run)
    assert trace.shape[0] == len(steps) == run.config.total_steps // run.config.trace_every
    windows = tables.mess_windows(run, window=4, max_lag=20)
    assert len(windows) == trace.shape[0] // 4
    assert (windows["floor"] == 4 / (1 + 2 * 3)).all()  # the lag cap shrinks to window − 1
    assert (windows["mess"] >= windows["floor"] - 1e-9).all()
    both = [results[("as released", "sgld", seed)] for seed in SEEDS]
    stats = tables.function_space_diagnostics(both)
    assert stats["chains"] == 2 and stats["ess_bulk"] > 0 and math.isfinite(stats["rhat"])
    assert math.isfinite(tables.function_space_diagnostics(both[:1])["rhat"])  # split halves


def test_paired_difference_and_run_summary(store):
    _, _, results = store
    frame = pd.DataFrame(
        {
            "method": ["a", "a", "a", "b", "b", "b"],
            "seed": [0, 1, 2] * 2,
            "value": [1.0, 2.0, 3.0, 0.5, 1.4, 2.6],
        }
    )
    diff, p_value, n = tables.paired_difference(frame, "value", "a", "b")
    assert diff == pytest.approx(0.5) and n == 3 and 0 < p_value < 1
    assert math.isnan(tables.paired_difference(frame[frame.seed == 0], "value", "a", "b")[1])
    summary = tables.run_summary(results)
    assert len(summary) == len(results)
    assert np.isfinite(summary[["accuracy", "nll", "fgsm accuracy"]].to_numpy()).all()


def test_the_largest_paired_gap_compares_one_seed_at_one_epoch():
    rows = [
        {"size": size, "method": m, "seed": seed, "epoch": epoch, "value": v}
        for size, shift in ((1, 0.0), (2, 0.3))
        for seed in (0, 1)
        for epoch in (1, 2)
        for m, v in (("a", seed + epoch + shift * (seed == 1) * (epoch == 2)), ("b", seed + epoch))
    ]
    rows.append({"size": 2, "method": "a", "seed": 5, "epoch": 1, "value": 9.0})  # no pair
    gaps = tables.largest_paired_gap(pd.DataFrame(rows), "value", "a", "b", ["size"])
    assert gaps.set_index("size")["gap"].to_dict() == pytest.approx({1: 0.0, 2: 0.3})
    assert gaps.set_index("size")["pairs"].to_dict() == {1: 4, 2: 4}


# ---------------------------------------------------------------------- failed runs (#26)
def _fake(status="complete", fate_epoch=None, accuracies=(0.5, 0.6, 0.7), epochs=3, seed=0):
    """A run in memory: per-epoch averaged/single accuracies, a window ``w`` ending at the
    last epoch (measured only if the run reached it), and its fate."""
    from types import SimpleNamespace

    from sgmcmc_paper.engine.fate import Fate

    records = [
        {
            "epoch": e + 1,
            "single": {"accuracy": a, "nll": 1.0},
            "averaged": {"accuracy": a + 0.01, "nll": 1.0, "samples": 5},
        }
        for e, a in enumerate(accuracies)
    ]
    reached = len(accuracies) >= epochs
    windows = (
        {"w": {"sets": {"test": {"averaged": {"accuracy": accuracies[-1]}}}}} if reached else {}
    )
    config = SimpleNamespace(
        epochs=epochs,
        steps_per_epoch=10,
        window=lambda name: SimpleNamespace(end_epoch=epochs),
    )
    return SimpleNamespace(
        config=config,
        status="diverged" if status == "diverged" else "complete",
        metrics={"epochs": records, "windows": windows},
        predictions={},
        fate=Fate(status, fate_epoch, "" if status == "complete" else "why"),
    )


def test_the_failed_run_rule_counts_a_run_only_before_its_fate():
    from sgmcmc_paper.engine.fate import Fate

    assert tables.counts_at(Fate("complete"), 20)
    assert tables.counts_at(Fate("diverged", 13), 12) and not tables.counts_at(
        Fate("diverged", 13), 13
    )
    assert not tables.counts_at(Fate("collapsed", 7), 10)
    assert not tables.counts_at(Fate("diverged", None), 1)
    assert "before the one its fate names" in tables.FAILED_RUN_RULE
    assert tables.fate_text("collapsed", 7) == "collapsed at epoch 7"
    assert tables.fate_text("complete", None) == "complete"


def test_summaries_never_mix_epochs():
    """A run that diverged at epoch 3 has no value there: the epoch-3 row counts 1 of 2 seeds
    (never its epoch-2 value), and a paired test at epoch 3 has one seed."""
    results = {
        ("c", "sgd", 0): _fake(seed=0),
        ("c", "sgd", 1): _fake("diverged", 3, accuracies=(0.5, 0.9), seed=1),
        ("c", "sgld", 0): _fake(accuracies=(0.5, 0.6, 0.8)),
        ("c", "sgld", 1): _fake(accuracies=(0.5, 0.6, 0.8)),
    }
    epochs = tables.epoch_table(results)
    assert len(epochs) == 4 * 3 * 2  # every epoch of every run's config, both modes
    unreached = epochs[(epochs.method == "sgd") & (epochs.seed == 1) & (epochs.epoch == 3)]
    assert not unreached.counted.any() and unreached.accuracy.isna().all()
    summary = tables.over_seeds(epochs[epochs["mode"] == "single"], "accuracy", ["method", "epoch"])
    at3 = summary[(summary.method == "sgd") & (summary.epoch == 3)].iloc[0]
    assert at3["count"] == 1 and at3["seeds"] == 2 and at3["mean"] == pytest.approx(0.7)
    assert at3["seeds counted"] == "1 of 2 (1 diverged)" and math.isnan(at3["low"])
    at2 = summary[(summary.method == "sgd") & (summary.epoch == 2)].iloc[0]
    assert at2["count"] == 2 and at2["mean"] == pytest.approx(0.75)
    final = epochs[(epochs["mode"] == "single") & (epochs.epoch == 3)]
    interval = tables.paired_interval(final, "accuracy", "sgld", "sgd")
    assert interval.seeds == 1 and not interval.testable
    assert "sgd: 1 diverged" in interval.note
    assert tables.paired_difference(final, "accuracy", "sgld", "sgd")[2] == 1


def test_a_collapsed_run_counts_before_its_fate_and_is_marked_per_seed():
    results = {
        ("c", "ksgld", 0): _fake("collapsed", 3, accuracies=(0.5, 0.6, 0.1)),
        ("c", "ksgld", 1): _fake(),
    }
    epochs = tables.epoch_table(results)
    single = epochs[epochs["mode"] == "single"]
    assert list(single[single.seed == 0].counted) == [True, True, False]
    table = tables.per_seed(single, "accuracy", ["configuration", "method", "seed"], "epoch")
    assert list(table.columns) == ["fate", "1", "2", "3"]
    assert table.loc[("c", "ksgld", 0), "fate"] == "collapsed at epoch 3"
    assert table.loc[("c", "ksgld", 0), "3"] == "(0.1000)"  # shown, bracketed: not counted
    assert table.loc[("c", "ksgld", 1), "3"] == "0.7000"
    failed = tables.failed_runs(results)
    assert list(failed.fate) == ["collapsed"] and list(failed.epoch) == [3]


def test_a_run_that_did_not_reach_a_window_is_counted_as_failed_in_its_rows():
    results = {
        ("c", "sgld", 0): _fake(),
        ("c", "sgld", 1): _fake("diverged", 2, accuracies=(0.5,), seed=1),
    }
    frame = tables.window_table(results, "w")
    assert len(frame) == 2 and list(frame.counted) == [True, False]
    summary = tables.over_seeds(frame, "value", ["set", "mode", "metric"]).iloc[0]
    assert summary["seeds counted"] == "1 of 2 (1 diverged)"


def test_run_summary_reports_the_final_epoch_only():
    results = {
        ("x", "sgld", 0): _fake("diverged", 3, accuracies=(0.5, 0.9)),
        ("x", "sgld", 1): _fake(),
    }
    from unittest import mock

    with mock.patch.object(tables, "mess_windows", side_effect=ValueError):
        summary = tables.run_summary(results)
    assert list(summary.counted) == [False, True] and list(summary.fate) == ["diverged", "complete"]
    assert math.isnan(summary.accuracy.iloc[0])  # never epoch 2's 0.91
    assert summary.accuracy.iloc[1] == pytest.approx(0.71)
    cells = tables.summary_over_seeds(summary, ["accuracy"], ["label", "method"])
    assert cells.loc[("x", "sgld"), "seeds"] == "1 of 2 (1 diverged)"
    assert cells.loc[("x", "sgld"), "accuracy"] == "0.7100"
    per_run = tables.summary_per_seed(summary, ["accuracy"], ["label", "method"])
    assert per_run.loc[("x", "sgld", 0), "fate"] == "diverged at epoch 3"


def test_seed_intervals_respect_a_metric_s_range():
    """Three seeds far apart: a Student-t interval on the raw scale would leave [0, 1] (Fig. 1's
    bands reached 1.2); the logit-scale one does not, and NLL's log-scale one stays positive."""
    accuracy = [0.80, 0.97, 0.99]
    low, high = tables.seed_interval(accuracy, tables.metric_bounds("accuracy"))
    raw_half = stats.t.ppf(0.975, 2) * np.std(accuracy, ddof=1) / math.sqrt(3)
    assert np.mean(accuracy) + raw_half > 1  # what the old interval did
    assert 0 < low < np.mean(accuracy) < high < 1
    low, high = tables.seed_interval([0.05, 0.4, 0.1], tables.metric_bounds("nll"))
    assert 0 < low < high
    assert tables.metric_bounds("max_prob/auroc") == (0.0, 1.0)
    assert tables.metric_bounds("brier") == (0.0, 2.0)
    assert tables.metric_bounds("whatever") == (-math.inf, math.inf)
    assert all(math.isnan(v) for v in tables.seed_interval([0.5], (0.0, 1.0)))
    frame = pd.DataFrame(
        {"metric": ["auroc"] * 3 + ["nll"] * 3, "value": accuracy + [0.05, 0.4, 0.1]}
    )
    by_metric = tables.over_seeds(frame, "value", ["metric"]).set_index("metric")
    assert by_metric.loc["auroc", "high"] < 1 and by_metric.loc["nll", "low"] > 0


def test_paired_interval_is_a_student_t_interval_on_the_differences():
    frame = pd.DataFrame(
        {
            "method": ["a"] * 4 + ["b"] * 4,
            "seed": [0, 1, 2, 3] * 2,
            "value": [1.0, 2.0, 3.0, 4.0, 0.5, 1.4, 2.6, 3.5],
        }
    )
    interval = tables.paired_interval(frame, "value", "a", "b")
    diff = np.array([0.5, 0.6, 0.4, 0.5])
    half = stats.t.ppf(0.975, 3) * diff.std(ddof=1) / 2
    assert interval.mean == pytest.approx(0.5) and interval.seeds == 4
    assert (interval.low, interval.high) == pytest.approx((0.5 - half, 0.5 + half))
    assert interval.text(digits=2) == f"+0.50 [{0.5 - half:+.2f}, {0.5 + half:+.2f}]"
    two = tables.paired_interval(frame[frame.seed < 2], "value", "a", "b")
    assert not two.testable and "fewer than 3" in two.note


def test_the_methods_chapter_states_the_failed_run_rule_as_the_tables_apply_it():
    from pathlib import Path

    methods = (Path(__file__).resolve().parents[1] / "book" / "methods.md").read_text()
    assert "(methods:failed-runs)=" in methods and "## Failed runs in tables" in methods
    assert " ".join(tables.FAILED_RUN_RULE.split()) in " ".join(methods.split())
