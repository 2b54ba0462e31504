"""``sgmcmc fill``: train the runs the notebooks need at a profile that the store lacks.

Runs as the sweep's trials do: one after another here (``--engine serial``), in a pool of local
processes (``processes``, e.g. several sharing one GPU), or as Ray Tune trials on a local Ray
instance or an existing cluster (``ray``, ``--address``). ``--dry-run`` lists what is stored
and what is missing, with an estimate of the cost from the stored timings of similar runs.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from sgmcmc.samplers.base import CONVENTIONS
from sgmcmc_paper.commands import parse_train_sizes
from sgmcmc_paper.errors import UserError

EPILOG = """\
Examples:
  sgmcmc fill --profile paper --dry-run                 what is stored, missing, and its cost
  sgmcmc fill --profile quick                           a laptop: one run after another
  sgmcmc fill --profile paper --engine processes --workers 8 --device cuda
                                                        a GPU box: 8 runs share the GPU
  sgmcmc fill --profile paper --engine ray --gpus-per-trial 0.125
                                                        the same on a local Ray instance
  SGMCMC_RESULTS=/shared/results SGMCMC_DATA=/shared/data \\
    sgmcmc fill --profile paper --address HEAD_IP:6379 --gpus-per-trial 0.25
                                                        an existing Ray cluster

Each key is trained once: the fill deduplicates its runs, and the store's per-key lock (an
flock on the store's file system) keeps other processes asking for the same run waiting for
it. On a cluster every node must see $SGMCMC_RESULTS and $SGMCMC_DATA at the same paths
(shared storage whose locks hold across machines: on NFS, lockd or NFSv4). A run saves a
checkpoint every --checkpoint-every seconds; a trial whose worker dies is started again
(--retries) and resumes from it. Stopped (Ctrl-C), a fill resumes where it was when rerun.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "fill",
        help="train the runs the notebooks need that the store lacks (serial, processes, Ray)",
        description=__doc__.split("\n\n")[0].split(": ", 1)[1],
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    which = parser.add_argument_group("which runs")
    which.add_argument("--profile", default=None, help="ci, quick or paper ($SGMCMC_PROFILE)")
    which.add_argument(
        "--notebooks",
        nargs="+",
        metavar="STEM",
        help="only the runs of these notebooks (file stems, e.g. 01_test_accuracy)",
    )
    which.add_argument("--convention", choices=CONVENTIONS, help="only the runs in this convention")
    which.add_argument(
        "--train-size",
        nargs="+",
        metavar="N",
        help="only the runs on these training-set sizes ('full': all of it; e.g. 5000 3000)",
    )
    which.add_argument(
        "--keys",
        metavar="FILE",
        type=Path,
        help="only the runs whose keys FILE lists, one a line (e.g. from --write-missing)",
    )
    which.add_argument(
        "--released-only",
        action="store_true",
        help="only the 'as released' runs (main and smallMNIST; they need no sweep)",
    )
    look = parser.add_argument_group("look, do not train")
    look.add_argument(
        "--dry-run",
        action="store_true",
        help="list what is stored and what is missing, with the cost estimated from stored "
        "timings of similar runs; train nothing",
    )
    look.add_argument(
        "--write-missing",
        metavar="FILE",
        type=Path,
        help="write the keys of the selected runs the store lacks to FILE, one a line",
    )
    look.add_argument(
        "--superseded",
        action="store_true",
        help="list the profile's stored test-set runs that no notebook or transfer attack needs "
        "any more (a configuration or an evaluation changed since); sweep trials are kept",
    )
    look.add_argument(
        "--retire-superseded",
        action="store_true",
        help="move those runs to results/superseded/<profile>/ (git ignores it; nothing is "
        "deleted)",
    )
    how = parser.add_argument_group("how to train")
    how.add_argument(
        "--engine",
        choices=("serial", "processes", "ray"),
        default=None,
        help="serial: in this process (default); processes: --workers local processes; "
        "ray: Ray Tune trials (default with --address)",
    )
    how.add_argument(
        "--workers", type=int, default=None, help="processes engine: pool size (default: CPUs)"
    )
    how.add_argument(
        "--address", default=None, help="ray: join this running cluster (default: a local one)"
    )
    how.add_argument(
        "--cpus-per-trial", type=float, default=None, metavar="C", help="ray: CPUs per run (1)"
    )
    how.add_argument(
        "--gpus-per-trial",
        type=float,
        default=None,
        metavar="G",
        help="ray: GPUs per run; a fraction packs several on a GPU (default: 1 if any)",
    )
    how.add_argument("--device", default="auto", help="auto, cpu or cuda (for the runs)")
    how.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads per run (default: CPUs per trial; CPUs / workers; torch's)",
    )
    how.add_argument(
        "--checkpoint-every",
        type=float,
        default=None,
        metavar="S",
        help="seconds between a run's checkpoints, taken at epoch ends (default 300)",
    )
    how.add_argument(
        "--retries",
        type=int,
        default=None,
        help="times a run whose worker died is started again, from its checkpoint (2)",
    )
    how.add_argument(
        "--time-limit",
        type=float,
        default=None,
        metavar="S",
        help="start no run after S seconds (the running ones finish)",
    )
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="dry run: list the stored runs too; otherwise: the runs' per-epoch lines and a line "
        "per finished unit of their robustness attacks",
    )
    parser.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    from sgmcmc_paper.engine.fill import select_configs, survey
    from sgmcmc_paper.protocol.profiles import get_profile

    profile = get_profile(args.profile)
    if args.superseded or args.retire_superseded:
        return _superseded(profile.name, retire=args.retire_superseded)
    engine = _engine(args)
    keys = _read_keys(args.keys) if args.keys is not None else None
    configs = select_configs(
        profile.name,
        args.notebooks,
        convention=args.convention,
        train_sizes=None if args.train_size is None else parse_train_sizes(args.train_size),
        keys=keys,
        released_only=args.released_only,
    )
    if keys is not None and len(configs) < len(set(keys)):
        print(f"note: {len(set(keys)) - len(configs)} of the keys in {args.keys} name no run here")
    if args.write_missing is not None:
        missing = survey(configs).missing
        try:
            args.write_missing.write_text("".join(f"{c.key()}\n" for c in missing))
        except OSError as exc:
            raise UserError(f"cannot write {args.write_missing} ({exc.strerror or exc})") from None
        written = args.write_missing
        print(f"{len(missing)} of {len(configs)} runs missing; keys written to {written}")
        return 0
    if args.dry_run:
        print_dry_run(profile.name, configs, device=args.device, verbose=args.verbose)
        return 0
    return _fill(args, configs, engine)


