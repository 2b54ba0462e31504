"""The cyclical search (``sgmcmc sweep --cyclical``): the samplers tuned under Zhang et al.'s
schedule on the same walk and budget as the other searches, the selection recorded as
``<method>+cyclical`` and read by chapter 09's cyclical runs. Planted trials (validation accuracy
a known function of the grid point) check the walk and the record in milliseconds; every planted
trial also builds its run config, so every trial is a valid cyclical run; one tiny real search
(skipped without MNIST) checks the score of a stored trial."""

from __future__ import annotations

import json
import math

import pytest

from sgmcmc.schedules import sampling_stage
from sgmcmc_paper.cli import main
from sgmcmc_paper.protocol.alternatives import (
    SAMPLING_WINDOW,
    alternatives_configs,
    cyclical_fields,
)
from sgmcmc_paper.protocol.profiles import get_profile
from sgmcmc_paper.sweep import plot_sweep, run_sweep, trial_table
from sgmcmc_paper.sweep.engines import run_serial
from sgmcmc_paper.sweep.grids import Axis, Grid, cyclical_grid
from sgmcmc_paper.sweep.plan import Plan
from sgmcmc_paper.sweep.report import axis_table
from sgmcmc_paper.sweep.trial import trial_config
from sgmcmc_paper.sweep.walk import Walk

#: The planted optimum: a peak rate, two cycles, a quarter-ish of each cycle exploring, and
#: pSGLD's constants of a planted plain search.
PEAK = {"lr": 0.06, "cycles": 2, "cycle_exploration": 0.3, "psgld_eps": 1e-2, "psgld_alpha": 0.95}


class Planted:
    """Accuracy ``0.9 − 0.01·Σ (log(value/peak))²`` over the fields a trial has (log base 2
    for cycles, 10 otherwise; ``1 − value`` for α), SGD reference 0.5; compute 1 s. Builds
    every trial's run config first (``configs``), as the run engine would."""

    def __init__(self, profile="ci"):
        self.profile, self.configs = profile, []

    def __call__(self, fields):
        config = trial_config(self.profile, fields)
        self.configs.append(config)
        if config.method == "sgd":
            return {"status": "ok", "val_accuracy": 0.5, "compute_s": 1.0}
        accuracy = 0.9
        for name, peak in PEAK.items():
            if name in fields:
                value = fields[name]
                value, peak = (1 - value, 1 - peak) if name == "psgld_alpha" else (value, peak)
                log = math.log2 if name == "cycles" else math.log10
                accuracy -= 0.01 * log(value / peak) ** 2
        return {"status": "ok", "val_accuracy": accuracy, "compute_s": 1.0}


@pytest.fixture(autouse=True)
def results(tmp_path, monkeypatch):
    monkeypatch.setenv("SGMCMC_RESULTS", str(tmp_path / "results"))
    return tmp_path / "results"


def _walk(grid, trial):
    walk = Walk(grid, bracket=True)
    run_serial(Plan([walk]), trial)
    return walk


def test_counts_extend_by_whole_steps_and_fractions_stay_inside_zero_one():
    """Cycles extend geometrically as integers and never below 1; an exploration fraction
    extends in ``value`` downwards and in ``1 − value`` upwards, never reaching 0 or 1."""

    def peak(**at):
        def trial(fields):
            name, value = next(iter(at.items()))
            return {"status": "ok", "val_accuracy": -abs(math.log(fields[name] / value))}

        return trial

    lr = Axis("lr", (0.02,), 0.02)
    cycles = Grid("sgld", "paper", (lr, Axis("cycles", (1, 2, 4), 2)))
    walk = _walk(cycles, peak(cycles=12))
    assert sorted({t.fields["cycles"] for t in walk.trials}) == [1, 2, 4, 8, 16, 32]
    assert all(isinstance(t.fields["cycles"], int) for t in walk.trials)
    assert walk.selected().fields["cycles"] == 16 and "cycles=16" not in walk.stop_reason
    walk = _walk(cycles, peak(cycles=0.1))
    assert walk.selected().fields["cycles"] == 1
    assert walk.notes[-1] == "cycles=1 sits at the edge of its range"  # (lr: one value)

    fraction = Grid("sgld", "paper", (lr, Axis("cycle_exploration", (0.25, 0.5, 0.75), 0.5)))
    up = _walk(fraction, peak(cycle_exploration=0.99))
    assert sorted({t.fields["cycle_exploration"] for t in up.trials})[-3:] == [
        0.875,
        0.9375,
        0.96875,
    ]
    down = _walk(fraction, peak(cycle_exploration=0.1))
    assert sorted({t.fields["cycle_exploration"] for t in down.trials})[:2] == [0.0625, 0.125]
    assert down.selected().fields["cycle_exploration"] == 0.125


