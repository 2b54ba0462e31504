"""``sgmcmc notebooks``: execute every notebook of ``notebooks/`` into ``book/notebooks/``.

Runs them in name order through papermill at a profile, one progress line per notebook with
its wall time; the first failure stops with one line naming the notebook and cell (exit 2),
and its partial output is kept in ``<out>.failed/`` beside the output folder.
Stored results are reused unless ``--fresh`` (see :mod:`sgmcmc_paper.book.notebooks`). At ``paper``
with no GPU, a notebook whose paper-profile runs are not all stored runs at ``quick`` instead (said
on its line and in its provenance) unless ``--train-on-cpu``.
"""

from __future__ import annotations

import time
from pathlib import Path

from sgmcmc_paper.errors import UserError


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "notebooks",
        help="execute the notebooks with papermill into book/notebooks/",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument("--profile", help="ci, quick or paper (default $SGMCMC_PROFILE, else paper)")
    p.add_argument(
        "--fresh",
        action="store_true",
        help="retrain instead of loading stored results (they are replaced when all succeed)",
    )
    p.add_argument("--only", metavar="NAME", help="run one notebook (name, stem or prefix: 02)")
    p.add_argument("--device", help="passed to the notebooks: auto, cpu, cuda (default: auto)")
    p.add_argument(
        "--out",
        metavar="DIR",
        type=Path,
        help="where executed notebooks go (book/notebooks); a failed one's partial output goes "
        "to DIR.failed/",
    )
    p.add_argument(
        "--train-on-cpu",
        action="store_true",
        help="at the paper profile without a GPU, train missing runs (about 15 minutes each) "
        "instead of running their notebooks at quick",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print the profile each notebook would run at and the runs it lacks; run nothing",
    )
    p.set_defaults(func=handle)


CPU_FALLBACK = "quick"


def _no_gpu(device: str | None) -> bool:
    import torch

    return device == "cpu" or not torch.cuda.is_available()


def _print_plan(profile: str, fallback: str | None, only: str | None) -> None:
    from sgmcmc_paper.book.notebooks import fallback_reason, profile_for, select, source_notebooks

    for path in select(source_notebooks(), only):
        used, missing = profile_for(path.stem, profile, fallback)
        print(f"{path.stem}: {used}{fallback_reason(profile, missing)}", flush=True)


def handle(args) -> int:
    from sgmcmc_paper.book.notebooks import run_notebooks
    from sgmcmc_paper.book.session import PAPER_PROFILE
    from sgmcmc_paper.protocol.profiles import default_profile_name

    profile = args.profile or default_profile_name()
    fallback = None
    if profile == PAPER_PROFILE and not args.train_on_cpu and _no_gpu(args.device):
        if args.fresh:  # ~60 runs of 20 epochs: minutes on a GPU, days on a CPU
            raise UserError(
                "retraining the paper profile needs a GPU (about 15 CPU-minutes per 20-epoch "
                "run, ~60 runs); train it on a GPU (.ci/device/paper_profile.sh, "
                "book/rerun.md), use PROFILE=quick, or pass --train-on-cpu"
            )
        fallback = CPU_FALLBACK
    if args.dry_run:
        _print_plan(profile, fallback, args.only)
        return 0
    start = time.perf_counter()
    runs = run_notebooks(
        profile,
        fresh=args.fresh,
        only=args.only,
        device=args.device,
        fallback=fallback,
        output_dir=args.out,
        log=lambda line: print(line, flush=True),
    )
    total = time.perf_counter() - start
    used = {run.profile for run in runs}
    print(
        f"{len(runs)} notebook(s) at profile {'/'.join(sorted(used))} in {total:.1f} s", flush=True
    )
    fell_back = [run.name for run in runs if run.profile != profile]
    if fell_back:
        print(
            f"at {CPU_FALLBACK} because their {profile}-profile runs are not all stored and "
            f"there is no GPU: {', '.join(fell_back)}",
            flush=True,
        )
    return 0
