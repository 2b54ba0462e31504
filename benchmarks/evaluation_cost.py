"""What online evaluation costs a run, against its training time, at a profile's sizes.

    python benchmarks/evaluation_cost.py --profile quick --method fsgd --epochs 1 --device cpu

Runs one configuration through the engine and prints, from the run's own phase timings
(CUDA synchronised), the training time, the time spent on each kind of evaluation, the cost
per evaluated sample, and evaluation as a share of training. Windows are fitted to the run's
length as the profile fits them, so a 1-epoch run evaluates every window in its only epoch.

Measured on two CPU cores: ``quick`` spends about a fifth to a quarter of its training time on
evaluation; at ``paper`` the windows (118 samples on 30,000 images, 50 samples attacked on
10,000) cost a few times the training, seconds on a GPU, and within them the robustness
evaluation of the Table 1 window (PGD-40 against each of its 50 samples and against their
averaged predictive at nine ε, on 1,000 images: about 500 attacks of one sample) about 3 h more
(one PGD-40 attack of the paper's CNN on 1,000 images: 23 s on 2 cores, 43 s on one;
2026-12-05).
"""

from __future__ import annotations

import argparse

from sgmcmc_paper.engine.experiment import run
from sgmcmc_paper.protocol.profiles import PROFILES, get_profile


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="quick", choices=PROFILES)
    parser.add_argument("--method", default="fsgd")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--train-size", type=int, default=None)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    overrides = {}
    if args.epochs is not None:
        overrides["epochs"] = args.epochs
    if args.train_size is not None:
        overrides["train_size"] = args.train_size
    config = get_profile(args.profile).config(args.method, **overrides)
    result = run(config, device=args.device, progress=True)
    t = result.provenance["timing"]
    train = t["train"]
    print(f"\n{config.method} at {args.profile}: {config.epochs} epochs x {config.steps_per_epoch}")
    print(f"steps on {result.provenance['device_name']}")
    print(f"  training         {train:8.2f} s  ({train / config.total_steps * 1e3:.1f} ms/step)")
    rows = [
        ("epoch_eval", "epoch_samples", f"test {len(result.predictions['test/index'])}"),
        ("window_eval", "window_samples", "test + fgsm/ood per window"),
        ("trace", "traced_draws", f"probe {config.probe_size}"),
    ]
    total = 0.0
    for phase, count, what in rows:
        seconds, n = t.get(phase, 0.0), t.get(count, 0)
        total += seconds
        per = f"{seconds / n * 1e3:8.1f} ms each" if n else ""
        print(f"  {phase:<16} {seconds:8.2f} s  {n:4d} x [{what}] {per}  {seconds / train:6.1%}")
    robust = t.get("robustness", 0.0)
    what = f"PGD-{config.pgd_steps} + ε sweep on {config.robustness_size}, within window_eval"
    print(f"  robustness       {robust:8.2f} s       [{what}]  {robust / train:6.1%}")
    print(f"  evaluation total {total:8.2f} s  = {total / train:.1%} of training")
    print(f"  wall             {t['total_s']:8.2f} s (data loading {t.get('load', 0):.2f} s)")


if __name__ == "__main__":
    main()
