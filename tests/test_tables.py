"""Stored runs as tidy tables, and the notebook session: on tiny runs over synthetic data."""

from __future__ import annotations

import math
import os

import numpy as np
import pandas as pd
import pytest
from _engine import install_synthetic, tiny_config

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
    assert "±" in table.loc["SGLD", ("as released", "test")]  # two seeds: an interval


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