def _superseded(profile: str, retire: bool) -> int:
    from sgmcmc_paper.engine import orphans
    from sgmcmc_paper.engine.fill import describe
    from sgmcmc_paper.engine.store import load_result

    runs = orphans.superseded_runs(profile)
    for folder in runs:
        try:
            print(f"  {describe(load_result(folder).config)}")
        except UserError as exc:  # a damaged run is listed (and retired) all the same
            print(f"  {folder.name}: {exc}")
    if not retire:
        print(f"{len(runs)} superseded run(s) under {profile}; --retire-superseded moves them")
        return 0
    moved = orphans.retire(runs)
    where = moved[0].parent if moved else "results/superseded"
    print(f"{len(moved)} superseded run(s) moved to {where}")
    return 0


def _engine(args: argparse.Namespace) -> str:
    engine = args.engine or ("ray" if args.address else "serial")
    ray_only = {
        "--address": args.address,
        "--cpus-per-trial": args.cpus_per_trial,
        "--gpus-per-trial": args.gpus_per_trial,
    }
    for flag, value in ray_only.items():
        if value is not None and engine != "ray":
            raise UserError(f"{flag} is for --engine ray (this fill's engine is {engine})")
    if args.workers is not None and engine != "processes":
        raise UserError(f"--workers is for --engine processes (this fill's engine is {engine})")
    for flag, value, least in (
        ("--workers", args.workers, 1),
        ("--threads", args.threads, 1),
        ("--retries", args.retries, 0),
    ):
        if value is not None and value < least:
            raise UserError(f"{flag} must be at least {least}, got {value}")
    for flag, value in (
        ("--cpus-per-trial", args.cpus_per_trial),
        ("--gpus-per-trial", args.gpus_per_trial),
        ("--checkpoint-every", args.checkpoint_every),
        ("--time-limit", args.time_limit),
    ):
        if value is not None and not value >= 0:
            raise UserError(f"{flag} must be >= 0, got {value}")
    if args.device not in ("auto", "cpu", "cuda"):
        raise UserError(f"unknown device {args.device!r}; use one of auto, cpu, cuda")
    return engine


def _read_keys(path: Path) -> list[str]:
    try:
        return path.read_text().split()
    except OSError as exc:
        raise UserError(f"cannot read the keys file {path} ({exc.strerror or exc})") from None


