"""The order a fill trains the plan's runs in (protocol.plan.FILL_PRIORITY), declared once."""

from __future__ import annotations

from sgmcmc_paper.cli import main
from sgmcmc_paper.engine.fill import priority_groups
from sgmcmc_paper.protocol import plan


def test_the_fill_order_starts_with_table_1_figs_1_and_4_and_covers_every_notebook():
    order = plan.fill_order()
    assert order[:3] == list(plan.MAIN_SEED_NOTEBOOKS)
    assert sorted(order) == sorted(plan.NOTEBOOK_RUNS)
    assert order.index("03_small_mnist") > order.index("02_mixing")
    configs = plan.notebook_configs("ci")
    first = {c.key() for c in plan.notebook_configs("ci", order[0])}
    assert {c.key() for c in configs[: len(first)]} == first  # most needed first


def test_a_notebook_not_in_the_priority_list_slots_in_after_it(monkeypatch):
    monkeypatch.setitem(plan.NOTEBOOK_RUNS, "99_new_chapter", plan.mixing_configs)
    assert plan.fill_order()[-1] == "99_new_chapter"
    monkeypatch.setattr(plan, "FILL_PRIORITY", ("99_new_chapter", *plan.FILL_PRIORITY))
    assert plan.fill_order()[0] == "99_new_chapter"


def test_each_missing_run_is_counted_once_under_the_first_notebook_that_needs_it(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("SGMCMC_RESULTS", str(tmp_path))
    missing = plan.notebook_configs("ci")
    groups = priority_groups("ci", missing)
    assert [stem for stem, _ in groups] == [
        s for s in plan.fill_order() if any(stem == s for stem, _ in groups)
    ]
    assert sorted(c.key() for _, g in groups for c in g) == sorted(c.key() for c in missing)
    assert "02_mixing" not in dict(groups)  # its runs are 01's
    assert main(["fill", "--profile", "ci", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "in the order a fill trains them (protocol.plan.FILL_PRIORITY)" in out
    assert f"  1. {groups[0][0]}: {len(groups[0][1])} runs;" in out
