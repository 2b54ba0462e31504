"""KSGLD at scale (chapter 08): the damping the engine's configurations pass, the stability
record of a run (an evaluation field: it changes no training, resumes with the run), chapter
08's run plan (the stored "before" keys kept) and the random-walk prediction of the noise."""

from __future__ import annotations

import math

import numpy as np
import pytest
from _engine import install_synthetic, tiny_config

from sgmcmc_paper.analysis import ksgld_scale, tables
from sgmcmc_paper.analysis.stability import stability_frame
from sgmcmc_paper.engine import experiment
from sgmcmc_paper.engine.checkpoint import save_checkpoint
from sgmcmc_paper.protocol import plan
from sgmcmc_paper.protocol.plan import NOTEBOOK_RUNS, notebook_runs
from sgmcmc_paper.protocol.profiles import as_described


@pytest.fixture(autouse=True)
def synthetic(monkeypatch):
    install_synthetic(monkeypatch)


@pytest.mark.parametrize("prior_std", [1.0, 0.5])
def test_langevin_ksgld_is_damped_by_the_prior_precision(prior_std):
    """``P = (N·F̃ + αI)⁻¹`` with ``α = 1/σ²``, exactly (book/methods.md, "KSGLD at scale")."""
    configs = tables.langevin_configs("ci", [0], ["ksgld"], "eq. 1", prior_std=prior_std)
    config = configs[("eq. 1", "ksgld", 0)]
    assert config.kfac_damping == 1 / prior_std**2
    assert config.kfac_damping_mode == "exact"
    for notebook in ("06_gradient_or_noise", "07_noise_conventions"):
        for key, found in notebook_runs(notebook, "ci", [0]).items():
            if found.method == "ksgld" and found.convention == "langevin":
                assert found.kfac_damping == 1.0, key


def test_an_explicit_damping_wins():
    configs = tables.langevin_configs("ci", [0], ["ksgld"], "before", kfac_damping=1e-3)
    assert configs[("before", "ksgld", 0)].kfac_damping == 1e-3


def test_chapter_08_keeps_the_stored_before_runs_and_tracks_its_own_seed():
    configs = notebook_runs("08_ksgld_at_scale", "paper", [0, 1, 2])
    assert "08_ksgld_at_scale" in NOTEBOOK_RUNS
    before = configs[("before: as described", "ksgld", 0)]
    assert before.key() == as_described("ksgld", "paper", seed=0).key()
    for label in ("before: eq. 1 T=1", "before: eq. 1 cold"):
        assert configs[(label, "ksgld", 0)].kfac_damping == plan.RELEASED_DAMPING
    after = [c for (label, _, _), c in configs.items() if label.startswith("after")]
    assert all(c.stability_every == 0 for c in after)
    seeds = {s for (label, _, s) in configs if label == "after: as described"}
    assert seeds == set(range(plan.PAPER_AFTER_SEEDS))
    tracked = [c for c in configs.values() if c.stability_every]
    assert tracked and all(c.seed == plan.DIAGNOSIS_SEED for c in tracked)


def test_stability_every_is_an_evaluation_field():
    config = tiny_config("ksgld", convention="langevin")
    assert config.replace(stability_every=3).key() == config.key()
    assert tiny_config("sgd", stability_every=3).stability_every == 0  # nothing to track
    with pytest.raises(ValueError, match="stability_every must be an integer >= 0"):
        tiny_config("ksgld", stability_every=-1)


def _without_times(metrics: dict) -> dict:
    return {**metrics, "epochs": [{**e, "wall_s": None} for e in metrics["epochs"]]}


def test_a_tracked_run_trains_as_an_untracked_one():
    # the paper convention's drift is not preconditioned: no K-FAC rotations in the Lanczos
    # steps, so the test stays cheap on a CPU; factors every 2 steps, so the tracker's forward
    # passes run while K-FAC's hooks record (the next training forward must replace them)
    config = tiny_config("ksgld", windows=(), trace_every=1, kfac_factor_every=2)
    plain = experiment.run(config, device="cpu", progress=False)
    tracked = experiment.run(config.replace(stability_every=4), device="cpu", progress=False)
    assert "stability" not in plain.metrics
    record = tracked.metrics.pop("stability")
    assert _without_times(tracked.metrics) == _without_times(plain.metrics)
    for name, array in plain.trace_arrays.items():
        np.testing.assert_array_equal(tracked.trace_arrays[name], array, err_msg=name)
    frame = stability_frame(record)
    model = frame[frame.layer == "model"].pivot(index="step", columns="quantity", values="value")
    assert list(model.index) == [4, 8]  # every 4th of the 8 steps
    assert np.isfinite(model["sharpness"]).all() and (model["sharpness"] > 0).all()
    assert {"damped_min", "steps_since_inverse", "spread", "noise_spread"} <= set(frame.quantity)
    assert tracked.provenance["timing"]["stability"] > 0


