"""Fill the run store ahead: the runs the notebooks need at a profile, trained where missing.

:func:`fill_store` is the one path by which a list of runs is trained ahead of the notebooks:
``sgmcmc fill`` and ``.ci/device/precompute.py`` call it, and each of its runs is a trial of the
sweep's engines (:mod:`sgmcmc_paper.sweep.engines`: ``serial`` in this process, ``processes``
in a local pool, ``ray`` on a local Ray instance or an existing cluster) whose body is
:func:`~sgmcmc_paper.engine.store.run_or_load`, the function every notebook's
``Session.run`` calls for a run it lacks. :func:`select_configs` picks the runs
(:func:`sgmcmc_paper.protocol.plan.notebook_configs`, filtered), :func:`survey` says which
the store holds, and :class:`CostModel` estimates what the missing ones cost from the stored
timings of similar runs (``provenance.timing.total_s``, per device).

Safe on a cluster, where every node sees the store and the dataset cache at the same paths
(``$SGMCMC_RESULTS`` and ``$SGMCMC_DATA`` on shared storage):

- *One training per key.* The runs are deduplicated by key here, so the engine launches each
  key once. Other processes asking for the same key meanwhile (a second fill, a notebook) are
  serialised by the store's per-key lock, an ``flock`` on ``<store>/<profile>/.locks/<key>.lock``:
  it holds between processes of one machine, and between machines only where the shared file
  system supports it (on NFS, Linux emulates ``flock`` with POSIX locks, which need the NLM lock
  manager, ``lockd``, on NFSv3 and work on NFSv4; some FUSE and object-store mounts ignore them).
  Where it does not hold, run one fill at a time: alone, a fill never asks for a key twice.
- *A killed worker resumes.* A run saves a checkpoint every ``checkpoint_every`` seconds
  (``<store>/<profile>/.checkpoints/<key>.pt``); a trial whose worker died is started again
  (``retries`` times) and its run continues from the checkpoint, bit for bit.
- *Nothing half written.* The store writes a run into a hidden temporary folder and renames it
  into place when complete (:func:`~sgmcmc_paper.engine.store.save_result`), so a run killed
  while writing leaves no ``run.json``, and the next request trains (or resumes) it.
"""

from __future__ import annotations

import json
import math
import os
import socket
import statistics
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sgmcmc_paper.errors import DamagedRunError, UserError
from sgmcmc_paper.paths import data_dir, results_dir
from sgmcmc_paper.protocol.config import EVALUATION_FIELDS as CONFIG_EVALUATION_FIELDS
from sgmcmc_paper.protocol.config import ConfigError, RunConfig
from sgmcmc_paper.sweep.engines import ENGINES, RayOptions, run_trials

#: How many times a trial whose worker died is started again (it resumes from its checkpoint).
RETRIES = 2


# --------------------------------------------------------------------------- which runs
def select_configs(
    profile: str,
    notebooks: Iterable[str] | None = None,
    *,
    convention: str | None = None,
    train_sizes: Iterable[int | None] | None = None,
    keys: Iterable[str] | None = None,
    released_only: bool = False,
) -> list[RunConfig]:
    """The runs the notebooks need at ``profile`` (each key once, most needed first), kept to
    those of ``notebooks`` (file stems), ``convention``, ``train_sizes`` (``None``: the full
    training set) and ``keys``; ``released_only``: the "as released" runs alone (main and
    smallMNIST; they need no sweep)."""
    from sgmcmc_paper.protocol.plan import NOTEBOOK_RUNS, notebook_configs

    configs = _released_configs(profile) if released_only else notebook_configs(profile)
    if notebooks is not None:
        notebooks = list(notebooks)
        unknown = [stem for stem in notebooks if stem not in NOTEBOOK_RUNS]
        if unknown:
            raise UserError(
                f"no run plan for notebook(s) {', '.join(unknown)}; known: "
                f"{', '.join(NOTEBOOK_RUNS)}"
            )
        wanted = {c.key() for stem in notebooks for c in notebook_configs(profile, stem)}
        configs = [c for c in configs if c.key() in wanted]
    if convention is not None:
        configs = [c for c in configs if c.convention == convention]
    if train_sizes is not None:
        sizes = set(train_sizes)
        configs = [c for c in configs if c.train_size in sizes]
    if keys is not None:
        keep = set(keys)
        configs = [c for c in configs if c.key() in keep]
    return list({c.key(): c for c in configs}.values())


