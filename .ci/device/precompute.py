"""Train every run the notebooks need at one profile, with several worker processes sharing one
GPU (the paper's CNN at batch 512 is launch-bound, so one process leaves most of a GPU idle).

    PYTHONPATH=src python .ci/device/precompute.py --profile paper --workers 8 --device cuda

It mirrors the notebooks' configs (tables.reproduction_configs, tables.langevin_configs);
whatever it misses, the notebooks train themselves. Runs go through ``run_or_load``, whose
per-key lock makes each config train once however many workers ask for it. This script
needs neither papermill nor Ray, so it runs on the bare GPU image (torch, numpy, pandas,
xarray, scipy) with ``PYTHONPATH=src``.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time

from sgmcmc import tables
from sgmcmc.hparams import tuned_overrides
from sgmcmc.profiles import get_profile
from sgmcmc.store import run_or_load


def notebook_configs(profile_name: str) -> list:
    """The configs of notebooks 01-07, most needed first (Figs. 1, 2, 4, Table 1)."""
    profile = get_profile(profile_name)
    seeds = profile.seeds
    configs = dict(tables.reproduction_configs(profile.name, seeds))
    for size in profile.small_train_sizes:
        small = tables.reproduction_configs(
            profile.name, seeds, train_size=size, epochs=profile.small_epochs
        )
        configs.update({(f"{k[0]} {size}", *k[1:]): c for k, c in small.items()})
    for precondition, label in (("both", "eq. 1"), ("noise", "eq. 2")):
        methods = ["sgld", "psgld", "ksgld"] if precondition == "both" else ["psgld", "ksgld"]
        configs.update(
            tables.langevin_configs(profile.name, seeds, methods, label, precondition=precondition)
        )
    langevin = ["sgld", "psgld", "ksgld"]
    configs.update(
        tables.langevin_configs(profile.name, seeds, langevin, "langevin T=1", temperature=1.0)
    )
    for method in langevin:
        selected = tuned_overrides(profile.hparams, method, "langevin", profile.train_size) or {}
        configs.update(
            tables.langevin_configs(
                profile.name,
                seeds,
                [method],
                "langevin cold",
                temperature=selected.get("temperature", 0.01),
            )
        )
    unique = {c.key(): c for c in configs.values()}
    return list(unique.values())


def _worker(rank: int, workers: int, profile: str, device: str, deadline: float) -> None:
    configs = notebook_configs(profile)
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
    args = parser.parse_args()
    configs = notebook_configs(args.profile)
    print(f"{len(configs)} configs for profile {args.profile}", flush=True)
    if args.list:
        for c in configs:
            print(c.key()[:10], c.method, c.convention, c.train_size, c.epochs, c.seed)
        return
    deadline = time.time() + args.seconds
    ctx = mp.get_context("spawn")
    procs = [
        ctx.Process(target=_worker, args=(r, args.workers, args.profile, args.device, deadline))
        for r in range(args.workers)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join()


if __name__ == "__main__":
    main()
