"""Profiles and run configs: sizes, windows, named configurations, validation, the key."""

from __future__ import annotations

import json
import math

import pytest

from sgmcmc_paper.errors import UserError
from sgmcmc_paper.protocol.config import ConfigError, RunConfig, Window
from sgmcmc_paper.protocol.paper import METHODS
from sgmcmc_paper.protocol.plan import notebook_configs
from sgmcmc_paper.protocol.profiles import (
    MIN_SAMPLES,
    PROFILES,
    as_described,
    as_released,
    default_profile_name,
    get_profile,
)
from sgmcmc_paper.sweep.grids import learning_rates


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("method", METHODS)
def test_every_profile_builds_every_method(profile, method):
    config = get_profile(profile).config(method)
    assert config.profile == profile
    assert {w.name for w in config.windows} == {"fig4", "table1"}
    assert config.batch_size == 512


def test_paper_windows_are_the_papers():
    config = get_profile("paper").config("sgld")
    assert config.epochs == 20 and config.steps_per_epoch == 118
    fig4, table1 = config.window("fig4"), config.window("table1")
    # Fig. 4: the last epoch's samples (118) of the 10-epoch run, every step.
    assert fig4.steps(118) == tuple(range(9 * 118 + 1, 10 * 118 + 1))
    # Table 1: the last 50 samples, every 20 steps, of the 20-epoch run.
    steps = table1.steps(118)
    assert len(steps) == 50 and steps[-1] == 20 * 118 and steps[1] - steps[0] == 20
    assert set(table1.sets) == {"test", "fgsm"} and set(fig4.sets) == {"test", "ood"}


def test_windows_are_fitted_to_short_runs():
    paper = get_profile("paper")
    small = paper.config("sgld", train_size=5000, epochs=10)  # 10 steps per epoch
    assert small.window("fig4").samples == 10 and small.window("fig4").end_epoch == 10
    assert small.window("table1").samples == 5  # steps 20, 40, ..., 100
    # 4 steps in all: table1's 50 samples 20 apart would be 1; it takes 4, one per step
    one = paper.config("ksgld", train_size=2000, epochs=1)
    assert [(w.end_epoch, w.samples, w.every) for w in one.windows] == [(1, 4, 1), (1, 4, 1)]


def _sample_counts(config):
    """Each epoch's averaged samples and each window's, computed from the config alone: an
    epoch's steps that are multiples of ``eval_every`` and its last step; a window's steps."""
    spe = math.ceil(config.num_train / config.batch_size)
    assert spe == config.steps_per_epoch
    epochs = []
    for k in range(1, config.epochs + 1):
        steps = range((k - 1) * spe + 1, k * spe + 1)
        epochs.append(sum(1 for t in steps if t % config.eval_every == 0 or t == k * spe))
    windows = {}
    for w in config.windows:
        steps = w.steps(spe)
        assert steps[0] >= 1 and steps[-1] <= config.epochs * spe
        windows[w.name] = len(set(steps))
    return epochs, windows


@pytest.mark.parametrize("profile", PROFILES)
def test_every_average_of_every_notebook_run_holds_at_least_three_samples(profile):
    """The results contract (book/methods.md): no window and no per-epoch averaged predictive of any
    config a notebook uses (protocol.plan) could average fewer than 3 samples."""
    configs = notebook_configs(profile)
    assert configs
    for config in configs:
        epochs, windows = _sample_counts(config)
        where = f"{profile} {config.method} train_size={config.train_size} [{config.key()}]"
        assert min(epochs) >= MIN_SAMPLES == 3, f"{where}: epoch averages of {epochs}"
        assert tuple(epochs) == config.epoch_samples, where
        assert all(n >= MIN_SAMPLES for n in windows.values()), f"{where}: windows {windows}"


