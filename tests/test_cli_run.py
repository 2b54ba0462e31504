"""``sgmcmc run``: flags for every field, artifacts, and one-line errors with exit status 2."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest
from _engine import install_synthetic

from sgmcmc_paper.cli import build_parser, main
from sgmcmc_paper.engine.store import RUN_FILE
from sgmcmc_paper.protocol.config import RunConfig

TINY_FLAGS = [
    "--profile", "ci", "--train-size", "128", "--batch-size", "32", "--epochs", "1",
    "--test-size", "32", "--attack-size", "8", "--ood-size", "16", "--probe-size", "4",
    "--trace-per-tensor", "2", "--device", "cpu", "--quiet",
]  # fmt: skip


@pytest.fixture(autouse=True)
def synthetic(monkeypatch, tmp_path):
    install_synthetic(monkeypatch)
    monkeypatch.setenv("SGMCMC_RESULTS", str(tmp_path / "store"))


def _run_parser():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return sub.choices["run"]


def test_every_config_field_is_a_flag():
    flags = {opt for action in _run_parser()._actions for opt in action.option_strings}
    for field in dataclasses.fields(RunConfig):
        if field.name == "windows":
            assert "--window" in flags
        elif field.name != "profile":
            assert "--" + field.name.replace("_", "-") in flags, field.name


def test_out_gets_every_artifact(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["run", "--method", "psgld", *TINY_FLAGS, "--out", str(out)]) == 0
    assert {p.name for p in out.iterdir()} == {RUN_FILE, "predictions.npz", "traces.nc"}
    record = json.loads((out / RUN_FILE).read_text())
    assert record["status"] == "complete" and record["config"]["method"] == "psgld"
    assert set(record["metrics"]["windows"]) == {"fig4", "table1"}
    assert record["provenance"]["device"] == "cpu"
    assert not (tmp_path / "store").exists()  # --out leaves the store alone
    assert "written to" in capsys.readouterr().out


def test_without_out_the_store_is_used_and_a_stored_json_is_a_config(tmp_path, capsys):
    assert main(["run", "--method", "sgd", *TINY_FLAGS, "--window",
                 "name=last,samples=2,every=1,sets=test"]) == 0  # fmt: skip
    [stored] = [p.parent for p in (tmp_path / "store" / "ci").glob(f"*/{RUN_FILE}")]
    record = json.loads((stored / RUN_FILE).read_text())
    assert record["config"]["windows"] == [
        {"name": "last", "samples": 2, "every": 1, "end_epoch": 1, "sets": ["test"]}
    ]
    capsys.readouterr()
    # Feeding the stored run.json back in names the same run: it is loaded, not rerun.
    assert main(["run", "--config", str(stored / RUN_FILE), "--device", "cpu"]) == 0
    assert f"[{record['key']}]" in capsys.readouterr().out
    assert len(list((tmp_path / "store" / "ci").glob(f"*/{RUN_FILE}"))) == 1


def test_as_released_and_flags_layer(capsys, tmp_path):
    args = ["run", "--method", "psgld", "--as-released", "--profile", "ci", "--lr", "0.03"]
    config = _build(args)
    assert (config.convention, config.lr, config.train_size) == ("paper", 0.03, 2000)
    assert _build(["run", "--method", "sgld", "--prior-std", "none"]).prior_std is None
    assert _build(["run", "--method", "sgd", "--window", "none"]).windows == ()


def _build(argv):
    from sgmcmc_paper.commands.run import build_config

    return build_config(build_parser().parse_args(argv))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--method", "adam"], "invalid choice: 'adam'"),
        (["--method", "sgd", "--epochs", "0"], "epochs must be an integer >= 1"),
        (["--method", "sgd", "--train-size", "70000"], "exceeds the 60,000 training examples"),
        (["--method", "sgd", "--device", "tpu"], "unknown device 'tpu'"),
        (["--method", "sgd", "--lr", "fast"], "expected float, got 'fast'"),
        (["--method", "sgd", "--window", "name=w,size=3"], "unknown window part 'size'"),
        (["--epochs", "3"], "no method"),
        (["--method", "sgd", "--tuned", "--profile", "ci"], "--tuned: no selection for sgd"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(argv, message, capsys):
    code = _exit_code(["run", *argv])
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and message in err, err


def test_unwritable_out_and_malformed_config(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert _exit_code(["run", "--method", "sgd", "--out", str(blocker / "r")]) == 2
    assert "is not writable" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text("{'method': 'sgd'")
    assert _exit_code(["run", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "is not valid JSON" in err and len(err.strip().splitlines()) == 1
    bad.write_text('{"method": "sgd", "colour": "red"}')
    assert _exit_code(["run", "--config", str(bad)]) == 2
    assert "unknown config field" in capsys.readouterr().err
    assert _exit_code(["run", "--config", str(tmp_path / "missing.json")]) == 2
    assert "cannot read --config" in capsys.readouterr().err


def _exit_code(argv) -> int:
    try:
        return main(argv)
    except SystemExit as exc:  # argparse's own usage errors
        return exc.code


def test_a_real_process_prints_no_traceback():
    out = subprocess.run(
        [sys.executable, "-m", "sgmcmc", "run", "--method", "sgd", "--epochs", "0"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == ["error: epochs must be an integer >= 1, got 0"]