def test_the_grid_keeps_the_cycles_whose_last_step_samples():
    """The schedule's cycles are ``ceil(K/M)`` steps long: a trial keeps the cycles after which
    its last step samples at every exploration fraction (0.75 the largest). Full MNIST at ci
    (98 steps): 8 cycles of 13 steps end 6 steps into the last, so 1, 2, 4; ci's 2,000 images
    (4 steps): 1; the paper's trial (980 steps): all four."""
    assert trial_config("ci", {"method": "sgld", "train_size": 2000}).total_steps == 4
    assert trial_config("paper", {"method": "sgld", "train_size": None}).total_steps == 980
    for steps, kept, default in [(98, (1, 2, 4), 4), (4, (1,), 1), (980, (1, 2, 4, 8), 4)]:
        grid = cyclical_grid("sgld", "paper", 50_000, total_steps=steps)
        assert (grid.axes[1].values, grid.defaults()["cycles"]) == (kept, default)
        for cycles in kept:
            fields = {**grid.defaults(), "cycles": cycles, "cycle_exploration": 0.75}
            assert sampling_stage(steps, steps, cycles, 0.75), fields


def test_the_cyclical_search_brackets_every_axis_on_the_same_budget(results):
    """SGLD under the cyclical schedule on all 50,000 images at ci (98 steps a trial): every
    trial is a cyclical run (its cycles, ``lr_decay = 1``, scored by one window of the
    validation images ending at the last step), the walk brackets rate, cycles and exploration
    (0.25 selected between the extension 0.125 and 0.5), the budget is the profile's multiple
    of the SGD reference, and the selection is written as ``paper/sgld+cyclical/full``."""
    planted = Planted()
    (result,) = run_sweep(
        ["sgld"], profile="ci", train_sizes=[None], engine="serial", log=None,
        trial=planted, cyclical=True,
    )  # fmt: skip
    assert result.key == "paper/sgld+cyclical/full"
    assert result.hparams == {"lr": 0.06, "cycles": 2, "cycle_exploration": 0.25}
    trials = [c for c in planted.configs if c.method == "sgld"]
    assert len(trials) == len(result.walk.trials)  # every point built a valid config
    assert all(t.outcome.status == "ok" for t in result.walk.trials)
    for config in trials:
        assert config.cycles in (1, 2, 4) and config.lr_decay == 1.0
        (window,) = config.windows
        assert window.name == SAMPLING_WINDOW and window.sets == ("test",)
        assert window.steps(config.steps_per_epoch)[-1] == config.total_steps
        assert config.evaluate_on == "validation" and config.epochs == 1

    content = json.loads((results / "hparams" / "ci.json").read_text())
    assert content["selected"] == {"paper/sgld+cyclical/full": result.hparams}
    entry = content["sweeps"]["paper/sgld+cyclical/full"]
    assert (entry["method"], entry["schedule"], entry["walk"]) == ("sgld", "cyclical", "bracket")
    assert entry["budget"] == get_profile("ci").sweep_budget == 5.0
    assert entry["budget_s"] == 5.0 * entry["reference"]["compute_s"]
    assert entry["notes"] == [] and entry["stop_reason"] == "every axis bracketed"
    for name, tried in [("lr", 0.02), ("cycles", 1), ("cycle_exploration", 0.125)]:
        axis = entry["axes"][name]
        assert axis["inside"] and tried in axis["tried"], (name, axis)
        assert axis["slice"][0] < axis["selected"] < axis["slice"][-1]
    assert set(trial_table("ci")["method"]) == {"sgld+cyclical"}


