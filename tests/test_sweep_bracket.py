"""The book's search: a bracketing walk (every selected value strictly inside the values tried
around it, grids extended at their edges, a second seed where the best two are within seed
noise) over the learning rate and each method's own constants, on planted trials."""

from __future__ import annotations

import json
import math

import pytest

from sgmcmc_paper.protocol.hparams import tuned_overrides
from sgmcmc_paper.protocol.profiles import as_described
from sgmcmc_paper.sweep import grid_for, run_sweep
from sgmcmc_paper.sweep.engines import run_serial
from sgmcmc_paper.sweep.grids import Axis, Grid
from sgmcmc_paper.sweep.plan import Plan
from sgmcmc_paper.sweep.walk import Walk


class Peaks:
    """Accuracy ``0.9 − 0.01·Σ (log10(value/peak))²`` over the planted axes (``peaks``), in
    ``1 − value`` for decay constants; ``seed_shift`` is added for ``seed = 1`` at the grid
    points whose fields match it; compute 1 s a trial."""

    def __init__(self, peaks, seed_shift=None, decays=("psgld_alpha",)):
        self.peaks, self.seed_shift, self.decays = peaks, seed_shift, decays

    def __call__(self, fields):
        accuracy = 0.9
        for name, peak in self.peaks.items():
            value = fields[name]
            if name in self.decays:
                value, peak = 1 - value, 1 - peak
            accuracy -= 0.01 * math.log10(value / peak) ** 2
        if fields.get("seed") == 1 and self.seed_shift is not None:
            match, shift = self.seed_shift
            if all(fields[k] == v for k, v in match.items()):
                accuracy += shift
        return {"status": "ok", "val_accuracy": accuracy, "compute_s": 1.0}


@pytest.fixture(autouse=True)
def results(tmp_path, monkeypatch):
    monkeypatch.setenv("SGMCMC_RESULTS", str(tmp_path / "results"))
    return tmp_path / "results"


def _walk(grid, trial, **options):
    walk = Walk(grid, bracket=True, **options)
    run_serial(Plan([walk]), trial)
    return walk


def test_a_stage_stops_once_its_best_is_bracketed():
    """Peak at 0.2 on 0.002…2 (default 0.02): 0.02, then 0.06 and 0.006, then 0.2, then 0.6:
    five trials, 0.2 selected with 0.06 and 0.6 tried around it."""
    grid = grid_for("sgld", "paper", 2000, schedule=False)
    walk = _walk(grid, Peaks({"lr": 0.2}))
    assert [t.fields["lr"] for t in walk.trials] == [0.02, 0.06, 0.006, 0.2, 0.6]
    assert walk.selected().fields["lr"] == 0.2
    assert walk.stop_reason == "every axis bracketed"


def test_an_edge_selection_extends_the_grid_and_searches_again():
    """Peak at 10, above the grid's 2: the axis is extended by half decades (6.32, 20) until
    6.32 is selected between 2 and 20."""
    grid = Grid("sgld", "paper", (Axis("lr", (0.02, 0.2, 2.0), 0.2),))
    walk = _walk(grid, Peaks({"lr": 10.0}))
    lrs = [t.fields["lr"] for t in walk.trials]
    assert lrs == [0.2, 2.0, 0.02, 20.0, 200.0]
    walk = _walk(grid, Peaks({"lr": 30.0}))
    assert walk.selected().fields["lr"] == 20.0
    assert sorted(t.fields["lr"] for t in walk.trials)[-1] == 200.0


def test_extensions_stop_at_the_cap_and_the_walk_says_so():
    grid = Grid("sgld", "paper", (Axis("lr", (0.02, 0.2, 2.0), 0.2),))
    walk = _walk(grid, Peaks({"lr": 1e9}), max_extensions=2)
    assert sorted(t.fields["lr"] for t in walk.trials)[-1] == 200.0  # 2 extensions: 20, 200
    assert walk.selected().fields["lr"] == 200.0
    assert walk.stop_reason == "lr=200 sits at the edge of its range after 2 extensions"


