"""Engines that run trials: in this process, in a local pool of processes, or as Ray Tune trials.

An engine runs a *source* of trials: a :class:`~sgmcmc_paper.sweep.plan.Plan` (the sweep's walks,
whose next trials depend on the outcomes so far) or a :class:`Batch` (independent trials, each
launched once: ``sgmcmc fill``). A source answers :meth:`propose` with a
:class:`~sgmcmc_paper.sweep.plan.Launch`, :data:`~sgmcmc_paper.sweep.walk.WAIT` or
:data:`~sgmcmc_paper.sweep.walk.DONE`, takes each outcome with ``record(id, outcome)`` (and a late
reason with ``explain_failure(id, reason)``; a :class:`Batch` also hears of a trial started again,
``retried(id, reason)``), and keeps an exception of its own in ``error``. Every engine drives a
source the same way with the same trial function, so they launch the same trials and a plan selects
the same one (with one trial at a time; see :mod:`sgmcmc_paper.sweep.walk`). :func:`run_engine`
picks the engine by name; :func:`run_trials` runs a list of independent trials on any of them.

- ``serial`` (:func:`run_serial`): one trial after another in this process.
- ``processes`` (:func:`run_in_processes`): a pool of ``workers`` local processes (started
  fresh, ``spawn``), for a machine without Ray, e.g. several trials sharing one GPU.
- ``ray`` (:func:`run_on_ray`): a local instance by default (quiet, no dashboard, the machine's
  resources detected), or an existing cluster when ``address`` (or ``$RAY_ADDRESS``) is given —
  then every node must see the run store and the dataset cache at the same paths (set
  ``$SGMCMC_RESULTS`` and ``$SGMCMC_DATA`` to shared storage) and have this package installed.
  Each trial asks for one GPU where the cluster has GPUs (``gpus_per_trial`` may be a fraction,
  to pack several trials on one GPU), otherwise for all CPUs of one node, so that a trial's wall
  time is comparable with the SGD reference's, which is run the same way.

A trial whose worker dies (a killed process, a lost node) is started again up to
``max_failures`` times by the ``ray`` and ``processes`` engines (never by default: a sweep
trial counts its compute); a run started again resumes from its checkpoint
(:func:`sgmcmc_paper.engine.store.run_or_load`).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import multiprocessing
import os
import re
import socket
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from sgmcmc_paper.errors import UserError
from sgmcmc_paper.sweep.plan import Launch
from sgmcmc_paper.sweep.walk import DONE, WAIT, TrialFn, execute_trial

ENGINES = ("ray", "serial", "processes")

Execute = Callable[[TrialFn, dict[str, Any]], dict[str, Any]]
"""How an engine calls a trial function: ``(trial_fn, fields) -> outcome``, never raising
(:func:`~sgmcmc_paper.sweep.walk.execute_trial` for a sweep's plan, :func:`call_trial` for a
:class:`Batch`). A module-level function, so that it travels to worker processes."""


class Source(Protocol):
    """What an engine runs (module docstring): a sweep's plan or a :class:`Batch`."""

    error: BaseException | None

    @property
    def done(self) -> bool: ...

    def propose(self) -> Launch | str: ...

    def record(self, launch_id: int, outcome: Mapping[str, Any]) -> None: ...

    def explain_failure(self, launch_id: int, reason: str) -> None: ...


def call_trial(trial_fn: TrialFn, fields: dict[str, Any]) -> dict[str, Any]:
    """Call ``trial_fn``; an exception becomes ``{"status": "failed", "reason", "compute_s"}``
    (the trial's answer is passed on as it is: a :class:`Batch` does not validate it)."""
    start = time.perf_counter()
    try:
        return dict(trial_fn(dict(fields)))
    except Exception as exc:  # noqa: BLE001 -- a failing trial is recorded, the others go on
        message = " ".join(str(exc).split()) or "no message"
        return {
            "status": "failed",
            "reason": f"{type(exc).__name__}: {message}"[:500],
            "compute_s": time.perf_counter() - start,
        }


