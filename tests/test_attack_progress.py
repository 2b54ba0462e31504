"""A run interrupted during its robustness attacks resumes them: the units finished before are
read back, not attacked again, and the result is the uninterrupted one; progress of other
samples is not reused, an unreadable file is moved aside, and the store cleans up."""

import json

import pytest
from _engine import install_synthetic, tiny_config

from sgmcmc_paper.analysis import robustness as analysis_robustness
from sgmcmc_paper.engine import experiment
from sgmcmc_paper.engine.attack_progress import AttackProgress, progress_path
from sgmcmc_paper.engine.store import checkpoint_path, run_or_load
from sgmcmc_paper.protocol.config import Window

#: table1 closes at the end of the last of 3 epochs; its attacks come after the last checkpoint.
WINDOWS = (Window("table1", samples=3, every=2, end_epoch=3, sets=("test", "fgsm")),)
ROBUST = {"robustness_size": 8, "pgd_steps": 3, "robustness_eps": (0.0, 0.1, 0.3, 1.0)}
#: fgsm_eps (0.3) per sample, the 3 other ε on the last sample, 4 ε against the predictive;
#: FGSM and PGD each.
UNITS = 2 * (1 + 3 + 4)


class Interrupted(Exception):
    pass


@pytest.fixture(autouse=True)
def synthetic(monkeypatch):
    install_synthetic(monkeypatch)


@pytest.fixture
def sweeps(monkeypatch) -> list[tuple]:
    """The units the runs attack, as (attack, threat, samples, ε), in order."""
    made = []
    sweep = analysis_robustness.eps_sweep

    def counted(models, x, y, eps, **options):
        made.append((options["attacks"][0].name, options["threat_models"][0], len(models), *eps))
        return sweep(models, x, y, eps, **options)

    monkeypatch.setattr(analysis_robustness, "eps_sweep", counted)
    return made


def _interrupt_after(monkeypatch, units: int) -> None:
    """Make the run die right after recording its ``units``-th attack unit."""
    save = AttackProgress.save

    def save_then_die(self, unit, rows):
        save(self, unit, rows)
        if len(self.units) == units:
            raise Interrupted

    monkeypatch.setattr(AttackProgress, "save", save_then_die)


def _robustness(result) -> dict:
    return result.metrics["windows"]["table1"]["robustness"]


def test_an_interrupted_attack_resumes_where_it_stopped(tmp_path, monkeypatch, sweeps, capsys):
    config = tiny_config("sgld", epochs=3, windows=WINDOWS, **ROBUST)
    whole = experiment.run(config, device="cpu", progress=False)
    assert len(sweeps) == UNITS and len(set(sweeps)) == UNITS
    path = tmp_path / "run.pt"
    with monkeypatch.context() as m:
        _interrupt_after(m, units=5)
        with pytest.raises(Interrupted):
            experiment.run(
                config, device="cpu", progress=False, checkpoint=path, checkpoint_every=0
            )
    saved = json.loads(progress_path(path, "table1").read_text())
    assert len(saved["units"]) == 5 and path.exists()
    sweeps.clear()
    capsys.readouterr()
    resumed = experiment.run(config, device="cpu", progress=True, checkpoint=path)
    assert resumed.provenance["timing"]["resumed"] == 1
    assert len(sweeps) == UNITS - 5  # the 5 finished units are read back
    lines = [line for line in capsys.readouterr().out.splitlines() if "table1 attacks" in line]
    assert [line.split(":")[0] for line in lines] == [
        f"sgld table1 attacks {k}/{UNITS}" for k in range(1, UNITS + 1)
    ]
    assert sum("read back" in line for line in lines) == 5
    assert _robustness(resumed) == _robustness(whole)
    assert resumed.metrics["windows"] == whole.metrics["windows"]


def test_progress_of_other_samples_is_attacked_again(tmp_path, sweeps):
    config = tiny_config("sgld", epochs=3, windows=WINDOWS, **ROBUST)
    path = tmp_path / "run.pt"
    progress = progress_path(path, "table1")
    other = tiny_config("sgld", epochs=3, windows=WINDOWS, seed=1, **ROBUST)
    experiment.run(other, device="cpu", progress=False, checkpoint=path)  # same files
    assert len(json.loads(progress.read_text())["units"]) == UNITS
    sweeps.clear()
    whole = experiment.run(config, device="cpu", progress=False)
    again = experiment.run(config, device="cpu", progress=False, checkpoint=path)
    assert len(sweeps) == 2 * UNITS  # nothing of the other seed's samples was reused
    assert _robustness(again) == _robustness(whole)


@pytest.mark.parametrize("content", ["{not json", '{"units": []}', '"a string"'])
def test_unreadable_progress_is_moved_aside_and_attacked_again(content, tmp_path, capsys):
    config = tiny_config("sgld", epochs=3, windows=WINDOWS, **ROBUST)
    path = tmp_path / "run.pt"
    progress = progress_path(path, "table1")
    progress.write_text(content)
    result = experiment.run(config, device="cpu", progress=False, checkpoint=path)
    assert result.status == "complete"
    [aside] = tmp_path.glob(f"{progress.name}.damaged-*")
    assert aside.read_text() == content
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(progress) in err[0] and aside.name in err[0]


def test_the_store_resumes_the_attacks_and_deletes_their_progress(tmp_path, monkeypatch, sweeps):
    config = tiny_config("sgld", epochs=3, windows=WINDOWS, **ROBUST)
    monkeypatch.setattr(experiment, "CHECKPOINT_EVERY_S", 0.0)
    with monkeypatch.context() as m:
        _interrupt_after(m, units=UNITS - 1)
        with pytest.raises(Interrupted):
            run_or_load(config, device="cpu", progress=False, root=tmp_path)
    checkpoint = checkpoint_path(config, tmp_path)
    assert progress_path(checkpoint, "table1").exists()
    sweeps.clear()
    result = run_or_load(config, device="cpu", progress=False, root=tmp_path)
    assert len(sweeps) == 1 and result.provenance["timing"]["resumed"] == 1
    assert list(checkpoint.parent.iterdir()) == []


def test_progress_that_cannot_be_written_costs_the_resume_not_the_run(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    config = tiny_config("sgld", epochs=3, windows=WINDOWS, **ROBUST)
    whole = experiment.run(config, device="cpu", progress=False)
    result = experiment.run(config, device="cpu", progress=False, checkpoint=blocker / "run.pt")
    assert _robustness(result) == _robustness(whole)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot write" in err[0] and "without saving" in err[0]
