"""GPU time of one optimizer update on the paper's CNN's parameters (3.3 million numbers), without
the host: each update is captured as a CUDA graph and replayed, timed by CUDA events. Next to
plain SGD's foreach update and ``torch.randn`` of the same size, the fused Langevin updates
(:mod:`sgmcmc.samplers.fused`, what ``cuda_graph=True`` replays) show what the GPU itself pays for
the noise and the preconditioner, apart from the host's dispatch that ``sampler_overhead.py`` times.

    python benchmarks/update_gpu_time.py [--replays 300]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch

from sgmcmc.rng import philox
from sgmcmc.samplers import fused
from sgmcmc.samplers.psgld import SquareAverage
from sgmcmc_paper.protocol.models import PaperCNN

#: The fused update's configurations: SGLD and pSGLD (langevin, ``precondition="both"``) with
#: the prior as weight decay, as ``sampler_overhead.py``'s ``*-wd-graph`` methods step them.
CONFIGURATIONS = {
    "sgld-wd fused": dict(
        rule=None, adapt=False, drift_preconditioned=True, noise_power=0.5, weight_decay=True
    ),
    "psgld-wd fused": dict(
        rule=SquareAverage(),
        adapt=True,
        drift_preconditioned=True,
        noise_power=0.5,
        weight_decay=True,
    ),
}


def gpu_microseconds(update: Callable[[], object], replays: int) -> float:
    """Microseconds of GPU time per call of ``update``, replayed from a CUDA graph."""
    update()  # compiles, outside the capture
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        update()
    for _ in range(20):
        graph.replay()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(replays):
        graph.replay()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / replays * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replays", type=int, default=300, help="timed replays per update")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("update_gpu_time.py needs a CUDA device; run it on a GPU machine")
    device = torch.device("cuda")
    torch.manual_seed(0)
    params = [p.detach() for p in PaperCNN().to(device).parameters()]
    grads = [torch.randn_like(p) for p in params]
    averages = [torch.rand_like(p) + 0.1 for p in params]
    size = sum(p.numel() for p in params)
    seed = torch.tensor([1, 2, 3, 0], device=device)
    # drift, noise, weight decay (fused.SCALARS), then pSGLD's alpha and eps: a small step, so
    # 300 replays stay finite.
    scalars = torch.tensor([-1e-6, 1e-4, 1e-4, 0.99, 1e-5], device=device)
    draw = torch.compile(philox.standard_normal)
    updates: dict[str, Callable[[], object]] = {
        "sgd foreach": lambda: torch._foreach_add_(params, grads, alpha=-1e-6),
        "torch.randn": lambda: torch.randn(size, device=device),
        "philox draw": lambda: draw(size, seed),
    }
    for name, flags in CONFIGURATIONS.items():
        updates[name] = lambda flags=flags: fused.langevin_update(
            params, grads, averages, seed, scalars, **flags
        )
    print(f"device {torch.cuda.get_device_name()}, torch {torch.__version__}, {size} numbers")
    print(f"{'update':<16} {'GPU µs':>8}")
    for name, update in updates.items():
        print(f"{name:<16} {gpu_microseconds(update, args.replays):8.1f}", flush=True)


if __name__ == "__main__":
    main()
