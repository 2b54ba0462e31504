"""One run: train the paper's CNN with a method, evaluate its samples online, return the result.

``run(config, device=...)`` is the engine every notebook, the sweep and ``sgmcmc run`` share;
:func:`sgmcmc_paper.engine.store.run_or_load` wraps it with the on-disk store. What a run records
(nothing of it is weights):

- ``metrics["epochs"]``: per epoch, the mean training loss, the final model's test metrics
  (``single``: accuracy, NLL, ECE, Brier) and those of the predictive averaged over the epoch's
  samples (``averaged``; one sample every ``eval_every`` steps and at the epoch's last step);
- ``metrics["windows"][name]``: per averaging window
(:class:`~sgmcmc_paper.protocol.config.Window`), the
  averaged and single-model metrics on the test subset, FGSM accuracy for three threat models
  (:mod:`sgmcmc_paper.analysis.attacks`) and out-of-distribution detection
  (:mod:`sgmcmc_paper.engine.evaluation`);
- ``predictions``: compact per-example arrays of each window (``predictions.npz``);
- ``traces``: thinned traces (:mod:`sgmcmc_paper.engine.traces`).

A non-finite loss (or, at evaluations, non-finite weights or model outputs) stops the run: it is
returned with ``status="diverged"``, the step, epoch and reason, and what was measured before;
an epoch whose outputs or metrics are not all finite is never recorded as a valid epoch.
A run that finishes with its model at chance after having learned is ``collapsed``: its
:attr:`RunResult.fate` (:mod:`sgmcmc_paper.engine.fate`) says so, with the epoch it fell.
Randomness comes from the config's seed alone (initialisation and batch order on the CPU, so
they are the same on every device; sampler and K-FAC noise on the device); the caller's global
RNG state is left untouched. Training data and evaluation sets live on the device; on a CPU
the model is kept in ``channels_last`` layout (oneDNN's faster convolutions; same results up to
rounding).

With ``checkpoint`` (a file path), the run saves its whole state there at the end of an epoch
once ``checkpoint_every`` seconds have passed since the last save
(:mod:`sgmcmc_paper.engine.checkpoint`), and a run started with a checkpoint present continues from
it: the result is the one an uninterrupted run gives, bit for bit, with
``provenance.timing.resumed`` counting the restarts. A window's robustness attacks record each
finished unit beside the checkpoint (:mod:`sgmcmc_paper.engine.attack_progress`): a run
interrupted during them retrains from its checkpoint to the window's end and attacks only what
was left.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sgmcmc.allocator import keep_freed_memory
from sgmcmc_paper.engine.alternatives import finish_alternative, trajectory_window_steps
from sgmcmc_paper.engine.attack_progress import progress_path
from sgmcmc_paper.engine.checkpoint import load_checkpoint, save_checkpoint
from sgmcmc_paper.engine.fate import Fate, fate
from sgmcmc_paper.engine.monitor import Progress, Timer
from sgmcmc_paper.engine.provenance import device_name, provenance
from sgmcmc_paper.errors import DamagedRunError, UserError
from sgmcmc_paper.protocol.config import RunConfig, Window

__all__ = ["RunResult", "device_name", "resolve_device", "run"]

DEVICES = ("auto", "cpu", "cuda")
#: Seconds of a run between two checkpoints (a 20-epoch CPU run of the paper takes ~70 min; on
#: a GPU a whole run is shorter than this, so it never writes one).
CHECKPOINT_EVERY_S = 300.0
#: On accelerators, losses are checked for divergence every this many steps (and at every
#: evaluation), not at every step, to avoid a host synchronisation per step.
CHECK_EVERY = 10


@dataclass
class RunResult:
    """What a run produced; :mod:`sgmcmc_paper.engine.store` writes and reads it.

    ``status`` is how training ended, ``"complete"`` or ``"diverged"`` (then ``divergence``
    holds ``step``, ``epoch`` and ``reason``); :attr:`fate` is what became of the run,
    ``complete``, ``diverged`` or ``collapsed`` (:mod:`sgmcmc_paper.engine.fate`), the one
    tables and claims read. ``skipped`` names out-of-distribution sets that were not installed, and
    ``notes`` say why. ``trace_arrays`` are the raw traces; :meth:`traces` gives InferenceData.
    """

    config: RunConfig
    status: str
    metrics: dict[str, Any]
    provenance: dict[str, Any]
    predictions: dict[str, np.ndarray] = field(default_factory=dict)
    trace_arrays: dict[str, np.ndarray] | None = None
    divergence: dict[str, Any] | None = None
    skipped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    path: Path | None = None

    @property
    def key(self) -> str:
        return self.config.key()

    @property
    def diverged(self) -> bool:
        return self.status == "diverged"

    @property
    def fate(self) -> Fate:
        """``complete``, ``diverged`` (epoch, reason) or ``collapsed`` (the epoch it fell to
        chance, and why), computed from the per-epoch metrics by the rule of
        :mod:`sgmcmc_paper.engine.fate` (stored runs get it on load)."""
        return fate(self)

    def epochs(self):
        """Per-epoch metrics as a long pandas DataFrame: ``epoch, mode, metric, value``."""
        import pandas as pd

        rows = []
        for record in self.metrics["epochs"]:
            for mode in ("single", "averaged"):
                for metric, value in record[mode].items():
                    rows.append((record["epoch"], mode, metric, value))
        return pd.DataFrame(rows, columns=["epoch", "mode", "metric", "value"])

    def window(self, name: str) -> dict[str, Any]:
        """The metrics of one averaging window (``KeyError`` naming the windows there are)."""
        windows = self.metrics["windows"]
        if name not in windows:
            raise KeyError(f"no window {name!r} in this run; it has {sorted(windows)}")
        return windows[name]

    def per_example(self, window: str, set_name: str, mode: str = "averaged") -> dict:
        """Per-example summaries of one window and set (``predictions.npz``) as float32/int
        arrays by field: ``pred``, ``max_prob``, ``entropy`` and (averaged) ``mi``."""
        prefix = f"{window}/{set_name}/{mode}/"
        found = {
            k[len(prefix) :]: v.astype(np.float32) if v.dtype == np.float16 else v
            for k, v in self.predictions.items()
            if k.startswith(prefix)
        }
        if not found:
            raise KeyError(f"no per-example arrays for {prefix!r} in this run")
        return found

    def traces(self):
        """Traces as ArviZ InferenceData (a dict of xarray Datasets without ArviZ).

        A run without traces (``trace_every=0``, or diverged before its first traced step)
        raises ``ValueError``, stored or not. An unreadable trace file of a stored run raises a
        one-line :class:`~sgmcmc_paper.errors.DamagedRunError` naming the run folder, which
        is moved aside when it is a store entry (named by its key)."""
        from sgmcmc_paper.engine.traces import datasets_from_arrays, load_traces

        if self.path is not None:
            try:
                return load_traces(self.path)
            except DamagedRunError as damage:
                if self.path.name != self.key:
                    raise
                from sgmcmc_paper.engine.quarantine import quarantine

                raise quarantine(damage) from None
        if self.trace_arrays is None:
            raise ValueError(
                "this run recorded no traces (trace_every=0, or it diverged before its first "
                "traced step)"
            )
        datasets = datasets_from_arrays(self.trace_arrays, {})
        try:
            import arviz as az
        except ImportError:
            return datasets
        return az.InferenceData(**datasets)


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``."""
    name = str(device)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise UserError(f"device {name!r} asked for but no CUDA GPU is visible; use cpu")
        return torch.device(name)
    raise UserError(f"unknown device {name!r}; use one of {', '.join(DEVICES)}")


