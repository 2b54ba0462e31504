"""Where "as released" and "as described" are the same runs, the tables say so."""

from __future__ import annotations

import pytest

from sgmcmc_paper.analysis import tables


@pytest.fixture(autouse=True)
def _empty_store(tmp_path, monkeypatch):
    """No selection file: full MNIST has no searched rates, as before the GPU search."""
    monkeypatch.setenv("SGMCMC_RESULTS", str(tmp_path / "results"))


def test_without_a_search_sgd_fsgd_and_sgld_share_their_runs_and_psgld_ksgld_do_not():
    configs = tables.reproduction_configs("paper", (0, 1))
    shared = tables.shared_runs(configs)
    assert shared == {
        "sgd": tables.SAME_RUNS,
        "fsgd": tables.SAME_RUNS,
        "sgld": tables.SAME_RUNS,
        "psgld": "different runs",  # Li et al.'s average against the released recursion
        "ksgld": "different runs",  # an updated K-FAC against the identity
    }


def test_a_selected_rate_separates_the_configurations(tmp_path):
    import json

    path = tmp_path / "results" / "hparams" / "paper.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"profile": "paper", "selected": {"paper/sgd/full": {"lr": 0.03}}}))
    shared = tables.shared_runs(tables.reproduction_configs("paper", (0,), methods=["sgd"]))
    assert shared == {"sgd": "different runs"}


def test_one_configuration_only_is_left_out():
    configs = tables.reproduction_configs("ci", (0,), configurations=["as released"])
    assert tables.shared_runs(configs) == {}


def test_the_chapters_line_names_both_groups():
    configs = tables.reproduction_configs("paper", (0,))
    assert tables.shared_runs_note(configs) == (
        "'as released' and 'as described' are the same runs for: SGD, FSGD, SGLD; "
        "different runs for: pSGLD, KSGLD"
    )
