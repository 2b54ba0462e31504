"""Rerun one stored run made on a GPU on this machine's CPU and compare the two, against the
spread over seeds of the same config (issue: GPU and CPU results agree within seed noise).

    PYTHONPATH=src python .ci/device/cpu_check.py --profile paper --method fsgd --seed 0

The CPU copy goes to a scratch store (``<store>/cpu-check/``, not the profile's), with a
checkpoint, so a run cut short (a 20-epoch paper run is about an hour on 2 cores) resumes when
the command is repeated. Prints, per summary metric (``tables.run_summary``): the stored
value, the CPU value, their difference, and the range of the stored seeds; a difference
inside the seeds' range counts as agreement.
"""

from __future__ import annotations

import argparse

from sgmcmc_paper.analysis import tables
from sgmcmc_paper.engine.store import find_result, run_or_load
from sgmcmc_paper.paths import results_dir
from sgmcmc_paper.protocol import plan
from sgmcmc_paper.protocol.profiles import get_profile

SCRATCH = "cpu-check"
METRICS = ("accuracy", "nll", "ece", "mess", "fgsm accuracy", "notMNIST AUROC")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="paper")
    parser.add_argument("--method", default="fsgd")
    parser.add_argument("--configuration", default="as released")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    seeds = get_profile(args.profile).seeds
    configs = {
        k: c
        for k, c in plan.main_configs(args.profile, seeds).items()
        if k[0] == args.configuration and k[1] == args.method
    }
    stored = {k: find_result(c) for k, c in configs.items()}
    if any(r is None for r in stored.values()):
        raise SystemExit(f"the store lacks some seeds of {args.configuration} {args.method}")
    key = (args.configuration, args.method, args.seed)
    made_on = stored[key].provenance.get("device_name", "?")
    print(f"stored run {configs[key].key()} made on {made_on}; rerunning on the CPU", flush=True)
    cpu = run_or_load(configs[key], device="cpu", root=results_dir() / SCRATCH)
    summary = tables.run_summary({**stored, ("cpu", args.method, args.seed): cpu}).set_index(
        "label"
    )
    seeds_frame = summary.loc[[args.configuration]]
    rows = []
    for metric in METRICS:
        if metric not in summary:
            continue
        gpu_value = float(seeds_frame[seeds_frame.seed == args.seed][metric].iloc[0])
        cpu_value = float(summary.loc["cpu", metric])
        low, high = float(seeds_frame[metric].min()), float(seeds_frame[metric].max())
        agrees = low <= cpu_value <= high or abs(cpu_value - gpu_value) <= high - low
        rows.append(
            f"{metric:>15}  stored {gpu_value:.4f}  cpu {cpu_value:.4f}  "
            f"diff {cpu_value - gpu_value:+.4f}  seeds {low:.4f}..{high:.4f} "
            f"(width {high - low:.4f})  {'agrees' if agrees else 'DIFFERS'}"
        )
    print("\n".join(rows))
    print(
        f"cpu run: {cpu.provenance.get('device_name')}, {cpu.provenance['timing']['total_s']:.0f} s"
    )


if __name__ == "__main__":
    main()
