"""Tables over failed runs (#25): a run that diverged in its first epoch, stored or in memory,
and one stored without traces, give rows (with the status and NaN where nothing was measured)
instead of an ``IndexError`` or a ``FileNotFoundError``."""

from __future__ import annotations

import math

import pytest
from _engine import install_synthetic, tiny_config

from sgmcmc_paper.analysis import tables
from sgmcmc_paper.engine.experiment import run
from sgmcmc_paper.engine.store import run_or_load


@pytest.fixture(autouse=True)
def synthetic(monkeypatch):
    install_synthetic(monkeypatch)


def test_run_summary_of_runs_that_diverged_in_their_first_epoch(tmp_path):
    config = tiny_config("sgld", lr=1e30, epochs=1)
    stored = run_or_load(config, device="cpu", progress=False, root=tmp_path)
    in_memory = run(config, device="cpu", progress=False)
    assert stored.metrics["epochs"] == [] == in_memory.metrics["epochs"]
    summary = tables.run_summary({("x", "sgld", 0): stored, ("y", "sgld", 0): in_memory})
    assert list(summary["status"]) == ["diverged", "diverged"]
    assert summary["accuracy"].isna().all() and summary["mess"].isna().all()


def test_run_summary_of_a_stored_run_without_traces(tmp_path):
    config = tiny_config("sgd", epochs=1, trace_every=0)
    stored = run_or_load(config, device="cpu", progress=False, root=tmp_path)
    in_memory = run(config, device="cpu", progress=False)
    for result in (stored, in_memory):
        with pytest.raises(ValueError, match="recorded no traces"):
            result.traces()
    summary = tables.run_summary({("x", "sgd", 0): stored, ("y", "sgd", 0): in_memory})
    assert all(math.isnan(v) for v in summary["mess"])
    assert summary["accuracy"].notna().all()