def _released_configs(profile: str) -> list[RunConfig]:
    from sgmcmc_paper.analysis import tables
    from sgmcmc_paper.protocol.profiles import get_profile

    prof = get_profile(profile)
    named = ["as released"]
    configs = list(tables.reproduction_configs(profile, prof.seeds, configurations=named).values())
    for size in prof.small_train_sizes:
        small = tables.reproduction_configs(
            profile, prof.seeds, configurations=named, train_size=size, epochs=prof.small_epochs
        )
        configs += small.values()
    unique = {c.key(): c for c in configs}.values()
    # The main runs, then smallMNIST at the paper's 5,000 and the code's 3,000, seed by seed.
    return sorted(unique, key=lambda c: (-(c.train_size or 10**9), c.seed))


def priority_groups(
    profile: str, missing: Sequence[RunConfig]
) -> list[tuple[str, list[RunConfig]]]:
    """``missing`` split by the notebook that first needs each run, notebooks in the fill's
    priority order (:func:`sgmcmc_paper.protocol.plan.fill_order`): what a fill trains for
    each chapter in turn. Runs no notebook needs (e.g. chosen by ``--keys``) come last, under
    ``"other"``."""
    from sgmcmc_paper.protocol.plan import fill_order, notebook_configs

    left = {c.key(): c for c in missing}
    groups = []
    for stem in fill_order():
        mine = [left.pop(c.key()) for c in notebook_configs(profile, stem) if c.key() in left]
        if mine:
            groups.append((stem, mine))
    if left:
        groups.append(("other", list(left.values())))
    return groups


def notebook_counts(
    profile: str, configs: Sequence[RunConfig], missing: Sequence[RunConfig]
) -> list[tuple[str, int, int]]:
    """Per notebook (file stem, in the fill's priority order): how many of ``configs`` it needs
    and how many are missing."""
    from sgmcmc_paper.protocol.plan import fill_order, notebook_configs

    chosen = {c.key() for c in configs}
    lacking = {c.key() for c in missing}
    rows = []
    for stem in fill_order():
        keys = {c.key() for c in notebook_configs(profile, stem)} & chosen
        rows.append((stem, len(keys), len(keys & lacking)))
    return rows


@dataclass
class Survey:
    """Which of a list of runs the store holds: ``stored`` and ``missing`` (to train, in
    order); ``stale``: those of ``missing`` that are stored with an older evaluation
    (:func:`~sgmcmc_paper.engine.store.satisfies` is false: the notebooks read them, a fill
    retrains them); ``damaged``: the one-line reports of store entries that could not be read
    (moved aside by the store, so counted as missing)."""

    stored: list[RunConfig]
    missing: list[RunConfig]
    damaged: list[str] = field(default_factory=list)
    stale: list[RunConfig] = field(default_factory=list)


def survey(configs: Iterable[RunConfig], root: Path | None = None) -> Survey:
    """Which of ``configs`` the store at ``root`` holds with every output they ask for (as the
    notebooks find them: :func:`~sgmcmc_paper.engine.store.find_result`, then
    :func:`~sgmcmc_paper.engine.store.satisfies`)."""
    from sgmcmc_paper.engine.store import find_result, satisfies

    result = Survey([], [])
    for config in configs:
        try:
            found = find_result(config, root)
        except DamagedRunError as exc:
            result.damaged.append(str(exc))
            found = None
        if found is not None and not satisfies(found, config):
            result.stale.append(config)
            found = None
        (result.stored if found is not None else result.missing).append(config)
    return result


# --------------------------------------------------------------------------- what they cost
#: The fields of :func:`cost_group` that are the evaluation's schedule and sizes, with those that
#: only add outputs (``protocol.config.EVALUATION_FIELDS``: PGD and its ε sweep, the stability
#: record): a run stored before these existed holds their "no output" defaults, so its time says
#: nothing of what a run that asks for them costs (PGD against 50 samples is most of a paper run
#: on a CPU).
EVALUATION_FIELDS = (
    "eval_every",
    "test_size",
    "attack_size",
    "ood_size",
    *sorted(CONFIG_EVALUATION_FIELDS),
)