@pytest.mark.parametrize(
    ("profile", "train_size", "eval_every", "samples"),
    [
        ("paper", None, 20, {6, 7}),  # 118 steps, every 20th and the last
        ("paper", 5000, 1, {10}),  # smallMNIST: every step of 10
        ("paper", 3000, 1, {6}),  # every step of 6
        ("quick", None, 40, {3, 4}),
        ("quick", 5000, 1, {10}),
        ("ci", None, 1, {4}),
        ("ci", 1500, 1, {3}),
    ],
)
def test_per_epoch_sample_counts(profile, train_size, eval_every, samples):
    prof = get_profile(profile)
    small = {"train_size": train_size, "epochs": prof.small_epochs} if train_size else {}
    config = prof.config("fsgd", **small)
    assert config.eval_every == eval_every and set(config.epoch_samples) == samples


def test_an_explicit_eval_every_is_kept():
    config = get_profile("paper").config("sgd", train_size=5000, epochs=10, eval_every=20)
    assert config.eval_every == 20 and config.epoch_samples[0] == 1


def test_quick_profile_is_sized_for_a_cpu_reader():
    quick = get_profile("quick").config("fsgd")
    assert quick.num_train == 60_000 and quick.epochs <= 3 and quick.test_size == 2000
    assert all(w.samples >= 5 and w.end_epoch == quick.epochs for w in quick.windows)
    assert get_profile("quick").hparams == "paper" and get_profile("quick").seeds == (0,)


def test_langevin_runs_take_the_profiles_langevin_length():
    from sgmcmc_paper.analysis import tables

    quick = tables.langevin_configs("quick", [0], ["sgld", "ksgld"], "eq. 1")
    assert {c.epochs for c in quick.values()} == {get_profile("quick").langevin_epochs}
    assert all(w.end_epoch == 1 for c in quick.values() for w in c.windows)
    paper = tables.langevin_configs("paper", [0], ["sgld"], "eq. 1")
    assert {c.epochs for c in paper.values()} == {get_profile("paper").epochs}
    longer = tables.langevin_configs("quick", [0], ["sgld"], "eq. 1", epochs=2)
    assert {c.epochs for c in longer.values()} == {2}


def test_profile_from_environment(monkeypatch):
    monkeypatch.setenv("SGMCMC_PROFILE", "ci")
    assert default_profile_name() == "ci" and get_profile().name == "ci"
    monkeypatch.delenv("SGMCMC_PROFILE")
    assert default_profile_name() == "paper"
    with pytest.raises(UserError, match="unknown profile 'huge'"):
        get_profile("huge")


@pytest.mark.parametrize("method", METHODS)
def test_as_released_is_the_released_code(method):
    config = as_released(method, "ci")
    assert config.convention == "paper" and config.init == "tf"
    assert config.lr == (0.01 if method in ("sgd", "fsgd") else 0.02)
    assert config.prior_std is None


def test_released_ksgld_is_sgld_and_fsgd_is_sgd():
    assert as_released("ksgld", "ci").algorithm == "sgld"
    assert as_released("ksgld", "ci").key() == as_released("sgld", "ci").key()
    assert as_released("fsgd", "ci").key() == as_released("sgd", "ci").key()
    described = as_described("ksgld", "ci", tuned=False)
    assert described.algorithm == "ksgld" and described.kfac_update is True


def test_as_described_takes_the_tuned_rate(tmp_path, monkeypatch):
    monkeypatch.setenv("SGMCMC_RESULTS", str(tmp_path))
    (tmp_path / "hparams").mkdir()
    selection = {"selected": {"paper/sgld/2000": {"lr": 0.005, "temperature": 0.5}}}
    (tmp_path / "hparams" / "ci.json").write_text(json.dumps(selection))
    tuned = as_described("sgld", "ci")
    assert (tuned.lr, tuned.temperature) == (0.005, 0.5)
    assert as_described("sgld", "ci", lr=0.001).lr == 0.001  # explicit wins
    assert as_described("psgld", "ci").lr == 0.02  # nothing selected: released


def test_fields_a_method_ignores_do_not_change_the_key():
    base = RunConfig(method="sgd")
    assert RunConfig(method="sgd", psgld_alpha=0.5, kfac_damping=3.0).key() == base.key()
    assert RunConfig(method="sgld", precondition="both", convention="langevin").precondition == (
        "both"
    )
    assert RunConfig(method="sgld", prior_std=3.0).prior_std is None  # paper convention: no prior
    assert RunConfig(method="sgd", lr=0.02).key() != base.key()