class Batch:
    """Independent trials: each of ``fields`` launched once, in order, whatever the outcomes.

    ``outcomes[i]`` is the answer of trial ``i`` (``None`` until it finished, or when it was
    never launched). ``on_launch(i)``, ``on_record(i, outcome)`` and ``on_retry(i, reason)``
    are called as trials start, finish and are started again after their worker died (in the
    driver, whatever the engine). No trial is launched once ``time.time()`` passes
    ``launch_until``; the running ones finish.
    """

    def __init__(
        self,
        fields: Sequence[dict[str, Any]],
        *,
        on_launch: Callable[[int], None] | None = None,
        on_record: Callable[[int, dict[str, Any]], None] | None = None,
        on_retry: Callable[[int, str], None] | None = None,
        launch_until: float | None = None,
    ) -> None:
        self.fields = [dict(f) for f in fields]
        self.outcomes: list[dict[str, Any] | None] = [None] * len(self.fields)
        self.launched = 0
        self.error: BaseException | None = None
        self.on_launch, self.on_record, self.on_retry = on_launch, on_record, on_retry
        self.launch_until = launch_until

    @property
    def done(self) -> bool:
        """Every launched trial finished and no further one will be launched."""
        finished = all(o is not None for o in self.outcomes[: self.launched])
        return finished and (self.launched == len(self.fields) or self._expired())

    def _expired(self) -> bool:
        return self.launch_until is not None and time.time() >= self.launch_until

    def propose(self) -> Launch | str:
        if self.error is not None or self.launched == len(self.fields) or self._expired():
            return DONE
        index = self.launched
        self.launched += 1
        self._call(self.on_launch, index)
        return Launch(index, self.fields[index])

    def record(self, launch_id: int, outcome: Mapping[str, Any]) -> None:
        if self.outcomes[launch_id] is not None:
            raise ValueError(f"trial {launch_id} already has an outcome")
        self.outcomes[launch_id] = dict(outcome)
        self._call(self.on_record, launch_id, self.outcomes[launch_id])

    def retried(self, launch_id: int, reason: str) -> None:
        """Trial ``launch_id`` lost its worker and is started again."""
        self._call(self.on_retry, launch_id, reason)

    def explain_failure(self, launch_id: int, reason: str) -> None:
        """Replace the reason of failed trial ``launch_id`` (an engine may learn it late)."""
        outcome = self.outcomes[launch_id]
        if outcome is None or outcome.get("status") != "failed":
            raise ValueError(f"trial {launch_id} has not failed")
        outcome["reason"] = reason

    def _call(self, function: Callable[..., Any] | None, *args: Any) -> None:
        if function is None or self.error is not None:
            return
        try:
            function(*args)
        except Exception as exc:  # noqa: BLE001 -- kept for the engine to raise
            self.error = exc


def run_trials(
    fields: Sequence[dict[str, Any]],
    trial_fn: TrialFn,
    engine: str = "serial",
    *,
    ray: RayOptions | None = None,
    workers: int | None = None,
    on_launch: Callable[[int], None] | None = None,
    on_record: Callable[[int, dict[str, Any]], None] | None = None,
    on_retry: Callable[[int, str], None] | None = None,
    launch_until: float | None = None,
    name: str = "trials",
) -> list[dict[str, Any] | None]:
    """Run independent trials (a :class:`Batch` of ``fields``) on ``engine``; returns their
    outcomes in the order of ``fields`` (``None`` for a trial never launched)."""
    batch = Batch(
        fields,
        on_launch=on_launch,
        on_record=on_record,
        on_retry=on_retry,
        launch_until=launch_until,
    )
    run_engine(batch, trial_fn, engine, ray=ray, workers=workers, execute=call_trial, name=name)
    return batch.outcomes


def run_engine(
    source: Source,
    trial_fn: TrialFn,
    engine: str,
    *,
    ray: RayOptions | None = None,
    workers: int | None = None,
    execute: Execute = execute_trial,
    name: str = "sweep",
) -> None:
    """Run ``source`` on the engine named ``engine`` (module docstring); a Ray session is
    opened (and closed) here for ``"ray"``. ``workers``: the ``processes`` engine's pool size
    (default: the machine's CPUs)."""
    if engine not in ENGINES:
        raise UserError(f"unknown engine {engine!r}; use one of {', '.join(ENGINES)}")
    options = ray or RayOptions()
    if engine == "ray":
        with ray_session(options):
            run_on_ray(source, trial_fn, options, execute=execute, name=name)
    elif engine == "processes":
        count = workers or os.cpu_count() or 1
        run_in_processes(
            source, trial_fn, count, execute=execute, max_failures=options.max_failures
        )
    else:
        run_serial(source, trial_fn, execute=execute)


