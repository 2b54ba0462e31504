"""What Ray costs the sweep: start-up, and per trial against calling the run directly.

Prints (1) the time to start (and stop) a local Ray instance; (2) a Ray Tune experiment's fixed
cost and per-trial cost, from experiments of 1 and ``K`` no-op trials (best of two, after a
first experiment that imports Tune); (3) the same ``K`` real
runs (ci profile, 512 training images, one epoch: the cheapest real trial) called directly
in this process and then as Ray Tune trials on a fresh store, with the ratio.

    python benchmarks/sweep_overhead.py [--trials K]

A process's first trial also pays one-time costs (lazy imports, the dataset cache, kernel
selection, a CUDA context), so ``sgmcmc_paper.sweep.trial`` makes one tiny unstored run first.
Measured once: three identical ci runs in a fresh process took 9.6, 6.1 and 6.2 s without it,
and 9.1, 10.0 and 8.6 s with it (on a busier machine).
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time

from sgmcmc_paper.paths import data_dir
from sgmcmc_paper.sweep.engines import RayOptions, ray_session, run_on_ray, run_serial
from sgmcmc_paper.sweep.grids import Axis, Grid
from sgmcmc_paper.sweep.plan import Plan
from sgmcmc_paper.sweep.trial import RunTrial
from sgmcmc_paper.sweep.walk import Walk


def noop(fields: dict) -> dict:
    return {"status": "ok", "val_accuracy": 0.5, "compute_s": 1e-3}


def grid(k: int) -> Grid:
    return Grid("sgld", "paper", (Axis("lr", tuple(0.001 * (i + 1) for i in range(k)), 0.001),))


def timed(function, *args) -> float:
    start = time.perf_counter()
    function(*args)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=6)
    k = parser.parse_args().trials
    options = RayOptions()
    import ray

    start = time.perf_counter()
    ray.init(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    init_s = time.perf_counter() - start
    print(f"Ray start-up (local, {ray.cluster_resources().get('CPU', 0):g} CPUs): {init_s:.1f} s")
    with ray_session(options):
        first = timed(run_on_ray, Plan([Walk(grid(1))]), noop, options)
        one = min(timed(run_on_ray, Plan([Walk(grid(1))]), noop, options) for _ in range(2))
        many = min(timed(run_on_ray, Plan([Walk(grid(k))]), noop, options) for _ in range(2))
        per_trial = (many - one) / (k - 1)
        print(
            f"Tune experiment of no-op trials: first one in the process {first:.1f} s; then "
            f"{one - per_trial:.1f} s fixed + {per_trial:.2f} s per trial "
            f"({k} trials: {many:.1f} s)"
        )
        with tempfile.TemporaryDirectory() as root:
            fields = {"train_size": 512}
            direct = RunTrial("ci", os.path.join(root, "direct"), str(data_dir()), device="cpu")
            viaray = RunTrial("ci", os.path.join(root, "ray"), str(data_dir()), device="cpu")
            serial_s = timed(run_serial, Plan([Walk(grid(k), fixed=fields)]), direct)
            ray_s = timed(run_on_ray, Plan([Walk(grid(k), fixed=fields)]), viaray, options)
        print(
            f"{k} real ci runs (512 images, 1 epoch): direct {serial_s:.1f} s, as Ray Tune "
            f"trials {ray_s:.1f} s: +{(ray_s - serial_s) / k:.2f} s per trial "
            f"(x{ray_s / serial_s:.2f})"
        )
    start = time.perf_counter()
    ray.shutdown()
    print(f"Ray shutdown: {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