def test_chapter_09_runs_the_selection_with_the_constants_its_trials_held(results):
    """At ci's own size (2,000 images, one cycle of 4 steps): a plain pSGLD search first, then
    SGLD and pSGLD under the cyclical schedule. pSGLD's cyclical trials hold its selected λ and
    α, the selection records them, the cycles axis is recorded at the edge of its range, the
    others strictly inside, and chapter 09's cyclical runs take the selection (new keys) while
    KSGLD, not searched, keeps its run."""
    before = alternatives_configs("ci", [0])
    run_sweep(["psgld"], profile="ci", engine="serial", log=None, trial=Planted())
    planted = Planted()
    results_ = run_sweep(
        ["sgld", "psgld"], profile="ci", engine="serial", log=None, trial=planted, cyclical=True
    )
    held = {"psgld_eps": 1e-2, "psgld_alpha": 0.95, "psgld_average": "square"}
    for config in planted.configs:
        if config.method == "psgld":
            assert (config.psgld_eps, config.psgld_alpha, config.psgld_average) == tuple(
                held.values()
            )
    selected = {r.key: r.hparams for r in results_}
    assert selected == {
        "paper/sgld+cyclical/2000": {"lr": 0.06, "cycles": 1, "cycle_exploration": 0.25},
        "paper/psgld+cyclical/2000": {
            "lr": 0.06, "cycles": 1, "cycle_exploration": 0.25, **held
        },
    }  # fmt: skip
    for result in results_:
        assert all(t.outcome.status == "ok" for t in result.walk.trials)
        axes = result.axes()
        assert axes["lr"]["inside"] and axes["cycle_exploration"]["inside"]
        assert axes["cycles"]["tried"] == [1]
        assert result.walk.notes == ["cycles=1 sits at the edge of its range"]

    table = axis_table("ci")  # notebook 00's tables and plot tell the two searches apart
    assert set(table["method"]) == {"psgld", "sgld+cyclical", "psgld+cyclical"}
    cyclical = table[table["method"] == "sgld+cyclical"].set_index("axis")
    assert list(cyclical.index) == ["lr", "cycles", "cycle_exploration"]
    assert cyclical["inside"].tolist() == [True, False, True]
    legend = plot_sweep(trial_table("ci")).axes[0].get_legend().get_texts()
    assert sorted(t.get_text() for t in legend) == ["psgld", "psgld+cyclical", "sgld+cyclical"]

    after = alternatives_configs("ci", [0])
    for method, choice in [("sgld", selected["paper/sgld+cyclical/2000"]),
                           ("psgld", selected["paper/psgld+cyclical/2000"])]:  # fmt: skip
        fields = cyclical_fields("ci", method)
        assert fields == {**choice, "lr_decay": 1.0}
        config = after[("cyclical", method, 0)]
        assert {k: getattr(config, k) for k in choice} == choice
        assert config.key() != before[("cyclical", method, 0)].key()
    assert after[("cyclical", "ksgld", 0)].key() == before[("cyclical", "ksgld", 0)].key()
    assert cyclical_fields("ci", "ksgld")["cycles"] == get_profile("ci").cycles


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--method", "sgd", "sgld", "--cyclical"], "sgd has none: drop it from --method"),
        (["--method", "sgld", "--cyclical", "--convention", "langevin"], "drop --convention"),
    ],
)
def test_cli_refuses_what_has_no_cyclical_schedule_in_one_line(argv, message, capsys):
    assert main(["sweep", "--profile", "ci", "--engine", "serial", *argv]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: ") and message in err


def test_a_tiny_real_cyclical_search_scores_the_sampling_window(results):
    """Two real SGLD trials at ci (4 steps each, one cycle, half of it exploring): each is a
    stored cyclical run whose score is its sampling window's averaged validation accuracy, over
    the two sampling-stage steps."""
    from sgmcmc_paper.data.mnist import cache_file
    from sgmcmc_paper.engine.store import load_result

    if not cache_file().exists():
        pytest.skip("MNIST is not in the dataset cache; run `sgmcmc data` to enable this test")
    (result,) = run_sweep(
        ["sgld"], profile="ci", engine="serial", device="cpu", max_trials=2, log=None,
        cyclical=True,
    )  # fmt: skip
    assert len(result.walk.trials) == 2
    for trial in result.walk.trials:
        assert trial.outcome.status == "ok", trial.outcome.reason
        stored = load_result(results / "ci" / trial.outcome.key)
        assert stored.config.cycles == 1 and stored.config.lr_decay == 1.0
        window = stored.metrics["windows"][SAMPLING_WINDOW]
        assert trial.outcome.val_accuracy == window["sets"]["test"]["averaged"]["accuracy"]
        assert (window["samples"], window["steps"]) == (2, [3, 4])  # steps 1, 2 explore


def test_a_selection_searched_on_longer_trials_fits_a_shorter_run(results):
    """The quick profile reads the paper's selection with 236-step runs: 16 cycles at β = 0.75
    would end its run exploring (cycles of 15 steps, the last cut to 11), so chapter 09 runs the
    most cycles below that end in a sampling stage (14); the rate and β stay as selected."""
    from sgmcmc_paper.protocol.alternatives import fitted_cycles
    from sgmcmc_paper.protocol.hparams import hparams_path

    assert fitted_cycles(236, 16, 0.75) == 14 and fitted_cycles(236, 8, 0.5) == 8
    assert fitted_cycles(1, 4, 0.5) == 1  # nothing fits: one cycle, which the config refuses
    choice = {"lr": 0.06, "cycles": 16, "cycle_exploration": 0.75}
    path = hparams_path("paper")
    path.parent.mkdir(parents=True)
    path.write_text(
        json.dumps({"profile": "paper", "selected": {"paper/sgld+cyclical/full": choice}})
    )
    config = alternatives_configs("quick", [0])[("cyclical", "sgld", 0)]
    assert config.total_steps == 236
    assert (config.lr, config.cycles, config.cycle_exploration) == (0.06, 14, 0.75)
    assert sampling_stage(236, 236, 14, 0.75) and not sampling_stage(236, 236, 16, 0.75)
