"""``sgmcmc run``: flags for every field, artifacts, and one-line errors with exit status 2."""

from __future__ import annotations

import dataclasses
import json
import os
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


# ---------------------------------------------------------------------- faults (#25)
def _one_line(err: str, *parts: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for part in parts:
        assert part in lines[0], (part, err)


def _stored_folders(tmp_path):
    return sorted(p.parent for p in (tmp_path / "store" / "ci").glob(f"*/{RUN_FILE}"))


def test_a_damaged_store_entry_is_one_line_exit_2_and_the_next_run_completes(tmp_path, capsys):
    argv = ["run", "--method", "sgd", *TINY_FLAGS]
    assert main(argv) == 0
    [folder] = _stored_folders(tmp_path)
    (folder / "predictions.npz").write_bytes(b"\x00" * 64)
    capsys.readouterr()
    assert main(argv) == 2
    _one_line(capsys.readouterr().err, f"run folder {folder} is damaged", "moved it aside")
    assert not folder.exists()
    assert main(argv) == 0  # trained afresh
    assert f"written to {folder}" in capsys.readouterr().out
    assert _stored_folders(tmp_path)[0] == folder


def test_a_run_folder_without_run_json_does_not_wedge_the_run(tmp_path, capsys):
    argv = ["run", "--method", "sgd", *TINY_FLAGS]
    assert main(argv) == 0
    [folder] = _stored_folders(tmp_path)
    (folder / RUN_FILE).unlink()
    assert main(argv) == 0
    assert (folder / RUN_FILE).exists() and _stored_folders(tmp_path) == [folder]
    assert not [p for p in folder.parent.iterdir() if p.name.startswith((".tmp-", ".old-"))]


#: Bad values in a --config file: every kind of field (bool, int, float, optional, str, tuple,
#: windows), each one line naming the file and the field, before anything runs.
BAD_CONFIG_VALUES = [
    ({"method": "ksgld", "kfac_update": "false"}, "kfac_update must be true or false"),
    ({"method": "ksgld", "kfac_update": 0}, "kfac_update must be true or false"),
    ({"method": "psgld", "psgld_alpha": "high"}, "psgld_alpha must be a number"),
    ({"method": "psgld", "psgld_alpha": False}, "psgld_alpha must be a number"),
    ({"method": "psgld", "psgld_eps": "tiny"}, "psgld_eps must be a number"),
    ({"method": "ksgld", "kfac_ema_decay": "0.9"}, "without quotes"),
    ({"method": "ksgld", "kfac_ema_decay": 1.5}, "kfac_ema_decay must lie in [0, 1)"),
    ({"method": "ksgld", "kfac_eigen_rtol": "x"}, "kfac_eigen_rtol must be a number"),
    ({"method": "ksgld", "kfac_eigen_rtol": -0.1}, "kfac_eigen_rtol must lie in [0, 1)"),
    ({"method": "ksgld", "kfac_damping": True}, "kfac_damping must be a number"),
    ({"method": "ksgld", "kfac_factor_every": 2.5}, "kfac_factor_every must be an integer"),
    ({"method": "ksgld", "kfac_fisher": 1}, "kfac_fisher must be a string"),
    ({"method": "sgd", "psgld_alpha": "x"}, "psgld_alpha must be a number"),  # unused field
    ({"method": "sgd", "lr": "0.1"}, "lr must be a number or null"),
    ({"method": "sgd", "lr": -1}, "lr must be a finite number > 0"),
    ({"method": "sgd", "lr_decay": None}, "lr_decay must be a number, got None"),
    ({"method": "sgld", "temperature": "1"}, "temperature must be a number"),
    ({"method": "sgld", "convention": "langevin", "prior_std": "wide"}, "prior_std must be"),
    ({"method": "sgd", "epochs": "2"}, "epochs must be an integer"),
    ({"method": "sgd", "epochs": 1.0}, "epochs must be an integer"),
    ({"method": "sgd", "seed": -1}, "seed must be an integer >= 0"),
    ({"method": "sgd", "train_size": "all"}, "train_size must be an integer or null"),
    ({"method": "sgd", "test_size": 0}, "test_size must be an integer >= 1"),
    ({"method": "sgd", "convention": 1}, "convention must be a string"),
    ({"method": "sgd", "init": "xavier"}, "init must be one of"),
    ({"method": "sgd", "fgsm_eps": "0.3"}, "fgsm_eps must be positive numbers"),
    ({"method": "sgd", "fgsm_eps": [0.3, None]}, "fgsm_eps must be positive numbers"),
    ({"method": "sgd", "windows": {"name": "w"}}, "windows must be a list of windows"),
    ({"method": "sgd", "windows": [{"name": 5}]}, "window name must be letters"),
    ({"method": "sgd", "windows": [{"name": "w", "sets": "test"}]}, "sets must be a list"),
    ({"method": "sgd", "windows": [{"name": "w", "sets": [["test"]]}]}, "sets must be a list"),
    ({"method": "sgd", "windows": [{"name": "w", "every": "2"}]}, "every must be an integer"),
    ({"method": "sgd", "windows": [{"name": "w", "size": 2}]}, "unknown fields ['size']"),
    ({"method": "sgd", "windows": [3]}, "a window must be an object"),
    ({"method": "sgd", "colour": "red"}, "unknown config fields ['colour']"),
]


@pytest.mark.parametrize(("fields", "message"), BAD_CONFIG_VALUES)
def test_a_bad_value_in_a_config_file_is_one_line_naming_the_file(
    fields, message, tmp_path, capsys, monkeypatch
):
    from sgmcmc_paper.engine import store

    monkeypatch.setattr(store, "run", lambda *a, **k: pytest.fail("ran a bad config"))
    path = tmp_path / "config.json"
    path.write_text(json.dumps(fields))
    assert _exit_code(["run", "--config", str(path), "--profile", "ci", "--quiet"]) == 2
    _one_line(capsys.readouterr().err, f"--config {path}: ", message)


def test_a_string_boolean_is_never_inverted(tmp_path, capsys):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"method": "ksgld", "kfac_update": False}))
    assert main(["run", "--config", str(path), *TINY_FLAGS, "--epochs", "1"]) == 0
    [folder] = _stored_folders(tmp_path)
    assert json.loads((folder / RUN_FILE).read_text())["config"]["kfac_update"] is False
    path.write_text(json.dumps({"method": "ksgld", "kfac_update": "false"}))
    assert _exit_code(["run", "--config", str(path), *TINY_FLAGS]) == 2
    assert _stored_folders(tmp_path) == [folder]  # nothing stored as kfac_update: true


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "is not a hyper-parameter selection"),
        ('{"selected": []}', "'selected' is not a JSON object"),
        ('{"selected": {"paper/sgd/128": 0.1}}', "not a JSON object of config fields"),
        ('{"selected": {"paper/sgd/128": {"learning_rate": 1}}}', "unknown fields"),
        ('{"selected": {"paper/sgd/128": {"lr": "fast"}}}', "lr must be a number"),
        (b"\xff\xfe", "is not a hyper-parameter selection"),
    ],
)
def test_a_bad_tuned_selection_is_one_line_naming_the_file(content, message, tmp_path, capsys):
    path = tmp_path / "store" / "hparams" / "ci.json"
    path.parent.mkdir(parents=True)
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    assert _exit_code(["run", "--method", "sgd", "--tuned", *TINY_FLAGS]) == 2
    _one_line(capsys.readouterr().err, str(path), message)


