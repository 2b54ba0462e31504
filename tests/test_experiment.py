"""The run engine end to end, on synthetic data at a tiny size, on the CPU."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from _engine import install_synthetic, tiny_config

from sgmcmc_paper.analysis.attacks import attack
from sgmcmc_paper.engine.evaluation import attack_directions
from sgmcmc_paper.engine.experiment import resolve_device, run
from sgmcmc_paper.engine.store import RUN_FILE, run_or_load
from sgmcmc_paper.engine.traces import load_traces
from sgmcmc_paper.protocol.models import PaperCNN
from sgmcmc_paper.protocol.paper import METHODS


@pytest.fixture(autouse=True)
def synthetic(monkeypatch):
    install_synthetic(monkeypatch)


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """One stored run per method (the root of the store, and the results by method)."""
    root = tmp_path_factory.mktemp("store")
    with pytest.MonkeyPatch.context() as mp:
        install_synthetic(mp)
        results = {
            m: run_or_load(tiny_config(m), device="cpu", progress=False, root=root) for m in METHODS
        }
    return root, results


def _finite(tree) -> bool:
    if isinstance(tree, dict):
        return all(_finite(v) for v in tree.values())
    if isinstance(tree, list):
        return all(_finite(v) for v in tree)
    return not isinstance(tree, float) or math.isfinite(tree)


def _without_times(metrics: dict) -> dict:
    return {**metrics, "epochs": [{**e, "wall_s": None} for e in metrics["epochs"]]}


@pytest.mark.parametrize("method", METHODS)
def test_every_method_writes_every_artifact(method, stored):
    root, results = stored
    result = results[method]
    assert result.status == "complete"
    assert result.path == root / "ci" / result.config.key()
    assert {p.name for p in result.path.iterdir()} == {RUN_FILE, "predictions.npz", "traces.nc"}
    assert _finite(result.metrics)
    assert [e["epoch"] for e in result.metrics["epochs"]] == [1, 2]
    # eval_every=2 would average 2 samples of a 4-step epoch, fewer than the 3 every average
    # holds (profiles.MIN_SAMPLES): the profile samples every step, all 4.
    assert result.config.eval_every == 1
    assert all(e["averaged"]["samples"] == 4 for e in result.metrics["epochs"])
    fig4, table1 = result.window("fig4"), result.window("table1")
    assert fig4["steps"] == [5, 6, 7, 8] and table1["steps"] == [4, 6, 8]
    assert set(fig4["sets"]) == {"test", "notmnist"}
    assert set(fig4["sets"]["notmnist"]["detection"]["averaged"]) == {"max_prob", "entropy", "mi"}
    assert set(table1["fgsm"]) == {"as_released", "per_sample", "predictive"}
    assert result.notes == ["fashion skipped: Fashion-MNIST is not installed (synthetic test data)"]
    assert result.predictions["fig4/test/averaged/max_prob"].dtype == np.float16
    assert result.predictions["fig4/notmnist/averaged/mi"].shape == (16,)
    assert result.predictions["table1/test/single/pred"].dtype == np.uint8
    ood = result.per_example("fig4", "notmnist")
    assert set(ood) == {"max_prob", "entropy", "mi"} and ood["max_prob"].dtype == np.float32
    assert ((ood["max_prob"] >= 0.099) & (ood["max_prob"] <= 1)).all()  # 1/10 <= max prob <= 1


def test_sgd_and_fsgd_are_one_stored_run(stored):
    _, results = stored
    assert results["sgd"].path == results["fsgd"].path
    assert results["fsgd"].config.method == "fsgd"


def test_window_single_is_its_last_sample(stored):
    # The single-model row of a window and the final epoch's single model are the same model.
    result = stored[1]["sgld"]
    window = result.window("table1")["sets"]["test"]["single"]
    final = result.metrics["epochs"][-1]["single"]
    assert {k: window[k] for k in final} == pytest.approx(final)


def test_traces_cover_every_layer_and_the_probe(stored):
    traces = load_traces(stored[1]["sgld"].path)
    posterior = traces.posterior
    layers = {"conv1", "conv2", "fc1", "fc2"}
    probe = {"probe_log_lik", "probe_log_lik_sum"}
    assert {name.split(".")[0] for name in posterior.data_vars} == layers | probe
    assert list(posterior.draw.values) == list(range(1, 9))
    assert posterior["fc1.weight"].shape == (1, 8, 3)
    assert posterior["probe_log_lik"].shape == (1, 8, 4)
    assert (posterior["probe_log_lik"].values <= 0).all()
    assert np.isfinite(traces.sample_stats["loss"].values).all()


def test_same_seed_gives_identical_metrics_and_another_seed_does_not():
    config = tiny_config("psgld", epochs=1, windows=(), trace_every=2)
    first = run(config, device="cpu", progress=False)
    second = run(config, device="cpu", progress=False)
    other = run(config.replace(seed=1), device="cpu", progress=False)
    assert _without_times(first.metrics) == _without_times(second.metrics)
    assert _without_times(first.metrics) != _without_times(other.metrics)
    np.testing.assert_array_equal(
        first.trace_arrays["posterior/fc1.weight"], second.trace_arrays["posterior/fc1.weight"]
    )


def test_a_diverging_run_is_stored_as_diverged(tmp_path, monkeypatch):
    config = tiny_config("sgd", lr=1e6)
    result = run_or_load(config, device="cpu", progress=False, root=tmp_path)
    assert result.status == "diverged"
    assert 1 <= result.divergence["step"] <= config.total_steps
    assert result.divergence["reason"].startswith("non-finite")
    assert (result.path / RUN_FILE).exists()
    draws = load_traces(result.path).posterior.draw.values
    assert (draws < result.divergence["step"]).all()  # traces keep the finite part only
    # Stored: asking again loads it instead of training.
    monkeypatch.setattr(
        "sgmcmc_paper.engine.store.run", lambda *a, **k: pytest.fail("reran a stored run")
    )
    again = run_or_load(config, device="cpu", progress=False, root=tmp_path)
    assert again.divergence == result.divergence


def test_learning_rate_decays_as_tf_exponential_decay(capsys):
    config = tiny_config("sgd", lr=0.1, lr_decay=0.5, lr_decay_steps=4, windows=(), trace_every=0)
    result = run(config, device="cpu", progress=True)
    lrs = [e["lr"] for e in result.metrics["epochs"]]
    # The rate of each epoch's last step (steps 4 and 8, i.e. t = 3 and 7 decays since the start).
    assert lrs == pytest.approx([0.1 * 0.5 ** (3 / 4), 0.1 * 0.5 ** (7 / 4)])
    # Not a terminal: one progress line per epoch.
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == ["sgd epoch 1/2", "sgd epoch 2/2"]


def test_attack_directions_give_the_attacks_images():
    model = PaperCNN(generator=torch.Generator().manual_seed(0)).eval()
    x = torch.rand(20, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    y = torch.arange(20) % 10
    signs = attack_directions(model, x, y)
    for eps in (0.1, 0.3):
        released = attack(model, x, None, "as_released", eps)
        assert torch.equal(x + eps * signs["as_released"], released)
        per_sample = attack(model, x, y, "per_sample", eps)
        assert torch.equal((x + eps * signs["per_sample"]).clamp(0, 1), per_sample)


def test_devices():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda")


def _outputs_overflow_after(monkeypatch, step: int, only: str = "eval") -> None:
    """Make the model's logits infinite (weights stay finite) once ``step`` optimizer steps
    are done: in evaluation mode only (the training loss stays finite), or on every pass."""
    from sgmcmc_paper.engine import training

    steps = [0]
    real_step, real_forward = training.Trainer.step, PaperCNN.forward

    def step_counted(self, x, y):
        steps[0] += 1
        return real_step(self, x, y)

    def forward(self, x):
        logits = real_forward(self, x)
        if steps[0] > step and (only == "all" or not self.training):
            return logits * math.inf
        return logits

    monkeypatch.setattr(training.Trainer, "step", step_counted)
    monkeypatch.setattr(PaperCNN, "forward", forward)


def test_an_epoch_with_non_finite_outputs_is_never_a_valid_epoch(tmp_path, monkeypatch):
    config = tiny_config("sgd", epochs=2)  # 4 steps an epoch
    _outputs_overflow_after(monkeypatch, step=5)
    result = run_or_load(config, device="cpu", progress=False, root=tmp_path)
    assert result.status == "diverged"
    assert [e["epoch"] for e in result.metrics["epochs"]] == [1]
    assert _finite(result.metrics)
    assert result.divergence == {
        "step": 6,
        "epoch": 2,
        "reason": "non-finite model outputs on the test set after step 6",
    }
    assert result.metrics["windows"] == {}  # both windows close in epoch 2
    assert "windows not reached before divergence: ['fig4', 'table1']" in result.notes
    assert (result.path / RUN_FILE).exists()


def test_non_finite_outputs_in_the_first_epoch_leave_no_epoch(monkeypatch):
    _outputs_overflow_after(monkeypatch, step=0)
    result = run(tiny_config("psgld", epochs=1), device="cpu", progress=False)
    assert result.status == "diverged" and result.metrics["epochs"] == []
    assert (
        result.divergence["epoch"] == 1
        and "non-finite model outputs" in result.divergence["reason"]
    )
    with pytest.raises(ValueError, match="recorded no traces"):
        result.traces()


def test_non_finite_adversarial_outputs_stop_the_run_too(monkeypatch):
    from sgmcmc_paper.engine import evaluation

    real = evaluation.predict_probs
    calls = {"n": 0}

    def attacked_nan(model, x):
        probs = real(model, x)
        if x.shape[0] == 8:  # the attack subset (attack_size 8): adversarial images
            calls["n"] += 1
            return probs * math.nan
        return probs

    monkeypatch.setattr(evaluation, "predict_probs", attacked_nan)
    result = run(tiny_config("sgld", epochs=1), device="cpu", progress=False)
    assert calls["n"] and result.status == "diverged"
    assert "FGSM images" in result.divergence["reason"]
    assert _finite(result.metrics)
