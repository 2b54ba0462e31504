"""Stored-only book builds (book/methods.md, "Runs not trained"): a run the store lacks is
"not trained" in every table, claims left with too few seeds say so, and the profile a chapter
runs at follows the stated rule."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sgmcmc_paper.analysis import claims, tables
from sgmcmc_paper.book.notebooks import MIN_ROW_SHARE, STORED_ONLY_RULE, coverage, profile_for
from sgmcmc_paper.book.session import STORED_ONLY_ENV, Session
from sgmcmc_paper.engine.experiment import RunResult
from sgmcmc_paper.engine.fate import NOT_TRAINED
from sgmcmc_paper.engine.store import save_result
from sgmcmc_paper.engine.untrained import NotTrained
from sgmcmc_paper.protocol.plan import notebook_runs
from sgmcmc_paper.protocol.profiles import get_profile


def _result(config, accuracy: float) -> RunResult:
    """A complete run of ``config`` whose every epoch has ``accuracy`` (no training)."""
    epochs = [
        {
            "epoch": e,
            "single": {"accuracy": accuracy, "nll": 0.3},
            "averaged": {"accuracy": accuracy, "nll": 0.3},
        }
        for e in range(1, config.epochs + 1)
    ]
    return RunResult(
        config=config,
        status="complete",
        metrics={"epochs": epochs, "windows": {}},
        provenance={"timing": {"total_s": 1.0}},
        predictions={"test/label": np.arange(10, dtype=np.uint8)},
    )


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("SGMCMC_RESULTS", str(tmp_path))
    monkeypatch.delenv(STORED_ONLY_ENV, raising=False)
    return tmp_path


def _five_seeds(trained: int):
    """SGD and SGLD as released at ci over 5 seeds, the first ``trained`` of each trained."""
    base = get_profile("ci").config("sgd")
    results = {}
    for method, accuracy in (("sgd", 0.90), ("sgld", 0.92)):
        for seed in range(5):
            config = base.replace(method=method, seed=seed)
            run = _result(config, accuracy + 0.001 * seed) if seed < trained else None
            results[("as released", method, seed)] = run or NotTrained(config)
    return results


def test_a_run_not_trained_has_that_fate_and_nothing_measured():
    config = get_profile("ci").config("sgld")
    run = NotTrained(config)
    assert run.fate.status == NOT_TRAINED and run.status == NOT_TRAINED
    assert "sgmcmc fill --profile ci" in run.fate.reason
    assert not tables.counts_at(run.fate, 1) and not tables.counts_at(run.fate, None)
    with pytest.raises(ValueError, match="not trained"):
        run.traces()
    with pytest.raises(KeyError):
        run.per_example("fig4", "test")
    assert tables.fate_text(run.fate.status) == "not trained"


def test_rows_say_how_many_seeds_are_not_trained():
    results = _five_seeds(trained=3)
    frame = tables.epoch_table(results)
    final = frame[(frame.epoch == 2) & frame.paper_mode]
    summary = tables.over_seeds(final, "accuracy", ["method"])
    assert list(summary["seeds counted"]) == ["3 of 5 (2 not trained)"] * 2
    assert list(summary["count"]) == [3, 3]
    assert math.isclose(summary.set_index("method")["mean"]["sgd"], 0.901)
    failed = tables.failed_runs(results)
    assert set(failed["fate"]) == {NOT_TRAINED} and len(failed) == 4
    assert "not trained" in tables.run_summary(results)["fate"].tolist()


def test_a_claim_left_with_too_few_seeds_is_unresolved_runs_not_trained():
    results = _five_seeds(trained=2)
    frame = tables.epoch_table(results)
    final = frame[(frame.epoch == 2) & frame.paper_mode]
    interval = tables.paired_interval(final, "accuracy", "sgld", "sgd")
    assert not interval.testable and "sgd: 3 not trained" in interval.note
    claim = claims.decide("4.1", "SGLD beats SGD", None, None, interval.note, claims.PAIRED)
    assert claim.verdict == claims.UNTRAINED == "unresolved (runs not trained)"
    # With enough seeds trained the same comparison is tested.
    enough = tables.epoch_table(_five_seeds(trained=3))
    enough = enough[(enough.epoch == 2) & enough.paper_mode]
    assert tables.paired_interval(enough, "accuracy", "sgld", "sgd").testable
    assert claims.decide("x", "y", None, None, "no sweep recorded").verdict == "n/a"


def test_a_stored_only_session_trains_nothing_and_says_so(store, monkeypatch, capsys):
    from sgmcmc_paper.engine import store as store_module

    monkeypatch.setattr(store_module, "run", lambda *a, **k: pytest.fail("trained"))
    config = get_profile("ci").config("sgd")
    save_result(_result(config, 0.9), store)
    monkeypatch.setenv(STORED_ONLY_ENV, "1")
    session = Session("ci", quiet=True)
    assert session.stored_only
    assert session.run(config).status == "complete"
    missing = session.run(config.replace(seed=1))
    assert isinstance(missing, NotTrained)
    line = session.finish()
    assert "loaded 1 from the store" in line and "1 not trained" in line
    assert "sgmcmc fill --profile ci" in line


def _plant(configs, store) -> None:
    for config in {c.key(): c for c in configs}.values():
        save_result(_result(config, 0.9), store)


def test_a_chapter_runs_at_the_largest_profile_where_half_its_rows_have_enough_seeds(store):
    """The rule of STORED_ONLY_RULE on chapter 01: paper needs 3 of 5 seeds stored in half its
    rows; quick (one seed) its one seed; else ci, where runs are trained."""
    assert MIN_ROW_SHARE == 0.5 and "at least half of its rows" in STORED_ONLY_RULE
    stem = "01_test_accuracy"
    assert profile_for(stem, "paper", stored_only=False) == ("paper", {})
    used, found = profile_for(stem, "paper", stored_only=True)
    assert used == "ci" and found["paper"].stored == 0 and found["quick"].stored == 0
    _plant(notebook_runs(stem, "quick").values(), store)
    paper = notebook_runs(stem, "paper")
    rows = sorted({(label, method) for label, method, _ in paper})
    planted: set[str] = set()
    seen = set()
    for row in rows:  # 3 of 5 seeds, row after row (rows sharing a key fill together)
        three = [c for (lab, m, s), c in paper.items() if (lab, m) == row and s < 3]
        _plant(three, store)
        planted |= {c.key() for c in three}
        ready = sum(
            sum(c.key() in planted for (lab, m, _), c in paper.items() if (lab, m) == r) >= 3
            for r in rows
        )
        used, found = profile_for(stem, "paper", stored_only=True)
        assert found["paper"].ready == ready and found["paper"].rows == len(rows)
        assert used == ("paper" if 2 * ready >= len(rows) else "quick")
        seen.add(used)
    assert seen == {"quick", "paper"}
    held = coverage(stem, "paper")
    assert held.stored == 3 * held.runs // 5  # seeds 3 and 4 not trained
    assert profile_for(stem, "ci", stored_only=True) == ("ci", {})


def test_the_methods_chapter_and_readme_state_the_rule():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    methods = (root / "book" / "methods.md").read_text()
    assert STORED_ONLY_RULE in methods and "(methods:not-trained)=" in methods
    assert "unresolved (runs not trained)" in (root / "README.md").read_text()
