"""Notebook 09's machinery: the ensemble, Laplace and cyclical runs of the engine, their plan,
and the chapter's claims (each with a yes, a no and an n/a)."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from _engine import install_synthetic, tiny_config

from sgmcmc.laplace import PRIOR_PRECISION_GRID
from sgmcmc.schedules import sampling_stage
from sgmcmc_paper.analysis import alternatives as alt
from sgmcmc_paper.engine.experiment import run
from sgmcmc_paper.protocol.alternatives import alternatives_configs
from sgmcmc_paper.protocol.config import ConfigError


@pytest.fixture(autouse=True)
def _synthetic(monkeypatch):
    install_synthetic(monkeypatch)


# ---------------------------------------------------------------------- engine
@pytest.fixture(scope="module")
def sgd():
    with pytest.MonkeyPatch.context() as patch:
        install_synthetic(patch)
        return run(tiny_config("sgd"), device="cpu", progress=False)


def test_ensemble_member_zero_is_the_sgd_run_and_windows_hold_every_member(sgd):
    result = run(tiny_config("ensemble", ensemble_size=2), device="cpu", progress=False)
    assert result.status == "complete"
    assert [e["single"] for e in result.metrics["epochs"]] == [
        e["single"] for e in sgd.metrics["epochs"]
    ]
    for window in result.metrics["windows"].values():
        assert window["samples"] == 2
        assert window["steps"] == [result.config.total_steps] * 2
    timing = result.provenance["timing"]
    assert timing["train"] > 0 and timing["window_eval"] > 0


def test_laplace_selects_a_prior_precision_and_averages_its_draws(sgd):
    result = run(tiny_config("laplace", laplace_samples=3), device="cpu", progress=False)
    assert result.status == "complete"
    assert [e["single"] for e in result.metrics["epochs"]] == [
        e["single"] for e in sgd.metrics["epochs"]
    ]
    laplace = result.metrics["laplace"]
    assert laplace["prior_precision"] in PRIOR_PRECISION_GRID
    assert math.isfinite(laplace["log_marginal_likelihood"])
    assert all(w["samples"] == 3 for w in result.metrics["windows"].values())


def test_cyclical_windows_keep_only_sampling_stage_steps():
    config = tiny_config("sgld", cycles=2)  # 8 steps: cycles of 4, steps 3, 4, 7, 8 sample
    result = run(config, device="cpu", progress=False)
    assert result.status == "complete"
    for window in result.metrics["windows"].values():
        assert window["steps"], "a window with no sample"
        for step in window["steps"]:
            assert sampling_stage(step, config.total_steps, 2, config.cycle_exploration)


# ---------------------------------------------------------------------- configs and plan
def test_alternative_fields_default_per_method_and_leave_other_keys_alone():
    assert tiny_config("ensemble").ensemble_size == 5
    assert tiny_config("laplace").laplace_samples == 30
    sgd = tiny_config("sgd", cycles=3, ensemble_size=4)
    assert (sgd.cycles, sgd.ensemble_size, sgd.laplace_samples) == (None, None, None)
    assert sgd.key() == tiny_config("sgd").key()
    assert tiny_config("sgld", cycles=2).cycle_exploration == 0.5


def test_a_window_ending_in_an_exploration_stage_is_an_error():
    with pytest.raises(ConfigError, match="sampling stage"):
        tiny_config("sgld", cycles=3, cycle_exploration=0.9)
    with pytest.raises(ConfigError, match="lr_decay=1"):
        tiny_config("sgld", cycles=2, lr_decay=0.9)


@pytest.mark.parametrize("profile", ["ci", "quick", "paper"])
def test_plan_has_every_row_and_cyclical_windows_average_at_least_three(profile):
    configs = alternatives_configs(profile, [0])
    rows = {alt.ROWS[(label, method)] for label, method, _ in configs}
    assert rows == set(alt.ROWS.values())
    for (label, _, _), c in configs.items():
        if label != "cyclical":
            continue
        for w in c.windows:
            kept = [
                s
                for s in w.steps(c.steps_per_epoch)
                if sampling_stage(s, c.total_steps, c.cycles, c.cycle_exploration)
            ]
            assert len(kept) >= 3


# ---------------------------------------------------------------------- claims
def _frame(values: dict[str, list[float]], quality: str, costs: dict[str, float] | None = None):
    costs = costs or {}
    rows = []
    for name, per_seed in values.items():
        for seed, value in enumerate(per_seed):
            rows.append(
                {
                    "row": name,
                    "seed": seed,
                    "fate": "complete",
                    "counted": True,
                    quality: value,
                    "compute_s": costs.get(name, 10.0),
                }
            )
    return pd.DataFrame(rows)


ENSEMBLE = [0.900, 0.910, 0.905]


def test_matches_ensemble_yes_no_na():
    costs = {"Deep ensemble": 50.0, "SGLD": 40.0}
    tie = _frame(
        {"Deep ensemble": ENSEMBLE, "SGLD": [0.901, 0.911, 0.905]}, "notMNIST AUROC", costs
    )
    assert alt.matches_ensemble(tie).verdict == "yes"
    worse = _frame({"Deep ensemble": ENSEMBLE, "SGLD": [0.80, 0.81, 0.82]}, "notMNIST AUROC", costs)
    claim = alt.matches_ensemble(worse)
    assert claim.verdict == "no" and "ensemble better" in claim.evidence
    dearer = _frame(
        {"Deep ensemble": ENSEMBLE, "SGLD": ENSEMBLE},
        "notMNIST AUROC",
        {"Deep ensemble": 10.0, "SGLD": 40.0},
    )
    assert alt.matches_ensemble(dearer).verdict == "n/a"
    two_seeds = _frame(
        {"Deep ensemble": ENSEMBLE[:2], "SGLD": ENSEMBLE[:2]}, "notMNIST AUROC", costs
    )
    assert alt.matches_ensemble(two_seeds).verdict == "n/a"


def test_laplace_better_calibrated_yes_no_na():
    sgd = [0.05, 0.06, 0.055]
    better = _frame({"SGD": sgd, "K-FAC Laplace": [0.02, 0.03, 0.025]}, "ece")
    assert alt.laplace_better_calibrated(better).verdict == "yes"
    worse = _frame({"SGD": sgd, "K-FAC Laplace": [0.08, 0.09, 0.085]}, "ece")
    assert alt.laplace_better_calibrated(worse).verdict == "no"
    assert alt.laplace_better_calibrated(_frame({"SGD": sgd}, "ece")).verdict == "n/a"


def test_cyclical_helps_yes_no_na():
    plain = {"SGLD": [0.30, 0.32, 0.31], "pSGLD": [0.30, 0.32, 0.31], "KSGLD": [0.30, 0.32, 0.31]}
    lower = {f"c{k}": [v - 0.05 + 0.001 * i for i, v in enumerate(vs)] for k, vs in plain.items()}
    assert alt.cyclical_helps(_frame({**plain, **lower}, "nll")).verdict == "yes"
    higher = {f"c{k}": [v + 0.05 for v in vs] for k, vs in plain.items()}
    assert alt.cyclical_helps(_frame({**plain, **higher}, "nll")).verdict == "no"
    one = {"cSGLD": lower["cSGLD"]}
    assert alt.cyclical_helps(_frame({**plain, **one}, "nll")).verdict == "n/a"


def test_samplers_dominated_yes_no_na():
    costs = {"SGD": 5.0, "SGLD": 20.0}
    sampler = [0.30, 0.32, 0.31]
    dominated = _frame({"SGD": [0.20, 0.21, 0.205], "SGLD": sampler}, "nll", costs)
    assert alt.samplers_dominated(dominated).verdict == "yes"
    free = _frame({"SGD": [0.40, 0.41, 0.405], "SGLD": sampler}, "nll", costs)
    claim = alt.samplers_dominated(free)
    assert claim.verdict == "no" and "SGLD" in claim.evidence
    untestable = _frame({"SGD": [0.40], "SGLD": sampler[:1]}, "nll", costs)
    assert alt.samplers_dominated(untestable).verdict == "n/a"


def test_pareto_front_keeps_the_undominated_means():
    frame = _frame(
        {"SGD": [0.3] * 3, "Deep ensemble": [0.2] * 3, "SGLD": [0.35] * 3},
        "nll",
        {"SGD": 5.0, "Deep ensemble": 25.0, "SGLD": 20.0},
    )
    assert alt.pareto_front(frame, "nll") == ["SGD", "Deep ensemble"]


class _Stored:
    """The parts of a stored run that :func:`alt.summary` reads."""

    def __init__(self, config, sweep=()):
        self.config = config
        self.status = "complete"
        self.divergence = None
        self.predictions = {}
        self.metrics = {
            "epochs": [
                {"epoch": e, "single": {"accuracy": 0.9}, "averaged": {"accuracy": 0.9}}
                for e in (1, 2)
            ],
            "windows": {
                "table1": {
                    "samples": 4,
                    "sets": {"test": {"single": {"nll": 0.5}, "averaged": {"nll": 0.3}}},
                    "robustness": {"sweep": list(sweep)},
                },
                "fig4": {"samples": 4, "sets": {}},
            },
        }
        self.provenance = {
            "device_name": "cpu",
            "timing": {"train": 10.0, "epoch_eval": 2.0, "epoch_samples": 8},
        }


def test_summary_reads_compute_mode_and_pgd_per_row():
    sweep = [
        {"attack": "PGD-40", "threat": "per_sample", "mode": "single", "eps": 0.3, "accuracy": 0.1},
        {
            "attack": "PGD-40",
            "threat": "predictive",
            "mode": "averaged",
            "eps": 0.3,
            "accuracy": 0.2,
        },
        {"attack": "FGSM", "threat": "predictive", "mode": "averaged", "eps": 0.3, "accuracy": 0.9},
    ]
    config = tiny_config("sgd")
    frame = alt.summary(
        {
            ("as described", "sgd", 0): _Stored(config, sweep),
            ("as described", "fsgd", 0): _Stored(config, sweep),
        }
    ).set_index("row")
    # one test pass costs 2 s / 8 samples; SGD predicts with 1 model, FSGD with the window's 4
    assert frame.loc["SGD", "compute_s"] == pytest.approx(10.25)
    assert frame.loc["FSGD", "compute_s"] == pytest.approx(11.0)
    assert (frame.loc["SGD", "nll"], frame.loc["FSGD", "nll"]) == (0.5, 0.3)
    assert (frame.loc["SGD", "PGD 0.3"], frame.loc["FSGD", "PGD 0.3"]) == (0.1, 0.2)
    assert math.isnan(frame.loc["SGD", "PGD 0.1"])  # not evaluated


@pytest.mark.parametrize("method", ["sgld", "psgld", "ksgld"])
def test_every_point_of_the_cyclical_search_space_is_a_paper_trial(method):
    from sgmcmc_paper.sweep.grids import cyclical_grid
    from sgmcmc_paper.sweep.trial import trial_config

    grid = cyclical_grid(method, "paper", 50_000)
    for axis in grid:
        for value in axis.values:
            fields = {**grid.defaults(), axis.name: value, "lr_decay": 1.0}
            config = trial_config("paper", fields)
            assert getattr(config, axis.name) == value and config.cycles is not None
    with pytest.raises(ValueError, match="needs a sampler"):
        cyclical_grid("sgd", "paper", 50_000)