def test_decay_constants_extend_towards_one_in_one_minus_alpha():
    grid = Grid("psgld", "paper", (Axis("lr", (0.01, 0.02, 0.04), 0.02),
                                   Axis("psgld_alpha", (0.9, 0.99), 0.99)))  # fmt: skip
    walk = _walk(grid, Peaks({"lr": 0.02, "psgld_alpha": 0.9995}))
    alphas = sorted({t.fields["psgld_alpha"] for t in walk.trials})
    assert alphas == [0.9, 0.99, 0.999, 0.9999]
    assert walk.selected().fields["psgld_alpha"] == 0.999


def test_every_axis_is_searched_and_rebracketed_at_the_final_best():
    """pSGLD as described (Li et al.'s average): lr, then λ, then α. The rate's optimum moves
    with nothing here, so the final check adds nothing; every selected value lies strictly
    inside the values tried in its slice."""
    grid = grid_for("psgld", "paper", 2000, schedule=False, psgld_average="square")
    assert [axis.name for axis in grid] == ["lr", "psgld_eps", "psgld_alpha"]
    walk = _walk(grid, Peaks({"lr": 0.06, "psgld_eps": 1e-2, "psgld_alpha": 0.95}))
    best = walk.selected().fields
    assert (best["lr"], best["psgld_eps"], best["psgld_alpha"]) == (0.06, 1e-2, 0.95)
    assert {t.axis for t in walk.trials} == {"lr", "psgld_eps", "psgld_alpha"}


def test_a_second_seed_decides_between_two_points_within_seed_noise():
    """Peak at 0.02 and its neighbour 0.06 differ by 0.0023 < 2 binomial SE of a difference on
    10,000 images (0.0085): both run on seed 1, where the planted 0.02 loses 0.006, so the
    two-seed means pick 0.06 (0.8977 against 0.8970), which is then bracketed (0.2 tried)."""
    grid = grid_for("sgld", "paper", 2000, schedule=False)
    trial = Peaks({"lr": 0.02}, seed_shift=({"lr": 0.02}, -0.006))
    walk = _walk(grid, trial, noise_n=10_000)
    seeded = [t for t in walk.trials if t.fields.get("seed") == 1]
    assert sorted(t.fields["lr"] for t in seeded) == [0.02, 0.06]
    assert walk.selected().fields == {"method": "sgld", "convention": "paper", "lr": 0.06}
    assert walk.trials[-1].fields["lr"] == 0.2  # 0.06 is then bracketed above as well
    apart = _walk(grid, Peaks({"lr": 0.02}), noise_n=10**9)  # noise tiny: no second seed
    assert not any("seed" in t.fields for t in apart.trials)


def test_the_sweep_searches_the_described_configuration_and_records_every_axis(results):
    """run_sweep at ci: pSGLD's trials use Li et al.'s average (the "as described" pSGLD), its
    selection records the rule, and as_described takes the selection; the file records, per
    axis, the values tried and that the selected value lies strictly inside them."""
    trial = Peaks({"lr": 0.06, "psgld_eps": 1e-3, "psgld_alpha": 0.95})
    seen = []

    def planted(fields):
        seen.append(fields)
        return trial({**fields, "psgld_eps": fields.get("psgld_eps", 1e-3),
                      "psgld_alpha": fields.get("psgld_alpha", 0.95)})  # fmt: skip

    (result,) = run_sweep(["psgld"], profile="ci", engine="serial", log=None, trial=planted)
    assert all(f["psgld_average"] == "square" for f in seen if f["method"] == "psgld")
    assert result.hparams == {
        "lr": 0.06, "psgld_eps": 1e-3, "psgld_alpha": 0.95, "psgld_average": "square"
    }  # fmt: skip
    entry = json.loads((results / "hparams" / "ci.json").read_text())["sweeps"][result.key]
    assert entry["walk"] == "bracket" and entry["notes"] == []
    for name in ("lr", "psgld_eps", "psgld_alpha"):
        assert entry["axes"][name]["inside"], entry["axes"][name]
    assert tuned_overrides("ci", "psgld", "paper", 2000)["psgld_eps"] == 1e-3
    config = as_described("psgld", "ci")
    assert (config.psgld_average, config.psgld_eps, config.lr) == ("square", 1e-3, 0.06)