def test_a_tracked_run_resumes_its_record(tmp_path, monkeypatch):
    config = tiny_config("ksgld", epochs=3, windows=(), trace_every=0, stability_every=6)
    whole = experiment.run(config, device="cpu", progress=False)

    class Interrupted(Exception):
        pass

    def save_then_die(path, state):
        save_checkpoint(path, state)
        raise Interrupted

    path = tmp_path / "run.pt"
    with monkeypatch.context() as m:
        m.setattr(experiment, "save_checkpoint", save_then_die)
        with pytest.raises(Interrupted):
            experiment.run(
                config, device="cpu", progress=False, checkpoint=path, checkpoint_every=0
            )
    resumed = experiment.run(config, device="cpu", progress=False, checkpoint=path)
    assert resumed.provenance["timing"]["resumed"] == 1
    assert resumed.metrics["stability"] == whole.metrics["stability"]


def test_the_noise_floor_falls_to_the_damping_as_the_identity_fades():
    config = as_described("ksgld", "ci", kfac_damping_mode="exact", kfac_damping=1e-3)
    floor = ksgld_scale.noise_floor(config, steps=5000)
    first, last = floor.iloc[0], floor.iloc[-1]
    assert first["floor"] == pytest.approx(config.kfac_ema_decay**2 + 1e-3)
    assert last["floor"] == pytest.approx(1e-3, rel=1e-6)
    assert last["noise"] == pytest.approx(config.lr**2 / 1e-3, rel=1e-6)  # lr²/δ = 0.4
    # factored: (c^u + γ)² with γ = sqrt(δ), so the same floor δ once the identity is gone
    factored = ksgld_scale.noise_floor(config.replace(kfac_damping_mode="factored"), steps=5000)
    assert factored.iloc[-1]["floor"] == pytest.approx(1e-3, rel=1e-6)
    walk = np.sqrt(np.cumsum(floor["noise"].to_numpy() ** 2))
    np.testing.assert_allclose(floor["spread"], walk)
    # δ = 1 bounds P by I: never more noise than SGLD's lr² per step
    bounded = ksgld_scale.noise_floor(config.replace(kfac_damping=1.0), steps=5000)
    assert (bounded["noise"] <= config.lr**2 + 1e-15).all()
    assert math.isclose(bounded["noise"].iloc[-1], config.lr**2 / 1.0, rel_tol=1e-6)


def test_noise_floor_is_for_the_paper_convention():
    config = tiny_config("ksgld", convention="langevin")
    with pytest.raises(ValueError, match="paper convention"):
        ksgld_scale.noise_floor(config)


def test_described_variance_ratio_is_the_discrete_lyapunov_law():
    """Against the stationary covariance of the AR(1) chain of the paper convention's step on a
    diagonal Gaussian target (tests/_targets.stationary_moments), for both dampings."""
    from _targets import stationary_moments

    lr, n, curvatures = 0.02, 60_000, np.array([1e-4, 1e-2, 1.0, 10.0])
    for delta in (1e-3, 1.0):
        transition = np.diag(1 - lr * curvatures / 2)
        noise = np.diag((lr**2 / (curvatures + delta)) ** 2)
        _, covariance = stationary_moments(transition, np.zeros(4), noise)
        ratio = ksgld_scale.described_variance_ratio(curvatures, lr, delta, n)
        np.testing.assert_allclose(ratio, np.diag(covariance) * n * curvatures, rtol=1e-6)
    # h ≪ δ: N·lr³/δ², about 4.8e5 at the released damping and 0.48 at δ = 1
    assert ksgld_scale.described_variance_ratio(1e-8, lr, 1e-3, n) == pytest.approx(4.8e5, 1e-3)
    assert ksgld_scale.described_variance_ratio(1e-8, lr, 1.0, n) == pytest.approx(0.48, 1e-3)
