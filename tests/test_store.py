"""The run store: keyed by what determines a result, atomic, resumable, small."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from _engine import fake_ood, install_synthetic, tiny_config

from sgmcmc_paper.engine import store, traces
from sgmcmc_paper.engine.experiment import run
from sgmcmc_paper.engine.store import (
    RUN_FILE,
    find_result,
    load_result,
    run_or_load,
    save_result,
    write_folder,
)
from sgmcmc_paper.errors import DamagedRunError, UserError

TESTS = Path(__file__).resolve().parent


@pytest.fixture(autouse=True)
def synthetic(monkeypatch):
    install_synthetic(monkeypatch)


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    """One small run in memory (not stored), shared by the tests that store it."""
    with pytest.MonkeyPatch.context() as mp:
        install_synthetic(mp)
        return run(tiny_config("sgld", epochs=1, trace_every=2), device="cpu", progress=False)


def _finished(root: Path) -> list[Path]:
    return sorted(p.parent for p in root.rglob(RUN_FILE))


def test_a_gpu_made_result_is_found_from_a_cpu(result, tmp_path, monkeypatch):
    folder = save_result(result, tmp_path)
    record = json.loads((folder / RUN_FILE).read_text())
    record["provenance"].update(device="cuda", device_name="NVIDIA H200")
    (folder / RUN_FILE).write_text(json.dumps(record))
    monkeypatch.setattr(store, "run", lambda *a, **k: pytest.fail("trained a stored config"))
    found = run_or_load(result.config, device="cpu", root=tmp_path)
    assert found.provenance["device_name"] == "NVIDIA H200"
    assert found.metrics == result.metrics


def test_the_key_ignores_the_profile_label(result):
    config = result.config
    assert config.replace(profile="elsewhere").key() == config.key()
    assert config.replace(seed=1).key() != config.key()


def test_a_second_copy_of_a_finished_run_is_discarded(result, tmp_path):
    first = save_result(result, tmp_path)
    stamp = (first / RUN_FILE).stat().st_mtime_ns
    assert save_result(result, tmp_path) == first
    assert (first / RUN_FILE).stat().st_mtime_ns == stamp
    assert not list(first.parent.glob(".tmp-*"))  # no temporaries left


def test_an_interrupted_write_leaves_nothing_finished(result, tmp_path, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(traces, "write_traces", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_result(result, tmp_path)
    assert _finished(tmp_path) == []
    assert not list((tmp_path / "ci").glob(".tmp-*"))
    monkeypatch.undo()
    install_synthetic(monkeypatch)
    assert find_result(result.config, tmp_path) is None


def test_writing_into_a_folder_removes_its_old_run_json_first(result, tmp_path, monkeypatch):
    write_folder(result, tmp_path)

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(traces, "write_traces", full_disk)
    with pytest.raises(UserError, match="No space left"):
        write_folder(result, tmp_path)
    assert not (tmp_path / RUN_FILE).exists()
    assert list(tmp_path.iterdir()) == []  # nothing half-written: predictions removed too


def test_traces_fall_back_to_npz_and_are_converted_when_loaded(result, tmp_path, monkeypatch):
    monkeypatch.setattr(traces, "_netcdf_engine", lambda: None)
    folder = save_result(result, tmp_path)
    assert (folder / "traces.npz").exists() and not (folder / "traces.nc").exists()
    monkeypatch.undo()
    install_synthetic(monkeypatch)
    loaded = find_result(result.config, tmp_path)
    assert (folder / "traces.nc").exists() and not (folder / "traces.npz").exists()
    assert loaded.traces().posterior["fc1.weight"].shape == (1, 2, 3)


def test_store_size_counts_finished_runs(result, tmp_path):
    save_result(result, tmp_path)
    size = store.store_size("ci", tmp_path)
    assert size["runs"] == 1
    assert 0 < size["bytes"] == size["max_run_bytes"]


_KILLED_RUN = """
import sys
sys.path.insert(0, {tests!r})
import pytest
from _engine import fake_ood, install_synthetic, tiny_config
install_synthetic(pytest.MonkeyPatch())
from sgmcmc_paper.engine.store import run_or_load
run_or_load(tiny_config("sgd", epochs={epochs}, windows=()), "cpu", progress=True, root={root!r})
"""


def test_a_killed_run_leaves_nothing_finished_and_a_rerun_completes(tmp_path):
    root = tmp_path / "store"
    script = tmp_path / "killed.py"
    script.write_text(_KILLED_RUN.format(tests=str(TESTS), epochs=3, root=str(root)))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env
    )
    try:
        line = proc.stdout.readline().decode()  # the first epoch is done: mid-way
        assert line.startswith("sgd epoch 1/3")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    config = tiny_config("sgd", epochs=3, windows=())
    assert _finished(root) == []
    assert find_result(config, root) is None
    done = run_or_load(config, "cpu", progress=False, root=root)
    assert done.status == "complete" and _finished(root) == [done.path]


def test_a_run_missing_a_set_that_is_now_installed_is_redone(result, tmp_path, monkeypatch):
    from sgmcmc_paper.engine import rundata

    assert result.skipped == ["fashion"]
    folder = save_result(result, tmp_path)
    monkeypatch.setattr(rundata, "ood_available", lambda: {"notmnist": True, "fashion": True})
    monkeypatch.setattr(rundata, "load_ood_arrays", lambda name: fake_ood("notmnist"))
    redone = run_or_load(result.config, device="cpu", progress=False, root=tmp_path)
    assert redone.skipped == [] and redone.path == folder
    assert set(redone.window("fig4")["sets"]) == {"test", "notmnist", "fashion"}
    assert _finished(tmp_path) == [folder]
    assert not list((tmp_path / "ci").glob(".tmp-*")) + list((tmp_path / "ci").glob(".old-*"))


def test_without_arviz_or_a_netcdf4_engine_traces_stay_npz(result, tmp_path, monkeypatch):
    # As on a bare GPU image: numpy, xarray, no ArviZ, no h5netcdf/netCDF4.
    monkeypatch.setitem(sys.modules, "arviz", None)
    monkeypatch.setattr(traces, "_netcdf_engine", lambda: None)
    folder = save_result(result, tmp_path)
    loaded = find_result(result.config, tmp_path)
    assert (folder / "traces.npz").exists()
    groups = loaded.traces()
    assert set(groups) == {"posterior", "sample_stats"}
    assert groups["posterior"]["probe_log_lik"].shape == (1, 2, 4)


def test_stored_predictions_are_an_npz_that_numpy_reads_and_that_holds_no_pickles():
    import io

    import numpy as np

    arrays = {
        "fig4/test/averaged/max_prob": np.linspace(0.1, 1.0, 1000, dtype=np.float16),
        "test/index": np.arange(1000, dtype=np.uint16)[::-1].copy(),
    }
    with np.load(io.BytesIO(store.npz_bytes(arrays))) as loaded:
        assert loaded.files == list(arrays)
        for name, array in arrays.items():
            assert loaded[name].dtype == array.dtype
            np.testing.assert_array_equal(loaded[name], array)
    with pytest.raises(ValueError, match="pickle"):
        store.npz_bytes({"objects": np.array([{"a": 1}], dtype=object)})


# ---------------------------------------------------------------------- faults (#25)
def _stored(result, root: Path) -> Path:
    folder = save_result(result, root)
    assert (folder / "traces.nc").exists()
    return folder


def _rewrite_record(folder: Path, change) -> None:
    record = json.loads((folder / RUN_FILE).read_text())
    change(record)
    (folder / RUN_FILE).write_text(json.dumps(record))


def _replace_predictions(folder: Path, data: bytes) -> None:
    """New predictions.npz bytes, with the size run.json records updated to match."""
    (folder / "predictions.npz").write_bytes(data)
    _rewrite_record(folder, lambda r: r["artifacts"].update({"predictions.npz": len(data)}))


def _pickled_npz() -> bytes:
    import io

    import numpy as np

    buffer = io.BytesIO()
    np.savez(buffer, objects=np.array([{"a": 1}], dtype=object))
    return buffer.getvalue()


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


DAMAGE = {
    "run.json truncated": (lambda f: _truncate(f / RUN_FILE), "run.json is not valid JSON"),
    "run.json binary": (lambda f: (f / RUN_FILE).write_bytes(b"\xff\xfe\x00"), "not valid JSON"),
    "run.json a list": (lambda f: (f / RUN_FILE).write_text("[]"), "not a JSON object"),
    "run.json a folder": (
        lambda f: ((f / RUN_FILE).unlink(), (f / RUN_FILE).mkdir()),
        "run.json is unreadable",
    ),
    "run.json without metrics": (
        lambda f: _rewrite_record(f, lambda r: r.pop("metrics")),
        "lacks the field(s) ['metrics']",
    ),
    "run.json metrics a string": (
        lambda f: _rewrite_record(f, lambda r: r.update(metrics="x")),
        "['metrics'] of the wrong type",
    ),
    "run.json epochs not a list": (
        lambda f: _rewrite_record(f, lambda r: r["metrics"].update(epochs=3)),
        "['metrics'] of the wrong type",
    ),
    "run.json invalid config": (
        lambda f: _rewrite_record(f, lambda r: r["config"].update(method="adam")),
        "holds an invalid config (method must be one of",
    ),
    "run.json of another run": (
        lambda f: _rewrite_record(f, lambda r: r.update(key="0123456789abcdef")),
        "holds run 0123456789abcdef, not",
    ),
    "unknown status": (
        lambda f: _rewrite_record(f, lambda r: r.update(status="exploded")),
        "unknown status 'exploded'",
    ),
    "diverged without a divergence": (
        lambda f: _rewrite_record(f, lambda r: r.update(status="diverged")),
        "says the run diverged but not where",
    ),
    "divergence without a reason": (
        lambda f: _rewrite_record(f, lambda r: r.update(divergence={"step": 3})),
        "['divergence'] of the wrong type",
    ),
    "an epoch without its metrics": (
        lambda f: _rewrite_record(f, lambda r: r["metrics"]["epochs"][0].pop("single")),
        "['metrics'] of the wrong type",
    ),
    "a window without samples": (
        lambda f: _rewrite_record(f, lambda r: r["metrics"]["windows"]["fig4"].pop("samples")),
        "['metrics'] of the wrong type",
    ),
    "fate of an unknown status": (
        lambda f: _rewrite_record(f, lambda r: r.update(fate={"status": "stalled"})),
        "'fate' of the wrong type",
    ),
    "fate a string": (
        lambda f: _rewrite_record(f, lambda r: r.update(fate="complete")),
        "'fate' of the wrong type",
    ),
    "artifacts not an object": (
        lambda f: _rewrite_record(f, lambda r: r.update(artifacts=[1])),
        "'artifacts' of the wrong type",
    ),
    "predictions garbage": (
        lambda f: _replace_predictions(f, b"garbage" * 10),
        "predictions.npz is not an npz archive",
    ),
    "predictions truncated": (
        lambda f: _truncate(f / "predictions.npz"),
        "predictions.npz has",
    ),
    "predictions truncated, size updated": (
        lambda f: _replace_predictions(f, (f / "predictions.npz").read_bytes()[:-100]),
        "predictions.npz is not an npz archive",
    ),
    "predictions pickled": (
        lambda f: _replace_predictions(f, _pickled_npz()),
        "predictions.npz holds Python objects",
    ),
    "predictions missing": (
        lambda f: (f / "predictions.npz").unlink(),
        "predictions.npz is missing",
    ),
    "traces.nc garbage": (
        lambda f: (f / "traces.nc").write_bytes(b"x" * (f / "traces.nc").stat().st_size),
        "traces.nc is not a netCDF file",
    ),
    "traces.nc truncated": (lambda f: _truncate(f / "traces.nc"), "traces.nc has"),
    "traces.nc missing": (lambda f: (f / "traces.nc").unlink(), "traces.nc is missing"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_entry_is_named_moved_aside_and_the_next_request_trains_it(
    damage, result, tmp_path
):
    folder = _stored(result, tmp_path)
    spoil, problem = DAMAGE[damage]
    spoil(folder)
    with pytest.raises(DamagedRunError) as info:
        run_or_load(result.config, device="cpu", progress=False, root=tmp_path)
    message = str(info.value)
    assert "\n" not in message and str(folder) in message and problem in message, message
    assert "allow_pickle" not in message
    [aside] = folder.parent.glob(f"{folder.name}.damaged-*")
    assert f"moved it aside to {aside.name}" in message and not folder.exists()
    again = run_or_load(result.config, device="cpu", progress=False, root=tmp_path)
    assert again.status == "complete" and again.path == folder
    assert folder in _finished(tmp_path)
    assert store.store_size("ci", tmp_path)["runs"] == 1  # the damaged copy is not counted


def test_a_run_stores_its_fate_and_one_stored_before_fates_gets_it_on_load(result, tmp_path):
    folder = save_result(result, tmp_path)
    record = json.loads((folder / RUN_FILE).read_text())
    complete = {"status": "complete", "epoch": None, "reason": ""}
    assert record["fate"] == result.fate.to_dict() == complete
    assert record["provenance"]["git_commit_source"] == "HEAD when the run was made"
    _rewrite_record(folder, lambda r: r.pop("fate"))  # as written before fates existed
    loaded = load_result(folder)
    assert loaded.fate == result.fate and loaded.status == "complete"


def test_a_garbage_npz_trace_is_a_damaged_entry(result, tmp_path, monkeypatch):
    monkeypatch.setattr(traces, "_netcdf_engine", lambda: None)
    folder = save_result(result, tmp_path)
    (folder / "traces.npz").write_bytes(b"y" * (folder / "traces.npz").stat().st_size)
    with pytest.raises(DamagedRunError, match="traces.npz is not an npz archive"):
        find_result(result.config, tmp_path)
    assert list(folder.parent.glob(f"{folder.name}.damaged-*"))


def test_unreadable_traces_of_the_right_size_are_named_when_read(result, tmp_path):
    folder = _stored(result, tmp_path)
    nc = folder / "traces.nc"
    data = nc.read_bytes()
    nc.write_bytes(data[:8] + b"\0" * (len(data) - 8))  # the netCDF magic, nothing else
    loaded = find_result(result.config, tmp_path)  # run.json and the sizes are fine
    with pytest.raises(DamagedRunError) as info:
        loaded.traces()
    message = str(info.value)
    assert "\n" not in message and str(folder) in message and "traces.nc is unreadable" in message
    assert not folder.exists() and list(folder.parent.glob(f"{folder.name}.damaged-*"))


def test_a_damaged_out_folder_is_named_but_left_in_place(result, tmp_path):
    out = tmp_path / "my-run"
    write_folder(result, out)
    (out / "predictions.npz").write_bytes(b"garbage")
    with pytest.raises(DamagedRunError, match=f"run folder {out} is damaged: predictions.npz"):
        load_result(out)
    assert (out / RUN_FILE).exists()


@pytest.mark.parametrize("leftover", ["files without run.json", "an empty folder", "a file"])
def test_an_incomplete_folder_is_retrained_then_replaced(leftover, result, tmp_path, monkeypatch):
    folder = store.result_dir(result.config, tmp_path)
    if leftover == "files without run.json":
        _stored(result, tmp_path)
        (folder / RUN_FILE).unlink()
        (folder / "stray.txt").write_text("left by hand")
    elif leftover == "an empty folder":
        folder.mkdir(parents=True)
    else:
        folder.parent.mkdir(parents=True)
        folder.write_text("not a folder")
    assert find_result(result.config, tmp_path) is None
    trained = []
    monkeypatch.setattr(store, "run", lambda *a, **k: trained.append(1) or result)
    done = run_or_load(result.config, device="cpu", progress=False, root=tmp_path)
    assert trained == [1] and done.status == "complete" and done.path == folder
    assert folder.is_dir() and not (folder / "stray.txt").exists()
    assert {p.name for p in folder.iterdir()} == {RUN_FILE, "predictions.npz", "traces.nc"}
    assert [p.name for p in folder.parent.iterdir() if p.name.startswith((".tmp", ".old"))] == []
    assert run_or_load(result.config, device="cpu", progress=False, root=tmp_path).path == folder
    assert trained == [1]  # stored now: loaded, not retrained


def test_a_notebook_loading_a_damaged_entry_gets_an_error_naming_the_folder(result, tmp_path):
    from sgmcmc_paper.book.session import Session

    folder = _stored(result, tmp_path)
    (folder / "predictions.npz").write_bytes(b"")
    session = Session("ci", device="cpu", output_dir=tmp_path, quiet=True)
    with pytest.raises(DamagedRunError, match=f"run folder {folder} is damaged"):
        session.run(result.config)
    assert session.run(result.config).status == "complete"  # the next call trains it


def test_a_stored_run_without_traces_says_so_as_one_in_memory_does(tmp_path):
    config = tiny_config("sgd", epochs=1, trace_every=0, windows=())
    in_memory = run(config, device="cpu", progress=False)
    with pytest.raises(ValueError, match="recorded no traces"):
        in_memory.traces()
    stored = run_or_load(config, device="cpu", progress=False, root=tmp_path)
    with pytest.raises(ValueError, match="recorded no traces"):
        stored.traces()


def test_a_store_that_cannot_be_created_is_one_line_before_training(result, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    for root in (Path("/proc/sgmcmc-store"), blocker / "store"):
        with pytest.raises(UserError) as info:
            run_or_load(result.config, device="cpu", progress=False, root=root)
        message = str(info.value)
        assert (
            "\n" not in message and "cannot create the folder" in message and str(root) in message
        )


def test_waiting_for_another_process_s_lock_says_what_it_waits_for(
    result, tmp_path, capsys, monkeypatch
):
    import threading

    monkeypatch.setattr(store, "run", lambda *a, **k: pytest.fail("trained a stored config"))
    done = []
    with store._key_lock(result.config, tmp_path):
        waiter = threading.Thread(
            target=lambda: done.append(
                run_or_load(result.config, device="cpu", progress=False, root=tmp_path)
            )
        )
        waiter.start()
        err = ""
        for _ in range(200):
            err += capsys.readouterr().err
            if err:
                break
            waiter.join(0.05)
        save_result(result, tmp_path)  # the other process finishes the run
    waiter.join(30)
    assert err.strip().splitlines() == [
        f"waiting for another process that is running sgld [{result.key}] (it holds "
        f"{tmp_path / 'ci' / '.locks' / (result.key + '.lock')}); its result is loaded when "
        "it finishes"
    ]
    assert done and done[0].path == store.result_dir(result.config, tmp_path)


def test_npz_traces_in_a_read_only_store_are_read_as_they_are(result, tmp_path, monkeypatch):
    monkeypatch.setattr(traces, "_netcdf_engine", lambda: None)
    folder = save_result(result, tmp_path)
    monkeypatch.undo()
    install_synthetic(monkeypatch)

    def read_only(*args, **kwargs):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(traces, "write_traces", read_only)
    loaded = find_result(result.config, tmp_path)  # was an OSError from the conversion
    assert (folder / "traces.npz").exists() and not (folder / "traces.nc").exists()
    assert loaded.traces().posterior["fc1.weight"].shape == (1, 2, 3)


def test_traces_of_a_run_folder_that_has_gone_say_so(result, tmp_path):
    import shutil

    folder = _stored(result, tmp_path)
    loaded = find_result(result.config, tmp_path)
    shutil.rmtree(folder)
    with pytest.raises(UserError, match=f"run folder {folder} no longer exists"):
        loaded.traces()


# ---------------------------------------------------------------------- provenance (#26)
def test_every_stored_run_records_its_git_commit():
    """Every run of the committed stores names the commit of the code that made it (recorded
    then, or backfilled from the store's history, which says so)."""
    from sgmcmc_paper.engine.provenance import BACKFILLED, RECORDED

    repo = TESTS.parent
    records = [
        json.loads(p.read_text())
        for profile in ("paper", "quick")
        for p in sorted((repo / "results" / profile).glob(f"*/{RUN_FILE}"))
    ]
    assert records
    missing = [r["key"] for r in records if not r["provenance"].get("git_commit")]
    assert missing == []
    sources = {r["provenance"].get("git_commit_source", RECORDED) for r in records}
    assert sources <= {RECORDED, BACKFILLED}


def test_a_missing_commit_is_backfilled_from_the_commit_that_added_the_run(result, tmp_path):
    from sgmcmc_paper.engine.provenance import BACKFILLED, backfill_git_commits

    folder = save_result(result, tmp_path)
    _rewrite_record(folder, lambda r: r["provenance"].update(git_commit=None))
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "a run"], check=True)
    head = subprocess.run(
        [*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True
    ).stdout.strip()
    assert backfill_git_commits([folder]) == [folder]
    provenance = load_result(folder).provenance  # still loads: artifact sizes unchanged
    assert provenance["git_commit"] == head and provenance["git_commit_source"] == BACKFILLED
    assert backfill_git_commits([folder]) == []  # a recorded commit is left alone
