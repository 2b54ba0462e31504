"""The run store: ``results/<profile>/<key>/``, one folder per finished run, never weights.

A run folder holds ``run.json`` (key, status, fate, config, metrics, divergence, notes,
provenance with versions, device name, wall times and git commit, and the artifact sizes),
``predictions.npz`` (compressed per-example summaries: :mod:`sgmcmc_paper.engine.evaluation`) and
``traces.nc`` (or ``traces.npz`` where no netCDF-4 engine was installed:
:mod:`sgmcmc_paper.engine.traces`).

The key (:meth:`RunConfig.key`) hashes what determines the result and not the device, so a
result made on a GPU is found from a CPU. Writes are atomic: a run is written into a hidden
``.tmp-<key>-<pid>`` folder and renamed into place only when complete, so a killed run leaves
nothing that looks finished, and rerunning simply runs again. When two processes finish the
same key, the first rename wins and the other's copy is discarded. Diverged runs are stored
too (``status: "diverged"``), so a sweep does not retry them. ``status`` is how training
ended (``complete`` or ``diverged``); ``fate`` (:mod:`sgmcmc_paper.engine.fate`: ``complete``,
``diverged`` or ``collapsed``, with epoch and reason) is written for readers of ``run.json``
and recomputed from the metrics on load, so runs stored before fates existed (no ``fate``
field) load as they are and get theirs. A run in progress keeps a
checkpoint in ``<profile>/.checkpoints/<key>.pt`` (:mod:`sgmcmc_paper.engine.checkpoint`): a killed
run resumes from it when asked for again (its finished attacks too, kept beside it:
:mod:`sgmcmc_paper.engine.attack_progress`), and both are deleted once the result is stored.

A folder without ``run.json`` (left by hand or by an older writer) is not a result: the run is
trained and its folder replaces the incomplete one atomically. A folder whose files cannot be
read as a run (:func:`load_result`: a truncated or altered ``run.json``, a garbage or
truncated ``predictions.npz`` or trace file, one missing or of another size than ``run.json``
records) is damaged: :func:`find_result` moves it aside, to ``<key>.damaged-<time>`` beside
it, and raises a one-line :class:`~sgmcmc_paper.errors.DamagedRunError` naming both, so the
next request of that run trains it again (or a good copy can be put back).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import shutil
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sgmcmc_paper.engine.attack_progress import discard as discard_attack_progress
from sgmcmc_paper.engine.experiment import RunResult, run
from sgmcmc_paper.engine.fate import FATES
from sgmcmc_paper.engine.locks import file_lock
from sgmcmc_paper.engine.quarantine import DAMAGED, quarantine
from sgmcmc_paper.engine.robustness import transfer_images
from sgmcmc_paper.errors import DamagedRunError, UserError
from sgmcmc_paper.paths import ensure_dir, results_dir, unwritable_fix
from sgmcmc_paper.protocol.config import EVALUATION_FIELDS, ConfigError, RunConfig

RUN_FILE = "run.json"
PREDICTIONS_FILE = "predictions.npz"
TRACE_FILES = ("traces.nc", "traces.npz")
#: How a stored run's training ended (``run.json``'s ``status``); ``collapsed`` is a fate
#: (:data:`~sgmcmc_paper.engine.fate.FATES`), accepted here too.
STATUSES = FATES
#: The first bytes of a netCDF-4 (HDF5) file, and of a classic netCDF one.
_NETCDF_MAGIC = (b"\x89HDF\r\n\x1a\n", b"CDF")


def result_dir(config: RunConfig, root: Path | None = None) -> Path:
    """``<root>/<profile>/<key>`` with ``root`` the store (default :func:`results_dir`)."""
    return Path(root or results_dir()) / config.profile / config.key()


def write_folder(result: RunResult, folder: Path) -> Path:
    """Write a result's files into ``folder`` (created if needed), ``run.json`` last.

    An existing ``run.json`` there is removed first, so until this returns the folder never
    holds a ``run.json`` that disagrees with its other files; a write that fails (a full disk,
    an interruption) removes the files it had written, so nothing half-written is left.
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
            "fate": result.fate.to_dict(),
            "config": result.config.to_dict(),
            "metrics": result.metrics,
            "divergence": result.divergence,
            "skipped": result.skipped,
            "notes": result.notes,
            "provenance": result.provenance,
            "artifacts": artifacts,
        }
        _atomic_write(folder / RUN_FILE, json.dumps(record, indent=1).encode())
    except BaseException as exc:
        for name in (PREDICTIONS_FILE, *TRACE_FILES):
            (folder / name).unlink(missing_ok=True)
        for tmp in folder.glob(f".*.{os.getpid()}.tmp"):
            tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise UserError(
                f"cannot write the run to {folder} ({exc.strerror or exc}); "
                f"{unwritable_fix(folder)}"
            ) from None
        raise
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


