"""Engines that run a :class:`~sgmcmc_paper.sweep.plan.Plan`: in-process, or as Ray Tune trials.

Both drive the same walks with the same trial function, so they launch the same trials and
select the same one (with one trial at a time; see :mod:`sgmcmc_paper.sweep.walk`).

Ray (:func:`run_on_ray`): a local instance by default (quiet, no dashboard, the machine's
resources detected), or an existing cluster when ``address`` (or ``$RAY_ADDRESS``) is given —
then every node must see the run store and the dataset cache at the same paths (set
``$SGMCMC_RESULTS`` and ``$SGMCMC_DATA`` to shared storage) and have this package installed.
Each trial asks for one GPU where the cluster has GPUs (``gpus_per_trial`` may be a fraction, to
pack several trials on one GPU), otherwise for all CPUs of one node, so that a trial's wall
time is comparable with the SGD reference's, which is run the same way.
"""

from __future__ import annotations

import logging
import math
import os
import re
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sgmcmc_paper.errors import UserError
from sgmcmc_paper.sweep.plan import Plan
from sgmcmc_paper.sweep.walk import DONE, WAIT, Outcome, TrialFn, execute_trial

ENGINES = ("ray", "serial")
_OUTCOME_FIELDS = tuple(Outcome.__dataclass_fields__)


def run_serial(plan: Plan, trial_fn: TrialFn) -> None:
    """Run the plan's trials one after another in this process."""
    while (launch := plan.propose()) != DONE:
        if launch == WAIT:  # impossible with nothing running; a bug if it happens
            raise RuntimeError("the plan waits although no trial is running")
        plan.record(launch.id, execute_trial(trial_fn, launch.fields))
    if plan.error is not None:
        raise plan.error


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
    """

    address: str | None = None
    gpus_per_trial: float | None = None
    cpus_per_trial: float | None = None
    verbose: bool = False


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


def _trainable(config: dict[str, Any], trial_fn: TrialFn) -> None:
    """One Ray Tune trial: run the grid point and report its outcome (never raises)."""
    from ray import tune

    tune.report(execute_trial(trial_fn, config["fields"]))


def run_on_ray(plan: Plan, trial_fn: TrialFn, options: RayOptions) -> None:
    """Run the plan's trials as one Ray Tune experiment (call inside :func:`ray_session`).

    Raises ``KeyboardInterrupt`` when Tune stopped before the plan was done (Ctrl-C): the
    finished trials are in the store, and rerunning the sweep resumes from there.
    """
    # Tune's console reporter and its per-trial loggers add nothing here: the walk logs.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "inf")
    from ray import tune

    resources, slots = trial_resources(options)
    trainable = tune.with_resources(tune.with_parameters(_trainable, trial_fn=trial_fn), resources)
    searcher = _plan_searcher(plan)
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
                name="sweep",
                storage_path=storage,
                verbose=0,
                failure_config=tune.FailureConfig(max_failures=0, fail_fast=False),
            ),
        )
        for result in tuner.fit():
            if result.error is not None:  # the worker failed outside execute_trial
                error = getattr(result.error, "cause", None) or result.error
                message = " ".join(re.split(r"\s[Tt]raceback", str(error))[0].split())[:300]
                index = searcher.launched[Path(result.path).name.removeprefix("trial_")]
                plan.explain_failure(index, f"Ray worker: {type(error).__name__}: {message}")
    if plan.error is not None:
        raise plan.error
    if not plan.done:
        raise KeyboardInterrupt


def _plan_searcher_class() -> type:
    from ray.tune.search import Searcher

    class PlanSearcher(Searcher):
        """Tune's view of a plan: suggestions are the plan's proposals."""

        def __init__(self, plan: Plan) -> None:
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
            if error or not result or "status" not in result:
                outcome: Any = Outcome("failed", reason="its Ray worker failed")
            else:
                outcome = {name: result[name] for name in _OUTCOME_FIELDS if name in result}
            self.plan.record(index, outcome)

        def save(self, checkpoint_path: str) -> None:
            """Nothing to save: a rerun resumes from the run store, not from Tune's state."""

        def restore(self, checkpoint_path: str) -> None:
            """See :meth:`save`."""

    return PlanSearcher


def _plan_searcher(plan: Plan) -> Any:
    """A Tune searcher over ``plan`` (its class is built once Ray is imported)."""
    return _plan_searcher_class()(plan)
