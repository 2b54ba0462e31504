"""Checkpoints: a run interrupted at an epoch end resumes to the uninterrupted result, bit for
bit; a bad checkpoint is a one-line error naming the file, which is moved aside so the next run
starts over; the store cleans up."""

import numpy as np
import pytest
import torch
from _engine import install_synthetic, tiny_config

from sgmcmc_paper.engine import experiment
from sgmcmc_paper.engine.checkpoint import load_checkpoint, save_checkpoint
from sgmcmc_paper.engine.store import checkpoint_path, run_or_load
from sgmcmc_paper.errors import UserError
from sgmcmc_paper.protocol.config import Window

#: fig4 closes in epoch 1 (its predictions are in the checkpoint); table1 takes steps 8, 10 and
#: 12 of 3 epochs of 4 steps, so the checkpoint after epoch 2 holds one of its samples.
WINDOWS = (
    Window("fig4", samples=2, every=1, end_epoch=1, sets=("test", "ood")),
    Window("table1", samples=3, every=2, end_epoch=3, sets=("test", "fgsm")),
)


class Interrupted(Exception):
    pass


@pytest.fixture(autouse=True)
def synthetic(monkeypatch):
    install_synthetic(monkeypatch)


def _interrupt_after_saving(monkeypatch, saves: int) -> None:
    """Make the run die right after its ``saves``-th checkpoint, as a killed job would."""
    done = []

    def save_then_die(path, state):
        save_checkpoint(path, state)
        done.append(path)
        if len(done) == saves:
            raise Interrupted

    monkeypatch.setattr(experiment, "save_checkpoint", save_then_die)


def _without_times(metrics: dict) -> dict:
    return {**metrics, "epochs": [{**e, "wall_s": None} for e in metrics["epochs"]]}


@pytest.mark.parametrize("method", ["psgld", "ksgld"])  # noise streams, RMSprop state, K-FAC
def test_an_interrupted_run_resumes_to_the_uninterrupted_result(method, tmp_path, monkeypatch):
    config = tiny_config(method, epochs=3, windows=WINDOWS)
    whole = experiment.run(config, device="cpu", progress=False)
    path = tmp_path / "run.pt"
    with monkeypatch.context() as m:
        _interrupt_after_saving(m, saves=2)
        with pytest.raises(Interrupted):
            experiment.run(
                config, device="cpu", progress=False, checkpoint=path, checkpoint_every=0
            )
    assert len(load_checkpoint(path, config.key(), torch.device("cpu"))["epochs"]) == 2
    resumed = experiment.run(config, device="cpu", progress=False, checkpoint=path)
    assert resumed.provenance["timing"]["resumed"] == 1
    assert whole.provenance["timing"]["resumed"] == 0
    assert _without_times(resumed.metrics) == _without_times(whole.metrics)
    assert resumed.metrics["windows"]["table1"]["samples"] == 3
    assert sorted(resumed.predictions) == sorted(whole.predictions)
    for name, array in whole.predictions.items():
        assert resumed.predictions[name].dtype == array.dtype, name
        np.testing.assert_array_equal(resumed.predictions[name], array, err_msg=name)
    for name, array in whole.trace_arrays.items():
        np.testing.assert_array_equal(resumed.trace_arrays[name], array, err_msg=name)


def test_checkpoints_wait_for_checkpoint_every(tmp_path):
    config = tiny_config("sgld", epochs=2, windows=())
    path = tmp_path / "run.pt"
    experiment.run(config, device="cpu", progress=False, checkpoint=path, checkpoint_every=1e9)
    assert not path.exists()  # never due, and never after the last epoch


@pytest.mark.parametrize("content", ["another run", b"not a torch file", b"", "a list"])
def test_a_bad_checkpoint_is_named_moved_aside_and_the_next_run_starts_over(content, tmp_path):
    path = tmp_path / "run.pt"
    if content == "another run":
        save_checkpoint(path, {"key": "someone-else"})
    elif content == "a list":
        torch.save([1, 2], path)
    else:
        path.write_bytes(content)
    config = tiny_config("sgld", epochs=2, windows=())
    with pytest.raises(UserError) as info:
        experiment.run(config, device="cpu", progress=False, checkpoint=path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message and "moved it aside" in message
    [aside] = tmp_path.glob("run.pt.damaged-*")
    assert aside.name in message and not path.exists()
    result = experiment.run(config, device="cpu", progress=False, checkpoint=path)
    assert result.status == "complete" and result.provenance["timing"]["resumed"] == 0


def test_the_store_resumes_a_killed_run_and_deletes_its_checkpoint(tmp_path, monkeypatch):
    config = tiny_config("psgld", epochs=3, windows=WINDOWS)
    monkeypatch.setattr(experiment, "CHECKPOINT_EVERY_S", 0.0)
    with monkeypatch.context() as m:
        _interrupt_after_saving(m, saves=1)
        with pytest.raises(Interrupted):
            run_or_load(config, device="cpu", progress=False, root=tmp_path)
    path = checkpoint_path(config, tmp_path)
    assert path.exists() and path.parent.name == ".checkpoints"
    result = run_or_load(config, device="cpu", progress=False, root=tmp_path)
    assert result.provenance["timing"]["resumed"] == 1 and not path.exists()


def test_a_checkpoint_that_cannot_be_written_costs_the_resume_not_the_run(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    config = tiny_config("sgld", epochs=2, windows=())
    path = blocker / ".checkpoints" / "run.pt"
    result = experiment.run(
        config, device="cpu", progress=False, checkpoint=path, checkpoint_every=0
    )
    assert result.status == "complete" and len(result.metrics["epochs"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        len(err) == 1 and "cannot create the folder" in err[0] and "without checkpoints" in err[0]
    )
