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
from sgmcmc_paper.engine.store import RUN_FILE, find_result, run_or_load, save_result, write_folder
from sgmcmc_paper.errors import UserError

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
