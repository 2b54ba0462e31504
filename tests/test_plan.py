"""``sgmcmc_paper.protocol.plan``: one run plan per book notebook, and what the store lacks of
it."""

import re

import nbformat
import pytest

from sgmcmc_paper.book.notebooks import source_notebooks
from sgmcmc_paper.protocol.plan import (
    DIAGNOSIS_SEED,
    NOTEBOOK_RUNS,
    by_train_size,
    missing_runs,
    notebook_configs,
    notebook_runs,
    small_configs,
)
from sgmcmc_paper.protocol.profiles import get_profile

#: What builds configs besides the plan: a notebook calling one of these could train runs the
#: plan does not count.
BUILDERS = (
    "reproduction_configs(",
    "langevin_configs(",
    "main_configs(",
    "mixing_configs(",
    "small_configs(",
    "small_mnist_configs(",
    "gradient_or_noise_configs(",
    "noise_convention_configs(",
    "RunConfig",
)


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
    with pytest.raises(KeyError, match="01_test_accuracy"):
        notebook_runs("99_nothing", "ci", (0,))


def test_notebooks_get_their_runs_from_the_plan_and_nowhere_else():
    """Each notebook with runs asks :func:`notebook_runs` for its own stem's, and builds no
    config itself: the plan and what the notebook trains cannot disagree."""
    for path in source_notebooks():
        nb = nbformat.read(path, as_version=4)
        source = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
        calls = re.findall(r"notebook_runs\(\s*\"([^\"]+)\"", source)
        if notebook_configs("ci", path.stem):
            assert calls == [path.stem], path.name
        else:
            assert calls == [] and "run_all(" not in source and "session.run(" not in source
        for builder in BUILDERS:
            assert builder not in source, (path.name, builder)


def test_notebook_runs_are_the_plan_s_configs_with_the_notebook_s_labels():
    seeds = get_profile("ci").seeds
    for stem in NOTEBOOK_RUNS:
        runs = notebook_runs(stem, "ci", seeds)
        assert _keys(runs.values()) == _keys(notebook_configs("ci", stem)), stem
        # chapter 08's tracked runs have a seed of their own, so that tracking them
        # re-evaluates no other chapter's run (plan.DIAGNOSIS_SEED)
        own = {DIAGNOSIS_SEED} if stem == "08_ksgld_at_scale" else set()
        assert {seed for _, _, seed in runs} <= set(seeds) | own
    assert {label for label, _, _ in notebook_runs("01_test_accuracy", "ci", seeds)} == {
        "as released",
        "as described",
    }
    assert {method for _, method, _ in notebook_runs("02_mixing", "ci", seeds)} == {
        "sgd",
        "sgld",
        "psgld",
        "ksgld",
    }  # FSGD's chain is SGD's


def test_fig3_runs_split_back_into_one_plan_per_size():
    profile = get_profile("quick")
    runs = notebook_runs("03_small_mnist", "quick", profile.seeds)
    split = by_train_size(runs)
    assert list(split) == list(profile.small_train_sizes)
    for size, configs in split.items():
        expected = small_configs("quick", profile.seeds, size)
        assert list(configs) == list(expected)  # the labels of one size: "as released", ...
        assert [c.key() for c in configs.values()] == [c.key() for c in expected.values()]