def run(
    config: RunConfig,
    device: str | torch.device = "auto",
    progress: bool = True,
    checkpoint: Path | None = None,
    checkpoint_every: float | None = None,
    transfer: Any = None,
) -> RunResult:
    """Train and evaluate ``config`` on ``device``; see the module docstring for the result
    and for ``checkpoint`` (``checkpoint_every=None``: :data:`CHECKPOINT_EVERY_S`).
    ``transfer``: the SGD run's PGD examples its windows are attacked with
    (:func:`sgmcmc_paper.engine.robustness.transfer_images`; ``None``: no transfer attack)."""
    dev = resolve_device(device)
    if dev.type == "cpu":
        keep_freed_memory()  # no page faults for each step's activations (sgmcmc.allocator)
    devices = [dev.index or 0] if dev.type == "cuda" else []
    every = CHECKPOINT_EVERY_S if checkpoint_every is None else checkpoint_every
    with torch.random.fork_rng(devices=devices):
        return _Run(config, dev, progress, checkpoint, every, transfer).execute()


class _Run:
    """One execution of a config: set-up, the step loop with online evaluation, the result."""

    def __init__(
        self,
        config: RunConfig,
        device: torch.device,
        progress: bool,
        checkpoint: Path | None = None,
        checkpoint_every: float = CHECKPOINT_EVERY_S,
        transfer: Any = None,
    ) -> None:
        from sgmcmc_paper.engine.evaluation import WindowEvaluator
        from sgmcmc_paper.engine.robustness import RobustnessPlan
        from sgmcmc_paper.engine.rundata import load_run_data
        from sgmcmc_paper.engine.traces import TraceRecorder
        from sgmcmc_paper.engine.training import Trainer
        from sgmcmc_paper.protocol.models import PaperCNN

        c = self.config = config
        self.device, self.timer = device, Timer(device)
        self.started, self.wall = time.time(), time.perf_counter()
        init_seed, batch_seed, noise_seed, kfac_seed, global_seed = (
            int(s) for s in np.random.SeedSequence(c.seed).generate_state(5)
        )
        torch.manual_seed(global_seed)
        with self.timer("load"):
            self.data = load_run_data(c, device, any("ood" in w.sets for w in c.windows))
        init = torch.Generator().manual_seed(init_seed)
        self.model = PaperCNN(c.init, generator=init).to(device)
        if device.type == "cpu":  # oneDNN's convolutions: ~1.2x training, ~1.35x evaluation
            self.model = self.model.to(memory_format=torch.channels_last)
        self.trainer = Trainer(
            c,
            self.model,
            c.num_train,
            torch.Generator(device).manual_seed(noise_seed),
            torch.Generator(device).manual_seed(kfac_seed),
        )
        self.batches = torch.Generator().manual_seed(batch_seed)
        self.tracker = None
        if c.stability_every:
            from sgmcmc_paper.engine.stability import tracker_for

            self.tracker = tracker_for(c, self.model, self.trainer.optimizer)
        self.bar = Progress(c, progress)
        plan = RobustnessPlan.from_config(c, transfer)
        self.windows = {
            w.name: WindowEvaluator(
                w,
                self.data,
                c.fgsm_eps,
                plan,
                self.timer,
                None if checkpoint is None else progress_path(checkpoint, w.name),
                partial(self.bar.attack, w.name),
            )
            for w in c.windows
        }
        steps = _window_steps(c.windows, c.steps_per_epoch)
        self.window_steps = trajectory_window_steps(c, steps)  # none post hoc; cyclical: sampling
        self.posthoc_metrics: dict[str, Any] = {}  # what a post-hoc method adds to metrics
        self.recorder = None
        if c.trace_every:
            probe = self.data.probe
            draws = c.total_steps // c.trace_every
            self.recorder = TraceRecorder(self.model, c.trace_per_tensor, probe.x, probe.y, draws)
        self.losses = torch.zeros(c.total_steps, device=device)
        self.checked = 0  # losses up to this step are known to be finite
        self.window_metrics: dict[str, dict] = {}
        self.predictions: dict[str, np.ndarray] = {
            "test/index": _compact_index(self.data.test.index),
            "test/label": self.data.test.y.to(torch.uint8).cpu().numpy(),
        }
        for name, ood in self.data.ood.items():
            self.predictions[f"{name}/index"] = _compact_index(ood.index)
        self.checkpoint, self.checkpoint_every = checkpoint, checkpoint_every
        self.resumed = 0

    def execute(self) -> RunResult:
        epochs: list[dict] = []
        if self.checkpoint is not None:
            state = load_checkpoint(self.checkpoint, self.config.key(), self.device)
            if state is not None:
                epochs = self._restore(state)
        self.loop_started = self.saved = time.perf_counter()
        with self.timer("loop"):
            divergence = self._loop(epochs)
            if divergence is None:  # ensembles and Laplace: their members or draws
                divergence = finish_alternative(self)
        self.bar.close()
        return self._result(epochs, divergence)

    def _loop(self, epochs: list[dict]) -> dict | None:
        from sgmcmc_paper.engine.evaluation import EpochAverage

        c, divergence = self.config, None
        for epoch in range(len(epochs) + 1, c.epochs + 1):
            average = EpochAverage()
            single, divergence = self._epoch(epoch, average)
            if divergence is not None:
                divergence["epoch"] = epoch
                self.bar.diverged(divergence)
                break
            last = epoch * c.steps_per_epoch
            record = {
                "epoch": epoch,
                "step": last,
                "lr": self.trainer.last_lr,
                "train_loss": float(self.losses[last - c.steps_per_epoch : last].mean()),
                "single": single,
                "averaged": average.metrics(self.data.test.y),
                "wall_s": time.perf_counter() - self.wall,
            }
            bad = _first_non_finite(record)
            if bad is not None:  # never a valid epoch (outputs are checked as they are made)
                divergence = {"step": last, "reason": f"non-finite {bad} at epoch {epoch}"}
                divergence["epoch"] = epoch
                self.bar.diverged(divergence)
                break
            epochs.append(record)
            self.bar.epoch(record)
            due = time.perf_counter() - self.saved >= self.checkpoint_every
            if self.checkpoint is not None and epoch < c.epochs and due:
                try:
                    save_checkpoint(self.checkpoint, self._state(epochs))
                except UserError as exc:  # the run goes on: only a resume is lost
                    print(f"warning: {exc}; the run goes on without checkpoints", file=sys.stderr)
                    self.checkpoint = None
                self.saved = time.perf_counter()
        return divergence

    # ------------------------------------------------------------------ checkpoints
    def _state(self, epochs: list[dict]) -> dict[str, Any]:
        """Everything the rest of the run depends on, after the last of ``epochs``."""
        totals = dict(self.timer.totals)
        totals["loop"] = totals.get("loop", 0.0) + time.perf_counter() - self.loop_started
        cuda = self.device.type == "cuda"
        return {
            "key": self.config.key(),
            "epochs": epochs,
            "model": self.model.state_dict(),
            "optimizer": self.trainer.optimizer.state_dict(),
            "scheduler": self.trainer.scheduler.state_dict(),
            "last_lr": self.trainer.last_lr,
            "batches": self.batches.get_state(),
            "global_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state(self.device) if cuda else None,
            "losses": self.losses,
            "checked": self.checked,
            "windows": {name: w.state_dict() for name, w in self.windows.items()},
            "window_metrics": self.window_metrics,
            "predictions": {
                name: [
                    str(array.dtype),
                    torch.from_numpy(array.astype(_checkpointed_dtype(array.dtype))),
                ]
                for name, array in self.predictions.items()
            },
            "recorder": self.recorder.state_dict() if self.recorder is not None else None,
            "tracker": self.tracker.state_dict() if self.tracker is not None else None,
            "timer": totals,
            "elapsed": time.perf_counter() - self.wall,
            "started": self.started,
            "resumed": self.resumed,
        }

    def _restore(self, state: dict[str, Any]) -> list[dict]:
        """Load a :meth:`_state`; returns the epochs already done."""
        self.model.load_state_dict(state["model"])
        self.trainer.optimizer.load_state_dict(state["optimizer"])
        self.trainer.scheduler.load_state_dict(state["scheduler"])
        self.trainer.last_lr = float(state["last_lr"])
        self.batches.set_state(state["batches"].cpu())
        torch.set_rng_state(state["global_rng"].cpu())
        if state["cuda_rng"] is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda_rng"].cpu(), self.device)
        self.losses.copy_(state["losses"])
        self.checked = int(state["checked"])
        for name, window in self.windows.items():
            window.load_state_dict(state["windows"][name])
        self.window_metrics = dict(state["window_metrics"])
        self.predictions = {
            name: tensor.cpu().numpy().astype(dtype)
            for name, (dtype, tensor) in state["predictions"].items()
        }
        if self.recorder is not None:
            self.recorder.load_state_dict(state["recorder"])
        if self.tracker is not None:
            self.tracker.load_state_dict(state["tracker"])
        totals = dict(state["timer"])
        for phase, seconds in self.timer.totals.items():  # this start's loading
            totals[phase] = totals.get(phase, 0.0) + seconds
        self.timer.totals = totals
        self.wall = time.perf_counter() - float(state["elapsed"])
        self.started, self.resumed = float(state["started"]), int(state["resumed"]) + 1
        epochs = list(state["epochs"])
        self.bar.resume(epochs[-1]["step"] if epochs else 0)
        return epochs

    def _epoch(self, epoch: int, average) -> tuple[dict[str, float], dict | None]:
        """Train one epoch, evaluating on schedule; returns the final model's test metrics
        and the divergence (``None`` if all stayed finite)."""
        from sgmcmc_paper.engine.evaluation import NonFiniteOutputs

        c, data, spe = self.config, self.data, self.config.steps_per_epoch
        order = torch.randperm(c.num_train, generator=self.batches).to(self.device)
        single: dict[str, float] = {}
        for i in range(spe):
            step = (epoch - 1) * spe + i + 1
            idx = order[i * c.batch_size : (i + 1) * c.batch_size]
            self.model.train()
            try:
                loss = self.trainer.step(data.x_train[idx], data.y_train[idx])
            except RuntimeError as exc:  # e.g. K-FAC refusing non-finite factors
                if _parameters_finite(self.model):
                    raise
                return single, {"step": step, "reason": str(exc).splitlines()[0]}
            self.losses[step - 1] = loss
            if self.tracker is not None:
                with self.timer("stability"):
                    self.tracker.after_step(step, data.x_train[idx], data.y_train[idx])
            end_of_epoch = i == spe - 1
            is_sample = step % c.eval_every == 0 or end_of_epoch
            is_trace = self.recorder is not None and step % c.trace_every == 0
            evaluate = is_sample or step in self.window_steps
            if self.device.type == "cpu" or evaluate or step % CHECK_EVERY == 0:
                model = self.model if evaluate else None
                divergence = _divergence(self.losses, self.checked, step, model)
                if divergence is not None:
                    return single, divergence
                self.checked = step
            if is_trace:
                with self.timer("trace", sync=False):  # asynchronous on a GPU: no sync
                    self.recorder.record(step, loss, self.trainer.last_lr)
            if evaluate:
                try:
                    single = self._evaluate(step, is_sample, end_of_epoch, average) or single
                except NonFiniteOutputs as exc:
                    return single, {"step": step, "reason": f"{exc} after step {step}"}
        return single, None

    def _evaluate(self, step, is_sample, end_of_epoch, average) -> dict | None:
        """Evaluate the sample the model holds after ``step``; at the end of an epoch, return
        its single-model test metrics."""
        from sgmcmc_paper.engine.evaluation import (
            NonFiniteOutputs,
            SamplePredictions,
            classification_metrics,
        )

        model, single = self.model.eval(), None
        sample = SamplePredictions(model, self.data)
        if is_sample:
            with self.timer("epoch_eval"):
                average.add(sample)
                if end_of_epoch:
                    single = classification_metrics(sample.probs("test"), self.data.test.y)
        for name in self.window_steps.get(step, ()):
            window = self.windows[name]
            with self.timer("window_eval"):
                window.add(step, model, sample)
                if step == window.window.steps(self.config.steps_per_epoch)[-1]:
                    metrics, arrays = window.finish(model)
                    bad = _first_non_finite(metrics)
                    if bad is not None:
                        raise NonFiniteOutputs(f"window {name} ({bad})")
                    self.window_metrics[name] = metrics
                    self.predictions.update(arrays)
        return single

    def _result(self, epochs: list[dict], divergence: dict | None) -> RunResult:
        notes = list(self.data.notes)
        missing = sorted(set(self.windows) - set(self.window_metrics))
        if divergence is not None and missing:
            notes.append(f"windows not reached before divergence: {missing}")
        totals = dict(self.timer.totals)
        evaluation = sum(
            totals.get(k, 0.0) for k in ("trace", "epoch_eval", "window_eval", "stability")
        )
        totals["train"] = totals.pop("loop") - evaluation
        timing = {k: round(v, 4) for k, v in totals.items()}
        timing["total_s"] = round(time.perf_counter() - self.wall, 4)
        timing["epoch_samples"] = sum(r["averaged"]["samples"] for r in epochs)
        timing["window_samples"] = sum(w["samples"] for w in self.window_metrics.values())
        timing["traced_draws"] = self.recorder.count if self.recorder is not None else 0
        timing["resumed"] = self.resumed
        before = divergence["step"] if divergence else None
        traces = None if self.recorder is None else self.recorder.arrays(before)
        return RunResult(
            config=self.config,
            status="diverged" if divergence else "complete",
            metrics={
                "epochs": epochs,
                "windows": self.window_metrics,
                **self.posthoc_metrics,
                **({"stability": self.tracker.records()} if self.tracker is not None else {}),
            },
            provenance=provenance(self.device, self.started, timing),
            predictions=self.predictions,
            trace_arrays=traces if traces is not None and len(traces["draw"]) else None,
            divergence=divergence,
            skipped=list(self.data.skipped),
            notes=notes,
        )