def run_serial(source: Source, trial_fn: TrialFn, *, execute: Execute = execute_trial) -> None:
    """Run the source's trials one after another in this process."""
    while (launch := source.propose()) != DONE:
        if launch == WAIT:  # impossible with nothing running; a bug if it happens
            raise RuntimeError("the plan waits although no trial is running")
        source.record(launch.id, execute(trial_fn, launch.fields))
    if source.error is not None:
        raise source.error


def run_in_processes(
    source: Source,
    trial_fn: TrialFn,
    workers: int,
    *,
    execute: Execute = execute_trial,
    max_failures: int = 0,
) -> None:
    """Run the source's trials in a pool of ``workers`` fresh local processes (``spawn``: no
    CUDA context or threads inherited), at most ``workers`` at a time.

    A worker that dies breaks the pool (the standard library then stops the other workers
    too): the trials that were running are started again in a new pool, each up to
    ``max_failures`` times (a run resumes from its checkpoint), then recorded as failed.
    """
    if workers < 1:
        raise UserError(f"the processes engine needs at least one worker, got {workers}")
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=context)
    running: dict[Future, tuple[Launch, int]] = {}
    retry: list[tuple[Launch, int]] = []
    try:
        while True:
            proposal: Launch | str = DONE
            while len(running) < workers:
                if retry:
                    launch, failures = retry.pop(0)
                else:
                    proposal = source.propose()
                    if not isinstance(proposal, Launch):
                        break
                    launch, failures = proposal, 0
                running[pool.submit(execute, trial_fn, launch.fields)] = (launch, failures)
            if not running:
                if proposal == WAIT:
                    raise RuntimeError("the plan waits although no trial is running")
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            broken = False
            for future in finished:
                launch, failures = running.pop(future)
                try:
                    outcome = future.result()
                except BrokenProcessPool:
                    broken = True
                    retry.append((launch, failures + 1))
                    continue
                source.record(launch.id, outcome)
            if broken:  # every other running trial fails with the pool: start them again
                for future, (launch, failures) in running.items():
                    future.cancel()
                    retry.append((launch, failures + 1))
                running.clear()
                pool.shutdown(wait=True, cancel_futures=True)
                pool = ProcessPoolExecutor(max_workers=workers, mp_context=context)
                kept = []
                for launch, failures in sorted(retry, key=lambda item: item[0].id):
                    if failures > max_failures:
                        reason = (
                            f"its worker process died ({failures} time(s); "
                            f"{max_failures} restart(s) allowed)"
                        )
                        source.record(launch.id, {"status": "failed", "reason": reason})
                    else:
                        _retried(source, launch.id, "a worker process died", failures)
                        kept.append((launch, failures))
                retry = kept
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    if source.error is not None:
        raise source.error


@dataclass(frozen=True)
class RayOptions:
    """How trials use Ray.

    Args:
        address: an existing cluster (``"auto"``, ``"ray://host:10001"``, ``"host:6379"``);
            ``None``: ``$RAY_ADDRESS`` when set, else a new local instance.
        gpus_per_trial: GPUs per trial (a fraction packs several trials on a GPU); ``None``: 1
            where the cluster has GPUs, else 0.
        cpus_per_trial: CPUs per trial; ``None``: 1 with a GPU, else every CPU of the
            smallest node (one trial per node).
        verbose: forward the trials' own output (per-epoch lines) to this process.
        max_failures: how many times a trial whose worker died is started again (also the
            ``processes`` engine's); 0 for a sweep, whose trials count their compute.
    """

    address: str | None = None
    gpus_per_trial: float | None = None
    cpus_per_trial: float | None = None
    verbose: bool = False
    max_failures: int = 0

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> RayOptions:
        """The options a command line gives: ``--address``, ``--gpus-per-trial``,
        ``--cpus-per-trial`` and ``--verbose``."""
        return cls(
            address=args.address,
            gpus_per_trial=args.gpus_per_trial,
            cpus_per_trial=args.cpus_per_trial,
            verbose=args.verbose,
        )


