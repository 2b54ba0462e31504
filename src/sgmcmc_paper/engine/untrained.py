"""A run the store lacks, as a stored-only book build sees it (book/methods.md, "Runs not
trained").

At the quick and paper profiles ``make book`` never trains: a notebook's ``Session.run`` of a
run that is not stored returns a :class:`NotTrained` in its place. It has the shape of a
:class:`~sgmcmc_paper.engine.experiment.RunResult` with nothing measured (no epochs, no windows,
no predictions, no traces) and the fate :data:`~sgmcmc_paper.engine.fate.NOT_TRAINED`, so it
travels through every table as a failed run does: it never counts
(:func:`~sgmcmc_paper.analysis.tables.counts_at`), rows say "3 of 5 (2 not trained)", and a
claim left with too few seeds says "unresolved (runs not trained)".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sgmcmc_paper.engine.fate import NOT_TRAINED, Fate
from sgmcmc_paper.protocol.config import RunConfig


@dataclass
class NotTrained:
    """The stand-in for ``config``'s run: ``status`` and ``fate`` say "not trained", the
    metrics are empty; per-example arrays and traces raise (``KeyError``, ``ValueError``), as
    for a stored run without them."""

    config: RunConfig
    metrics: dict[str, Any] = field(default_factory=lambda: {"epochs": [], "windows": {}})
    predictions: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    divergence: None = None
    skipped: list[str] = field(default_factory=list)
    path: None = None
    status: str = NOT_TRAINED

    @property
    def notes(self) -> list[str]:
        return [f"not trained: the store lacks run {self.key} ({fill_command(self.config)})"]

    @property
    def key(self) -> str:
        return self.config.key()

    @property
    def diverged(self) -> bool:
        return False

    @property
    def fate(self) -> Fate:
        return Fate(NOT_TRAINED, None, f"the store lacks this run; {fill_command(self.config)}")

    def epochs(self):
        """An empty per-epoch table (``epoch, mode, metric, value``)."""
        import pandas as pd

        return pd.DataFrame(columns=["epoch", "mode", "metric", "value"])

    def window(self, name: str) -> dict[str, Any]:
        raise KeyError(f"no window {name!r}: run {self.key} is not trained")

    def per_example(self, window: str, set_name: str, mode: str = "averaged") -> dict:
        raise KeyError(f"no per-example arrays: run {self.key} is not trained")

    def traces(self):
        raise ValueError(f"no traces: run {self.key} is not trained")


def fill_command(config: RunConfig) -> str:
    """The command that trains the run (``sgmcmc fill --profile <profile>``)."""
    return f"sgmcmc fill --profile {config.profile} trains it"