def _checkpointed_dtype(dtype: np.dtype) -> np.dtype:
    """The dtype a prediction array is checkpointed in (torch has no general uint16)."""
    return np.dtype(np.int32) if dtype == np.uint16 else dtype


def _compact_index(index: np.ndarray) -> np.ndarray:
    """Indices into a source set, as uint16 when they fit (every set here has < 65,536)."""
    return index.astype(np.uint16 if index.max(initial=0) < 2**16 else np.int64)


def _window_steps(windows: tuple[Window, ...], steps_per_epoch: int) -> dict[int, list[str]]:
    by_step: dict[int, list[str]] = {}
    for w in windows:
        for s in w.steps(steps_per_epoch):
            by_step.setdefault(s, []).append(w.name)
    return by_step


def _divergence(
    losses: torch.Tensor, checked: int, step: int, model: torch.nn.Module | None
) -> dict[str, Any] | None:
    """The first non-finite loss after step ``checked`` (and, given the model, non-finite
    parameters after ``step``), as ``{"step", "reason"}``; ``None`` if all is finite."""
    bad = ~torch.isfinite(losses[checked:step])
    if bool(bad.any()):
        first = checked + int(bad.nonzero()[0, 0]) + 1
        return {
            "step": first,
            "reason": f"non-finite loss ({losses[first - 1].item()}) at step {first}",
        }
    if model is not None and not _parameters_finite(model):
        return {"step": step, "reason": f"non-finite parameters after step {step}"}
    return None


def _first_non_finite(value: Any, path: str = "") -> str | None:
    """The dotted path of the first NaN or infinite float in nested dicts and lists."""
    if isinstance(value, float):
        return None if np.isfinite(value) else path or "value"
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, (list, tuple)):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        found = _first_non_finite(item, f"{path}.{key}" if path else str(key))
        if found is not None:
            return found
    return None


def _parameters_finite(model: torch.nn.Module) -> bool:
    norms = torch.stack([p.detach().norm() for p in model.parameters()])
    return bool(torch.isfinite(norms).all())