def stale_fields(stored: RunConfig, config: RunConfig) -> list[str]:
    """The evaluation-only fields (:data:`~sgmcmc_paper.protocol.config.EVALUATION_FIELDS`)
    whose values in ``stored`` (a stored run's config as ``run.json`` records it; a field an
    older ``run.json`` lacks has its default, the value that adds no output) differ from
    ``config``'s, sorted; empty when the stored run satisfies ``config``. A request answered
    by a run of another method with its key (FSGD by SGD) is compared as that method."""
    if stored.method != config.method:
        config = config.replace(method=stored.method)
    return sorted(n for n in EVALUATION_FIELDS if getattr(stored, n) != getattr(config, n))


def satisfies(result: RunResult, config: RunConfig) -> bool:
    """Whether a stored ``result`` of ``config``'s key holds every output ``config`` asks for:
    its evaluation-only fields equal ``config``'s (a stale one holds the same training and an
    older evaluation; the notebooks read it, :func:`run_or_load` with
    ``complete_evaluation=True`` retrains it)."""
    return not stale_fields(result.config, config)


def load_result(folder: Path, config: RunConfig | None = None) -> RunResult:
    """Read a run folder; ``config`` (if given) replaces the stored one in the result (they
    have the same key; e.g. an ``fsgd`` request answered by an ``sgd`` run), with the
    evaluation-only fields the stored run was evaluated with (:func:`stale_fields`), so
    ``result.config`` says which outputs it holds.

    A folder that cannot be read as a run raises :class:`DamagedRunError` naming it and what
    is wrong (it is left where it is: :func:`find_result` moves store entries aside)."""
    from sgmcmc_paper.engine.traces import npz_to_netcdf

    folder = Path(folder)
    record = _read_record(folder)
    try:
        stored = RunConfig.from_dict(record["config"])
    except ConfigError as exc:
        raise DamagedRunError(folder, f"{RUN_FILE} holds an invalid config ({exc})") from None
    if config is not None and record["key"] != config.key():
        raise DamagedRunError(folder, f"{RUN_FILE} holds run {record['key']}, not {config.key()}")
    _check_artifacts(folder, record)
    if config is not None and stale_fields(stored, config):  # the request, as evaluated
        config = config.replace(**{name: getattr(stored, name) for name in EVALUATION_FIELDS})
    if (folder / "traces.npz").exists():
        npz_to_netcdf(folder / "traces.npz", {"sgmcmc_key": record["key"]})
    return RunResult(
        config=config or stored,
        status=record["status"],
        metrics=record["metrics"],
        provenance=record["provenance"],
        predictions=_read_predictions(folder),
        divergence=record["divergence"],
        skipped=record.get("skipped", []),
        notes=record["notes"],
        path=folder,
    )


#: The fields of ``run.json`` and their JSON types (``None``: null allowed).
_RECORD_FIELDS: dict[str, tuple[type | None, ...]] = {
    "key": (str,),
    "status": (str,),
    "config": (dict,),
    "metrics": (dict,),
    "provenance": (dict,),
    "divergence": (dict, type(None)),
    "notes": (list,),
}


