"""Train every run the notebooks need at one profile, with several worker processes sharing one
GPU (the paper's CNN at batch 512 is launch-bound, so one process leaves most of a GPU idle).

    PYTHONPATH=src python .ci/device/precompute.py --profile paper --workers 8 --device cuda

A thin wrapper of ``sgmcmc fill`` for the bare GPU image (torch, numpy, pandas, xarray, scipy;
no Ray, papermill or ArviZ), run with ``PYTHONPATH=src``: the runs are
:func:`sgmcmc_paper.engine.fill.select_configs` (those of
:func:`sgmcmc_paper.protocol.plan.notebook_configs`, filtered as below), and
:func:`sgmcmc_paper.engine.fill.fill_store` trains the missing ones with the ``processes``
engine (``--workers`` local processes; ``serial`` with one), each key once, a killed worker's
run resumed from its checkpoint. ``sgmcmc fill --engine processes --workers N`` is the same.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sgmcmc.samplers.base import CONVENTIONS
from sgmcmc_paper.engine.fill import describe, fill_store, select_configs, survey


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="paper")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--seconds", type=float, default=None, help="stop starting runs after")
    parser.add_argument("--list", action="store_true", help="print the configs and exit")
    parser.add_argument(
        "--released-only",
        action="store_true",
        help="only the 'as released' runs (main and smallMNIST; they need no sweep)",
    )
    parser.add_argument(
        "--train-size",
        type=int,
        nargs="+",
        metavar="N",
        help="only the runs on these training-set sizes (e.g. smallMNIST's 5000 3000)",
    )
    parser.add_argument(
        "--notebook",
        nargs="+",
        metavar="STEM",
        help="only the runs of these notebooks (file stems, e.g. 01_test_accuracy)",
    )
    parser.add_argument(
        "--convention",
        choices=CONVENTIONS,
        help="only the runs in this convention (e.g. langevin: the chains of notebooks 06 and 07)",
    )
    parser.add_argument(
        "--keys",
        metavar="FILE",
        help="only the configs whose keys this file lists, one a line (e.g. the runs a local "
        "store lacks, written by --write-missing on that machine)",
    )
    parser.add_argument(
        "--write-missing",
        metavar="FILE",
        help="write the keys of the selected configs that this store lacks to FILE and exit",
    )
    args = parser.parse_args()
    configs = select_configs(
        args.profile,
        args.notebook,
        convention=args.convention,
        train_sizes=args.train_size,
        keys=Path(args.keys).read_text().split() if args.keys else None,
        released_only=args.released_only,
    )
    print(f"{len(configs)} configs for profile {args.profile}", flush=True)
    if args.write_missing:
        missing = [c.key() for c in survey(configs).missing]
        Path(args.write_missing).write_text("".join(f"{k}\n" for k in missing))
        print(f"{len(missing)} missing, keys written to {args.write_missing}")
        return 0
    if args.list:
        for config in configs:
            print(describe(config))
        return 0
    report = fill_store(
        configs,
        engine="processes" if args.workers > 1 else "serial",
        workers=args.workers,
        device=args.device,
        time_limit=args.seconds,
        log=lambda line: print(line, flush=True),
    )
    print(report.summary(), flush=True)
    for config, reason in report.failed:
        print(f"failed: {describe(config)}: {reason}", flush=True)
    return 0 if not report.failed else 1


if __name__ == "__main__":
    sys.exit(main())
