"""The run store: ``results/<profile>/<key>/``, one folder per finished run, never weights.

A run folder holds ``run.json`` (key, status, config, metrics, divergence, notes, provenance
with versions, device name, wall times and git commit, and the artifact sizes),
``predictions.npz`` (compressed per-example summaries: :mod:`sgmcmc_paper.engine.evaluation`) and
``traces.nc`` (or ``traces.npz`` where no netCDF-4 engine was installed:
:mod:`sgmcmc_paper.engine.traces`).

The key (:meth:`RunConfig.key`) hashes what determines the result and not the device, so a
result made on a GPU is found from a CPU. Writes are atomic: a run is written into a hidden
``.tmp-<key>-<pid>`` folder and renamed into place only when complete, so a killed run leaves
nothing that looks finished, and rerunning simply runs again. When two processes finish the
same key, the first rename wins and the other's copy is discarded. Diverged runs are stored
too (``status: "diverged"``), so a sweep does not retry them. A run in progress keeps a
checkpoint in ``<profile>/.checkpoints/<key>.pt`` (:mod:`sgmcmc_paper.engine.checkpoint`): a killed
run resumes from it when asked for again, and it is deleted once the result is stored.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sgmcmc_paper.engine.experiment import RunResult, run
from sgmcmc_paper.engine.locks import file_lock
from sgmcmc_paper.errors import UserError
from sgmcmc_paper.paths import results_dir
from sgmcmc_paper.protocol.config import RunConfig

RUN_FILE = "run.json"
PREDICTIONS_FILE = "predictions.npz"
TRACE_FILES = ("traces.nc", "traces.npz")


def result_dir(config: RunConfig, root: Path | None = None) -> Path:
    """``<root>/<profile>/<key>`` with ``root`` the store (default :func:`results_dir`)."""
    return Path(root or results_dir()) / config.profile / config.key()


def write_folder(result: RunResult, folder: Path) -> Path:
    """Write a result's files into ``folder`` (created if needed), ``run.json`` last.

    An existing ``run.json`` there is removed first, so until this returns the folder never
    holds a ``run.json`` that disagrees with its other files.
    """
    from sgmcmc_paper.engine.traces import write_traces

    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / RUN_FILE).unlink(missing_ok=True)
        _atomic_write(folder / PREDICTIONS_FILE, npz_bytes(result.predictions))
        for name in TRACE_FILES:
            (folder / name).unlink(missing_ok=True)
        artifacts = {PREDICTIONS_FILE: (folder / PREDICTIONS_FILE).stat().st_size}
        if result.trace_arrays is not None:
            attrs = {"sgmcmc_key": result.key, "method": result.config.method}
            path = write_traces(folder, result.trace_arrays, attrs)
            artifacts[path.name] = path.stat().st_size
        record = {
            "key": result.key,
            "status": result.status,
            "config": result.config.to_dict(),
            "metrics": result.metrics,
            "divergence": result.divergence,
            "skipped": result.skipped,
            "notes": result.notes,
            "provenance": result.provenance,
            "artifacts": artifacts,
        }
        _atomic_write(folder / RUN_FILE, json.dumps(record, indent=1).encode())
    except OSError as exc:
        raise UserError(f"cannot write the run to {folder}: {exc.strerror or exc}") from None
    return folder


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """An ``.npz`` of ``arrays`` (no pickles) as ``np.savez`` lays it out, LZMA-compressed:
    ``np.load`` reads it, and the store's per-example float16 arrays take about a tenth less
    room than with ``np.savez_compressed``'s deflate."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_LZMA) as archive:
        for name, array in arrays.items():
            entry = io.BytesIO()
            np.lib.format.write_array(entry, np.asanyarray(array), allow_pickle=False)
            archive.writestr(f"{name}.npy", entry.getvalue())
    return buffer.getvalue()


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def load_result(folder: Path, config: RunConfig | None = None) -> RunResult:
    """Read a run folder; ``config`` (if given) replaces the stored one in the result (they
    have the same key; e.g. an ``fsgd`` request answered by an ``sgd`` run)."""
    from sgmcmc_paper.engine.traces import npz_to_netcdf

    folder = Path(folder)
    record = json.loads((folder / RUN_FILE).read_text())
    stored = RunConfig.from_dict(record["config"])
    if (folder / "traces.npz").exists():
        npz_to_netcdf(folder / "traces.npz", {"sgmcmc_key": record["key"]})
    with np.load(folder / PREDICTIONS_FILE) as f:
        predictions = {k: f[k] for k in f.files}
    return RunResult(
        config=config or stored,
        status=record["status"],
        metrics=record["metrics"],
        provenance=record["provenance"],
        predictions=predictions,
        divergence=record["divergence"],
        skipped=record.get("skipped", []),
        notes=record["notes"],
        path=folder,
    )