def _read_record(folder: Path) -> dict[str, Any]:
    """``run.json`` of ``folder``, checked for the fields and types a result needs."""
    path = folder / RUN_FILE
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        raise DamagedRunError(folder, f"{RUN_FILE} is missing") from None
    except OSError as exc:
        raise DamagedRunError(folder, f"{RUN_FILE} is unreadable ({exc.strerror or exc})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DamagedRunError(
            folder, f"{RUN_FILE} is not valid JSON (truncated or altered: {exc})"
        ) from None
    if not isinstance(record, dict):
        raise DamagedRunError(folder, f"{RUN_FILE} is not a JSON object")
    missing = [name for name in _RECORD_FIELDS if name not in record]
    if missing:
        raise DamagedRunError(folder, f"{RUN_FILE} lacks the field(s) {missing}")
    wrong = [
        name
        for name, types in _RECORD_FIELDS.items()
        if not isinstance(record[name], tuple(t for t in types if t is not None))
    ]
    if not wrong and not _metrics_shape(record["metrics"]):
        wrong = ["metrics"]
    divergence = record["divergence"]
    if isinstance(divergence, dict) and not (
        isinstance(divergence.get("reason"), str) and isinstance(divergence.get("step"), int)
    ):
        wrong.append("divergence")
    if not isinstance(record.get("skipped", []), list):
        wrong.append("skipped")
    if wrong:
        raise DamagedRunError(folder, f"{RUN_FILE} has field(s) {wrong} of the wrong type")
    if record["status"] not in STATUSES:
        raise DamagedRunError(
            folder, f"{RUN_FILE} has the unknown status {record['status']!r} (not {STATUSES})"
        )
    if record["status"] == "diverged" and divergence is None:
        raise DamagedRunError(folder, f"{RUN_FILE} says the run diverged but not where")
    if "fate" in record and not _fate_shape(record["fate"]):
        raise DamagedRunError(folder, f"{RUN_FILE} has a field 'fate' of the wrong type")
    return record


def _fate_shape(fate: Any) -> bool:
    """A stored fate: ``{"status": one of FATES, "epoch": int or null, "reason": str}``
    (written since fates exist; older records have none and get theirs on load)."""
    return (
        isinstance(fate, dict)
        and fate.get("status") in FATES
        and (fate.get("epoch") is None or isinstance(fate.get("epoch"), int))
        and isinstance(fate.get("reason", ""), str)
    )


def _metrics_shape(metrics: dict[str, Any]) -> bool:
    """Per-epoch records with their test metrics, and windows with their samples and sets."""
    epochs, windows = metrics.get("epochs"), metrics.get("windows")
    return (
        isinstance(epochs, list)
        and all(
            isinstance(e, dict)
            and isinstance(e.get("epoch"), int)
            and isinstance(e.get("single"), dict)
            and isinstance(e.get("averaged"), dict)
            for e in epochs
        )
        and isinstance(windows, dict)
        and all(
            isinstance(w, dict)
            and isinstance(w.get("samples"), int)
            and isinstance(w.get("sets"), dict)
            for w in windows.values()
        )
    )