@contextmanager
def ray_session(options: RayOptions) -> Iterator[None]:
    """Connect to Ray for the duration of the block; a Ray started here is shut down after.

    An instance already initialised in this process (a notebook, a test) is used as it is.
    """
    import ray

    if ray.is_initialized():
        yield
        return
    address = options.address or os.environ.get("RAY_ADDRESS") or None
    if address is not None:
        _check_reachable(address)
    try:
        ray.init(
            address=address,
            include_dashboard=False,
            log_to_driver=options.verbose,
            logging_level=logging.ERROR,
            configure_logging=True,
        )
    except (ConnectionError, ValueError, RuntimeError) as exc:
        if address is None:
            raise
        raise UserError(
            f"cannot join the Ray cluster at {address!r} ({exc}); check the address (`ray "
            "status` on the head node prints it); a cluster with token authentication (Ray's "
            "default since 2.59) also needs RAY_AUTH_MODE=token and its token (RAY_AUTH_TOKEN "
            "or ~/.ray/auth_token) here"
        ) from None
    try:
        yield
    finally:
        ray.shutdown()


def _check_reachable(address: str) -> None:
    """Fail fast (Ray itself retries for minutes) when a ``host:port`` does not answer."""
    hostport = address.removeprefix("ray://")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        return  # "auto", "local" and other forms: left to Ray
    try:
        socket.create_connection((host, int(port)), timeout=10).close()
    except OSError as exc:
        raise UserError(
            f"no Ray cluster answers at {address!r} ({exc.strerror or exc}); start one with "
            "`ray start --head` and pass the address it prints, or drop --address to run locally"
        ) from None


def trial_resources(options: RayOptions) -> tuple[dict[str, float], int]:
    """The resources one trial asks for, and how many trials the cluster runs at once."""
    import ray

    total = ray.cluster_resources()
    gpus = total.get("GPU", 0.0)
    gpu = options.gpus_per_trial if options.gpus_per_trial is not None else min(gpus, 1.0)
    if gpu > gpus:
        raise UserError(
            f"each trial asks for {gpu} GPU but the Ray cluster has {gpus:g}; "
            "lower --gpus-per-trial or add GPU nodes"
        )
    cpu = options.cpus_per_trial
    if cpu is None:
        node_cpus = [node["Resources"].get("CPU", 0.0) for node in ray.nodes() if node.get("Alive")]
        cpu = 1.0 if gpu else min(c for c in node_cpus if c > 0)
    if cpu > total.get("CPU", 0.0):
        raise UserError(
            f"each trial asks for {cpu} CPUs but the Ray cluster has {total.get('CPU', 0):g}; "
            "lower --cpus-per-trial"
        )
    slots = math.floor(total.get("CPU", 0.0) / cpu) if cpu else math.inf
    if gpu:
        slots = min(slots, math.floor(gpus / gpu + 1e-9))
    return {"CPU": float(cpu), "GPU": float(gpu)}, max(1, int(slots))


def _retried(source: Source, launch_id: int, why: str, failures: int) -> None:
    """Tell a source that listens (a :class:`Batch`) that a trial is started again."""
    listener = getattr(source, "retried", None)
    if listener is not None:
        listener(launch_id, f"{why}; started again ({failures} time(s) so far)")


#: The key of a Tune result that holds the trial's outcome (JSON: Tune adds keys of its own).
_OUTCOME = "sgmcmc_outcome"


def _trainable(config: dict[str, Any], trial_fn: TrialFn, execute: Execute) -> None:
    """One Ray Tune trial: run the trial's fields and report its outcome (never raises)."""
    from ray import tune

    tune.report({_OUTCOME: json.dumps(execute(trial_fn, config["fields"]))})


