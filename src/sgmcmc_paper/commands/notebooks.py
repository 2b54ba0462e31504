"""``sgmcmc notebooks``: execute every notebook of ``notebooks/`` into ``book/notebooks/``.

Runs them in name order through papermill at a profile, one progress line per notebook with
its wall time; the first failure stops with one line naming the notebook and cell (exit 2),
and its partial output is kept in ``<out>.failed/`` beside the output folder.
Stored results are reused unless ``--fresh`` (see :mod:`sgmcmc_paper.book.notebooks`). At ``quick``
and ``paper`` with no GPU the build is stored-only (unless ``--train-on-cpu``): it trains nothing,
a run the store lacks is "not trained" in every table, and a notebook with too little stored at the
profile runs at the next smaller one (:data:`sgmcmc_paper.book.notebooks.STORED_ONLY_RULE`; said on
its line and in its provenance).
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
        help="at the quick or paper profile without a GPU, train missing runs (paper: about "
        "70 minutes each on 2 cores, 3 hours more for a run with a PGD-attacked window) "
        "instead of a stored-only build",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print the profile each notebook would run at and what the store holds of its "
        "runs; run nothing",
    )
    p.set_defaults(func=handle)


#: The profiles a book build on a CPU never trains (stored-only).
STORED_ONLY_PROFILES = ("quick", "paper")


def _no_gpu(device: str | None) -> bool:
    import torch

    return device == "cpu" or not torch.cuda.is_available()


def _print_plan(profile: str, stored_only: bool, only: str | None) -> None:
    from sgmcmc_paper.book.notebooks import profile_for, profile_reason, select, source_notebooks

    if stored_only:
        print(f"stored-only build at {profile}: nothing at quick or paper is trained", flush=True)
    for path in select(source_notebooks(), only):
        used, found = profile_for(path.stem, profile, stored_only)
        print(f"{path.stem}: {used}{profile_reason(profile, used, found)}", flush=True)


def handle(args) -> int:
    from sgmcmc_paper.book.notebooks import run_notebooks
    from sgmcmc_paper.book.session import PAPER_PROFILE
    from sgmcmc_paper.protocol.profiles import default_profile_name

    profile = args.profile or default_profile_name()
    cpu = not args.train_on_cpu and _no_gpu(args.device)
    if profile == PAPER_PROFILE and cpu and args.fresh:  # days of training on a CPU
        raise UserError(
            "retraining the paper profile needs a GPU (about 40 CPU-minutes per 20-epoch "
            "run, ~200 runs); train it on a GPU (.ci/device/paper_profile.sh, "
            "book/rerun.md), use PROFILE=quick, or pass --train-on-cpu"
        )
    stored_only = profile in STORED_ONLY_PROFILES and cpu and not args.fresh
    if args.dry_run:
        _print_plan(profile, stored_only, args.only)
        return 0
    start = time.perf_counter()
    runs = run_notebooks(
        profile,
        fresh=args.fresh,
        only=args.only,
        device=args.device,
        stored_only=stored_only,
        output_dir=args.out,
        log=lambda line: print(line, flush=True),
    )
    total = time.perf_counter() - start
    used = {run.profile for run in runs}
    print(
        f"{len(runs)} notebook(s) at profile {'/'.join(sorted(used))} in {total:.1f} s", flush=True
    )
    fell_back = [f"{run.name} ({run.profile})" for run in runs if run.profile != profile]
    if fell_back:
        print(
            f"at a smaller profile because the store holds too little of their {profile}-profile "
            f"runs (a stored-only build trains nothing): {', '.join(fell_back)}",
            flush=True,
        )
    return 0
