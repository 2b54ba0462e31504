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
  go to the lower validation NLL (when known), then to the earlier trial in walk order. Trials
  of one grid point on several seeds (field ``seed``) count as one point, scored by their mean;
  a point with a failed or diverged seed is not selected.

``bracket=True`` (the search of the book, :func:`sgmcmc_paper.sweep.run_sweep`) replaces the
budget's stopping rule by bracketing, so that every selected value lies strictly inside the
values tried around it:

- *Stages.* Stage 0 runs the grid's defaults; each stage then tries, at the best point so far,
  the two neighbours (in the axis' sorted values) of its value on the stage's axis, until the
  best point has both neighbours tried in that slice (the other fields equal). A best value at
  the end of the axis' values extends the axis by one value beyond it (a geometric step: the
  ratio of the last two values; for decay constants in ``(0, 1)`` the ratio of ``1 − value``;
  for a fraction in ``(0, 1)``, of ``value`` downwards and of ``1 − value`` upwards; for a
  count, rounded, never below 1),
  at most ``max_extensions`` times per axis (then the walk notes that the value sits at its
  range's edge). A neighbour the grid does not admit (:meth:`Grid.admissible
  <sgmcmc_paper.sweep.grids.Grid.admissible>`: e.g. a cyclical trial that would end exploring)
  is not tried, so the value next to it sits at the edge of its range. After the last stage
  every axis is checked again at the final best point and any missing neighbour is tried.
- *Seeds.* When the best two points' accuracies differ by less than two standard errors of a
  difference of two accuracies on ``noise_n`` validation images
  (``2·sqrt(p₁(1 − p₁)/n + p₂(1 − p₂)/n)``, the binomial part of seed noise), both are run
  once more with ``seed = second_seed`` and the selection takes their two-seed means; then the
  bracketing check runs again for the point selected.
- *Budget.* Bracketing trials are never skipped for the budget; the walk records the compute
  used (which may exceed ``budget_s``), and ``max_trials`` still caps it.
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
    """Call ``trial_fn`` and turn any exception into a ``"failed"`` outcome with its reason,
    except a missing module (``ModuleNotFoundError``: no trial could run, so the sweep stops and
    the command names the extra to install).

    Returns a flat dict (what :meth:`Outcome.from_mapping` reads), so that it travels through
    any engine's result channel. A failed trial counts its elapsed wall time against the budget.
    """
    start = time.perf_counter()
    try:
        outcome = Outcome.from_mapping(trial_fn(dict(fields)))
    except ModuleNotFoundError:
        raise
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


def point_of(fields: dict[str, Any]) -> tuple:
    """A grid point: ``fields`` without ``seed`` (hashable)."""
    return tuple(sorted((k, repr(v)) for k, v in fields.items() if k != "seed"))


def ranked_points(trials: list[Trial]) -> list[tuple[list[Trial], float, float]]:
    """Finished grid points with only ``"ok"`` trials, best first: ``(trials, mean accuracy,
    mean NLL)`` (module docstring)."""
    points: dict[tuple, list[Trial]] = {}
    for t in trials:
        if t.outcome is not None:
            points.setdefault(point_of(t.fields), []).append(t)
    ranked = []
    for group in points.values():
        if any(t.outcome.status != "ok" for t in group):
            continue
        accuracy = sum(t.outcome.val_accuracy for t in group) / len(group)
        nlls = [t.outcome.val_nll for t in group if math.isfinite(t.outcome.val_nll)]
        nll = sum(nlls) / len(nlls) if len(nlls) == len(group) else math.inf
        ranked.append((group, accuracy, nll))
    ranked.sort(key=lambda entry: (-entry[1], entry[2], entry[0][0].index))
    return ranked


def select(trials: list[Trial]) -> Trial | None:
    """The winner (module docstring): the first trial of the best grid point, or ``None``."""
    ranked = ranked_points(trials)
    return ranked[0][0][0] if ranked else None


#: Axes whose values are decay constants in ``(0, 1]``: extended in ``1 − value``.
DECAY_AXES = ("lr_decay", "psgld_alpha", "kfac_ema_decay")
#: Axes whose values are fractions in ``(0, 1)``: extended downwards in ``value``, upwards in
#: ``1 − value`` (a cyclical schedule's exploration fraction).
FRACTION_AXES = ("cycle_exploration",)
#: Axes whose values are counts (integers from 1): extended by rounded geometric steps.
COUNT_AXES = ("cycles",)


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
        bracket: walk by bracketing instead of by budget (module docstring).
        max_extensions: with ``bracket``, how often an axis may be extended beyond its values.
        noise_n: with ``bracket``, the validation images behind an accuracy (the seed-noise
            rule); ``None``: no second seed.
        second_seed: the seed of the confirming runs.
    """

    grid: Grid
    budget_s: float = math.inf
    expected_s: float = 0.0
    max_trials: int | None = None
    fixed: dict[str, Any] = field(default_factory=dict)
    log: Callable[[str], None] | None = None
    bracket: bool = False
    max_extensions: int = 3
    noise_n: int | None = None
    second_seed: int = 1
    trials: list[Trial] = field(default_factory=list)
    stop_reason: str = ""
    notes: list[str] = field(default_factory=list)
    _stage: int = 0
    _queue: list[dict[str, Any]] = field(default_factory=list)
    _label: tuple[int, str] = (0, "lr")
    _values: dict[str, list[Any]] = field(default_factory=dict)
    _extended: dict[str, int] = field(default_factory=dict)
    _seeded: bool = False

    def __post_init__(self) -> None:
        if not self.budget_s > 0:
            raise ValueError(f"budget_s must be positive, got {self.budget_s}")
        if self.max_trials is not None and self.max_trials < 1:
            raise ValueError(f"max_trials must be at least 1, got {self.max_trials}")
        self._queue = [self.grid.defaults()] if self.bracket else self.grid.stage_points(0, None)
        self._label = (0, self.grid.axis_name(0))

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
            elif not self.bracket and not self._fits_budget():
                self.stop_reason = "budget reached"
            elif self._queue:
                fields = self._queue.pop(0)
                if any(t.fields == fields for t in self.trials):
                    continue
                trial = Trial(len(self.trials), *self._label, fields)
                self.trials.append(trial)
                return trial
            elif self.running:
                return WAIT
            elif self.bracket:
                self._queue = self._bracket_next()
            elif self._stage + 1 >= self.grid.num_stages:
                self.stop_reason = "grid exhausted"
            elif (best := select(self.trials)) is None:
                self.stop_reason = "no successful trial to build on"
            else:
                self._stage += 1
                self._queue = self.grid.stage_points(self._stage, best.fields)
                self._label = (self._stage, self.grid.axis_name(self._stage))
        return DONE

    # ------------------------------------------------------------------ bracketing
    def _bracket_next(self) -> list[dict[str, Any]]:
        """The next trials of a bracketing walk (module docstring); sets ``stop_reason`` when
        there are none."""
        best = select(self.trials)
        if best is None:
            self.stop_reason = "no successful trial to build on"
            return []
        while self._stage < self.grid.num_stages:
            points = self._bracket_points(self._stage, best.fields)
            if points:
                return points
            self._stage += 1
        for stage in range(self.grid.num_stages):  # the final best, on every axis
            points = self._bracket_points(stage, best.fields)
            if points:
                return points
        points = self._second_seed_points()
        if points:
            return points
        self.notes = [self._edge_note(axis.name, best.fields) for axis in self.grid]
        self.notes = [note for note in self.notes if note]
        self.stop_reason = "; ".join(self.notes) or "every axis bracketed"
        return []

    def _edge_note(self, name: str, fields: dict[str, Any]) -> str:
        """Why the selected value of axis ``name`` is not strictly inside the values tried in
        its slice (the extension cap or the axis' domain), or ``""`` when it is."""
        here = point_of({**fields, name: None})
        near = sorted(
            t.fields[name] for t in self.trials if point_of({**t.fields, name: None}) == here
        )
        value = fields[name]
        if near[0] < value < near[-1]:
            return ""
        used = self._extended.get(name, 0)
        cap = f" after {used} extensions" if used >= self.max_extensions else ""
        return f"{name}={_short(value)} sits at the edge of its range{cap}"

    def _bracket_points(self, stage: int, fields: dict[str, Any]) -> list[dict[str, Any]]:
        """The untried neighbours of ``fields`` on the axis of ``stage``, in its slice."""
        axis = self.grid.axes[stage]
        values = self._values.setdefault(axis.name, sorted(axis.values))
        base = {k: v for k, v in fields.items() if k != "seed"}
        tried = {
            repr(t.fields.get(axis.name))
            for t in self.trials
            if point_of({**t.fields, axis.name: None}) == point_of({**base, axis.name: None})
        }
        index = values.index(base[axis.name])
        points = []
        for step in (1, -1):
            j = index + step
            if not 0 <= j < len(values):
                if not self._extend(axis.name, values, upward=step > 0):
                    continue
                j = index + 1 if step > 0 else 0
                index += step < 0  # a value was put in front
            point = {**base, axis.name: values[j]}
            if repr(values[j]) not in tried and self.grid.admissible(point):
                points.append(point)
        self._label = (stage, axis.name)
        return points

    def _extend(self, name: str, values: list[Any], upward: bool) -> bool:
        """Add one value beyond the end of ``values`` (module docstring); ``False`` at the
        cap or at the edge of the axis' domain (a decay constant or fraction of 1, a value of
        0, a count of 1; an axis of one value has no step)."""
        if len(values) < 2:
            return False
        edge, inner = (values[-1], values[-2]) if upward else (values[0], values[1])
        decay = name in DECAY_AXES or (name in FRACTION_AXES and upward)
        a, b = (1 - edge, 1 - inner) if decay else (edge, inner)
        used = self._extended.get(name, 0)
        if used >= self.max_extensions or a <= 0 or b <= 0:
            return False
        new = a * a / b
        if name in COUNT_AXES:
            new = round(new)
        else:
            new = float(f"{(1 - new if decay else new):.6g}")
        unit = decay or name in FRACTION_AXES
        if new in values or (unit and not 0 < new < 1) or (name in COUNT_AXES and new < 1):
            return False
        self._extended[name] = used + 1
        values.insert(len(values) if upward else 0, new)
        return True

    def _second_seed_points(self) -> list[dict[str, Any]]:
        """Both best points again with ``second_seed`` when they are within seed noise."""
        ranked = ranked_points(self.trials)
        if self._seeded or self.noise_n is None or len(ranked) < 2:
            return []
        (first, p1, _), (second, p2, _) = ranked[:2]
        n = self.noise_n
        noise = 2 * math.sqrt(p1 * (1 - p1) / n + p2 * (1 - p2) / n)
        self._seeded = True
        if abs(p1 - p2) >= noise:
            return []
        self._label = (self.grid.num_stages, "seed")
        return [{**group[0].fields, "seed": self.second_seed} for group in (first, second)]

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
