"""``sgmcmc sweep``: tune methods by the paper's compute-budgeted grid search (Ray Tune)."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

from sgmcmc.samplers.base import CONVENTIONS
from sgmcmc_paper.commands import parse_train_sizes
from sgmcmc_paper.errors import UserError
from sgmcmc_paper.protocol.paper import METHODS

EPILOG = """\
Each grid point is a run on MNIST's 50k/10k train/validation split, stored like any run, so a
rerun (e.g. after Ctrl-C) loads the finished trials and trains only the rest. In the paper
convention the trials are the "as described" configuration (Li et al.'s pSGLD, KSGLD's
updated K-FAC). The learning rate comes first, then each method's own constants (pSGLD's
lambda and alpha, KSGLD's damping) at the best point so far; each axis is tried around the
best point until the selected value lies strictly inside the values tried (an axis is
extended beyond its grid, at most 3 times, where the best sits at its end), and the best two
points run a second seed when they are within seed noise. The compute used is recorded
against BUDGET x the SGD run's wall time; --budget-walk instead walks the grid (with the
learning-rate schedule) only while a trial is predicted to fit in the budget. The selection
(best validation accuracy) goes to results/hparams/<profile>.json, which tuned runs and
notebook 00 read.

--cyclical tunes SGLD, pSGLD or KSGLD under the cyclical schedule of chapter 09 (Zhang et
al.'s sgmcmc.CyclicalSchedule) on the same budget and walk: the cycle's peak rate, the cycles
(1 2 4 8, from 4) and the fraction of each cycle exploring without noise (0.25 0.5 0.75, from
0.5), each trial scored by its sampling-stage iterates over the whole run. The method's own
constants (pSGLD's lambda and alpha, KSGLD's damping) are held at its selection, so run the
plain search first. The selection is recorded as "paper/<method>+cyclical/<size>", which
chapter 09's cyclical runs read, e.g.
  sgmcmc sweep --profile paper --method sgld psgld ksgld --cyclical --train-size full

--engine auto (the default) uses Ray when it is installed and runs the trials serially in
this process otherwise (e.g. PYTHONPATH=src on a machine without the 'sweep' extra).

Ray starts locally unless --address (or $RAY_ADDRESS) names a running cluster:
  head node:    ray start --head --port=6379
  other nodes:  ray start --address=HEAD_IP:6379
  anywhere:     SGMCMC_RESULTS=/shared/results SGMCMC_DATA=/shared/data \\
                sgmcmc sweep --method sgld --profile paper --address HEAD_IP:6379
Every node needs this package installed and must see $SGMCMC_RESULTS and $SGMCMC_DATA at the
same paths (shared storage): the trials write their runs there. With token authentication
(Ray's default since 2.59) every node and the sweep also need RAY_AUTH_MODE=token and the
cluster's token (RAY_AUTH_TOKEN, or the file ~/.ray/auth_token; `ray get-auth-token`).
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "sweep",
        help="tune methods by compute-budgeted grid search",
        description=__doc__.splitlines()[0].split(": ", 1)[1],
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--method", nargs="+", choices=METHODS, help="method(s) to tune (required unless --merge)"
    )
    parser.add_argument(
        "--convention",
        choices=CONVENTIONS,
        default=None,
        help="learning-rate convention (default: the run config's, 'paper')",
    )
    parser.add_argument("--profile", default=None, help="ci, quick or paper ($SGMCMC_PROFILE)")
    parser.add_argument(
        "--budget",
        type=float,
        default=None,
        help="compute per method in multiples of the SGD run's wall time (default: profile's)",
    )
    parser.add_argument(
        "--train-size",
        nargs="+",
        default=None,
        metavar="N",
        help="training-set size(s) to tune for, 'full' for all 50,000 (default: the "
        "profile's); each size gets its own selection, e.g. smallMNIST's 5000",
    )
    parser.add_argument(
        "--small", action="store_true", help="also tune for the profile's smallMNIST sizes"
    )
    parser.add_argument(
        "--engine",
        choices=("auto", "ray", "serial", "processes"),
        default="auto",
        help="ray: Ray Tune trials; serial: the same trials in this process; processes: a pool "
        "of --workers local processes (e.g. several trials sharing one GPU); auto (default): "
        "ray if installed, else serial",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="with --engine processes: how many trials run at once (default: one per CPU)",
    )
    parser.add_argument(
        "--cyclical",
        action="store_true",
        help="tune the samplers under the cyclical schedule of chapter 09 (rate, cycles, "
        "exploration fraction); selections recorded as '<method>+cyclical'",
    )
    parser.add_argument(
        "--budget-walk",
        action="store_true",
        help="walk the grid while within the budget instead of bracketing every axis",
    )
    parser.add_argument(
        "--address", default=None, help="join a running Ray cluster (default: $RAY_ADDRESS)"
    )
    parser.add_argument(
        "--gpus-per-trial",
        type=float,
        default=None,
        metavar="G",
        help="GPUs per trial, a fraction packs several on one GPU (default: 1 if any)",
    )
    parser.add_argument(
        "--cpus-per-trial",
        type=float,
        default=None,
        metavar="C",
        help="CPUs per trial (default: 1 with a GPU, else all CPUs of a node)",
    )
    parser.add_argument(
        "--max-trials", type=int, default=None, help="at most this many trials per method"
    )
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (for the runs)")
    parser.add_argument(
        "--verbose", action="store_true", help="show the runs' own per-epoch output"
    )
    parser.add_argument(
        "--merge",
        metavar="FILE",
        type=Path,
        help="tune nothing: merge another store's selection file (e.g. a GPU machine's "
        "paper.json) into this one's; a sweep written later replaces ours of the same key",
    )
    parser.set_defaults(func=handle)


def _merge(source: Path, profile: str) -> int:
    from sgmcmc_paper.protocol.hparams import hparams_path
    from sgmcmc_paper.sweep.record import merge_file

    taken = merge_file(source, profile)
    for key in taken:
        print(f"  {key}")
    print(f"{len(taken)} sweep(s) of {source} merged into {hparams_path(profile)}")
    return 0


def handle(args: argparse.Namespace) -> int:
    from sgmcmc_paper.protocol.profiles import get_profile
    from sgmcmc_paper.sweep import RayOptions, run_sweep
    from sgmcmc_paper.sweep.search import DEFAULT_CONVENTION

    profile = get_profile(args.profile)
    if args.merge is not None:
        return _merge(args.merge, profile.name)
    if not args.method:
        raise UserError("give the method(s) to tune with --method (or --merge FILE)")
    sizes = [profile.train_size] if args.train_size is None else parse_train_sizes(args.train_size)
    if args.small:
        sizes += [s for s in profile.small_train_sizes if s not in sizes]
    if args.workers is not None and args.workers < 1:
        raise UserError(f"--workers must be at least 1, got {args.workers}")
    if args.max_trials is not None and args.max_trials < 1:
        raise UserError(f"--max-trials must be at least 1, got {args.max_trials}")
    for name in ("gpus_per_trial", "cpus_per_trial"):
        value = getattr(args, name)
        if value is not None and not value >= 0:
            raise UserError(f"--{name.replace('_', '-')} must be >= 0, got {value}")
    if args.device not in ("auto", "cpu", "cuda"):
        raise UserError(f"unknown device {args.device!r}; use one of auto, cpu, cuda")
    engine = args.engine
    if engine == "auto":
        engine = "ray" if importlib.util.find_spec("ray") is not None else "serial"
    results = run_sweep(
        args.method,
        convention=args.convention or DEFAULT_CONVENTION,
        profile=profile.name,
        budget=args.budget,
        train_sizes=sizes,
        engine=engine,
        ray=RayOptions.from_args(args),
        max_trials=args.max_trials,
        workers=args.workers,
        device=args.device,
        progress=args.verbose,
        bracket=not args.budget_walk,
        cyclical=args.cyclical,
    )
    from sgmcmc_paper.protocol.hparams import hparams_path

    print(f"selection written to {hparams_path(profile.name)}")
    return 0 if all(r.selected is not None for r in results) else 1