def find_result(config: RunConfig, root: Path | None = None) -> RunResult | None:
    """The stored result of ``config``, or ``None``."""
    folder = result_dir(config, root)
    if not (folder / RUN_FILE).exists():
        return None
    return load_result(folder, config)


def save_result(result: RunResult, root: Path | None = None, replace: bool = False) -> Path:
    """Put a result into the store atomically; returns its folder.

    An existing copy wins (a concurrent run of the same key finished first) unless
    ``replace``: then it is swapped out after the new copy is complete.
    """
    target = result_dir(result.config, root)
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(target)
    tmp = target.parent / f".tmp-{target.name}-{os.getpid()}"
    old = target.parent / f".old-{target.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        write_folder(result, tmp)
        if replace and target.exists():
            os.rename(target, old)
        os.rename(tmp, target)
    except OSError:
        if not (target / RUN_FILE).exists():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    result.path = target
    return target


def _remove_stale_temporaries(target: Path) -> None:
    """Delete temporaries of this key left by processes that no longer exist (killed runs)."""
    stale = [
        *target.parent.glob(f".tmp-{target.name}-*"),
        *target.parent.glob(f".old-{target.name}-*"),
    ]
    for tmp in stale:
        pid = tmp.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run_or_load(
    config: RunConfig,
    device: str | torch.device = "auto",
    progress: bool = True,
    root: Path | None = None,
) -> RunResult:
    """The stored result of ``config`` if there is one (made on any device), else run it,
    store it and return it. Diverged runs are results too: they are loaded, not retried.

    A stored result that skipped an out-of-distribution set which is installed now is run
    again and replaced, so a machine without the Debian packages cannot leave the store short.
    """
    found = find_result(config, root)
    if found is not None and not _now_available(found.skipped):
        return found
    with _key_lock(config, root):
        # Another process (a notebook, a sweep trial, a worker) may have finished it meanwhile.
        again = find_result(config, root)
        if again is not None and (found is None or again.path != found.path):
            return again
        checkpoint = checkpoint_path(config, root)
        result = run(config, device=device, progress=progress, checkpoint=checkpoint)
        stored = save_result(result, root, replace=found is not None)
        checkpoint.unlink(missing_ok=True)
        return load_result(stored, config)


def checkpoint_path(config: RunConfig, root: Path | None = None) -> Path:
    """``<store>/<profile>/.checkpoints/<key>.pt``: where a run in progress saves its state."""
    return result_dir(config, root).parent / ".checkpoints" / f"{config.key()}.pt"


def _key_lock(config: RunConfig, root: Path | None):
    """Hold ``<store>/<profile>/.locks/<key>.lock`` so concurrent askers train a key once."""
    return file_lock(result_dir(config, root).parent / ".locks" / f"{config.key()}.lock")


def _now_available(skipped: list[str]) -> bool:
    if not skipped:
        return False
    from sgmcmc_paper.engine import rundata

    ready = rundata.ood_available()
    return any(ready.get(name, False) for name in skipped)


def store_size(profile: str, root: Path | None = None) -> dict[str, Any]:
    """Runs and bytes under ``<root>/<profile>`` (finished runs only)."""
    base = Path(root or results_dir()) / profile
    runs = [d for d in base.iterdir() if (d / RUN_FILE).exists()] if base.exists() else []
    sizes = [sum(f.stat().st_size for f in d.iterdir()) for d in runs]
    return {"runs": len(runs), "bytes": int(sum(sizes)), "max_run_bytes": max(sizes, default=0)}