def print_dry_run(profile: str, configs: list, device: str = "auto", verbose: bool = False) -> None:
    """What is stored and what is missing, and the estimated cost of the missing runs."""
    from sgmcmc_paper.engine.experiment import device_name, resolve_device
    from sgmcmc_paper.engine.fill import EVALUATION_FIELDS as FIELDS
    from sgmcmc_paper.engine.fill import (
        CostModel,
        describe,
        format_duration,
        notebook_counts,
        survey,
    )
    from sgmcmc_paper.paths import results_dir

    found = survey(configs)
    store = results_dir() / profile
    print(f"profile {profile}, store {store}: {len(configs)} runs selected")
    stale = {stem: n for stem, _, n in notebook_counts(profile, configs, found.stale)}
    for stem, needed, missing in notebook_counts(profile, configs, found.missing):
        state = f"{needed - missing} stored, {missing} missing" if needed else "no runs"
        old = stale.get(stem, 0)
        print(f"  {stem:<26} {state}" + (f" ({old} of them stale evaluation)" if old else ""))
    for line in found.damaged:
        print(f"damaged (moved aside, counted as missing): {line}")
    model = CostModel.from_store(profile)
    local = device_name(resolve_device(device))
    if verbose and found.stored:
        print(f"stored ({len(found.stored)}):")
        for config in found.stored:
            print(f"  {describe(config)}")
    print(
        f"{len(found.stored)} stored, {len(found.missing)} missing"
        + (
            f" ({len(found.stale)} of them stale evaluation: stored, evaluated otherwise)"
            if found.stale
            else ""
        )
    )
    if not found.missing:
        print("nothing to train")
        return
    devices = model.devices()
    if local not in devices:
        devices.append(local)
    print(f"missing ({len(found.missing)}):")
    stale = {c.key() for c in found.stale}
    for config in found.missing:
        costs = [
            f"~{format_duration(s)} on {d}"
            for d in devices
            if (s := model.seconds(config, d)) is not None
        ]
        if not costs:
            loose = [
                f"~{format_duration(s)} on {d}"
                for d in devices
                if (s := model.seconds(config, d, loose=True)) is not None
            ]
            costs = ["no similar stored run"]
            if loose:
                costs.append(f"with another evaluation: {', '.join(loose)}")
        why = "stale evaluation, retrained: " if config.key() in stale else ""
        print(f"  {why}{describe(config)}  {'; '.join(costs)}")
    print(
        "cost of the missing runs per device: each run's time is the median run time "
        "(provenance.timing.total_s) of the stored similar runs (same method, convention, "
        "training size, epochs and evaluation) made on that device, and the times are summed "
        "(runs that shared a device took longer each; k runs at a time take about 1/k of the "
        "sum):"
    )
    for name in devices:
        cost = model.cost(found.missing, name)
        here = " (this machine)" if name == local else ""
        if not cost.known:
            line = f"  {name}{here}: no stored timing of a similar run, no estimate"
        else:
            unknown = cost.total - cost.known
            rest = f"; {unknown} without a similar stored run" if unknown else ""
            line = (
                f"  {name}{here}: {format_duration(cost.seconds)} for {cost.known} of "
                f"{cost.total} runs (from {cost.basis} stored runs{rest})"
            )
        loose = model.cost(found.missing, name, loose=True)
        if loose.known > cost.known:
            line += (
                f"; runs that differ from them only in their evaluation ({', '.join(FIELDS)}) "
                f"took {format_duration(loose.seconds)} for {loose.known} of {loose.total} "
                f"(from {loose.basis} stored runs): a hint, not an estimate"
            )
        print(line)
    print_priority(profile, found.missing, model, devices)


def print_priority(profile: str, missing: list, model, devices: list[str]) -> None:
    """The order a fill trains ``missing`` in (the notebook that first needs each run, in
    :data:`sgmcmc_paper.protocol.plan.FILL_PRIORITY` order), with each group's cost and the
    running total per device (runs without a similar stored run counted as unknown)."""
    from sgmcmc_paper.engine.fill import format_duration, priority_groups

    print(
        "in the order a fill trains them (protocol.plan.FILL_PRIORITY), with the running total "
        "per device (each run's stored time as above, or that of runs differing only in "
        "evaluation; k runs at a time take about 1/k):"
    )
    totals = dict.fromkeys(devices, 0.0)
    for rank, (stem, group) in enumerate(priority_groups(profile, missing), 1):
        costs = []
        for name in devices:
            times = [
                s if (s := model.seconds(c, name)) is not None else model.seconds(c, name, True)
                for c in group
            ]
            known = [t for t in times if t is not None]
            if not known:
                continue
            totals[name] += sum(known)
            unknown = f", {len(times) - len(known)} unknown" if len(known) < len(times) else ""
            costs.append(
                f"{format_duration(sum(known))}{unknown} on {name} "
                f"(total {format_duration(totals[name])})"
            )
        print(f"  {rank}. {stem}: {len(group)} runs; {'; '.join(costs) or 'no estimate'}")


def _fill(args: argparse.Namespace, configs: list, engine: str) -> int:
    from sgmcmc_paper.engine.fill import RETRIES, fill_store
    from sgmcmc_paper.sweep.engines import RayOptions

    if engine == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            raise UserError(
                "--engine ray needs the 'sweep' extra (module 'ray' is not installed): pip "
                "install 'sgmcmc[paper,sweep]'; or use --engine serial or processes"
            ) from None
    if engine == "ray" and (args.address or os.environ.get("RAY_ADDRESS")):
        from sgmcmc_paper.paths import data_dir, results_dir

        print(
            f"store {results_dir().resolve()}, datasets {data_dir().resolve()}: every node "
            "must see them at these paths ($SGMCMC_RESULTS, $SGMCMC_DATA)",
            flush=True,
        )
    report = fill_store(
        configs,
        engine=engine,
        ray=RayOptions.from_args(args),
        workers=args.workers,
        device=args.device,
        threads=args.threads,
        checkpoint_every=args.checkpoint_every,
        retries=RETRIES if args.retries is None else args.retries,
        time_limit=args.time_limit,
        progress=args.verbose,
        log=lambda line: print(line, flush=True),
    )
    print(report.summary(), flush=True)
    for config, reason in report.failed:
        print(f"failed: {config.key()} {config.method}: {reason}", flush=True)
    return 0 if report.complete else 1