def cost_group(config: RunConfig) -> tuple:
    """What makes two runs cost alike: what is trained (:attr:`RunConfig.algorithm`: FSGD
    trains as SGD, KSGLD without K-FAC updates as SGLD), convention and what it preconditions,
    training size, epochs, evaluation split, then the evaluation's schedule and sizes
    (:data:`EVALUATION_FIELDS`, the last entries)."""
    return (
        config.algorithm,
        config.convention,
        config.precondition,
        config.train_size,
        config.epochs,
        config.evaluate_on,
        *(getattr(config, name) for name in EVALUATION_FIELDS),
    )


def _training_part(group: tuple) -> tuple:
    """A :func:`cost_group` without the evaluation's schedule and sizes."""
    return group[: -len(EVALUATION_FIELDS)]


@dataclass
class DeviceCost:
    """The estimated cost of some runs on one device: ``seconds`` of run time (each run's own
    wall time, summed) for the ``known`` of ``total`` runs that have similar stored runs
    (``basis`` of them)."""

    device: str
    seconds: float
    known: int
    total: int
    basis: int


class CostModel:
    """Run times of stored runs by :func:`cost_group` and device name
    (``provenance.timing.total_s`` of complete runs, as ``run.json`` records them)."""

    def __init__(self, timings: dict[tuple, dict[str, list[float]]] | None = None) -> None:
        self.timings = timings or {}

    @classmethod
    def from_store(cls, profile: str, root: Path | None = None) -> CostModel:
        """The timings of the complete runs under ``<root>/<profile>/`` (``run.json`` alone is
        read; folders that cannot be read are skipped)."""
        from sgmcmc_paper.engine.quarantine import DAMAGED
        from sgmcmc_paper.engine.store import RUN_FILE

        folder = Path(root or results_dir()) / profile
        timings: dict[tuple, dict[str, list[float]]] = {}
        for path in sorted(folder.glob(f"*/{RUN_FILE}")):
            if path.parent.name.startswith(".") or DAMAGED in path.parent.name:
                continue
            try:
                record = json.loads(path.read_text())
                seconds = float(record["provenance"]["timing"]["total_s"])
                device = str(record["provenance"].get("device_name") or "unknown device")
                group = cost_group(RunConfig.from_dict(record["config"]))
            except (OSError, ValueError, KeyError, TypeError, AttributeError, ConfigError):
                continue
            if record.get("status") == "complete" and math.isfinite(seconds) and seconds > 0:
                timings.setdefault(group, {}).setdefault(device, []).append(seconds)
        return cls(timings)

    def devices(self) -> list[str]:
        """The devices with stored timings, the most timed first."""
        counts: dict[str, int] = {}
        for by_device in self.timings.values():
            for device, seconds in by_device.items():
                counts[device] = counts.get(device, 0) + len(seconds)
        return sorted(counts, key=lambda d: (-counts[d], d))

    def _times(self, config: RunConfig, device: str, loose: bool) -> list[float]:
        group = cost_group(config)
        if not loose:
            return self.timings.get(group, {}).get(device, [])
        training = _training_part(group)
        return [
            seconds
            for other, by_device in self.timings.items()
            if _training_part(other) == training
            for seconds in by_device.get(device, ())
        ]

    def seconds(self, config: RunConfig, device: str, loose: bool = False) -> float | None:
        """The median stored run time of runs like ``config`` on ``device``, else ``None``;
        ``loose``: of runs that may differ in the evaluation's schedule and sizes."""
        found = self._times(config, device, loose)
        return statistics.median(found) if found else None

    def cost(self, configs: Sequence[RunConfig], device: str, loose: bool = False) -> DeviceCost:
        """The estimated cost of ``configs`` on ``device`` (``loose``: as :meth:`seconds`)."""
        known = [(c, s) for c in configs if (s := self.seconds(c, device, loose)) is not None]
        basis = {
            (_training_part(cost_group(c)) if loose else cost_group(c)): len(
                self._times(c, device, loose)
            )
            for c, _ in known
        }
        total = sum(s for _, s in known)
        return DeviceCost(device, total, len(known), len(configs), sum(basis.values()))


def format_duration(seconds: float) -> str:
    """``"45 s"``, ``"3 min 12 s"``, ``"1 h 05 min"``, ``"2 d 03 h"``."""
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes:02d} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours:02d} h"