def _check_artifacts(folder: Path, record: dict[str, Any]) -> None:
    """Every file ``run.json`` lists is there with the size it recorded (a trace file
    converted from npz to netCDF since is accepted), and a trace file is what its name says."""
    artifacts = record.get("artifacts", {PREDICTIONS_FILE: None})
    if not isinstance(artifacts, dict):
        raise DamagedRunError(folder, f"{RUN_FILE} has a field 'artifacts' of the wrong type")
    for name, size in artifacts.items():
        path = folder / str(name)
        if name == "traces.npz" and not path.exists() and (folder / "traces.nc").exists():
            continue  # converted to netCDF when it was loaded where an engine was installed
        if not path.is_file():
            raise DamagedRunError(folder, f"{name} is missing")
        actual = path.stat().st_size
        if isinstance(size, int) and actual != size:
            raise DamagedRunError(
                folder, f"{name} has {actual:,} bytes where {RUN_FILE} records {size:,}"
            )
    nc = folder / "traces.nc"
    if nc.exists():
        try:
            with open(nc, "rb") as file:
                head = file.read(8)
        except OSError as exc:
            raise DamagedRunError(
                folder, f"{nc.name} is unreadable ({exc.strerror or exc})"
            ) from None
        if not head.startswith(_NETCDF_MAGIC):
            raise DamagedRunError(folder, f"{nc.name} is not a netCDF file")
    npz = folder / "traces.npz"
    if npz.exists() and not zipfile.is_zipfile(npz):
        raise DamagedRunError(folder, f"{npz.name} is not an npz archive (truncated?)")


def _read_predictions(folder: Path) -> dict[str, np.ndarray]:
    """The arrays of ``predictions.npz`` (never pickles)."""
    path = folder / PREDICTIONS_FILE
    if not path.is_file():
        raise DamagedRunError(folder, f"{PREDICTIONS_FILE} is missing")
    if not zipfile.is_zipfile(path):
        raise DamagedRunError(folder, f"{PREDICTIONS_FILE} is not an npz archive (truncated?)")
    try:
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except ValueError as exc:
        if "pickle" not in str(exc):
            raise DamagedRunError(
                folder, f"{PREDICTIONS_FILE} is unreadable (ValueError: {exc})"
            ) from None
        problem = f"{PREDICTIONS_FILE} holds Python objects, which the store never writes"
        raise DamagedRunError(folder, problem) from None
    except Exception as exc:  # zip, lzma, zlib and npy-format errors of every kind
        lines = str(exc).strip().splitlines() or [""]
        problem = f"{PREDICTIONS_FILE} is unreadable ({type(exc).__name__}: {lines[0][:120]})"
        raise DamagedRunError(folder, problem) from None


def find_result(config: RunConfig, root: Path | None = None) -> RunResult | None:
    """The stored result of ``config``, or ``None`` (also for a folder without ``run.json``:
    an incomplete write, which the next stored result replaces).

    A damaged folder is moved aside (:func:`quarantine`) and reported as a one-line
    :class:`DamagedRunError` naming it, so that the next request trains the run again."""
    folder = result_dir(config, root)
    if not (folder / RUN_FILE).exists():
        return None
    try:
        return load_result(folder, config)
    except DamagedRunError as first:
        try:  # once more: a concurrent writer may have been swapping the folder
            return load_result(folder, config)
        except DamagedRunError:
            raise quarantine(first) from None


