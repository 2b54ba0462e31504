"""Train every run the notebooks need at one profile, with several worker processes sharing one
GPU (the paper's CNN at batch 512 is launch-bound, so one process leaves most of a GPU idle).

    PYTHONPATH=src python .ci/device/precompute.py --profile paper --workers 8 --device cuda

The runs are :func:`sgmcmc_paper.protocol.plan.notebook_configs`; whatever it misses, the notebooks
train themselves. Runs go through ``run_or_load``, whose
per-key lock makes each config train once however many workers ask for it. This script
needs neither papermill nor Ray, so it runs on the bare GPU image (torch, numpy, pandas,
xarray, scipy) with ``PYTHONPATH=src``.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time
from pathlib import Path

from sgmcmc.samplers.base import CONVENTIONS
from sgmcmc_paper.engine.store import find_result, run_or_load
from sgmcmc_paper.protocol.plan import notebook_configs


def _configs(
    profile: str,
    released_only: bool,
    train_sizes: tuple[int, ...] | None,
    notebooks: tuple[str, ...] | None = None,
    convention: str | None = None,
    keys: frozenset[str] | None = None,
) -> list:
    configs = _all_configs(profile, released_only)
    if keys is not None:
        configs = [c for c in configs if c.key() in keys]
    if convention is not None:
        configs = [c for c in configs if c.convention == convention]
    if train_sizes is not None:
        configs = [c for c in configs if c.train_size in train_sizes]
    if notebooks is not None:
        wanted = {c.key() for stem in notebooks for c in notebook_configs(profile, stem)}
        configs = [c for c in configs if c.key() in wanted]
    return configs


def _all_configs(profile: str, released_only: bool) -> list:
    if not released_only:
        return notebook_configs(profile)
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


def _worker(
    rank: int,
    workers: int,
    profile: str,
    device: str,
    deadline: float,
    released_only: bool,
    train_sizes: tuple[int, ...] | None,
    notebooks: tuple[str, ...] | None,
    convention: str | None,
    keys: frozenset[str] | None,
) -> None:
    configs = _configs(profile, released_only, train_sizes, notebooks, convention, keys)
    # Rotate the order so that workers start on different runs; the store's lock does the rest.
    order = configs[rank::workers] + [c for i, c in enumerate(configs) if i % workers != rank]
    for config in order:
        if time.time() > deadline:
            print(f"worker {rank}: deadline reached", flush=True)
            return
        started = time.time()
        result = run_or_load(config, device=device, progress=False)
        took = time.time() - started
        if took > 1:
            print(
                f"worker {rank}: {config.method} {config.key()[:10]} {took:.1f}s "
                f"{'diverged' if result.diverged else 'ok'}",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="paper")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--seconds", type=float, default=1e9, help="stop starting runs after")
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
    keys = frozenset(Path(args.keys).read_text().split()) if args.keys else None
    train_sizes = tuple(args.train_size) if args.train_size else None
    notebooks = tuple(args.notebook) if args.notebook else None
    configs = _configs(
        args.profile, args.released_only, train_sizes, notebooks, args.convention, keys
    )
    print(f"{len(configs)} configs for profile {args.profile}", flush=True)
    if args.write_missing:
        missing = [c.key() for c in configs if find_result(c) is None]
        Path(args.write_missing).write_text("".join(f"{k}\n" for k in missing))
        print(f"{len(missing)} missing, keys written to {args.write_missing}")
        return
    if args.list:
        for c in configs:
            print(c.key()[:10], c.method, c.convention, c.train_size, c.epochs, c.seed)
        return
    deadline = time.time() + args.seconds
    ctx = mp.get_context("spawn")
    procs = [
        ctx.Process(
            target=_worker,
            args=(
                r,
                args.workers,
                args.profile,
                args.device,
                deadline,
                args.released_only,
                train_sizes,
                notebooks,
                args.convention,
                keys,
            ),
        )
        for r in range(args.workers)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join()


if __name__ == "__main__":
    main()