def describe(config: RunConfig) -> str:
    """One run in a few words: ``sgld paper 2000 2 ep seed 0 [86453f647e]``; pSGLD names its
    average rule (released and Li et al.'s pSGLD of one seed are two runs), and a run that
    trains as another method says so (``ksgld paper no K-FAC (trains as sgld) ...``)."""
    parts = [config.method, config.convention]
    if config.convention == "langevin":
        parts.append("eq. 1" if config.precondition == "both" else "eq. 2")
        if config.temperature != 1.0:
            parts.append(f"T={config.temperature:g}")
    elif config.method == "ksgld":
        parts.append("K-FAC" if config.kfac_update else "no K-FAC")
    if config.method == "psgld":
        parts.append(f"{config.psgld_rule} average")
    if config.algorithm != config.method:
        parts.append(f"(trains as {config.algorithm})")
    size = "full" if config.train_size is None else str(config.train_size)
    return f"{' '.join(parts)} {size} {config.epochs} ep seed {config.seed} [{config.key()[:10]}]"


# --------------------------------------------------------------------------- the trial
@dataclass(frozen=True)
class FillTrial:
    """One run of a fill as an engine's trial (picklable, so that it travels to workers): the
    fields name the run's ``key`` among ``configs``; the answer says whether it was trained here
    or loaded, its fate, its run time and where it ran. Paths are resolved where the fill
    starts and set in the worker's environment for the run (a Ray worker may not share it).

    ``threads``: torch's CPU threads for the run (``None``: left as they are), restored after.
    """

    configs: dict[str, RunConfig]
    root: str
    data: str
    device: str = "auto"
    threads: int | None = None
    checkpoint_every: float | None = None
    progress: bool = False

    def __call__(self, fields: dict[str, Any]) -> dict[str, Any]:
        import torch

        from sgmcmc_paper.engine.store import find_result, run_or_load, satisfies

        config, root = self.configs[fields["key"]], Path(self.root)
        try:
            found = find_result(config, root)
        except DamagedRunError:
            found = None  # moved aside: run_or_load trains it afresh
        reused = found is not None and satisfies(found, config)
        start = time.perf_counter()
        with _environment(SGMCMC_DATA=self.data, SGMCMC_RESULTS=self.root):
            before = torch.get_num_threads()
            if self.threads:
                torch.set_num_threads(self.threads)
            try:
                result = run_or_load(
                    config,
                    device=self.device,
                    progress=self.progress,
                    root=root,
                    checkpoint_every=self.checkpoint_every,
                    complete_evaluation=True,
                )
            finally:
                torch.set_num_threads(before)
        provenance = result.provenance or {}
        timing = provenance.get("timing", {})
        fate = result.fate
        return {
            "status": "diverged" if result.diverged else "ok",
            "fate": fate.status,
            "reason": fate.reason,
            "key": result.key,
            "trained": not reused and provenance.get("pid") == os.getpid(),
            "reused": reused,
            "compute_s": float(timing.get("total_s", math.nan)),
            "wall_s": time.perf_counter() - start,
            "resumed": int(timing.get("resumed", 0) or 0),
            "device": str(provenance.get("device_name") or ""),
            "host": socket.gethostname(),
        }


@contextmanager
def _environment(**variables: str) -> Iterator[None]:
    """Set environment variables for the block (a serial fill runs in the caller's process)."""
    before = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


