"""Evaluation-only fields (``protocol.config.EVALUATION_FIELDS``): left out of the run key, a
stored run whose recorded values differ from a config's is read as it is by the notebooks and
retrained, in place, by a fill.

The set is empty until a field is added to it, so these tests make ``fgsm_eps`` (which only
adds attacked evaluations) one, on tiny runs of synthetic data.
"""

from __future__ import annotations

import json

import pytest
from _engine import install_synthetic, tiny_config

from sgmcmc_paper.cli import main
from sgmcmc_paper.engine import store
from sgmcmc_paper.engine.fill import survey
from sgmcmc_paper.engine.store import (
    RUN_FILE,
    checkpoint_path,
    find_result,
    run_or_load,
    satisfies,
    stale_fields,
)
from sgmcmc_paper.protocol import config as config_module

FIELDS = frozenset({"fgsm_eps"})


@pytest.fixture(autouse=True)
def evaluation_field(monkeypatch):
    install_synthetic(monkeypatch)
    monkeypatch.setattr(config_module, "EVALUATION_FIELDS", FIELDS)
    monkeypatch.setattr(store, "EVALUATION_FIELDS", FIELDS)


@pytest.fixture
def stored(tmp_path, monkeypatch):
    """A stored sgd run at the field's default (FGSM at 0.3 only), and the same run asked
    for with a second ε: one key, two evaluations."""
    monkeypatch.setenv("SGMCMC_RESULTS", str(tmp_path))
    old = tiny_config("sgd", epochs=1, fgsm_eps=(0.3,))
    run_or_load(old, device="cpu", progress=False, root=tmp_path)
    return old, old.replace(fgsm_eps=(0.1, 0.3)), tmp_path


def _never_train(monkeypatch):
    monkeypatch.setattr(store, "run", lambda *a, **k: pytest.fail("trained a stored run"))


def test_an_evaluation_field_is_out_of_the_key_and_names_what_differs(stored):
    old, new, _ = stored
    assert new.key() == old.key()
    assert stale_fields(old, new) == ["fgsm_eps"]
    assert stale_fields(new, new) == []


def test_the_notebooks_read_a_stale_run_as_it_was_evaluated(stored, monkeypatch):
    old, new, root = stored
    _never_train(monkeypatch)
    found = run_or_load(new, device="cpu", progress=False, root=root)
    assert found.config.fgsm_eps == (0.3,)  # what it was evaluated with, not the request
    assert not satisfies(found, new) and satisfies(found, old)
    assert list(found.metrics["windows"]["table1"]["fgsm"]["as_released"]) == ["0.3"]


def test_a_fill_lists_a_stale_run_as_to_train_and_retrains_it_in_place(stored):
    old, new, root = stored
    before = survey([new], root)
    assert before.stale == [new] and before.missing == [new] and not before.stored
    assert survey([old], root).stored == [old]
    folder = find_result(new, root).path
    rerun = run_or_load(new, device="cpu", progress=False, root=root, complete_evaluation=True)
    assert rerun.path == folder  # the same key's folder, replaced
    assert satisfies(rerun, new)
    record = json.loads((folder / RUN_FILE).read_text())
    assert record["config"]["fgsm_eps"] == [0.1, 0.3]
    assert sorted(rerun.metrics["windows"]["table1"]["fgsm"]["as_released"]) == ["0.1", "0.3"]
    assert survey([new], root).stored == [new]
    assert [p.name for p in folder.parent.iterdir() if p.name.startswith(".tmp")] == []


def test_a_run_json_from_before_the_field_counts_as_its_default(stored, monkeypatch):
    old, new, root = stored
    path = find_result(old, root).path / RUN_FILE
    record = json.loads(path.read_text())
    del record["config"]["fgsm_eps"]
    path.write_text(json.dumps(record))
    _never_train(monkeypatch)
    assert satisfies(find_result(old, root), old)
    assert not satisfies(find_result(new, root), new)


def test_a_checkpoint_is_never_resumed_across_evaluations(stored):
    old, new, root = stored
    assert checkpoint_path(old, root).name == f"{old.key()}.pt"
    assert checkpoint_path(new, root) != checkpoint_path(old, root)


def test_the_dry_run_says_stale_evaluation(stored, monkeypatch, capsys):
    old, new, root = stored
    monkeypatch.setattr(
        "sgmcmc_paper.engine.fill.select_configs", lambda *a, **k: [new], raising=True
    )
    assert main(["fill", "--profile", "ci", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "0 stored, 1 missing (1 of them stale evaluation" in out
    assert "stale evaluation, retrained: sgd" in out