def test_langevin_default_rate_matches_the_released_gradient_step():
    # Paper SGLD moves (lr/2)·g with g the mean-loss gradient; langevin moves lr·N·g.
    assert RunConfig(method="sgld", convention="langevin").lr == pytest.approx(0.02 / 120_000)
    assert RunConfig(method="sgd", convention="langevin").lr == pytest.approx(0.01 / 60_000)
    # eq. 2 keeps SGLD's drift, so SGLD's rate; eq. 1's preconditioned drift has its own units
    noise = RunConfig(method="psgld", convention="langevin", precondition="noise")
    assert noise.lr == pytest.approx(0.02 / 120_000)


@pytest.mark.parametrize("method", ["sgd", "sgld", "psgld", "ksgld"])
def test_langevin_default_rates_are_where_the_sweep_starts(method):
    config = RunConfig(method=method, convention="langevin")
    axis = learning_rates(method, "langevin", config.num_train)
    assert config.lr == pytest.approx(axis.default)


def test_eq2_runs_take_sglds_tuned_rate(tmp_path, monkeypatch):
    monkeypatch.setenv("SGMCMC_RESULTS", str(tmp_path))
    (tmp_path / "hparams").mkdir()
    selected = {
        "langevin/sgld/2000": {"lr": 2e-6, "lr_decay": 0.95},
        "langevin/psgld/2000": {"lr": 1e-3, "lr_decay": 1.0, "psgld_alpha": 0.9},
    }
    (tmp_path / "hparams" / "ci.json").write_text(json.dumps({"selected": selected}))
    both = as_described("psgld", "ci", convention="langevin")
    noise = as_described("psgld", "ci", convention="langevin", precondition="noise")
    assert (both.lr, both.lr_decay, both.psgld_alpha) == (1e-3, 1.0, 0.9)
    assert (noise.lr, noise.lr_decay, noise.psgld_alpha) == (2e-6, 0.95, 0.9)


def test_config_round_trips_through_json():
    config = get_profile("ci").config("ksgld", fgsm_eps=(0.1, 0.3))
    again = RunConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config and again.key() == config.key() and again.profile == "ci"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"method": "adam"}, "method must be one of"),
        ({"method": "sgd", "epochs": 0}, "epochs must be an integer >= 1"),
        ({"method": "sgd", "train_size": 60_001}, "exceeds the 60,000 training examples"),
        ({"method": "sgd", "evaluate_on": "validation", "train_size": 55_000}, "50,000"),
        ({"method": "sgd", "lr": -1.0}, "lr must be a finite number > 0"),
        ({"method": "psgld", "psgld_alpha": 1.0}, "psgld_alpha must lie in"),
        ({"method": "psgld", "precondition": "both"}, "precondition must be 'noise'"),
        ({"method": "sgd", "fgsm_eps": ()}, "fgsm_eps must be positive"),
        ({"method": "sgd", "windows": [{"name": "w", "sets": ["ood"]}]}, "'ood' needs 'test'"),
        ({"method": "sgd", "windows": [{"name": "w", "end_epoch": 11}]}, "ends at epoch 11"),
        ({"method": "sgd", "windows": [{"name": "w", "samples": 2000}]}, "before step 1"),
        ({"method": "sgd", "windows": [{"name": "w", "size": 3}]}, "bad window"),
        ({"method": "sgd", "colour": "red"}, "unknown config fields"),
    ],
)
def test_bad_configs_are_one_line_errors(fields, message):
    with pytest.raises(ConfigError, match=message) as info:
        RunConfig.from_dict(fields)
    assert "\n" not in str(info.value)
    assert isinstance(info.value, ValueError) and isinstance(info.value, UserError)


def test_window_steps():
    window = Window("w", samples=3, every=5, end_epoch=2)
    assert window.steps(10) == (10, 15, 20)