# --------------------------------------------------------------------------- progress
class FillProgress:
    """Counts and an ETA, one line per finished run: ``12/40 stored, 3 running, ETA 1 h 05 min:
    <run> trained in 3 min 12 s``.

    A run's expected time is the mean wall time of the runs of its :func:`cost_group` trained
    in this fill, else the stored timing of similar runs on the device the fill's runs report
    (or ``local_device``; failing that, of runs that differ only in their evaluation), else
    the mean of every run trained so far; the ETA is the work left
    (runs not started, and what the running ones have left) over the most runs seen at once.
    """

    def __init__(
        self,
        runs: Sequence[RunConfig],
        stored: int,
        model: CostModel,
        local_device: str,
        log: Callable[[str], None],
    ) -> None:
        self.runs, self.model, self.log = list(runs), model, log
        self.total = stored + len(self.runs)
        self.stored = stored
        self.device = local_device
        self.host = socket.gethostname()
        self.started: dict[int, float] = {}  # running runs: index -> when they started
        self.launched = 0  # runs are launched in order: every index below this one was
        self.measured: dict[tuple, list[float]] = {}
        self.concurrency = 1

    def launch(self, index: int) -> None:
        self.started[index] = time.monotonic()
        self.launched = max(self.launched, index + 1)
        self.concurrency = max(self.concurrency, len(self.started))

    def finished(self, index: int, outcome: dict[str, Any]) -> None:
        started = self.started.pop(index, time.monotonic())
        wall = time.monotonic() - started
        config = self.runs[index]
        status = outcome.get("status")
        if status != "failed":
            self.stored += 1
        if outcome.get("device"):
            self.device = outcome["device"]
        if outcome.get("trained"):
            self.measured.setdefault(cost_group(config), []).append(wall)
        if status == "failed":
            what = f"FAILED ({outcome.get('reason') or 'no reason'})"
        elif outcome.get("trained"):
            what = f"trained in {format_duration(wall)}"
            if outcome.get("resumed"):
                what += f", resumed from a checkpoint {outcome['resumed']} time(s)"
            if outcome.get("host") not in (None, "", self.host):
                what += f", on {outcome['host']}"
        else:
            what = "stored meanwhile by another process, loaded"
        if outcome.get("fate") not in (None, "complete"):
            what += f"; {outcome['fate']}: {outcome.get('reason') or ''}".rstrip(": ")
        self.log(f"{self.counts()}: {describe(config)} {what}")

    def retried(self, index: int, reason: str) -> None:
        self.log(
            f"{self.counts()}: {describe(self.runs[index])} {reason}: it resumes from its "
            "checkpoint"
        )

    def counts(self) -> str:
        return f"{self.stored}/{self.total} stored, {len(self.started)} running, ETA {self.eta()}"

    def expected(self, config: RunConfig) -> float | None:
        mine = self.measured.get(cost_group(config))
        if mine:
            return statistics.fmean(mine)
        for loose in (False, True):
            stored = self.model.seconds(config, self.device, loose)
            if stored is not None:
                return stored
        every = [s for seconds in self.measured.values() for s in seconds]
        return statistics.fmean(every) if every else None

    def eta(self) -> str:
        now, left = time.monotonic(), 0.0
        for index, config in enumerate(self.runs):
            if index < self.launched and index not in self.started:
                continue  # finished
            expected = self.expected(config)
            if expected is None:
                return "unknown until a run finishes"
            if index in self.started:
                expected = max(expected - (now - self.started[index]), 0.0)
            left += expected
        return format_duration(left / self.concurrency)


# --------------------------------------------------------------------------- the fill
@dataclass
class FillReport:
    """What a fill did: the runs it was given (each key once), those found stored before it
    started, and each missing run's outcome (``None``: not launched, e.g. past the time limit)."""

    configs: list[RunConfig]
    stored: list[RunConfig]
    missing: list[RunConfig]
    outcomes: list[dict[str, Any] | None]
    seconds: float
    engine: str

    def count(self, predicate: Callable[[dict[str, Any]], bool]) -> int:
        return sum(1 for o in self.outcomes if o is not None and predicate(o))

    @property
    def trained(self) -> int:
        return self.count(lambda o: bool(o.get("trained")))

    @property
    def failed(self) -> list[tuple[RunConfig, str]]:
        return [
            (c, str(o.get("reason") or ""))
            for c, o in zip(self.missing, self.outcomes, strict=True)
            if o is not None and o.get("status") == "failed"
        ]

    @property
    def not_launched(self) -> int:
        return sum(1 for o in self.outcomes if o is None)

    @property
    def complete(self) -> bool:
        """Every run is in the store now."""
        return not self.failed and not self.not_launched

    def summary(self) -> str:
        resumed = self.count(lambda o: bool(o.get("trained") and o.get("resumed")))
        loaded = self.count(lambda o: o.get("status") != "failed" and not o.get("trained"))
        diverged = self.count(lambda o: o.get("fate") not in (None, "complete"))
        parts = [
            f"{len(self.configs)} runs: {len(self.stored)} were stored, {self.trained} trained"
            + (f" ({resumed} resumed from a checkpoint)" if resumed else "")
        ]
        if loaded:
            parts.append(f"{loaded} stored meanwhile by another process")
        if diverged:
            parts.append(f"{diverged} diverged or collapsed (stored as such)")
        if self.failed:
            parts.append(f"{len(self.failed)} failed")
        if self.not_launched:
            parts.append(f"{self.not_launched} not started (time limit)")
        return "; ".join(parts) + f"; {format_duration(self.seconds)} ({self.engine})"


