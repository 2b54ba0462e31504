"""The budgeted walk over a grid: which trial to launch next, when to stop, which one wins.

The walk is pure bookkeeping, shared by every engine (serial, Ray): an engine asks
:meth:`Walk.propose` for the next trial whenever it has a free slot (through a
:class:`~sgmcmc_paper.sweep.plan.Plan`, which chains walks), runs it, and hands the outcome to
:meth:`Walk.record`. Budget, stages and selection therefore do not depend on the
engine; with one trial at a time (the default on one machine) every engine makes the same
decisions, and with ``k`` trials in flight at most ``k - 1`` further trials run past the point
where a one-at-a-time walk would have stopped.

Rules (see :mod:`sgmcmc_paper.sweep.grids` for the grids):

- *Stages.* Stage 0 walks the learning rates, in the grid's order, with every other axis at its
  default. Each later stage tunes one further axis: every other value of that axis, at the best
  trial so far (the incumbent). A stage starts only when every trial of the previous one has
  finished, so the incumbent is well defined.
- *Budget.* The budget is a cap on the summed compute of the walk's trials (each trial's own
  wall time, as stored with its result: a trial loaded from the store counts what it cost when
  it ran). A trial is launched only if the finished trials' compute plus the predicted cost of
  the running trials and of this one stays within ``budget_s``; the predicted cost of a trial
  is the mean of the successful trials so far (before the first, ``expected_s``: the sweep
  passes the SGD reference's time). So nothing is launched once the finished compute reaches
  the budget, running trials finish, and the budget is exceeded only by the error of the
  prediction (a trial slower than the mean of those before it).
- *Selection.* Among finished trials with status ``"ok"``: the highest validation accuracy; ties
  go to the lower validation NLL (when known), then to the earlier trial in walk order.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from sgmcmc_paper.sweep.grids import Grid

STATUSES = ("ok", "diverged", "failed")
WAIT = "wait"  # propose(): nothing to launch until a running trial finishes
DONE = "done"  # propose(): the walk is over (running trials still finish)

TrialFn = Callable[[dict[str, Any]], Mapping[str, Any]]
"""A trial: run-config fields (method, convention and the swept hyper-parameters) in, outcome out.