def test_as_described_psgld_ignores_a_selection_of_the_released_rule(results):
    """A selection searched with the released recursion (no psgld_average recorded) is not
    Li et al.'s: as_described keeps their α, λ and the default rate, and differs from
    as_released in the store key."""
    path = results / "hparams" / "ci.json"
    path.parent.mkdir(parents=True)
    selection = {"lr": 0.06, "lr_decay": 1.0, "psgld_alpha": 0.96}
    path.write_text(json.dumps({"profile": "ci", "selected": {"paper/psgld/2000": selection}}))
    config = as_described("psgld", "ci")
    assert (config.psgld_average, config.psgld_alpha, config.lr) == ("square", None, 0.02)
    from sgmcmc_paper.protocol.profiles import as_released

    assert config.key() != as_released("psgld", "ci").key()


def test_axis_table_says_per_axis_what_was_tried_and_whether_the_selection_is_inside(results):
    from sgmcmc_paper.sweep.report import axis_table

    trial = Peaks({"lr": 1e9})  # the rate wants to grow past every extension
    run_sweep(["sgld"], profile="ci", engine="serial", log=None, trial=trial)
    (row,) = axis_table("ci").to_dict("records")
    assert (row["axis"], row["inside"], row["walk"]) == ("lr", False, "bracket")
    # the grid's 0.006 … 2 from 0.02 upwards, then 6.67, 22.2 and 74.1 (half decades beyond)
    assert row["notes"] == "lr=74.1 sits at the edge of its range after 3 extensions"
    assert row["high"] == row["selected"] == 74.0739 and row["tried"] == 9


def test_recorded_search_names_every_method_without_a_full_mnist_selection(results):
    from sgmcmc_paper.sweep.report import recorded_search

    sweeps, missing = recorded_search("paper")
    assert sweeps == {} and len(missing) == 5
    assert missing[3].startswith("psgld: no full-MNIST selection (paper/psgld/full)")


def test_recorded_search_names_a_psgld_sweep_that_as_described_does_not_use(results):
    """A pSGLD sweep recorded before the rule was a field (no ``psgld_average``: the released
    recursion) is shown, and said to be unused; one of Li et al.'s average is not."""
    from sgmcmc_paper.sweep.report import recorded_search

    sweep = {"method": "psgld", "convention": "paper", "num_train": 5000, "trials": []}
    sweeps = {"paper/psgld/5000": sweep, "paper/psgld/3000": {**sweep, "psgld_average": "square"}}
    path = results / "hparams" / "paper.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"profile": "paper", "selected": {}, "sweeps": sweeps}))
    _, lines = recorded_search("paper")
    unused = [line for line in lines if "do not use it" in line]
    assert len(unused) == 1 and unused[0].startswith("psgld (paper/psgld/5000)")


@pytest.mark.parametrize(("ray_installed", "engine"), [(True, "ray"), (False, "serial")])
def test_cli_engine_auto_runs_serially_without_ray(monkeypatch, ray_installed, engine):
    """`sgmcmc sweep` (PYTHONPATH=src on a machine without the 'sweep' extra): --engine auto,
    the default, is Ray where it is installed and the serial engine where it is not."""
    import importlib.util

    import sgmcmc_paper.sweep as sweep
    from sgmcmc_paper.cli import main

    seen = {}
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: (
            (find_spec(name, *a) if ray_installed else None)
            if name == "ray"
            else find_spec(name, *a)
        ),
    )
    monkeypatch.setattr(sweep, "run_sweep", lambda methods, **kw: seen.update(kw) or [])
    argv = ["sweep", "--method", "psgld", "--profile", "ci", "--train-size", "full"]
    assert main(argv) == 0
    assert seen["engine"] == engine and seen["bracket"] and seen["train_sizes"] == [None]
    assert main([*argv, "--engine", "processes", "--workers", "3", "--budget-walk"]) == 0
    assert (seen["engine"], seen["workers"], seen["bracket"]) == ("processes", 3, False)