def fill_store(
    configs: Iterable[RunConfig],
    *,
    engine: str = "serial",
    ray: RayOptions | None = None,
    workers: int | None = None,
    device: str = "auto",
    threads: int | None = None,
    checkpoint_every: float | None = None,
    retries: int = RETRIES,
    root: Path | None = None,
    time_limit: float | None = None,
    progress: bool = False,
    log: Callable[[str], None] | None = print,
) -> FillReport:
    """Train the runs of ``configs`` that the store lacks, on ``engine`` (module docstring).

    Args:
        engine: ``"serial"`` (this process), ``"processes"`` (``workers`` local processes,
            default one per CPU) or ``"ray"`` (``ray``: a local instance or a cluster's
            address, resources per trial; CPUs per trial default to 1 here).
        device: where the runs train (``"auto"``: a GPU where the worker has one).
        threads: torch's CPU threads per run; default: the CPUs per trial on Ray, the CPUs
            over ``workers`` for processes (``$OMP_NUM_THREADS`` when set), as they are when
            serial. Runs on a CPU differ in the last bits between thread counts, so compare
            fills made with the same.
        checkpoint_every: seconds between a run's checkpoints (default
            :data:`~sgmcmc_paper.engine.experiment.CHECKPOINT_EVERY_S`).
        retries: how many times a run whose worker died is started again (it resumes).
        root: the store (default ``$SGMCMC_RESULTS``); it must be on storage every worker sees.
        time_limit: launch no run after this many seconds (the running ones finish).
        progress: show the runs' own per-epoch lines.
        log: receives the plan, one line per finished run (counts, ETA) and nothing else.
    """
    from sgmcmc_paper.engine.experiment import device_name, resolve_device

    if engine not in ENGINES:
        raise UserError(f"unknown engine {engine!r}; use one of {', '.join(ENGINES)}")
    say = log or (lambda line: None)
    start = time.perf_counter()
    root = Path(root or results_dir()).resolve()
    unique = list({c.key(): c for c in configs}.values())
    found = survey(unique, root)
    for line in found.damaged:
        say(f"damaged: {line}")
    report = FillReport(
        unique, found.stored, found.missing, [None] * len(found.missing), 0.0, engine
    )
    if not found.missing:
        report.seconds = time.perf_counter() - start
        return report
    options = ray or RayOptions()
    if options.cpus_per_trial is None:
        options = replace(options, cpus_per_trial=1.0)
    options = replace(options, max_failures=retries)
    count = workers or os.cpu_count() or 1
    if threads is None:
        threads = _default_threads(engine, options, count)
    trial = FillTrial(
        {c.key(): c for c in found.missing},
        str(root),
        str(data_dir().resolve()),
        device=device,
        threads=threads,
        checkpoint_every=checkpoint_every,
        progress=progress,
    )
    profiles = sorted({c.profile for c in found.missing})
    model = CostModel()
    for profile in profiles:
        model.timings.update(CostModel.from_store(profile, root).timings)
    local = "unknown device"
    if engine != "ray":
        local = device_name(resolve_device(device))
    tracker = FillProgress(found.missing, len(found.stored), model, local, say)
    where = {"serial": "in this process", "processes": f"in {count} local processes"}.get(
        engine, f"on Ray ({options.address or os.environ.get('RAY_ADDRESS') or 'local'})"
    )
    say(
        f"{len(unique)} runs: {len(found.stored)} stored, {len(found.missing)} to train {where}"
        + (f", {threads} CPU thread(s) each" if threads else "")
    )
    until = None if time_limit is None else time.time() + time_limit
    report.outcomes = run_trials(
        [{"key": c.key(), "method": c.method} for c in found.missing],
        trial,
        engine,
        ray=options,
        workers=count,
        on_launch=tracker.launch,
        on_record=tracker.finished,
        on_retry=tracker.retried,
        launch_until=until,
        name="fill",
    )
    report.seconds = time.perf_counter() - start
    return report


def _default_threads(engine: str, options: RayOptions, workers: int) -> int | None:
    if engine == "ray":
        return max(1, int(options.cpus_per_trial or 1))
    if engine == "processes":
        if os.environ.get("OMP_NUM_THREADS", "").isdigit():
            return max(1, int(os.environ["OMP_NUM_THREADS"]))
        return max(1, (os.cpu_count() or 1) // workers)
    return None
