"""Execute the book's notebooks with papermill, in order, into ``book/notebooks/``.

Every ``*.ipynb`` of ``notebooks/`` runs, sorted by name, with ``-p profile <P>`` (and
``-p device <D>`` when given) injected after its cell tagged ``parameters``. Each executed
notebook is written to a hidden temporary file beside its destination and renamed into place
only when every cell succeeded, so ``book/notebooks/`` never holds a half-run notebook. The
first failure stops the run with one line naming the notebook, the cell and the error, and
where the partly executed copy was kept: ``<out>.failed/<name>`` beside the output folder
(removed again once that notebook succeeds).

Kernels are started with CurveZMQ transport encryption where the kernel and pyzmq support it
(ipykernel declares it in its kernelspec), so the traffic between papermill and the kernel is
not plain text, and ipykernel's warning that it would be is not printed for every notebook.

``fresh=True`` retrains instead of loading stored results: the kernels see
``$SGMCMC_RESULTS`` pointing to a store ``<results>/.fresh/`` that holds only a copy of the
hyper-parameter selections (``hparams/*.json``; re-tuning is ``sgmcmc sweep``'s job), so runs
that several notebooks share are trained once. When every notebook succeeded the fresh
results replace the old ones in the store and ``.fresh/`` is removed; an interrupted fresh run
resumes from what ``.fresh/`` holds.

``fallback`` names a smaller profile for the notebooks whose runs at ``profile`` the store does
not hold in full (:func:`sgmcmc_paper.protocol.plan.missing_runs`): those run at ``fallback``
instead, so a machine that cannot train the paper profile still executes every chapter, each at the
largest profile the store supports, and each notebook's provenance says which.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sgmcmc_paper.errors import UserError
from sgmcmc_paper.paths import repo_root, results_dir

KERNEL_NAME = "python3"
#: What marks a run folder the store moved aside (:data:`sgmcmc_paper.engine.store.DAMAGED`).
DAMAGED = ".damaged-"
FRESH_STORE = ".fresh"
RUN_FILE = "run.json"


@dataclass(frozen=True)
class NotebookRun:
    """One executed notebook: its name, where it was written, its wall time (seconds) and the
    profile it ran at."""

    name: str
    output: Path
    seconds: float
    profile: str
    missing: int = 0  # runs missing at the requested profile (why it ran at ``profile``)


def source_notebooks(source_dir: Path | None = None) -> list[Path]:
    """The notebooks to run, sorted by name (checkpoints and hidden files skipped)."""
    folder = Path(source_dir or repo_root() / "notebooks")
    return sorted(p for p in folder.glob("*.ipynb") if not p.name.startswith("."))


def select(notebooks: list[Path], only: str | None) -> list[Path]:
    """``only`` picks one notebook by file name, stem or unique prefix (``"02"``)."""
    if only is None:
        return notebooks
    exact = [p for p in notebooks if only in (p.name, p.stem)]
    matches = exact or [p for p in notebooks if p.stem.startswith(only)]
    if len(matches) != 1:
        names = ", ".join(p.stem for p in notebooks) or "none"
        problem = "matches several notebooks" if matches else "matches no notebook"
        raise UserError(f"--only {only!r} {problem}; choose one of: {names}")
    return matches


def run_notebooks(
    profile: str,
    *,
    fresh: bool = False,
    only: str | None = None,
    device: str | None = None,
    fallback: str | None = None,
    source_dir: Path | None = None,
    output_dir: Path | None = None,
    log: Callable[[str], None] = print,
    start_timeout: int = 120,
) -> list[NotebookRun]:
    """Run the notebooks at ``profile`` (see the module docstring); returns one record each."""
    from sgmcmc_paper.protocol.profiles import get_profile

    get_profile(profile)  # an unknown profile is a UserError naming the known ones
    if fallback is not None:
        get_profile(fallback)
        if fresh:
            raise UserError("a fallback profile needs stored results; drop it or drop --fresh")
    notebooks = select(source_notebooks(source_dir), only)
    if not notebooks:
        raise UserError(f"no notebooks in {source_dir or repo_root() / 'notebooks'}")
    output_dir = Path(output_dir or repo_root() / "book" / "notebooks")
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create {output_dir}: {exc.strerror or exc}") from None
    done: list[NotebookRun] = []
    store = results_dir()
    with _fresh_store(store) if fresh else _nothing() as fresh_root:
        for index, source in enumerate(notebooks, 1):
            used, missing = profile_for(source.stem, profile, fallback)
            parameters = {"profile": used, **({"device": device} if device else {})}
            seconds = _execute(source, output_dir, parameters, start_timeout)
            done.append(NotebookRun(source.stem, output_dir / source.name, seconds, used, missing))
            log(
                f"[{index}/{len(notebooks)}] {source.stem}: {used}"
                f"{fallback_reason(profile, missing)}, {seconds:.1f} s"
            )
        if fresh_root is not None:
            merge_store(fresh_root, store)
    return done


def profile_for(stem: str, profile: str, fallback: str | None) -> tuple[str, int]:
    """The profile notebook ``stem`` runs at, and how many of its runs at ``profile`` the store
    lacks (counted only with a ``fallback``; a notebook with no entry in
    :data:`sgmcmc_paper.protocol.plan.NOTEBOOK_RUNS` cannot be checked and counts as lacking
    one)."""
    if fallback is None:
        return profile, 0
    from sgmcmc_paper.protocol.plan import NOTEBOOK_RUNS, missing_runs

    missing = len(missing_runs(profile, stem)) if stem in NOTEBOOK_RUNS else 1
    return (fallback if missing else profile), missing


def fallback_reason(profile: str, missing: int) -> str:
    """`` (N <profile>-profile runs not stored)`` when runs are missing, else nothing."""
    return f" ({missing} {profile}-profile runs not stored)" if missing else ""


def _execute(source: Path, output_dir: Path, parameters: dict, start_timeout: int) -> float:
    """Execute ``source`` into ``output_dir`` atomically; a failure is a one-line UserError."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    destination = output_dir / source.name
    tmp = output_dir / f".{source.stem}.{os.getpid()}.tmp.ipynb"
    start = time.perf_counter()
    try:
        papermill.execute_notebook(
            str(source),
            str(tmp),
            parameters=parameters,
            kernel_name=KERNEL_NAME,
            language="python",
            progress_bar=False,
            start_timeout=start_timeout,
            cwd=str(source.parent),
            **_kernel_options(),
        )
    except PapermillExecutionError as exc:
        kept = _keep_failed(tmp, source.name)
        error = f"{exc.ename}: {_first_line(exc.evalue)}"
        cell = f"cell {exc.cell_index}" + (f" [{exc.exec_count}]" if exc.exec_count else "")
        raise UserError(
            f"notebook {source.name} failed in {cell}: {error}; partial output kept at {kept}"
        ) from None
    except Exception as exc:  # the kernel died, would not start, or timed out
        kept = _keep_failed(tmp, source.name)
        raise UserError(
            f"notebook {source.name} did not run: {type(exc).__name__}: {_first_line(str(exc))}"
            f"; partial output kept at {kept}"
        ) from None
    os.replace(tmp, destination)
    _forget_failed(output_dir, source.name)
    return time.perf_counter() - start


