"""A run's fate: complete, diverged or collapsed, from what a run stores (engine/fate.py)."""

from __future__ import annotations

import collections
from pathlib import Path

import numpy as np
import pytest

from sgmcmc_paper.engine.experiment import RunResult
from sgmcmc_paper.engine.fate import (
    FATES,
    Fate,
    chance_level,
    chance_threshold,
    fate,
    fate_of,
)
from sgmcmc_paper.engine.store import RUN_FILE, load_result
from sgmcmc_paper.protocol.config import RunConfig
from sgmcmc_paper.protocol.paper import LANGEVIN_METHODS

REPO = Path(__file__).resolve().parents[1]
#: MNIST's test labels: the digit 1 is the most frequent, 1,135 of 10,000.
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def _epochs(accuracies):
    return [
        {"epoch": k, "single": {"accuracy": a}, "averaged": {"accuracy": a, "samples": 6}}
        for k, a in enumerate(accuracies, start=1)
    ]


def _mnist_labels():
    return np.repeat(np.arange(10), MNIST_TEST_COUNTS).astype(np.uint8)


def test_chance_is_a_constant_classifiers_accuracy_and_the_margin_three_standard_errors():
    assert chance_level(_mnist_labels(), 10) == pytest.approx(0.1135)
    assert chance_level(None, 10) == 0.1
    # 0.1135 + 3·sqrt(0.1135·0.8865/10,000)
    assert chance_threshold(0.1135, 10_000) == pytest.approx(0.1230, abs=1e-4)
    assert chance_threshold(0.1, 2_000) == pytest.approx(0.1 + 3 * 0.3 / np.sqrt(2000))


def test_a_run_that_keeps_its_accuracy_is_complete():
    assert fate_of(_epochs([0.6, 0.9, 0.95]), None, chance=0.1135, n=10_000) == Fate("complete")


def test_a_diverged_run_says_where_and_why():
    divergence = {"step": 1491, "epoch": 13, "reason": "non-finite loss (nan) at step 1491"}
    got = fate_of(_epochs([0.9] * 12), divergence, chance=0.1135, n=10_000)
    assert got == Fate("diverged", 13, "non-finite loss (nan) at step 1491")
    # an older record without the epoch: from the step
    older = {"step": 1491, "reason": "non-finite loss"}
    got = fate_of(_epochs([0.9] * 12), older, chance=0.1, n=10_000, steps_per_epoch=118)
    assert got.epoch == 13


def test_a_run_that_learned_then_fell_to_chance_collapsed_from_the_epoch_it_fell():
    accuracy = [0.72, 0.87, 0.90, 0.91, 0.88, 0.81, 0.18, 0.11, 0.105, 0.114, 0.103, 0.101]
    got = fate_of(_epochs(accuracy), None, chance=0.1135, n=10_000)
    assert got.status == "collapsed" and got.epoch == 8
    assert "0.101 at epoch 12" in got.reason and "0.910 at epoch 4" in got.reason


def test_a_brief_visit_to_chance_is_not_a_collapse_nor_is_never_learning():
    recovered = fate_of(_epochs([0.8, 0.1, 0.9]), None, chance=0.1135, n=10_000)
    assert recovered.status == "complete"
    never = fate_of(_epochs([0.113, 0.139, 0.12, 0.12]), None, chance=0.1135, n=10_000)
    assert never.status == "complete"  # never twice the chance level: it never learned


def test_the_margin_follows_the_test_subset_size():
    # 0.14 is at chance on 256 images (threshold 0.1 + 3·0.0188 = 0.156), not on 10,000
    epochs = _epochs([0.9, 0.14])
    assert fate_of(epochs, None, chance=0.1, n=256).status == "collapsed"
    assert fate_of(epochs, None, chance=0.1, n=10_000).status == "complete"


def test_the_fate_of_a_result_reads_its_test_labels():
    config = RunConfig(method="sgd", epochs=3, test_size=10_000)
    result = RunResult(
        config=config,
        status="complete",
        metrics={"epochs": _epochs([0.9, 0.95, 0.113]), "windows": {}},
        provenance={},
        predictions={"test/label": _mnist_labels()},
    )
    # 0.113 is below the constant classifier's 0.1135 (+ margin): collapsed
    assert result.fate == Fate("collapsed", 3, result.fate.reason)
    assert fate(result).status == "collapsed"
    assert Fate.from_dict(result.fate.to_dict()) == result.fate
    # without labels the chance level is 1/10, threshold 0.109: a model answering "1" to
    # everything (0.1135) would pass for a working one, hence the labels
    result.predictions = {}
    assert result.fate.status == "complete"


def test_fates_are_checked():
    assert FATES == ("complete", "diverged", "collapsed")
    with pytest.raises(ValueError, match="fate status"):
        Fate("stalled")


def test_the_stored_paper_runs_fates():
    """Every run of ``results/paper`` gets a fate on load (no retraining). Of the test-set
    runs, the three "as described" KSGLD main runs, at ~10 % from epoch 7-8, collapsed; the four
    langevin KSGLD runs diverged; every other one is complete. Search trials (validation runs)
    keep their fates too, and the book's tables never read them: each that collapsed is a
    Langevin sampler's."""
    folders = sorted(p.parent for p in (REPO / "results" / "paper").glob(f"*/{RUN_FILE}"))
    assert folders, "no stored paper runs"
    results = {folder.name: load_result(folder) for folder in folders}
    trials = {k: r for k, r in results.items() if r.config.evaluate_on == "validation"}
    fates = {k: r.fate for k, r in results.items() if k not in trials}
    counts = collections.Counter(f.status for f in fates.values())
    assert counts == {"complete": len(fates) - 7, "diverged": 4, "collapsed": 3}
    collapsed = {key: f.epoch for key, f in fates.items() if f.status == "collapsed"}
    assert collapsed == {"3bde2c71c916c8b3": 8, "eff5f04fe961f25c": 8, "c5b00514f2ee720e": 7}
    for key in collapsed:
        config = results[key].config
        assert (config.method, config.convention, config.kfac_damping_mode) == (
            "ksgld",
            "paper",
            "factored",
        )
    for trial in trials.values():
        if trial.fate.status == "collapsed":
            assert trial.config.method in LANGEVIN_METHODS
    diverged = sorted(f.epoch for f in fates.values() if f.status == "diverged")
    assert diverged == [13, 13, 14, 19]