def test_a_diverged_run_exits_3_as_its_help_says(tmp_path, capsys):
    assert "3 the run diverged" in " ".join(_run_parser().format_help().split())
    argv = ["run", "--method", "sgd", "--lr", "1e12", *TINY_FLAGS]
    assert main(argv) == 3
    out = capsys.readouterr().out
    assert "diverged: non-finite" in out and "written to" in out
    assert main(argv) == 3  # loaded from the store: still diverged
    assert main([*argv, "--out", str(tmp_path / "out")]) == 3
    assert json.loads((tmp_path / "out" / RUN_FILE).read_text())["status"] == "diverged"


def test_a_failed_out_run_leaves_no_folder(tmp_path, capsys, monkeypatch):
    from sgmcmc_paper.engine import rundata
    from sgmcmc_paper.errors import UserError

    def missing(validation):
        raise UserError("MNIST is not cached (test)")

    monkeypatch.setattr(rundata, "load_mnist_arrays", missing)
    out = tmp_path / "new" / "run"
    assert main(["run", "--method", "sgd", *TINY_FLAGS, "--out", str(out)]) == 2
    _one_line(capsys.readouterr().err, "MNIST is not cached")
    assert not out.exists()


def test_a_store_that_cannot_be_created_is_one_line_in_a_real_process(tmp_path):
    env = {**os.environ, "SGMCMC_RESULTS": "/proc/sgmcmc-store"}
    out = subprocess.run(
        [sys.executable, "-m", "sgmcmc_paper", "run", "--method", "sgd", *TINY_FLAGS],
        capture_output=True,
        text=True,
        env=env,
    )
    assert out.returncode == 2
    _one_line(out.stderr, "cannot create the folder /proc/sgmcmc-store/", "set SGMCMC_RESULTS")
