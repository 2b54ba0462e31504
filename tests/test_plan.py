"""``sgmcmc_paper.protocol.plan``: one run plan per book notebook, and what the store lacks of
it."""

import pytest

from sgmcmc_paper.book.notebooks import source_notebooks
from sgmcmc_paper.protocol.plan import NOTEBOOK_RUNS, missing_runs, notebook_configs
from sgmcmc_paper.protocol.profiles import get_profile


def _keys(configs) -> set[str]:
    return {c.key() for c in configs}


def test_every_book_notebook_has_a_run_plan():
    assert set(NOTEBOOK_RUNS) == {p.stem for p in source_notebooks()}


def test_the_whole_plan_is_the_union_of_the_notebooks_plans_each_run_once():
    everything = notebook_configs("ci")
    assert len(everything) == len(_keys(everything))
    assert _keys(everything) == set().union(
        *(_keys(notebook_configs("ci", n)) for n in NOTEBOOK_RUNS)
    )


def test_each_notebook_plans_its_figures_runs():
    profile = get_profile("ci")
    main = _keys(notebook_configs("ci", "01_test_accuracy"))
    for stem in ("02_mixing", "04_adversarial", "05_out_of_distribution"):
        assert _keys(notebook_configs("ci", stem)) == main  # one run serves Figs. 1, 2, 4, Table 1
    assert notebook_configs("ci", "00_hyperparameters") == []
    small = notebook_configs("ci", "03_small_mnist")
    assert {c.train_size for c in small} == set(profile.small_train_sizes)
    assert {c.seed for c in small} == set(profile.seeds)
    eq = notebook_configs("ci", "06_gradient_or_noise")
    assert {(c.method, c.precondition) for c in eq} == {
        ("sgld", "both"),
        ("psgld", "both"),
        ("ksgld", "both"),
        ("psgld", "noise"),
        ("ksgld", "noise"),
    }
    assert {c.convention for c in eq} == {"langevin"}
    conventions = notebook_configs("ci", "07_noise_conventions")
    assert {c.convention for c in conventions} == {"langevin", "paper"}
    assert {c.temperature for c in conventions if c.convention == "langevin"} >= {1.0}
    assert _keys(c for c in conventions if c.convention == "paper") <= main


def test_missing_runs_of_an_empty_store_are_the_whole_plan(tmp_path, monkeypatch):
    monkeypatch.setenv("SGMCMC_RESULTS", str(tmp_path))
    assert _keys(missing_runs("ci", "03_small_mnist")) == _keys(
        notebook_configs("ci", "03_small_mnist")
    )
    assert missing_runs("ci", "00_hyperparameters") == []


def test_unknown_notebook_names_the_known_ones():
    with pytest.raises(KeyError, match="01_test_accuracy"):
        notebook_configs("ci", "99_nothing")
