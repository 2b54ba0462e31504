"""Seconds per epoch of each sampler against plain ``torch.optim.SGD`` on the paper's CNN.

Batch 512 of synthetic MNIST-shaped data already on the device (no dataset needed); an epoch is
118 steps (60,000 / 512). Every method trains its own copy of the same initial model in the
same process; the methods take turns, ``--block`` steps each (1 on a CPU, 10 on a GPU), and each
reports its median time per step over its turns, so drifting machine load affects all of them
alike. The last columns time ``optimizer.step()`` alone (fixed gradients), the overhead
itself, and count the tensor operations one ``step()`` dispatches on the calling thread (views
excluded): on a GPU each is at least one kernel launch, which is what a launch-bound step pays
for (on a CPU, the noise streams' helper threads are not counted). Target:
SGLD and pSGLD ≤ 1.05× SGD.

    python benchmarks/sampler_overhead.py --steps 20 [--device cuda] [--threads 1]
    python benchmarks/sampler_overhead.py --mnist --warmup 300 --methods ksgld ksgld-tails

``--mnist --warmup N`` trains N SGD steps on real MNIST while a K-FAC estimates the factors,
and every method starts from those weights and factors: merged eigenvalue tails
(``*-tails``, ``KFAC(eigen_rtol=...)``) depend on the factors' spectra, which random pixels
do not have.

On a CPU that other work shares, ``--threads 1`` avoids the stalls two-thread kernels suffer
when the machine is oversubscribed.

``*-fused`` methods pass ``fused=True`` (:mod:`sgmcmc.samplers.fused`): their first step, in the
warm-up, compiles the update. ``*-graph`` methods add ``cuda_graph=True``
(:mod:`sgmcmc.samplers.graphed`): a warm-up step captures the compiled update as a CUDA graph; they
need ``--device cuda``. To add a sampler, add one entry to ``METHODS``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from sgmcmc import KFAC, KSGLD, PSGLD, SGLD, potential
from sgmcmc_paper.protocol.models import PaperCNN

BATCH, NUM_DATA, EPOCH_STEPS = 512, 60_000, 118
TAILS_RTOL = 0.05


@dataclass(frozen=True)
class Method:
    """How to build the optimizer for a model, and which loss it backpropagates: the mean
    batch loss (SGD, paper convention), the potential U with its prior (langevin convention),
    or U without the prior, which the optimizer then adds as weight decay ("likelihood")."""

    make: Callable[[nn.Module, torch.Generator], torch.optim.Optimizer]
    loss: str  # "mean", "potential" or "likelihood"


def ksgld_method(convention: str, eigen_rtol: float = 0.0) -> Method:
    """KSGLD with a damping-1 K-FAC: langevin (lr 0.01/N on the potential) or paper (lr 0.02 on
    the mean loss; damping 1e-3 diverges there)."""
    langevin = convention == "langevin"

    def make(model: nn.Module, g: torch.Generator) -> torch.optim.Optimizer:
        kfac = KFAC(model, damping=1.0, eigen_rtol=eigen_rtol, generator=g)
        return KSGLD(
            model.parameters(),
            lr=0.01 / NUM_DATA if langevin else 0.02,
            kfac=kfac,
            num_data=NUM_DATA if langevin else None,
            convention=convention,
            generator=g,
        )

    return Method(make, "potential" if langevin else "mean")


METHODS: dict[str, Method] = {
    "sgd": Method(lambda model, _: torch.optim.SGD(model.parameters(), lr=0.01), "mean"),
    "sgld": Method(
        lambda model, g: SGLD(model.parameters(), lr=0.01 / NUM_DATA, generator=g), "potential"
    ),
    "sgld-wd": Method(
        lambda model, g: SGLD(
            model.parameters(), lr=0.01 / NUM_DATA, weight_decay=1.0, generator=g
        ),
        "likelihood",
    ),
    "sgld-paper": Method(
        lambda model, g: SGLD(model.parameters(), lr=0.02, convention="paper", generator=g),
        "mean",
    ),
    "psgld": Method(lambda model, g: PSGLD(model.parameters(), lr=1e-5, generator=g), "potential"),
    "psgld-wd": Method(
        lambda model, g: PSGLD(model.parameters(), lr=1e-5, weight_decay=1.0, generator=g),
        "likelihood",
    ),
    "psgld-paper": Method(
        lambda model, g: PSGLD(model.parameters(), lr=0.02, convention="paper", generator=g),
        "mean",
    ),
    # fused=True: the update compiled into one function (sgmcmc.samplers.fused); compiles at
    # warm-up.
    "sgld-fused": Method(
        lambda model, g: SGLD(model.parameters(), lr=0.01 / NUM_DATA, generator=g, fused=True),
        "potential",
    ),
    "psgld-fused": Method(
        lambda model, g: PSGLD(model.parameters(), lr=1e-5, generator=g, fused=True),
        "potential",
    ),
    "psgld-wd-fused": Method(
        lambda model, g: PSGLD(
            model.parameters(), lr=1e-5, weight_decay=1.0, generator=g, fused=True
        ),
        "likelihood",
    ),
    "psgld-paper-fused": Method(
        lambda model, g: PSGLD(
            model.parameters(), lr=0.02, convention="paper", generator=g, fused=True
        ),
        "mean",
    ),
    # cuda_graph=True: the fused update replayed as a CUDA graph (sgmcmc.samplers.graphed); GPU
    # only.
    "sgld-wd-graph": Method(
        lambda model, g: SGLD(
            model.parameters(),
            lr=0.01 / NUM_DATA,
            weight_decay=1.0,
            generator=g,
            fused=True,
            cuda_graph=True,
        ),
        "likelihood",
    ),
    "psgld-graph": Method(
        lambda model, g: PSGLD(
            model.parameters(), lr=1e-5, generator=g, fused=True, cuda_graph=True
        ),
        "potential",
    ),
    "psgld-wd-graph": Method(
        lambda model, g: PSGLD(
            model.parameters(),
            lr=1e-5,
            weight_decay=1.0,
            generator=g,
            fused=True,
            cuda_graph=True,
        ),
        "likelihood",
    ),
    # KSGLD with KFAC's default schedule (factor_every, inverse_every, max_rows); prior_std 1.
    # The rates keep 3 x 118 steps on random labels finite; timing does not depend on them.
    # "-tails": merged eigenvalue tails (KFAC(eigen_rtol=...)); pass --mnist --warmup so that
    # the factors have the spectra of a real run rather than of random pixels.
    "ksgld": ksgld_method("langevin"),
    "ksgld-paper": ksgld_method("paper"),
    "ksgld-tails": ksgld_method("langevin", eigen_rtol=TAILS_RTOL),
    "ksgld-paper-tails": ksgld_method("paper", eigen_rtol=TAILS_RTOL),
}


class Run:
    """One method training its own copy of the initial model."""

    def __init__(
        self, method: Method, initial: dict, device: torch.device, kfac_state: dict | None = None
    ) -> None:
        self.method = method
        self.model = PaperCNN().to(device)
        self.model.load_state_dict(initial)
        self.optimizer = method.make(self.model, torch.Generator(device=device).manual_seed(0))
        if kfac_state is not None and isinstance(self.optimizer, KSGLD):
            self.optimizer.kfac.load_state_dict(kfac_state)

    def step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        logits = self.model(x)
        if isinstance(self.optimizer, KSGLD):
            self.optimizer.kfac.observe(logits)  # the one extra line K-FAC asks of a step
        loss = F.cross_entropy(logits, y)
        if self.method.loss != "mean":
            prior_std = 1.0 if self.method.loss == "potential" else None
            loss = potential(loss, NUM_DATA, self.model.parameters(), prior_std=prior_std)
        loss.backward()
        self.optimizer.step()

    def seconds_per_step(self, batches: list, device: torch.device) -> float:
        synchronize(device)
        start = time.perf_counter()
        for x, y in batches:
            self.step(x, y)
        synchronize(device)
        return (time.perf_counter() - start) / len(batches)


def optimizer_with_fixed_gradients(
    method: Method, initial: dict, device: torch.device, kfac_state: dict | None
) -> torch.optim.Optimizer:
    """The method's optimizer on a fresh model with fixed gradients, after one ``step()``."""
    model = PaperCNN().to(device)
    model.load_state_dict(initial)
    optimizer = method.make(model, torch.Generator(device=device).manual_seed(0))
    if isinstance(optimizer, KSGLD):  # a real eigenbasis: the warm one, or the first observe's
        if kfac_state is not None:
            optimizer.kfac.load_state_dict(kfac_state)
        else:
            optimizer.kfac.observe(model(torch.rand(BATCH, 1, 28, 28, device=device)))
    for p in model.parameters():
        p.grad = torch.randn_like(p) * 1e-3
    optimizer.step()
    return optimizer


