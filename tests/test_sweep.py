"""The sweep: grids, budget accounting, selection, resume, failures, Ray against serial.

Most tests plant the trial function (validation accuracy and compute as known functions of the
grid point, a file-backed store that counts recomputations), so budget, selection and resume are
checked exactly and in milliseconds. Ray tests share one local Ray instance (module fixture,
~10 s to start here); one of them runs a tiny real sweep on the run engine at the ci profile.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import sys
from pathlib import Path

import pytest

from sgmcmc.samplers.base import CONVENTIONS
from sgmcmc_paper.cli import main
from sgmcmc_paper.errors import UserError
from sgmcmc_paper.protocol.hparams import tuned_overrides
from sgmcmc_paper.protocol.paper import LANGEVIN_METHODS, METHODS
from sgmcmc_paper.sweep import grid_for, plot_sweep, run_sweep, trial_table
from sgmcmc_paper.sweep.engines import run_serial
from sgmcmc_paper.sweep.grids import Axis, Grid
from sgmcmc_paper.sweep.plan import Plan
from sgmcmc_paper.sweep.walk import DONE, WAIT, Outcome, Walk

TESTS = Path(__file__).resolve().parent


# --------------------------------------------------------------------------- planted trials
class Planted:
    """A trial function with known answers, picklable for Ray workers.

    Accuracy peaks at ``lr = peak``: ``0.9 − 0.01·(log10(lr/peak))²`` (minus 0.001 per unit of
    ``lr_decay`` below 1, so the schedule stage keeps the constant rate); compute is
    ``seconds`` per trial (``lr``-dependent when ``seconds`` is a dict). Trials whose ``lr`` is
    in ``fail`` raise, in ``diverge`` report divergence. With ``store`` set, outcomes persist
    as files there (a rerun loads them, ``reused=True``) and every computation appends a line
    to ``store/computed.log``; ``interrupt_after`` computations raise ``KeyboardInterrupt``.
    """

    def __init__(
        self, peak=0.02, seconds=1.0, fail=(), diverge=(), store=None, interrupt_after=None
    ):
        self.peak, self.seconds = peak, seconds
        self.fail, self.diverge = set(fail), set(diverge)
        self.store, self.interrupt_after = store, interrupt_after

    def __call__(self, fields):
        name = json.dumps(fields, sort_keys=True)
        record = None
        if self.store is not None:
            path = Path(self.store) / f"{hashlib.sha256(name.encode()).hexdigest()[:16]}.json"
            if path.exists():
                return {**json.loads(path.read_text()), "reused": True}
            log = Path(self.store) / "computed.log"
            done = len(log.read_text().splitlines()) if log.exists() else 0
            if self.interrupt_after is not None and done >= self.interrupt_after:
                raise KeyboardInterrupt
        lr = fields["lr"]
        if lr in self.fail:
            raise RuntimeError(f"planted failure at lr={lr}")
        seconds = self.seconds[lr] if isinstance(self.seconds, dict) else self.seconds
        if lr in self.diverge:
            record = {
                "status": "diverged",
                "reason": "non-finite loss at step 3",
                "compute_s": seconds,
            }
        else:
            accuracy = 0.9 - 0.01 * math.log10(lr / self.peak) ** 2
            accuracy -= 0.001 * (1 - fields.get("lr_decay", 1.0)) / 0.05
            record = {"status": "ok", "val_accuracy": accuracy, "compute_s": seconds}
        if self.store is not None:
            path.write_text(json.dumps(record))
            with open(log, "a") as handle:
                handle.write(name + "\n")
        return record


def computed(store: Path) -> int:
    log = store / "computed.log"
    return len(log.read_text().splitlines()) if log.exists() else 0


@pytest.fixture(autouse=True)
def results(tmp_path, monkeypatch):
    """Every test writes its selection files into its own store."""
    monkeypatch.setenv("SGMCMC_RESULTS", str(tmp_path / "results"))
    return tmp_path / "results"


@pytest.fixture(scope="module")
def ray_local():
    """One local Ray instance for the module; workers can import this test file (planted)."""
    ray = pytest.importorskip("ray")
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        logging_level="ERROR",
        runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join([str(TESTS), *sys.path])}},
    )
    yield ray
    ray.shutdown()


# --------------------------------------------------------------------------- grids
@pytest.mark.parametrize("convention", CONVENTIONS)
@pytest.mark.parametrize("method", METHODS)
def test_every_grid_has_six_log_spaced_rates_default_first(method, convention):
    grid = grid_for(method, convention, 50_000)
    rates = sorted(grid.axes[0].values)
    assert len(rates) >= 6
    ratios = [b / a for a, b in itertools.pairwise(rates)]
    assert all(r == pytest.approx(math.sqrt(10), rel=0.06) for r in ratios)  # 3.33 or 3
    assert grid.axes[0].walk_order()[0] == grid.axes[0].default
    names = [axis.name for axis in grid]
    assert names[:2] == ["lr", "lr_decay"]
    assert ("psgld_alpha" in names) == (method == "psgld")
    assert ("kfac_damping" in names and "kfac_ema_decay" in names) == (method == "ksgld")
    langevin = method in LANGEVIN_METHODS and convention == "langevin"
    assert ("temperature" in names) == langevin


def test_langevin_rates_move_with_the_training_size():
    """Potential units: the same gradient step needs an N times smaller rate."""
    full = grid_for("sgld", "langevin", 50_000).axes[0].values
    small = grid_for("sgld", "langevin", 5_000).axes[0].values
    assert all(s == pytest.approx(10 * f) for s, f in zip(small, full, strict=True))
    assert (
        grid_for("sgld", "paper", 5_000).axes[0].values
        == grid_for("sgld", "paper", 50).axes[0].values
    )


def test_walk_order_goes_outwards_from_the_default():
    axis = Axis("lr", (1, 2, 3, 4, 5, 6, 7), 3)
    assert axis.walk_order() == (3, 4, 2, 5, 1, 6, 7)


# --------------------------------------------------------------------------- budget
def test_no_trial_is_launched_that_is_predicted_to_overrun_the_budget():
    """Planted 2 s trials, 2 s expected, 7 s budget: after 3 trials (6 s) a fourth is predicted
    to end at 8 s > 7 s, so the walk stops at 86% of the budget instead of overrunning it."""
    grid = grid_for("sgld", "paper", 1000)
    walk = Walk(grid, budget_s=7.0, expected_s=2.0)
    run_serial(Plan([walk]), Planted(seconds=2.0))
    assert len(walk.trials) == 3 and walk.compute_s == 6.0
    assert walk.stop_reason == "budget reached"
    exact = Walk(grid, budget_s=8.0, expected_s=2.0)  # a trial that ends on the budget runs
    run_serial(Plan([exact]), Planted(seconds=2.0))
    assert len(exact.trials) == 4 and exact.compute_s == 8.0


def test_the_prediction_is_the_mean_of_the_trials_so_far():
    """Planted times 1, 2, 3, 4 s in walk order, 5.5 s budget: after 1 + 2 s the mean 1.5 s
    predicts 4.5 s, so the third runs; it takes 3 s, and the 0.5 s overrun is the prediction's
    error. With nothing expected, a walk stops only when finished compute reaches the budget."""
    grid = grid_for("sgld", "paper", 1000)
    seconds = dict(zip(grid.axes[0].walk_order(), [1.0, 2.0, 3.0, 4.0, 5, 6, 7], strict=True))
    walk = Walk(grid, budget_s=5.5)
    run_serial(Plan([walk]), Planted(seconds=seconds))
    assert len(walk.trials) == 3 and walk.compute_s == 6.0


def test_running_trials_count_as_predicted_and_finish():
    """Two slots, 1.5 s per trial, 4 s budget: two running trials plus a third are predicted at
    4.5 s, so the third waits for the finished compute; running trials always finish."""
    walk = Walk(grid_for("sgld", "paper", 1000), budget_s=4.0, expected_s=1.5)
    first, second = walk.propose(), walk.propose()  # 0 + 2 x 1.5 <= 4
    walk.record(first.index, Outcome("ok", val_accuracy=0.5, compute_s=1.5))
    assert walk.propose() == DONE and walk.stop_reason == "budget reached"  # 1.5 + 2 x 1.5 > 4
    assert not walk.done  # the second trial is still running
    walk.record(second.index, Outcome("ok", val_accuracy=0.6, compute_s=1.5))
    assert walk.done and walk.compute_s == 3.0 and len(walk.trials) == 2


def test_a_stage_waits_for_the_previous_one_to_finish():
    grid = Grid("sgd", "paper", (Axis("lr", (0.1, 0.2), 0.1), Axis("lr_decay", (1.0, 0.9), 1.0)))
    walk = Walk(grid)
    a, b = walk.propose(), walk.propose()
    assert walk.propose() == WAIT
    walk.record(a.index, Outcome("ok", val_accuracy=0.5))
    assert walk.propose() == WAIT
    walk.record(b.index, Outcome("ok", val_accuracy=0.7))
    c = walk.propose()
    assert c.fields == {"method": "sgd", "convention": "paper", "lr": 0.2, "lr_decay": 0.9}
    walk.record(c.index, Outcome("ok", val_accuracy=0.6))
    assert walk.propose() == DONE and walk.stop_reason == "grid exhausted"
    assert walk.selected() is b


def test_sweep_reports_budget_used_in_sgd_times(results):
    (result,) = run_sweep(
        ["sgld"],
        profile="ci",
        budget=3,
        engine="serial",
        log=None,
        trial=Planted(seconds=2.0),
        bracket=False,
    )
    # reference 2 s -> 6 s budget -> three 2 s trials
    assert len(result.walk.trials) == 3 and result.budget_used == pytest.approx(3.0)
    saved = json.loads((results / "hparams" / "ci.json").read_text())["sweeps"][result.key]
    assert saved["budget_used"] == pytest.approx(3.0) and saved["reference"]["compute_s"] == 2.0


# --------------------------------------------------------------------------- selection
def test_selection_picks_the_planted_best_and_walks_the_later_stages(results):
    """Peak at lr 0.2 (in the paper-convention SGLD grid); lr_decay < 1 is planted worse."""
    (result,) = run_sweep(
        ["sgld"],
        profile="ci",
        budget=math.inf,
        engine="serial",
        log=None,
        trial=Planted(peak=0.2),
        bracket=False,
    )
    grid = grid_for("sgld", "paper", 2000)
    assert len(result.walk.trials) == grid.size and result.walk.stop_reason == "grid exhausted"
    assert result.hparams == {"lr": 0.2, "lr_decay": 1.0}
    later = [t for t in result.walk.trials if t.stage == 1]
    assert {t.fields["lr"] for t in later} == {0.2}  # the schedule is tuned at the best rate
    assert tuned_overrides("ci", "sgld", "paper", 2000) == {"lr": 0.2, "lr_decay": 1.0}


def test_ties_go_to_lower_nll_then_to_the_earlier_trial():
    grid = Grid("sgd", "paper", (Axis("lr", (0.1, 0.2, 0.3), 0.2),))
    walk = Walk(grid)
    trials = [walk.propose() for _ in range(3)]
    walk.record(trials[0].index, Outcome("ok", val_accuracy=0.9, val_nll=0.3))
    walk.record(trials[1].index, Outcome("ok", val_accuracy=0.9, val_nll=0.2))
    walk.record(trials[2].index, Outcome("ok", val_accuracy=0.9, val_nll=0.2))
    assert walk.selected() is trials[1]


def test_failed_and_diverged_trials_are_recorded_and_the_sweep_goes_on(results):
    trial = Planted(peak=0.02, fail={0.06}, diverge={0.006})
    (result,) = run_sweep(
        ["sgld"],
        profile="ci",
        budget=math.inf,
        max_trials=5,
        engine="serial",
        log=None,
        trial=trial,
        bracket=False,
    )
    table = trial_table("ci").set_index("lr")
    assert table.loc[0.06, "status"] == "failed"
    assert "RuntimeError: planted failure at lr=0.06" in table.loc[0.06, "reason"]
    assert table.loc[0.006, "status"] == "diverged"
    assert table.loc[0.006, "reason"] == "non-finite loss at step 3"
    assert len(table) == 5 and result.hparams["lr"] == 0.02


def test_nothing_selected_when_every_trial_fails(results):
    (result,) = run_sweep(
        ["sgld"],
        profile="ci",
        budget=math.inf,
        engine="serial",
        log=None,
        trial=Planted(diverge=grid_for("sgld", "paper", 1).axes[0].values),
    )  # the SGD reference (lr 0.01) is not on the SGLD grid and succeeds
    assert result.selected is None and result.walk.stop_reason == "no successful trial to build on"


def test_selection_file_is_merged_not_overwritten(results):
    for method in ("sgld", "psgld"):
        run_sweep(
            [method],
            profile="ci",
            budget=2,
            engine="serial",
            log=None,
            trial=Planted(),
        )
    content = json.loads((results / "hparams" / "ci.json").read_text())
    assert sorted(content["selected"]) == ["paper/psgld/2000", "paper/sgld/2000"]
    assert sorted(content["sweeps"]) == ["paper/psgld/2000", "paper/sgld/2000"]
    assert not list((results / "hparams").glob(".*tmp"))


def test_a_corrupt_selection_file_is_a_user_error(results):
    (results / "hparams").mkdir(parents=True)
    (results / "hparams" / "ci.json").write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        run_sweep(
            ["sgld"],
            profile="ci",
            budget=1,
            engine="serial",
            log=None,
            trial=Planted(),
        )


# --------------------------------------------------------------------------- resume
def test_an_interrupted_sweep_resumes_without_recomputing(tmp_path, ray_local):
    """Serial sweep interrupted after 3 computations; the rerun (on Ray) computes only the
    rest, and ends where an uninterrupted sweep ends."""
    store = tmp_path / "planted-store"
    store.mkdir()
    kwargs = dict(profile="ci", budget=4.5, log=None, bracket=False)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(
            ["sgld"],
            engine="serial",
            trial=Planted(store=store, interrupt_after=3),
            **kwargs,
        )
    assert computed(store) == 3  # the reference and two trials
    (resumed,) = run_sweep(["sgld"], engine="ray", trial=Planted(store=store), **kwargs)
    assert computed(store) == 3 + resumed.recomputed
    assert [t.outcome.reused for t in resumed.walk.trials] == [True, True] + [False] * (
        len(resumed.walk.trials) - 2
    )
    fresh_store = tmp_path / "fresh"
    fresh_store.mkdir()
    (fresh,) = run_sweep(["sgld"], engine="serial", trial=Planted(store=fresh_store), **kwargs)
    assert [t.fields for t in fresh.walk.trials] == [t.fields for t in resumed.walk.trials]
    assert fresh.hparams == resumed.hparams
    (again,) = run_sweep(["sgld"], engine="serial", trial=Planted(store=store), **kwargs)
    assert again.recomputed == 0 and computed(store) == 3 + resumed.recomputed


# --------------------------------------------------------------------------- Ray
def test_ray_runs_the_same_trials_and_selects_the_same_as_serial(ray_local):
    trial = Planted(peak=0.06, fail={0.2}, diverge={0.002})
    kwargs = dict(profile="ci", budget=math.inf, log=None, trial=trial, write=False)
    (on_ray,) = run_sweep(["psgld"], engine="ray", **kwargs)
    (serial,) = run_sweep(["psgld"], engine="serial", **kwargs)

    def seen(result):  # a failed trial's compute is its measured (tiny) wall time
        return [{**t.row(), "compute_s": None} for t in result.walk.trials]

    assert seen(on_ray) == seen(serial)
    assert on_ray.hparams == serial.hparams and on_ray.hparams["lr"] == 0.06
    failed = [t.outcome for t in on_ray.walk.trials if t.outcome.status == "failed"]
    assert len(failed) == 1 and "planted failure" in failed[0].reason


def _mnist_or_skip():
    from sgmcmc_paper.data.mnist import cache_file

    if not cache_file().exists():
        pytest.skip("MNIST is not in the dataset cache; run `sgmcmc data` to enable this test")


def test_a_tiny_real_sweep_on_ray_lands_in_the_store_and_serial_agrees(results, ray_local):
    """The run engine at the ci profile on 512 images (one step per epoch), two grid points
    per method, on the local Ray instance; then the serial engine over the same store."""
    _mnist_or_skip()
    kwargs = dict(profile="ci", train_sizes=[512], max_trials=2, device="cpu", log=None)
    on_ray = run_sweep(["sgld", "psgld"], engine="ray", **kwargs)
    for result in on_ray:
        assert len(result.walk.trials) == 2 and result.walk.stop_reason.startswith("max_trials")
        assert all(t.outcome.status == "ok" and not t.outcome.reused for t in result.walk.trials)
        for trial in result.walk.trials:
            assert (results / "ci" / trial.outcome.key / "run.json").is_file()
        assert 0 < result.selected.outcome.val_accuracy <= 1
        assert tuned_overrides("ci", result.method, "paper", 512) == result.hparams
    serial = run_sweep(["sgld", "psgld"], engine="serial", **kwargs)
    assert [r.hparams for r in serial] == [r.hparams for r in on_ray]
    assert [r.recomputed for r in serial] == [0, 0]
    assert all(t.outcome.reused for r in serial for t in r.walk.trials)


# --------------------------------------------------------------------------- CLI, table, plot
@pytest.mark.parametrize(
    "argv",
    [
        ["--method", "sgld", "--profile", "ci", "--train-size", "abc"],
        ["--method", "sgld", "--profile", "ci", "--budget", "0"],
        ["--method", "sgld", "--profile", "ci", "--max-trials", "0"],
        ["--method", "sgld", "--profile", "nope"],
        ["--method", "sgld", "--profile", "ci", "--train-size", "999999"],
        ["--method", "sgld", "--profile", "quick"],
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(argv, capsys):
    assert main(["sweep", *argv]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: ")


def test_table_and_plot_show_every_trial(results):
    run_sweep(
        ["sgld", "ksgld"],
        profile="ci",
        budget=4,
        engine="serial",
        log=None,
        trial=Planted(fail={0.06}),
    )
    table = trial_table("ci")
    assert set(table["method"]) == {"sgld", "ksgld"}
    assert table.groupby("method")["selected"].sum().tolist() == [1, 1]
    figure = plot_sweep(table)
    assert len(figure.axes) == 1 and figure.axes[0].get_xscale() == "log"
    assert sorted(t.get_text() for t in figure.axes[0].get_legend().get_texts()) == [
        "ksgld",
        "sgld",
    ]
