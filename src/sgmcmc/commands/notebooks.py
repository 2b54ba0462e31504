"""``sgmcmc notebooks``: execute every notebook of ``notebooks/`` into ``book/notebooks/``.

Runs them in name order through papermill at a profile, one progress line per notebook with
its wall time; the first failure stops with one line naming the notebook and cell (exit 2).
Stored results are reused unless ``--fresh`` (see :mod:`sgmcmc.notebooks`).
"""

from __future__ import annotations

import time
from pathlib import Path


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
    p.set_defaults(func=handle)


def handle(args) -> int:
    from sgmcmc.notebooks import run_notebooks
    from sgmcmc.profiles import default_profile_name

    profile = args.profile or default_profile_name()
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