The outcome mapping has ``status`` (one of :data:`STATUSES`), ``val_accuracy`` (averaged-
predictive accuracy on the validation split, in [0, 1]), ``compute_s`` (the run's own wall
time in seconds), and optionally ``val_nll``, ``reason`` (why a trial diverged or failed),
``key`` (the run's store key), ``reused`` (loaded from the store, not computed now) and
``device``.
"""


@dataclass(frozen=True)
class Outcome:
    """What one trial produced. ``compute_s`` is what the trial counts against the budget."""

    status: str
    val_accuracy: float = math.nan
    val_nll: float = math.nan
    compute_s: float = 0.0
    reason: str = ""
    key: str = ""
    reused: bool = False
    device: str = ""

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> Outcome:
        """Validate a trial function's answer; a non-finite accuracy counts as diverged."""
        status = str(values.get("status", "ok"))
        if status not in STATUSES:
            raise ValueError(f"trial status {status!r} is not one of {STATUSES}")
        accuracy = float(values.get("val_accuracy", math.nan))
        reason = str(values.get("reason") or "")
        if status == "ok" and not math.isfinite(accuracy):
            status, reason = "diverged", reason or f"validation accuracy is {accuracy}"
        return cls(
            status=status,
            val_accuracy=accuracy,
            val_nll=float(values.get("val_nll", math.nan)),
            compute_s=float(values.get("compute_s", 0.0)),
            reason=reason,
            key=str(values.get("key") or ""),
            reused=bool(values.get("reused", False)),
            device=str(values.get("device") or ""),
        )


def execute_trial(trial_fn: TrialFn, fields: dict[str, Any]) -> dict[str, Any]:
    """Call ``trial_fn`` and turn any exception into a ``"failed"`` outcome with its reason.

    Returns a flat dict (what :meth:`Outcome.from_mapping` reads), so that it travels through
    any engine's result channel. A failed trial counts its elapsed wall time against the budget.
    """
    start = time.perf_counter()
    try:
        outcome = Outcome.from_mapping(trial_fn(dict(fields)))
    except Exception as exc:  # noqa: BLE001 -- a failing trial is recorded, the sweep goes on
        message = " ".join(str(exc).split()) or "no message"
        outcome = Outcome(
            status="failed",
            compute_s=time.perf_counter() - start,
            reason=f"{type(exc).__name__}: {message}"[:500],
        )
    return asdict(outcome)


@dataclass
class Trial:
    """One launched grid point: its place in the walk, its fields and (once finished) outcome."""

    index: int
    stage: int
    axis: str
    fields: dict[str, Any]
    outcome: Outcome | None = None

    def row(self) -> dict[str, Any]:
        """A flat, JSON-friendly row of the trial table."""
        row: dict[str, Any] = {"index": self.index, "stage": self.stage, "axis": self.axis}
        row.update(self.fields)
        if self.outcome is not None:
            row.update(asdict(self.outcome))
            for name in ("val_accuracy", "val_nll"):
                if not math.isfinite(row[name]):
                    row[name] = None
        return row


def select(trials: list[Trial]) -> Trial | None:
    """The winner among finished ``"ok"`` trials (module docstring), or ``None``."""
    finished = [t for t in trials if t.outcome is not None and t.outcome.status == "ok"]
    if not finished:
        return None

    def rank(trial: Trial) -> tuple[float, float, int]:
        nll = trial.outcome.val_nll
        return (-trial.outcome.val_accuracy, nll if math.isfinite(nll) else math.inf, trial.index)

    return min(finished, key=rank)


@dataclass
class Walk:
    """Budgeted, staged walk over ``grid`` (module docstring).

    Args:
        grid: the ordered grid of one method and convention.
        budget_s: the cap on the trials' summed compute, in seconds (``math.inf``: walk the
            whole grid).
        expected_s: the predicted cost of a trial before one has succeeded.
        max_trials: launch at most this many trials (``None``: no limit).
        fixed: fields every trial gets besides the grid's (e.g. ``train_size``).
        log: called with one line per finished trial.
    """

    grid: Grid
    budget_s: float = math.inf
    expected_s: float = 0.0
    max_trials: int | None = None
    fixed: dict[str, Any] = field(default_factory=dict)
    log: Callable[[str], None] | None = None
    trials: list[Trial] = field(default_factory=list)
    stop_reason: str = ""
    _stage: int = 0
    _queue: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.budget_s > 0:
            raise ValueError(f"budget_s must be positive, got {self.budget_s}")
        if self.max_trials is not None and self.max_trials < 1:
            raise ValueError(f"max_trials must be at least 1, got {self.max_trials}")
        self._queue = self.grid.stage_points(0, None)

    @property
    def compute_s(self) -> float:
        """Summed compute of the finished trials, in seconds."""
        return sum(t.outcome.compute_s for t in self.trials if t.outcome is not None)

    @property
    def running(self) -> int:
        """Trials launched and not yet recorded."""
        return sum(t.outcome is None for t in self.trials)

    @property
    def done(self) -> bool:
        """The walk has stopped launching and every launched trial has finished."""
        return bool(self.stop_reason) and self.running == 0

    def propose(self) -> Trial | str:
        """The next trial to launch, :data:`WAIT` or :data:`DONE` (see the module docstring)."""
        while not self.stop_reason:
            if self.max_trials is not None and len(self.trials) >= self.max_trials:
                self.stop_reason = f"max_trials ({self.max_trials}) reached"
            elif not self._fits_budget():
                self.stop_reason = "budget reached"
            elif self._queue:
                fields = self._queue.pop(0)
                if any(t.fields == fields for t in self.trials):
                    continue
                trial = Trial(
                    len(self.trials), self._stage, self.grid.axis_name(self._stage), fields
                )
                self.trials.append(trial)
                return trial
            elif self.running:
                return WAIT
            elif self._stage + 1 >= self.grid.num_stages:
                self.stop_reason = "grid exhausted"
            elif (best := select(self.trials)) is None:
                self.stop_reason = "no successful trial to build on"
            else:
                self._stage += 1
                self._queue = self.grid.stage_points(self._stage, best.fields)
        return DONE

    def _fits_budget(self) -> bool:
        """Whether one more trial is predicted to fit the budget (module docstring)."""
        finished = self.compute_s
        if finished >= self.budget_s:
            return False
        ok = [t.outcome.compute_s for t in self.trials if t.outcome and t.outcome.status == "ok"]
        predicted = sum(ok) / len(ok) if ok else self.expected_s
        return finished + (self.running + 1) * predicted <= self.budget_s * (1 + 1e-9)

    def record(self, index: int, outcome: Outcome | Mapping[str, Any]) -> None:
        """Store the outcome of trial ``index`` (as launched by :meth:`propose`)."""
        trial = self.trials[index]
        if trial.outcome is not None:
            raise ValueError(f"trial {index} already has an outcome")
        if not isinstance(outcome, Outcome):
            outcome = Outcome.from_mapping(outcome)
        trial.outcome = outcome
        if self.log is not None:
            self.log(self._describe(trial))

    def explain_failure(self, index: int, reason: str) -> None:
        """Replace the reason of failed trial ``index`` (an engine may learn it late)."""
        trial = self.trials[index]
        if trial.outcome is None or trial.outcome.status != "failed":
            raise ValueError(f"trial {index} has not failed")
        trial.outcome = replace(trial.outcome, reason=reason)
        if self.log is not None:
            self.log(f"trial {trial.index} failed: {reason}")

    def selected(self) -> Trial | None:
        """The selected trial among those finished so far."""
        return select(self.trials)

    def _describe(self, trial: Trial) -> str:
        outcome = trial.outcome
        swept = ", ".join(f"{k}={_short(v)}" for k, v in trial.fields.items() if k in self.grid)
        result = (
            f"val acc {outcome.val_accuracy:.4f}"
            if outcome.status == "ok"
            else f"{outcome.status}: {outcome.reason}"
        )
        source = "loaded" if outcome.reused else f"{outcome.compute_s:.1f} s"
        spent = (
            f", {self.compute_s / self.budget_s:.0%} of budget"
            if math.isfinite(self.budget_s)
            else ""
        )
        return f"trial {trial.index} [{swept}] {result} ({source}{spent})"


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)