def _kernel_options() -> dict:
    """papermill's options for the kernel manager: CurveZMQ transport encryption where pyzmq
    has it (``auto``: used when the kernelspec declares support, as ipykernel's does)."""
    import zmq
    from traitlets.config import Config

    if not zmq.has("curve"):
        return {}
    return {"config": Config({"KernelManager": {"transport_encryption": "auto"}})}


def failed_dir(output_dir: Path) -> Path:
    """Where partial notebooks of failed runs are kept: ``<out>.failed`` beside ``out``."""
    output_dir = Path(output_dir)
    return output_dir.with_name(f"{output_dir.name}.failed")


def _keep_failed(tmp: Path, name: str) -> Path | str:
    """Move a failed run's partial notebook out of the book, to :func:`failed_dir`."""
    if not tmp.exists():
        return "nowhere (nothing was written)"
    kept = failed_dir(tmp.parent) / name
    try:
        kept.parent.mkdir(exist_ok=True)
        os.replace(tmp, kept)
    except OSError:
        return tmp  # left where it was written (hidden, so the book never shows it)
    return kept


def _forget_failed(output_dir: Path, name: str) -> None:
    """Remove the kept partial copy of a notebook that has now succeeded (and the folder,
    once empty)."""
    folder = failed_dir(output_dir)
    (folder / name).unlink(missing_ok=True)
    try:
        folder.rmdir()
    except OSError:
        pass  # absent, or still holding other notebooks' failures


def _first_line(text: str) -> str:
    lines = [line for line in str(text).strip().splitlines() if line.strip()]
    return lines[0] if lines else ""


@contextmanager
def _nothing() -> Iterator[None]:
    yield None


@contextmanager
def _fresh_store(store: Path) -> Iterator[Path]:
    """Point ``$SGMCMC_RESULTS`` at ``<store>/.fresh`` for the kernels, then restore it."""
    fresh = store / FRESH_STORE
    for selection in sorted((store / "hparams").glob("*.json")):
        copy = fresh / "hparams" / selection.name
        if not copy.exists():
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(selection, copy)
    fresh.mkdir(parents=True, exist_ok=True)
    previous = os.environ.get("SGMCMC_RESULTS")
    os.environ["SGMCMC_RESULTS"] = str(fresh)
    try:
        yield fresh
    finally:
        if previous is None:
            os.environ.pop("SGMCMC_RESULTS", None)
        else:
            os.environ["SGMCMC_RESULTS"] = previous


def merge_store(fresh: Path, store: Path) -> None:
    """Move everything from ``fresh`` into ``store``, replacing what is there, then delete it.

    Run folders (those with a ``run.json``) move as a whole, by rename; other files (e.g.
    hyper-parameter selections) replace their namesakes atomically. Hidden temporaries and
    run folders the store moved aside (``<key>.damaged-<time>``) are left out.
    """
    for path in sorted(fresh.rglob("*")):
        relative = path.relative_to(fresh)
        hidden = any(part.startswith(".") or DAMAGED in part for part in relative.parts)
        if hidden or not path.exists():  # temporaries, and run folders the store moved aside
            continue
        target = store / relative
        if path.is_dir() and (path / RUN_FILE).exists():
            _replace_folder(path, target)
        elif path.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, target)
    shutil.rmtree(fresh, ignore_errors=True)


def _replace_folder(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        old = target.with_name(f".old-{target.name}-{os.getpid()}")
        os.rename(target, old)
        os.rename(source, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(source, target)