class _OperationCount(TorchDispatchMode):
    """Counts the tensor operations this thread dispatches inside the context, views excluded."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if not func.is_view and func.namespace == "aten":
            self.count += 1
        return func(*args, **(kwargs or {}))


def step_cost(
    method: Method, initial: dict, device: torch.device, calls: int, kfac_state: dict | None
) -> tuple[float, int | None]:
    """Milliseconds per ``optimizer.step()`` alone, with fixed gradients (the pure overhead),
    and the tensor operations one such step dispatches (kernel launches on a GPU); ``None``
    for a fused step, whose compiled code cannot run under a dispatch mode."""
    optimizer = optimizer_with_fixed_gradients(method, initial, device, kfac_state)
    if any(group.get("fused") for group in optimizer.param_groups):
        optimizer.step()  # compiled already, by the timed run's warm-up
        counter = None
    else:
        with _OperationCount() as counter:
            optimizer.step()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(calls):
        optimizer.step()
    synchronize(device)
    return (time.perf_counter() - start) / calls * 1e3, counter and counter.count


def print_ksgld_split(
    name: str,
    initial: dict,
    batch: tuple,
    device: torch.device,
    sgd_step_ms: float,
    kfac_state: dict | None = None,
) -> None:
    """KSGLD's extra cost per training step, amortized over its schedule, by ablation:
    factors (forward + ``observe`` on a factor step, minus the forward alone, / factor_every),
    eigendecompositions (``refresh_eigenbasis()`` / inverse_every), preconditioning
    (``step()`` at ``T = 0`` minus SGD's ``step()``) and noise (``step()`` minus itself at
    ``T = 0``: draws and, for noise-only preconditioning, the rotation of the noise)."""
    model = PaperCNN().to(device)
    model.load_state_dict(initial)
    optimizer = METHODS[name].make(model, torch.Generator(device=device).manual_seed(0))
    kfac, (x, _) = optimizer.kfac, batch
    if kfac_state is not None:
        kfac.load_state_dict(kfac_state)
    factor_every, inverse_every = kfac.factor_every, kfac.inverse_every
    kfac.factor_every, kfac.inverse_every = 1, 10**9  # every observe: a factor update only

    def milliseconds(function, repeats: int = 3) -> float:
        function()
        synchronize(device)
        start = time.perf_counter()
        for _ in range(repeats):
            function()
        synchronize(device)
        return (time.perf_counter() - start) / repeats * 1e3

    with_factors = milliseconds(lambda: kfac.observe(model(x)))
    kfac.factor_every = 10**9
    forward = milliseconds(lambda: kfac.observe(model(x)))  # records nothing
    eigen = milliseconds(kfac.refresh_eigenbasis, repeats=1)
    for p in model.parameters():
        p.grad = torch.randn_like(p) * 1e-3
    sgd = torch.optim.SGD(model.parameters(), lr=0.0)
    steps = {}
    for temperature in (0.0, 1.0):
        optimizer.param_groups[0]["temperature"] = temperature
        steps[temperature] = milliseconds(optimizer.step)
    parts = {
        "factors": (with_factors - forward) / factor_every,
        "eigendecompositions": eigen / inverse_every,
        "preconditioning": steps[0.0] - milliseconds(sgd.step),
        "noise": steps[1.0] - steps[0.0],
    }
    print(
        f"{name} extra cost per step (factor_every={factor_every}, "
        f"inverse_every={inverse_every}; eigendecomposition {eigen:.0f} ms each), "
        f"ms and x SGD step ({sgd_step_ms:.1f} ms):"
    )
    for part, ms in parts.items():
        print(f"  {part:<20} {ms:>9.2f} {ms / sgd_step_ms:>7.3f}")
    total = sum(parts.values())
    print(f"  {'SGD + all parts':<20} {sgd_step_ms + total:>9.2f} {1 + total / sgd_step_ms:>7.3f}")


def mnist_pool(generator: torch.Generator, device: torch.device, batches: int) -> list[tuple]:
    """Random batches of the real MNIST training set (``sgmcmc data`` caches it)."""
    from sgmcmc_paper.data import load_mnist

    images, labels, _, _ = load_mnist()
    x = torch.as_tensor(images).float().div_(256.0).unsqueeze(1)
    y = torch.as_tensor(labels)
    pool = []
    for _ in range(batches):
        index = torch.randint(0, len(x), (BATCH,), generator=generator)
        pool.append((x[index].to(device), y[index].to(device)))
    return pool


def warm_up(initial: dict, pool: list, device: torch.device, steps: int) -> tuple[dict, dict]:
    """``steps`` of plain SGD (lr 0.01) with a K-FAC estimating the factors of every step,
    from the first batch on: weights and factors (eigenbasis included) as a long run has
    them, for every method to start from."""
    model = PaperCNN().to(device)
    model.load_state_dict(initial)
    kfac = KFAC(model, factor_init="first_batch", factor_every=1, inverse_every=10**9)
    sgd = torch.optim.SGD(model.parameters(), lr=0.01)
    for step in range(steps):
        x, y = pool[step % len(pool)]
        sgd.zero_grad(set_to_none=True)
        logits = model(x)
        kfac.observe(logits)
        F.cross_entropy(logits, y).backward()
        sgd.step()
    kfac.refresh_eigenbasis()
    state = kfac.state_dict()
    state["steps"] = 1  # the methods' schedules start after an eigendecomposition
    return {k: v.clone() for k, v in model.state_dict().items()}, state


def starting_point(
    args: argparse.Namespace, device: torch.device
) -> tuple[dict, list, dict | None]:
    """The CNN's initial weights, the pool of batches (MNIST with ``--mnist``, else random
    images) and, with ``--warmup``, the weights and K-FAC state after that many SGD steps."""
    generator = torch.Generator().manual_seed(0)
    initial = PaperCNN(generator=generator).state_dict()
    if args.mnist:
        pool = mnist_pool(generator, device, 64 if args.warmup else 8)
    else:
        pool = [
            (
                torch.rand(BATCH, 1, 28, 28, generator=generator).to(device),
                torch.randint(0, 10, (BATCH,), generator=generator).to(device),
            )
            for _ in range(8)
        ]
    kfac_state = None
    if args.warmup:
        initial, kfac_state = warm_up(initial, pool, device, args.warmup)
    return initial, pool, kfac_state, generator


def print_kept_eigenvectors(kfac_state: dict, initial: dict, device: torch.device) -> None:
    """How many eigenvectors per factor the merged-tail methods keep, from the warm factors."""
    for name in METHODS:
        if not name.endswith("tails"):
            continue
        model = PaperCNN().to(device)
        model.load_state_dict(initial)
        optimizer = METHODS[name].make(model, torch.Generator(device=device).manual_seed(0))
        kfac = optimizer.kfac
        kfac.load_state_dict(kfac_state)
        scale = float(NUM_DATA) if optimizer.param_groups[0]["convention"] == "langevin" else 1.0
        kept = []
        for layer in kfac.layers:
            eigen = kfac.eigenbasis(layer, scale)
            (k_a, k_g), (n_a, n_g) = eigen.kept, (layer.a.shape[0], layer.g.shape[0])
            kept.append(f"{layer.name}: A {k_a}/{n_a}, G {k_g}/{n_g}")
        print(f"{name} (eigen_rtol={kfac.eigen_rtol}) keeps " + "; ".join(kept))


def print_profile(
    name: str, initial: dict, pool: list, device: torch.device, kfac_state: dict | None
) -> None:
    """torch.profiler's ten costliest operations (device time on a GPU, host time on a CPU)
    over 10 training steps of one method, after 3 unprofiled ones: where an overhead comes
    from (extra kernels, a host-device synchronisation: ``cudaStreamSynchronize`` or
    ``cudaMemcpy``... in the host column)."""
    from torch.profiler import ProfilerActivity, profile

    run = Run(METHODS[name], initial, device, kfac_state)
    run.seconds_per_step(pool[:3], device)
    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities) as prof:
        run.seconds_per_step([pool[i % len(pool)] for i in range(10)], device)
    print(f"== profile of {name}, 10 steps")
    table = prof.key_averages()
    if device.type == "cuda":
        print(table.table(sort_by="self_cuda_time_total", row_limit=10))
    # On a GPU the host column shows launches and waits (cudaLaunchKernel, cudaStreamSynchronize).
    print(table.table(sort_by="self_cpu_time_total", row_limit=10))


def graph_counts(optimizer: torch.optim.Optimizer) -> tuple[int, int]:
    """CUDA graphs a ``cuda_graph=True`` optimizer captured, and the steps on which it copied
    the gradients (they had moved since the capture); ``(0, 0)`` for other optimizers."""
    counts = getattr(optimizer, "cuda_graph_counts", {"captures": 0, "copied_steps": 0})
    return counts["captures"], counts["copied_steps"]


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=EPOCH_STEPS, help="timed steps per method")
    parser.add_argument("--block", type=int, help="steps per turn (default: 1 CPU, 10 GPU)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument(
        "--methods",
        nargs="+",
        choices=list(METHODS),
        help="default: all (the *-graph ones on a CUDA device only)",
    )
    parser.add_argument("--mnist", action="store_true", help="real MNIST batches, not random")
    parser.add_argument(
        "--warmup", type=int, default=0, help="SGD steps (with K-FAC estimating) to start from"
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also print torch.profiler's costliest operations of 10 training steps per method",
    )
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    chosen = args.methods or [
        name for name in METHODS if device.type == "cuda" or not name.endswith("-graph")
    ]
    methods = ["sgd", *[name for name in chosen if name != "sgd"]]

    initial, pool, kfac_state, _ = starting_point(args, device)
    if args.warmup:
        print_kept_eigenvectors(kfac_state, initial, device)
    batches = [pool[i % len(pool)] for i in range(args.steps)]
    block = args.block or (10 if device.type == "cuda" else 1)

    runs = {name: Run(METHODS[name], initial, device, kfac_state) for name in methods}
    for run in runs.values():
        run.seconds_per_step(pool[:2], device)  # warm-up
    seconds: dict[str, list[float]] = {name: [] for name in methods}
    for turn, start in enumerate(range(0, args.steps, block)):
        shift = turn % len(methods)  # rotate who goes first
        chunk = batches[start : start + block]
        for name in methods[shift:] + methods[:shift]:
            seconds[name].append(runs[name].seconds_per_step(chunk, device))
    graphs = {name: graph_counts(run.optimizer) for name, run in runs.items()}
    del runs

    costs = {name: step_cost(METHODS[name], initial, device, 20, kfac_state) for name in methods}

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(
        f"device {name}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"batch {BATCH}, {args.steps} steps per method in turns of {block} (median)"
    )
    print(f"{'method':<12} {'s/epoch':>9} {'x sgd':>7} {'step() ms':>10} {'step() ops':>11}")
    baseline = statistics.median(seconds["sgd"])
    for name in methods:
        median = statistics.median(seconds[name])
        per_epoch = median * EPOCH_STEPS
        ratio = median / baseline
        print(
            f"{name:<12} {per_epoch:>9.3f} {ratio:>7.3f} {costs[name][0]:>10.2f} "
            f"{'compiled' if costs[name][1] is None else costs[name][1]:>11}"
        )
    for name, (captures, copied) in graphs.items():
        if captures:
            print(
                f"{name}: {captures} graph{'s' * (captures != 1)} captured, gradients copied "
                f"in {copied} of {args.steps + 2} steps"
            )
    if args.profile:
        for name in methods:
            print_profile(name, initial, pool, device, kfac_state)
    for name in methods:
        if name.startswith("ksgld"):
            sgd_step_ms = baseline * 1e3
            print_ksgld_split(name, initial, pool[0], device, sgd_step_ms, kfac_state)


if __name__ == "__main__":
    main()
