"""Superseded runs (``sgmcmc_paper.engine.orphans``): what no notebook or transfer attack needs,
and the trials no search record lists or would make again, are found, and retiring them moves
them out of the committed store without losing them."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from sgmcmc_paper.engine.orphans import (
    SUPERSEDED,
    needed_keys,
    recorded_trials,
    retire,
    superseded_runs,
)
from sgmcmc_paper.engine.robustness import transfer_source
from sgmcmc_paper.protocol.plan import notebook_configs
from sgmcmc_paper.sweep.trial import trial_config

REPO = Path(__file__).resolve().parents[1]


def _run(
    root: Path, profile: str, key: str, finished: bool = True, evaluate_on: str = "test"
) -> Path:
    folder = root / profile / key
    folder.mkdir(parents=True)
    if finished:
        (folder / "run.json").write_text(json.dumps({"config": {"evaluate_on": evaluate_on}}))
    return folder


@pytest.fixture
def store(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("SGMCMC_RESULTS", str(tmp_path))
    return tmp_path


def test_every_planned_run_and_its_transfer_source_is_needed():
    needed = needed_keys("ci")
    configs = notebook_configs("ci")
    assert {c.key() for c in configs} <= needed
    sources = {s.key() for c in configs if (s := transfer_source(c)) is not None}
    assert sources <= needed


def test_only_runs_nobody_needs_are_superseded(store):
    planned = notebook_configs("ci")[0].key()
    keep = _run(store, "ci", planned)
    old = _run(store, "ci", "0123456789abcdef")
    _run(store, "ci", "fedcba9876543210", finished=False)  # a run in progress: not finished
    _run(store, "ci", "0123456789abcdef.damaged-1")
    assert superseded_runs("ci") == [old]
    assert keep.exists()


def test_sweep_trials_and_unreadable_records_are_kept(store):
    trial = _run(store, "ci", "aaaaaaaaaaaaaaaa", evaluate_on="validation")
    broken = _run(store, "ci", "bbbbbbbbbbbbbbbb")
    (broken / "run.json").write_text("{not json")
    old = _run(store, "ci", "cccccccccccccccc")
    assert superseded_runs("ci") == [old]
    assert trial.exists()


def _trial(store: Path, key: str, eval_every: int | None = None) -> Path:
    """A stored ci trial of SGD on 1,500 images; ``eval_every``: stored with another one."""
    config = trial_config("ci", {"method": "sgd", "train_size": 1500}).to_dict()
    assert config["eval_every"] != eval_every
    folder = _run(store, "ci", key, evaluate_on="validation")
    fields = {**config, **({} if eval_every is None else {"eval_every": eval_every})}
    (folder / "run.json").write_text(json.dumps({"config": fields}))
    return folder


def test_a_trial_is_superseded_once_no_record_lists_it_and_no_search_makes_it(store):
    listed = _trial(store, "1111111111111111", eval_every=20)
    current = _trial(store, "2222222222222222")  # a search in progress may be using it
    outdated = _trial(store, "3333333333333333", eval_every=20)
    record = {"selected": {}, "sweeps": {"ci/sgd/1500": {"trials": [{"key": listed.name}]}}}
    (store / "hparams").mkdir()
    (store / "hparams" / "ci.json").write_text(json.dumps(record))
    assert superseded_runs("ci") == [outdated]
    assert recorded_trials("ci") == {listed.name} and current.exists()


def test_retiring_moves_without_losing_anything(store):
    old = _run(store, "ci", "0123456789abcdef")
    (old / "metrics.json").write_text('{"accuracy": 0.5}')
    earlier = store / SUPERSEDED / "ci" / "0123456789abcdef"
    earlier.mkdir(parents=True)
    (moved,) = retire([old])
    assert not old.exists()
    assert moved == earlier.with_name("0123456789abcdef.1")
    assert (moved / "metrics.json").read_text() == '{"accuracy": 0.5}'
    assert earlier.exists()
    assert superseded_runs("ci") == []


def test_git_ignores_the_retired_runs():
    path = f"results/{SUPERSEDED}/paper/0123456789abcdef/run.json"
    out = subprocess.run(
        ["git", "check-ignore", "-q", path], cwd=REPO, capture_output=True, check=False
    )
    if out.returncode == 128:
        pytest.skip("not a git checkout")
    assert out.returncode == 0, f"{path} would be committed"