def run_on_ray(
    plan: Source,
    trial_fn: TrialFn,
    options: RayOptions,
    *,
    execute: Execute = execute_trial,
    name: str = "sweep",
) -> None:
    """Run the source's trials as one Ray Tune experiment (call inside :func:`ray_session`).

    A trial whose worker died is started again up to ``options.max_failures`` times. Raises
    ``KeyboardInterrupt`` when Tune stopped before the source was done (Ctrl-C): the finished
    trials are in the store, and rerunning resumes from there.
    """
    # Tune's console reporter and its per-trial loggers add nothing here: the walk logs.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "inf")
    from ray import tune

    resources, slots = trial_resources(options)
    trainable = tune.with_resources(
        tune.with_parameters(_trainable, trial_fn=trial_fn, execute=execute), resources
    )
    searcher = _plan_searcher(plan)
    # A trial that fails is reported by the source (one line), and one started again by the
    # callback: Tune's own report of it, a traceback, says nothing more.
    quiet = logging.getLogger("ray.tune.execution.tune_controller")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    try:
        _fit(plan, trainable, searcher, slots, options, name)
    finally:
        quiet.setLevel(level)
    if plan.error is not None:
        raise plan.error
    if not plan.done:
        raise KeyboardInterrupt


def _fit(
    plan: Source, trainable: Any, searcher: Any, slots: int, options: RayOptions, name: str
) -> None:
    """One Tune experiment of ``plan``'s trials; failures explained to ``plan``."""
    from ray import tune

    with tempfile.TemporaryDirectory(prefix="sgmcmc-tune-") as storage:
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(
                search_alg=searcher,
                num_samples=-1,
                max_concurrent_trials=slots,
                reuse_actors=True,
                trial_dirname_creator=lambda trial: f"trial_{trial.trial_id}",
            ),
            run_config=tune.RunConfig(
                name=name,
                storage_path=storage,
                verbose=0,
                failure_config=tune.FailureConfig(
                    max_failures=options.max_failures, fail_fast=False
                ),
                callbacks=[_retry_callback(plan, searcher)],
            ),
        )
        for result in tuner.fit():
            if result.error is not None:  # the worker failed outside execute_trial
                error = getattr(result.error, "cause", None) or result.error
                message = " ".join(re.split(r"\s[Tt]raceback", str(error))[0].split())[:300]
                index = searcher.launched[Path(result.path).name.removeprefix("trial_")]
                plan.explain_failure(index, f"Ray worker: {type(error).__name__}: {message}")


def _retry_callback(plan: Source, searcher: Any) -> Any:
    """A Tune callback that tells ``plan`` when a trial is started again after its worker
    died (built once Ray is imported)."""
    from ray.tune import Callback

    class Retries(Callback):
        def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            index = searcher.launched.get(trial.trial_id)
            if index is not None:
                _retried(plan, index, "its Ray worker died", int(trial.num_failures or 0))

    return Retries()


def _plan_searcher_class() -> type:
    from ray.tune.search import Searcher

    class PlanSearcher(Searcher):
        """Tune's view of a source: suggestions are its proposals."""

        def __init__(self, plan: Source) -> None:
            super().__init__()
            self.plan = plan
            self.launched: dict[str, int] = {}

        def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
            launch = self.plan.propose()
            if launch == WAIT:
                return None
            if launch == DONE:
                return Searcher.FINISHED
            self.launched[trial_id] = launch.id
            return {"fields": launch.fields, "launch": launch.id}

        def on_trial_complete(
            self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
        ) -> None:
            index = self.launched[trial_id]
            if error or not result or _OUTCOME not in result:
                outcome: dict[str, Any] = {"status": "failed", "reason": "its Ray worker failed"}
            else:
                outcome = json.loads(result[_OUTCOME])
            self.plan.record(index, outcome)

        def save(self, checkpoint_path: str) -> None:
            """Nothing to save: a rerun resumes from the run store, not from Tune's state."""

        def restore(self, checkpoint_path: str) -> None:
            """See :meth:`save`."""

    return PlanSearcher


def _plan_searcher(plan: Source) -> Any:
    """A Tune searcher over ``plan`` (its class is built once Ray is imported)."""
    return _plan_searcher_class()(plan)
