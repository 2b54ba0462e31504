"""``sgmcmc notebooks``: execute every notebook of ``notebooks/`` into ``book/notebooks/``.

Runs them in name order through papermill at a profile, one progress line per notebook with
its wall time; the first failure stops with one line naming the notebook and cell (exit 2).
Stored results are reused unless ``--fresh`` (see :mod:`sgmcmc.notebooks`).
"""

from __future__ import annotations

import time
from pathlib import Path

from sgmcmc.errors import UserError


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
        "--out", metavar="DIR", type=Path, help="where executed notebooks go (book/notebooks)"
    )
    p.add_argument(
        "--train-on-cpu",
        action="store_true",
        help="at the paper profile, train missing runs even without a GPU (hours per run)",
    )
    p.set_defaults(func=handle)


def _refuse_paper_training_on_cpu(device: str | None) -> None:
    """The paper profile trains ~60 runs of 20 epochs: minutes on a GPU, days on a CPU."""
    import torch

    from sgmcmc.plan import missing_runs

    if device != "cpu" and torch.cuda.is_available():
        return
    missing = missing_runs("paper")
    if missing:
        raise UserError(
            f"{len(missing)} paper-profile runs are missing from the store and there is no GPU "
            "to train them (about 15 CPU-minutes per 20-epoch run); train them on a GPU "
            "(.ci/device/paper_profile.sh, book/rerun.md), use PROFILE=quick, or pass "
            "--train-on-cpu"
        )


def handle(args) -> int:
    from sgmcmc.notebooks import run_notebooks
    from sgmcmc.profiles import default_profile_name

    profile = args.profile or default_profile_name()
    if profile == "paper" and not args.train_on_cpu:
        _refuse_paper_training_on_cpu(args.device)
    start = time.perf_counter()
    runs = run_notebooks(
        profile,
        fresh=args.fresh,
        only=args.only,
        device=args.device,
        output_dir=args.out,
        log=lambda line: print(line, flush=True),
    )
    total = time.perf_counter() - start
    print(f"{len(runs)} notebook(s) at profile {profile} in {total:.1f} s", flush=True)
    return 0
