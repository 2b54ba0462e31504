"""Why KSGLD collapses and diverges on MNIST: its stability quantities along a short run.

Trains the paper's CNN on MNIST (batch 512) with KSGLD in one of the configurations below and a
:class:`sgmcmc_paper.analysis.stability.StabilityTracker` measuring, every ``--every`` steps on
the first ``--examples`` images of the current batch: the drift's stability number
(``c·λmax(P^a·H)``, stable below 2), the K-FAC factor spectra and the staleness of their
inverse, and each layer's spread ``‖θ_t − θ_0‖`` against the random walk of the injected noise
alone. Prints a summary per measurement and writes the tidy frame to ``--out`` (CSV).

    python benchmarks/ksgld_diagnosis.py --config described --steps 300 --every 50
    python benchmarks/ksgld_diagnosis.py --config eq1 --steps 300 --every 100
    python benchmarks/ksgld_diagnosis.py --config eq1-prior --steps 300 --every 100

Configurations (K-FAC as the run engine builds it: sampled Fisher, decay 0.95, factors every
10 steps, inverse every 100, factors from the identity, at most 4096 rows per update):

- ``described``: the paper as described, convention ``"paper"``: ``θ ← θ − (lr/2)·g +
  lr²·(F̃ + δI)⁻¹·ξ``, lr 0.02, damping 1e-3 split between the factors (``"factored"``), TF
  initialisation. Its drift is not preconditioned, so ``sharpness`` is ``(lr/2)·λmax(H)``;
  what is preconditioned is the noise, whose per-step standard deviation reaches ``lr²/δ``
  along directions the factors do not see (``noise_step_max``).
- ``eq1``: convention ``"langevin"``, eq. 1 (``precondition="both"``), lr 1e-3, prior std 1,
  damping 1e-3 (``"exact"``), as the stored runs that diverged: ``P = (N·F̃ + 10⁻³·I)⁻¹``.
- ``eq1-prior``: the same with damping 1 = the prior's precision, as the sampler's design
  intends (``P`` the inverse Hessian of the potential wherever the Fisher is Kronecker-factored).

``--temperature`` sets ``T`` (default 1; the stored eq. 1 runs that diverged on every seed
had ``T = 0.01``). ``--factor-init first_batch`` starts the factors from the first batch
instead of the identity: the regime a long run reaches once the identity's share,
``0.95^updates``, has faded (around step 700 with an update every 10 steps), from step 0.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F

from sgmcmc import KFAC, KSGLD, potential
from sgmcmc_paper.analysis.stability import StabilityTracker
from sgmcmc_paper.data import load_mnist
from sgmcmc_paper.protocol.models import PaperCNN

BATCH, NUM_DATA, PRIOR_STD = 512, 60_000, 1.0

CONFIGS = {
    "described": dict(
        convention="paper", precondition=None, lr=0.02, damping=1e-3, damping_mode="factored"
    ),
    "described-exact": dict(
        convention="paper", precondition=None, lr=0.02, damping=1e-3, damping_mode="exact"
    ),
    "eq1": dict(
        convention="langevin", precondition="both", lr=1e-3, damping=1e-3, damping_mode="exact"
    ),
    "eq1-prior": dict(
        convention="langevin", precondition="both", lr=1e-3, damping=1.0, damping_mode="exact"
    ),
}

#: What the summary prints: whole-model quantities, then per layer.
MODEL_COLUMNS = ["loss", "sharpness", "sharpness_preconditioned", "sharpness_lowest"]
LAYER_COLUMNS = [
    "a_min",
    "a_max",
    "g_min",
    "g_max",
    "damped_min",
    "steps_since_inverse",
    "factor_change",
    "noise_step_max",
    "norm",
    "spread",
    "noise_spread",
    "unconstrained_fraction",
    "unconstrained_rms",
    "unconstrained_noise_rms",
]


def batches(generator: torch.Generator, train_size: int = NUM_DATA):
    """Shuffled batches of 512 of the first ``train_size`` MNIST training images, epoch after
    epoch (pixels / 255)."""
    images, labels, _, _ = load_mnist()
    x = torch.as_tensor(images[:train_size]).float().div_(255.0).unsqueeze(1)
    y = torch.as_tensor(labels[:train_size])
    while True:
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x) - BATCH + 1, BATCH):
            index = order[start : start + BATCH]
            yield x[index], y[index]


def build(
    config: dict,
    temperature: float,
    seed: int,
    factor_init: str = "identity",
    num_data: int = NUM_DATA,
    damping: float | None = None,
):
    model = PaperCNN(init="tf", generator=torch.Generator().manual_seed(seed))
    kfac = KFAC(
        model,
        damping=config["damping"] if damping is None else damping,
        damping_mode=config["damping_mode"],
        factor_init=factor_init,
        max_rows=4096,
        generator=torch.Generator().manual_seed(seed + 1),
    )
    langevin = config["convention"] == "langevin"
    sampler = KSGLD(
        model.parameters(),
        lr=config["lr"],
        kfac=kfac,
        num_data=num_data if langevin else None,
        convention=config["convention"],
        precondition=config["precondition"],
        temperature=temperature,
        generator=torch.Generator().manual_seed(seed + 2),
    )

    def loss(model, x, y):
        mean = F.cross_entropy(model(x), y)
        return potential(mean, num_data, model.parameters(), PRIOR_STD) if langevin else mean

    return model, kfac, sampler, loss


def summary(frame: pd.DataFrame, step: int) -> str:
    rows = frame[frame.step == step]
    whole = rows[rows.layer == "model"].set_index("quantity").value
    parts = [f"step {step}:"]
    parts += [f"{q}={whole[q]:.4g}" for q in MODEL_COLUMNS if q in whole.index]
    lines = [" ".join(parts)]
    table = rows[rows.layer != "model"].pivot(index="layer", columns="quantity", values="value")
    columns = [c for c in LAYER_COLUMNS if c in table.columns]
    lines.append(table[columns].to_string(float_format=lambda v: f"{v:.3g}"))
    return "\n".join(lines)


def save(tracker: StabilityTracker, train_losses: list[float], out: Path) -> pd.DataFrame:
    """The tracker's frame with every step's training loss (mean cross-entropy), as CSV."""
    losses = pd.DataFrame(
        {"step": range(len(train_losses)), "layer": "model", "quantity": "train_loss"}
    )
    losses["value"] = train_losses
    frame = pd.concat([tracker.frame(), losses], ignore_index=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(out, index=False)
    return frame


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", choices=list(CONFIGS), default="described")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--every", type=int, default=50, help="measure every this many steps")
    parser.add_argument("--examples", type=int, default=128, help="images per sharpness batch")
    parser.add_argument("--iterations", type=int, default=15, help="Lanczos steps at most")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--train-size",
        type=int,
        default=NUM_DATA,
        help="train on the first this many images (N of the potential): a reduced-scale run",
    )
    parser.add_argument("--damping", type=float, help="override the configuration's damping")
    parser.add_argument(
        "--factor-init",
        choices=["identity", "first_batch"],
        default="identity",
        help="first_batch: no identity left in the factors, the regime a long run reaches "
        "once ema_decay^updates has faded (from step 0)",
    )
    parser.add_argument(
        "--also-preconditioned",
        action="store_true",
        help="paper convention: also (lr/2)·λmax(P·H) (costly: four rotations per Lanczos step)",
    )
    parser.add_argument("--out", type=Path, help="CSV of the tidy frame (default: results/…)")
    args = parser.parse_args(argv)
    config = CONFIGS[args.config]
    stem = f"ksgld_{args.config}_T{args.temperature:g}_{args.factor_init}_n{args.train_size}"
    if args.damping is not None:
        stem += f"_d{args.damping:g}"
    out = args.out or Path("results/diagnosis") / f"{stem}.csv"

    model, kfac, sampler, loss = build(
        config, args.temperature, args.seed, args.factor_init, args.train_size, args.damping
    )
    tracker = StabilityTracker(
        model,
        sampler,
        loss,
        every=args.every,
        examples=args.examples,
        max_iterations=args.iterations,
        also_preconditioned=args.also_preconditioned,
    )
    print(
        f"KSGLD {args.config}: {config}, T={args.temperature}, factor_init="
        f"{args.factor_init!r}, {args.steps} steps, torch "
        f"{torch.__version__}, {torch.get_num_threads()} threads"
    )
    data = batches(torch.Generator().manual_seed(args.seed + 3), args.train_size)
    train_losses, start, diverged = [], time.perf_counter(), None
    measuring = 0.0
    for step in range(args.steps):
        x, y = next(data)
        sampler.zero_grad(set_to_none=True)
        output = model(x)
        try:
            kfac.observe(output)
        except RuntimeError as error:  # non-finite factors: the model diverged
            diverged = (step, str(error).split(":")[0])
            break
        mean = F.cross_entropy(output, y)
        objective = loss(model, x, y) if config["convention"] == "langevin" else mean
        objective.backward()
        sampler.step()
        train_losses.append(mean.item())
        began = time.perf_counter()
        tracker.after_step(step, x, y)
        if step % args.every == 0:
            measuring += time.perf_counter() - began
            print(summary(tracker.frame(), step), flush=True)
            recent = train_losses[-args.every :]
            mean_recent = sum(recent) / len(recent)
            print(f"  mean train loss over the last {len(recent)} steps: {mean_recent:.4g}")
            save(tracker, train_losses, out)  # so far: the run may be stopped at any time
        if not math.isfinite(train_losses[-1]):
            diverged = (step, "non-finite loss")
            tracker.measure(step, x, y)
            break
    wall = time.perf_counter() - start
    frame = save(tracker, train_losses, out)
    print(
        f"{len(train_losses)} steps in {wall:.0f} s ({measuring:.0f} s measuring); "
        f"diverged: {diverged}; frame ({len(frame)} rows) written to {out}"
    )


if __name__ == "__main__":
    main()
