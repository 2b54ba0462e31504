"""A plan: walks run one after another, as an engine sees them.

An engine (:mod:`sgmcmc_paper.sweep.engines`) only asks a plan for the next :class:`Launch` (an id
and the fields to run), reports each outcome under its id, and stops at :data:`DONE`. A sweep
is one plan (the SGD reference, then one walk per method), hence one Ray Tune experiment.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sgmcmc_paper.sweep.walk import DONE, WAIT, Outcome, Trial, Walk


@dataclass(frozen=True)
class Launch:
    """What an engine runs: an id to report the outcome under, and the trial's fields."""

    id: int
    fields: dict[str, Any]


@dataclass
class Plan:
    """Walks run one after another, as engines see them (one Ray Tune experiment in all).

    ``steps`` are walks, or callables that make one when its turn comes (after the previous
    walk is done: e.g. a budget that depends on the SGD reference's time). ``on_done`` is
    called with each walk once it is done. An exception in a step or in ``on_done`` stops the
    plan and is kept in ``error`` for the engine to raise.
    """

    steps: list[Walk | Callable[[], Walk]]
    on_done: Callable[[Walk], None] | None = None
    walks: list[Walk] = field(default_factory=list)
    error: BaseException | None = None
    _launched: list[tuple[Walk, int]] = field(default_factory=list)
    _finished: int = 0

    @property
    def done(self) -> bool:
        """Every walk ran and finished (or the plan stopped on an error)."""
        running = any(walk.trials[i].outcome is None for walk, i in self._launched)
        return not running and (self.error is not None or self._finished == len(self.steps))

    def propose(self) -> Launch | str:
        """The next trial of the current walk, :data:`WAIT` or :data:`DONE`."""
        while self.error is None:
            if len(self.walks) > self._finished:
                walk = self.walks[-1]
                trial = walk.propose()
                if isinstance(trial, Trial):
                    self._launched.append((walk, trial.index))
                    return Launch(len(self._launched) - 1, {**walk.fixed, **trial.fields})
                if not walk.done:
                    return WAIT
                self._finished += 1
                self._call(self.on_done, walk)
            elif len(self.walks) == len(self.steps):
                return DONE
            else:
                step = self.steps[len(self.walks)]
                walk = step if isinstance(step, Walk) else self._call(step)
                if walk is not None:
                    self.walks.append(walk)
        return DONE

    def record(self, launch_id: int, outcome: Outcome | Mapping[str, Any]) -> None:
        walk, index = self._launched[launch_id]
        walk.record(index, outcome)

    def explain_failure(self, launch_id: int, reason: str) -> None:
        walk, index = self._launched[launch_id]
        walk.explain_failure(index, reason)

    def _call(self, function: Callable[..., Any] | None, *args: Any) -> Any:
        if function is None:
            return None
        try:
            return function(*args)
        except Exception as exc:  # noqa: BLE001 -- kept for the engine to raise
            self.error = exc
            return None