def save_result(result: RunResult, root: Path | None = None, replace: bool = False) -> Path:
    """Put a result into the store atomically; returns its folder.

    An existing copy wins (a concurrent run of the same key finished first) unless
    ``replace``: then it is swapped out after the new copy is complete. A folder there
    without ``run.json`` (an incomplete one) is always swapped out.
    """
    target = result_dir(result.config, root)
    ensure_dir(target.parent)
    _remove_stale_temporaries(target)
    tmp = target.parent / f".tmp-{target.name}-{os.getpid()}"
    old = target.parent / f".old-{target.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        write_folder(result, tmp)
        incomplete = target.exists() and not (target / RUN_FILE).is_file()
        if (replace or incomplete) and target.exists():
            os.rename(target, old)
        os.rename(tmp, target)
    except OSError as exc:
        if not (target / RUN_FILE).exists():
            if old.exists() and not target.exists():
                os.rename(old, target)  # put back what was there
            raise UserError(
                f"cannot store the run in {target} ({exc.strerror or exc}); "
                f"{unwritable_fix(target)}"
            ) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)  # a file was in the run folder's place
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
    checkpoint_every: float | None = None,
    complete_evaluation: bool = False,
) -> RunResult:
    """The stored result of ``config`` if there is one (made on any device), else run it,
    store it and return it. Diverged runs are results too: they are loaded, not retried.
    A run in progress saves a checkpoint every ``checkpoint_every`` seconds (default
    :data:`~sgmcmc_paper.engine.experiment.CHECKPOINT_EVERY_S`) and resumes from it.

    A stored run with an older evaluation (:func:`satisfies` is false) is returned as it is,
    unless ``complete_evaluation``: then it is run again and the new result replaces it
    atomically under the same key (``sgmcmc fill`` does this; the notebooks read what it has).

    A stored result that skipped an out-of-distribution set which is installed now is run
    again and replaced, so a machine without the Debian packages cannot leave the store short.
    """

    def usable(found: RunResult | None) -> bool:
        if found is None or _now_available(found.skipped):
            return False
        return satisfies(found, config) or not complete_evaluation

    found = find_result(config, root)
    if usable(found):
        return found
    with _key_lock(config, root):
        # Another process (a notebook, a sweep trial, a worker) may have finished it meanwhile.
        again = find_result(config, root)
        if usable(again):
            return again
        checkpoint = checkpoint_path(config, root)
        result = run(
            config,
            device=device,
            progress=progress,
            checkpoint=checkpoint,
            checkpoint_every=checkpoint_every,
            transfer=transfer_images(  # the seed's SGD run first: its PGD examples (#27)
                config,
                lambda source: run_or_load(
                    source, device, progress, root, checkpoint_every, complete_evaluation
                ),
            ),
        )
        stored = save_result(result, root, replace=again is not None)
        checkpoint.unlink(missing_ok=True)
        discard_attack_progress(checkpoint)
        return load_result(stored, config)


def checkpoint_path(config: RunConfig, root: Path | None = None) -> Path:
    """``<store>/<profile>/.checkpoints/<key>.pt``: where a run in progress saves its state;
    ``<key>-<evaluation>.pt`` where an evaluation-only field is not at its default (a hash of
    their values), so a run never resumes from a checkpoint evaluated otherwise."""
    changed = {
        f.name: getattr(config, f.name)
        for f in dataclasses.fields(config)
        if f.name in EVALUATION_FIELDS and getattr(config, f.name) != f.default
    }
    name = config.key()
    if changed:
        text = json.dumps(changed, sort_keys=True, default=str)
        name += "-" + hashlib.sha256(text.encode()).hexdigest()[:8]
    return result_dir(config, root).parent / ".checkpoints" / f"{name}.pt"


def _key_lock(config: RunConfig, root: Path | None):
    """Hold ``<store>/<profile>/.locks/<key>.lock`` so concurrent askers train a key once;
    a wait for another process says so in one line."""
    lock = result_dir(config, root).parent / ".locks" / f"{config.key()}.lock"
    waiting = (
        f"waiting for another process that is running {config.method} [{config.key()}] "
        f"(it holds {lock}); its result is loaded when it finishes"
    )
    return file_lock(lock, waiting=waiting)


def _now_available(skipped: list[str]) -> bool:
    if not skipped:
        return False
    from sgmcmc_paper.engine import rundata

    ready = rundata.ood_available()
    return any(ready.get(name, False) for name in skipped)


def finished_runs(profile: str, root: Path | None = None) -> list[Path]:
    """The folders of the finished, undamaged runs under ``<root>/<profile>``, by name."""
    base = Path(root or results_dir()) / profile
    if not base.exists():
        return []
    return sorted(d for d in base.iterdir() if (d / RUN_FILE).exists() and DAMAGED not in d.name)


def store_size(profile: str, root: Path | None = None) -> dict[str, Any]:
    """Runs and bytes under ``<root>/<profile>`` (finished runs only)."""
    runs = finished_runs(profile, root)
    sizes = [sum(f.stat().st_size for f in d.iterdir()) for d in runs]
    return {"runs": len(runs), "bytes": int(sum(sizes)), "max_run_bytes": max(sizes, default=0)}
