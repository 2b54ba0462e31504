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

``stored_only`` is how ``make book`` builds the quick and paper profiles on a CPU: it trains
nothing. Each notebook runs at the largest profile, from the requested one down (paper, quick,
then ci), at which the store holds enough of its runs (:data:`STORED_ONLY_RULE`,
:func:`profile_for`); its kernel gets ``$SGMCMC_STORED_ONLY=1``, so a run the store lacks is
"not trained" there (:class:`~sgmcmc_paper.engine.untrained.NotTrained`) and travels into every
table like a failed run. At ci runs are trained (CI's nbval), so a notebook that falls back
that far still executes. Each notebook's line and provenance say which profile it ran at and
why.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sgmcmc_paper.book.session import STORED_ONLY_ENV
from sgmcmc_paper.engine.quarantine import DAMAGED
from sgmcmc_paper.errors import UserError
from sgmcmc_paper.paths import repo_root, results_dir

KERNEL_NAME = "python3"
FRESH_STORE = ".fresh"
RUN_FILE = "run.json"


#: The profiles a stored-only build falls back through, largest first.
PROFILE_ORDER = ("paper", "quick", "ci")
#: The profile at which a stored-only build trains what is missing (CI's, seconds a run).
TRAINED_PROFILE = "ci"
#: A stored-only chapter runs at a profile when at least this share of its rows have enough
#: seeds stored (:data:`STORED_ONLY_RULE`).
MIN_ROW_SHARE = 0.5
STORED_ONLY_RULE = (
    "A book built from the store (make book at the quick or paper profile) trains nothing. "
    "A row of a chapter is one configuration and method of its run plan, over the plan's "
    "seeds; it has enough seeds when the store holds at least 3 of them (all of them where "
    "the plan has fewer). A chapter runs at the requested profile when at least half of its "
    "rows have enough seeds, else at the next smaller profile by the same rule (paper, quick, "
    "then ci, where the runs are trained: seconds each). At the profile it runs at, a run the "
    'store lacks is "not trained": it counts in no row, rows say so ("3 of 5 seeds (2 not '
    'trained)"), and a claim left with fewer than 3 seeds is "unresolved (runs not trained)".'
)
"""The stored-only rule, stated once (book/methods.md and the README quote it)."""


@dataclass(frozen=True)
class Coverage:
    """What the store holds of a notebook's runs at a profile: ``runs`` (keys) of which
    ``stored``; ``rows`` (configuration and method) of which ``ready`` have enough seeds."""

    runs: int = 0
    stored: int = 0
    rows: int = 0
    ready: int = 0

    @property
    def missing(self) -> int:
        return self.runs - self.stored

    @property
    def enough(self) -> bool:
        """Whether a stored-only build runs the notebook at this profile."""
        return self.ready >= MIN_ROW_SHARE * self.rows

    def text(self, profile: str) -> str:
        """``"24 of 60 paper-profile runs stored; 6 of 12 rows with enough seeds"``."""
        if not self.runs:
            return "needs no runs"
        return (
            f"{self.stored} of {self.runs} {profile}-profile runs stored; {self.ready} of "
            f"{self.rows} rows with enough seeds"
        )


@dataclass(frozen=True)
class NotebookRun:
    """One executed notebook: its name, where it was written, its wall time (seconds) and the
    profile it ran at."""

    name: str
    output: Path
    seconds: float
    profile: str
    missing: int = 0  # runs not stored at the requested profile (why it ran at ``profile``)


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
    stored_only: bool = False,
    source_dir: Path | None = None,
    output_dir: Path | None = None,
    log: Callable[[str], None] = print,
    start_timeout: int = 120,
) -> list[NotebookRun]:
    """Run the notebooks at ``profile`` (see the module docstring); returns one record each."""
    from sgmcmc_paper.protocol.profiles import get_profile

    get_profile(profile)  # an unknown profile is a UserError naming the known ones
    if stored_only and fresh:
        raise UserError("a stored-only build reads stored results; drop --fresh or train them")
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
            used, found = profile_for(source.stem, profile, stored_only)
            parameters = {"profile": used, **({"device": device} if device else {})}
            untrained = stored_only and used != TRAINED_PROFILE
            with _environment(STORED_ONLY_ENV, "1" if untrained else None):
                seconds = _execute(source, output_dir, parameters, start_timeout)
            missing = found[profile].missing if profile in found else 0
            done.append(NotebookRun(source.stem, output_dir / source.name, seconds, used, missing))
            log(
                f"[{index}/{len(notebooks)}] {source.stem}: {used}"
                f"{profile_reason(profile, used, found)}, {seconds:.1f} s"
            )
        if fresh_root is not None:
            merge_store(fresh_root, store)
    return done


def coverage(stem: str, profile: str) -> Coverage | None:
    """What the store holds of notebook ``stem``'s runs at ``profile`` (its plan's seeds:
    :func:`sgmcmc_paper.protocol.plan.notebook_seeds`); ``None`` for a notebook with no run
    plan (:data:`sgmcmc_paper.protocol.plan.NOTEBOOK_RUNS`). A stored run with a stale
    evaluation counts as stored (its notebook reads it)."""
    from sgmcmc_paper.analysis.tables import MIN_SEEDS
    from sgmcmc_paper.engine.store import find_result
    from sgmcmc_paper.protocol.plan import NOTEBOOK_RUNS, notebook_runs

    if stem not in NOTEBOOK_RUNS:
        return None
    configs = notebook_runs(stem, profile)
    held = {c.key(): find_result(c) is not None for c in configs.values()}
    rows: dict[tuple[str, str], list[bool]] = {}
    for (label, method, _), config in configs.items():
        rows.setdefault((label, method), []).append(held[config.key()])
    ready = sum(sum(seeds) >= min(MIN_SEEDS, len(seeds)) for seeds in rows.values())
    return Coverage(len(held), sum(held.values()), len(rows), ready)


def profile_for(
    stem: str, profile: str, stored_only: bool = False
) -> tuple[str, dict[str, Coverage]]:
    """The profile notebook ``stem`` runs at, and the coverage of every profile looked at on
    the way (:data:`STORED_ONLY_RULE`; without ``stored_only``: ``profile``, nothing looked
    at). A notebook with no run plan cannot be checked: it falls back to ci."""
    if not stored_only or profile == TRAINED_PROFILE:
        return profile, {}
    order = PROFILE_ORDER[PROFILE_ORDER.index(profile) :] if profile in PROFILE_ORDER else ()
    found: dict[str, Coverage] = {}
    for name in order:
        if name == TRAINED_PROFILE:
            return name, found
        held = coverage(stem, name)
        if held is None:
            continue
        found[name] = held
        if held.enough:
            return name, found
    return TRAINED_PROFILE, found


def profile_reason(profile: str, used: str, found: dict[str, Coverage]) -> str:
    """Why a notebook runs at ``used``: `` (stored only: 36 of 60 paper-profile runs stored;
    12 of 12 rows with enough seeds)``, with the too-little of every larger profile first."""
    if not found:
        return "" if used == profile else " (no run plan to check the store against)"
    parts = [found[name].text(name) for name in found]
    if used == TRAINED_PROFILE:
        parts.append("ci runs are trained")
    return f" (stored only: {'; '.join(parts)})"


@contextmanager
def _environment(name: str, value: str | None) -> Iterator[None]:
    """``$name`` set to ``value`` (``None``: unset) for the block, then restored."""
    previous = os.environ.get(name)
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous


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
