"""What a KSGLD step costs against plain ``torch.optim.SGD`` and against its own K-FAC matrix
products alone (the exact-K-FAC floor), measured in the same process.

The paper's CNN, batch 512. Per training step (forward, ``kfac.observe``, backward,
``step()``), each method's median over turns taken in rotation with the others (as
``benchmarks/sampler_overhead.py``, whose methods and helpers this reuses): the median is a
typical step, one with neither a factor update nor an eigendecomposition. The **products** are
what exact K-FAC cannot avoid on every step: per layer, the rotation of the gradient into the
eigenbasis (``Q_Gᵀ·X·Q_A``, when the drift is preconditioned) and of the step back out
(``Q_G·Y·Q_Aᵀ``), timed alone on the KSGLD's own eigenbases with the library's own code
(:meth:`sgmcmc.kfac.Eigenbasis.coordinates` and :meth:`~sgmcmc.kfac.Eigenbasis.matrix`). The
ratios:

- ``x sgd``: the KSGLD step over SGD's;
- ``products x sgd``: the products alone over SGD's step;
- ``x floor``: the KSGLD step over SGD's step plus the products, the least an exact K-FAC
  step could cost here (1.0: nothing but the unavoidable rotations on top of SGD);
- ``extra / products``: what KSGLD adds to SGD's step over the products alone.

Then ``sampler_overhead.print_ksgld_split`` splits the amortized extra cost (factor updates every
``factor_every`` steps, eigendecompositions every ``inverse_every``, preconditioning, noise).

    python benchmarks/ksgld_cost.py --steps 20 [--methods ksgld ksgld-paper] [--threads 1]
    python benchmarks/ksgld_cost.py --mnist --warmup 300 --methods ksgld ksgld-tails

Ratios, not timings, are the result (the project's benchmarks never assert times); on a CPU
other work shares, the turns make load drift affect every method alike.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from sampler_overhead import (
    BATCH,
    METHODS,
    Run,
    print_ksgld_split,
    starting_point,
    synchronize,
)

from sgmcmc import KSGLD
from sgmcmc.diagnostics import step_scales

KSGLD_METHODS = [name for name in METHODS if name.startswith("ksgld")]


def products(optimizer: KSGLD, generator: torch.Generator):
    """A function doing one step's K-FAC matrix products alone, on the optimizer's current
    eigenbases: per layer, the gradient's rotation in when the drift is preconditioned (the
    noise is drawn in eigen-coordinates: with merged tails, the tail draws' projections
    instead), and the rotation out. The elementwise scaling and the draws are not products."""
    kfac, scales = optimizer.kfac, step_scales(optimizer)[0]
    group = optimizer.param_groups[0]
    scale = float(group["num_data"]) if group["convention"] == "langevin" else 1.0
    work = []
    for layer in kfac.layers:
        eigen = kfac.eigenbasis(layer, scale)
        out, inp = layer.weight.shape[0], layer.weight[0].numel() + (layer.bias is not None)
        like = layer.weight
        gradient = torch.randn(out, inp, generator=generator).to(like)
        draws = [torch.randn(shape, generator=generator).to(like) for shape in eigen.noise_shapes()]
        work.append((eigen, gradient, draws))

    def run() -> None:
        for eigen, gradient, draws in work:
            if scales.drift_preconditioned:
                eigen.matrix(eigen.coordinates(gradient))
            else:
                eigen.matrix(eigen.noise_coordinates(draws))

    return run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="timed steps per method")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument(
        "--methods", nargs="+", choices=KSGLD_METHODS, default=["ksgld", "ksgld-paper"]
    )
    parser.add_argument("--mnist", action="store_true", help="real MNIST batches, not random")
    parser.add_argument(
        "--warmup", type=int, default=0, help="SGD steps (with K-FAC estimating) to start from"
    )
    parser.add_argument("--no-split", action="store_true", help="skip the amortized split")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    initial, pool, kfac_state, generator = starting_point(args, device)

    names = ["sgd", *args.methods]
    runs = {name: Run(METHODS[name], initial, device, kfac_state) for name in names}
    for run in runs.values():
        run.seconds_per_step(pool[:2], device)  # warm-up: the first observe eigendecomposes
    floors = {name: products(runs[name].optimizer, generator) for name in args.methods}
    seconds: dict[str, list[float]] = {name: [] for name in names}
    product_seconds: dict[str, list[float]] = {name: [] for name in args.methods}
    turns = [*names, *(f"{name}:products" for name in args.methods)]
    for step in range(args.steps):
        batch = pool[step % len(pool)]
        shift = step % len(turns)
        for turn in turns[shift:] + turns[:shift]:
            if turn.endswith(":products"):
                name = turn.partition(":")[0]
                synchronize(device)
                start = time.perf_counter()
                floors[name]()
                synchronize(device)
                product_seconds[name].append(time.perf_counter() - start)
            else:
                seconds[turn].append(runs[turn].seconds_per_step([batch], device))

    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(
        f"device {device_name}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"batch {BATCH}, {args.steps} steps per method in rotation (median)"
    )
    sgd = statistics.median(seconds["sgd"])
    print(f"sgd step {sgd * 1e3:.1f} ms")
    header = (
        f"{'method':<18} {'step ms':>9} {'x sgd':>7} {'products ms':>12} {'products x sgd':>15} "
        f"{'x floor':>8} {'extra / products':>17}"
    )
    print(header)
    for name in args.methods:
        step = statistics.median(seconds[name])
        product = statistics.median(product_seconds[name])
        print(
            f"{name:<18} {step * 1e3:>9.1f} {step / sgd:>7.3f} {product * 1e3:>12.1f} "
            f"{product / sgd:>15.3f} {step / (sgd + product):>8.3f} "
            f"{(step - sgd) / product:>17.3f}"
        )
    if not args.no_split:
        for name in args.methods:
            print_ksgld_split(name, initial, pool[0], device, sgd * 1e3, kfac_state)


if __name__ == "__main__":
    main()
