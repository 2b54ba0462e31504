"""What a run shows and measures while it trains: a progress display and phase timings."""

from __future__ import annotations

import math
import sys
import time

import torch

from sgmcmc_paper.protocol.config import RunConfig


class Timer:
    """Accumulated wall time per phase, synchronising CUDA at both ends so GPU work is
    attributed to its phase. Time only phases that already synchronise or are rare: timing
    every training step would serialise the host and the GPU (``train`` is what the step loop
    spends outside the timed evaluation phases)."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.totals = device, {}

    def __call__(self, phase: str, sync: bool = True):
        return _Phase(self, phase, sync)


class _Phase:
    def __init__(self, timer: Timer, phase: str, sync: bool) -> None:
        self.timer, self.phase, self.sync = timer, phase, sync

    def _sync(self) -> None:
        if self.sync and self.timer.device.type == "cuda":
            torch.cuda.synchronize(self.timer.device)

    def __enter__(self) -> None:
        self._sync()
        self.start = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self._sync()
        totals = self.timer.totals
        totals[self.phase] = totals.get(self.phase, 0.0) + time.perf_counter() - self.start


class Progress:
    """A tqdm bar over steps on a terminal; one printed line per epoch elsewhere (papermill,
    CI logs), so notebooks show a readable log."""

    def __init__(self, config: RunConfig, enabled: bool) -> None:
        self.config, self.enabled = config, enabled
        self.tty = enabled and sys.stderr.isatty()
        self.bar = None
        if self.tty:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=config.total_steps, desc=config.method, unit="step", leave=False)
        self.last_step = 0

    def epoch(self, record: dict) -> None:
        if not self.enabled:
            return
        acc = record["single"].get("accuracy", math.nan)
        avg = record["averaged"].get("accuracy", math.nan)
        if self.bar is not None:
            self.bar.update(record["step"] - self.last_step)
            self.bar.set_postfix(
                epoch=record["epoch"], loss=f"{record['train_loss']:.4f}", acc=f"{acc:.4f}"
            )
            self.last_step = record["step"]
            return
        print(
            f"{self.config.method} epoch {record['epoch']}/{self.config.epochs}: "
            f"loss {record['train_loss']:.4f}, test acc {acc:.4f} (averaged {avg:.4f}), "
            f"{record['wall_s']:.1f} s",
            flush=True,
        )

    def attack(self, window: str, done: int, total: int, unit: str, read_back: bool) -> None:
        """A line for each finished unit of a window's robustness attacks (hours on a CPU)."""
        if not self.enabled:
            return
        line = f"{self.config.method} {window} attacks {done}/{total}: {unit}"
        line += " (read back: finished before an interruption)" if read_back else ""
        if self.bar is not None:
            self.bar.write(line)
        else:
            print(line, flush=True)

    def resume(self, step: int) -> None:
        """Start from ``step`` (a run resumed from a checkpoint)."""
        if self.bar is not None:
            self.bar.update(step - self.last_step)
        self.last_step = step
        if self.enabled and self.bar is None:
            print(f"{self.config.method}: resumed after step {step}", flush=True)

    def diverged(self, divergence: dict) -> None:
        if self.enabled:
            print(f"{self.config.method} diverged: {divergence['reason']}", file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
