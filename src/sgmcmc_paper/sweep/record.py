"""A sweep's outcome and how it is kept: ``results/hparams/<profile>.json``.

The file (read by :mod:`sgmcmc_paper.protocol.hparams` for tuned runs, committed for the ``paper``
profile)::

    {"profile": "paper",
     "selected": {"<convention>/<method>/<train size or 'full'>": {"lr": ..., ...}, ...},
     "sweeps":   {"<same key>": {budget, SGD reference, compute used, stop reason,
                                 selected trial, the trial table}, ...}}

``selected`` holds, per sweep, the winning trial's swept fields (run-config names) and, for
KSGLD, the K-FAC damping mode its trials ran with (``kfac_damping_mode``: a rate tuned with one
mode is not a tuned rate for the other); a sweep without a successful trial removes its entry.
A search under the cyclical schedule (``sgmcmc sweep --cyclical``) is keyed
``<convention>/<method>+cyclical/<size>``
(:data:`~sgmcmc_paper.protocol.alternatives.CYCLICAL_SUFFIX`, read by
:func:`~sgmcmc_paper.protocol.alternatives.cyclical_fields`), its sweep entry says
``"schedule": "cyclical"``, and its selection also holds the method constants its trials held
fixed (pSGLD's ``λ``, ``α``, KSGLD's damping: the method's selection when the search ran).
A sweep entry may carry ``flags``: one-line notes on how far its selection can be trusted
(:func:`selection_flags`), e.g. :data:`KSGLD_EXACT_FLAG` on the KSGLD selections searched before
the mode was recorded. Each write re-reads the file under a lock and
replaces only its own keys, so sweeps of different methods may run at the same time; the
file is replaced atomically (temporary file, then rename).
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sgmcmc_paper.engine.locks import file_lock
from sgmcmc_paper.errors import UserError
from sgmcmc_paper.paths import results_dir
from sgmcmc_paper.protocol.alternatives import CYCLICAL_SUFFIX
from sgmcmc_paper.protocol.hparams import hparams_path, selection_key
from sgmcmc_paper.sweep.walk import Trial, Walk, point_of, ranked_points

#: Config fields a method's trials hold fixed that change what its selected rate means: they
#: are recorded with the selection (``selected``) and the sweep (``sweeps``).
RECORDED_FIXED = {"ksgld": ("kfac_damping_mode",), "psgld": ("psgld_average",)}
#: The flag of the KSGLD selections of ``results/hparams/paper.json`` (issue 26): their trials
#: ran with the config's default exact damping, the as-described runs use factored damping.
KSGLD_EXACT_FLAG = (
    "searched with exact K-FAC damping (the trials kept the run config's default, "
    "kfac_damping_mode='exact'), while the 'as described' KSGLD runs that take this rate damp "
    "factor by factor (kfac_damping_mode='factored', as tf.contrib.kfac): the rate was not "
    "searched for the damping the runs use; the sweep has not been rerun"
)


@dataclass
class SweepResult:
    """One finished sweep: a method and convention at one profile and training size.

    ``reference_s`` is the SGD reference run's wall time; ``budget`` is in multiples of it.
    ``cyclical``: the method under the cyclical schedule (module docstring).
    """

    profile: str
    method: str
    convention: str
    train_size: int | None
    num_train: int
    epochs: int
    budget: float
    reference: dict[str, Any]
    walk: Walk
    engine: str
    cyclical: bool = False

    @property
    def key(self) -> str:
        method = self.method + (CYCLICAL_SUFFIX if self.cyclical else "")
        return selection_key(method, self.convention, self.train_size)

    @property
    def reference_s(self) -> float:
        return float(self.reference["compute_s"])

    @property
    def compute_s(self) -> float:
        return self.walk.compute_s

    @property
    def budget_used(self) -> float:
        """Compute of all trials in multiples of the SGD reference's wall time."""
        return self.compute_s / self.reference_s

    @property
    def selected(self) -> Trial | None:
        return self.walk.selected()

    @property
    def hparams(self) -> dict[str, Any] | None:
        """The selected trial's swept fields (without method and convention), and the fixed
        fields that qualify them (:data:`RECORDED_FIXED`)."""
        best = self.selected
        if best is None:
            return None
        chosen = {k: v for k, v in best.fields.items() if k not in ("method", "convention")}
        return {**chosen, **self.fixed(best)}

    def fixed(self, trial: Trial | None = None) -> dict[str, Any]:
        """The :data:`RECORDED_FIXED` fields of ``trial`` (default the first), as its run had
        them; for a cyclical search also every method field its trials held fixed."""
        held = {k: v for k, v in self.walk.fixed.items() if k != "train_size"}
        held = held if self.cyclical else {}
        names = [name for name in RECORDED_FIXED.get(self.method, ()) if name not in held]
        trial = trial or (self.walk.trials[0] if self.walk.trials else None)
        if not names or trial is None:
            return held
        from sgmcmc_paper.sweep.trial import trial_config

        fields = {
            **self.walk.fixed,
            **trial.fields,
            "method": self.method,
            "convention": self.convention,
            "train_size": self.train_size,
        }
        config = trial_config(self.profile, fields)
        return {**held, **{name: getattr(config, name) for name in names}}

    @property
    def recomputed(self) -> int:
        """Trials trained by this sweep (the others were loaded from the store or failed)."""
        return sum(
            t.outcome is not None and t.outcome.status != "failed" and not t.outcome.reused
            for t in self.walk.trials
        )

    def _selected_point(self) -> list[Trial]:
        ranked = ranked_points(self.walk.trials)
        return ranked[0][0] if ranked else []

    @property
    def selected_accuracy(self) -> float:
        """The selected point's validation accuracy, the mean over its seeds."""
        point = self._selected_point()
        return sum(t.outcome.val_accuracy for t in point) / len(point)

    @property
    def selected_seeds(self) -> int:
        """On how many seeds the selected point ran."""
        return len(self._selected_point())

    def axes(self) -> dict[str, dict[str, Any]]:
        """Per searched axis: the values tried (any seed, any other field), their range, the
        values tried in the selected point's slice (the other fields as selected) and whether
        the selected value lies strictly inside those."""
        best = self.selected
        table: dict[str, dict[str, Any]] = {}
        for axis in self.walk.grid:
            tried = sorted({t.fields[axis.name] for t in self.walk.trials})
            entry: dict[str, Any] = {"tried": tried, "range": [tried[0], tried[-1]]}
            if best is not None:
                here = point_of({**best.fields, axis.name: None})
                near = sorted(
                    {
                        t.fields[axis.name]
                        for t in self.walk.trials
                        if t.outcome is not None and point_of({**t.fields, axis.name: None}) == here
                    }
                )
                value = best.fields[axis.name]
                entry.update(
                    selected=value,
                    slice=near,
                    inside=bool(near) and near[0] < value < near[-1],
                )
            table[axis.name] = entry
        return table

    def summary(self) -> str:
        """One paragraph for a terminal or a notebook."""
        best = self.selected
        choice = (
            f"selected trial {best.index} "
            + ", ".join(f"{k}={_short(v)}" for k, v in self.hparams.items())
            + f" (validation accuracy {self.selected_accuracy:.4f}"
            + (f", mean of {self.selected_seeds} seeds)" if self.selected_seeds > 1 else ")")
            if best is not None
            else "no trial succeeded: nothing selected"
        )
        failed = sum(t.outcome.status != "ok" for t in self.walk.trials if t.outcome)
        return (
            f"{self.key} ({self.profile}, {self.engine}): {len(self.walk.trials)} trials "
            f"({self.recomputed} trained now, {failed} failed or diverged), "
            f"{self.budget_used:.2f}x of the SGD time {self.reference_s:.1f} s used of a "
            f"{self.budget:g}x budget; stopped: {self.walk.stop_reason}; {choice}"
        )

    def record(self) -> dict[str, Any]:
        """The JSON-ready entry of ``sweeps``."""
        best = self.selected
        return {
            "method": self.method,
            **({"schedule": "cyclical"} if self.cyclical else {}),
            "convention": self.convention,
            "dataset": "mnist",
            "evaluate_on": "validation",
            "train_size": self.train_size,
            "num_train": self.num_train,
            "epochs": self.epochs,
            "budget": self.budget,
            "reference": self.reference,
            "budget_s": _finite(self.budget * self.reference_s),
            "compute_s": self.compute_s,
            "budget_used": self.budget_used,
            "stop_reason": self.walk.stop_reason,
            **self.fixed(best),
            "engine": self.engine,
            "selected_trial": None if best is None else best.index,
            "validation_accuracy": None if best is None else self.selected_accuracy,
            "selected_seeds": None if best is None else self.selected_seeds,
            "walk": "bracket" if self.walk.bracket else "budget",
            "axes": self.axes(),
            "notes": list(self.walk.notes),
            "written_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "trials": [t.row() for t in self.walk.trials],
        }


def _short(value: Any) -> str:
    """A number as ``:g`` writes it, anything else as it is."""
    return f"{value:g}" if isinstance(value, (int, float)) else str(value)


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _json_ready(value: Any) -> Any:
    """``value`` with non-finite floats (not JSON) replaced by ``None``, recursively."""
    if isinstance(value, float):
        return _finite(value)
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    return value


def write_results(results: list[SweepResult]) -> Path:
    """Merge the sweeps (all of one profile) into ``results/hparams/<profile>.json``."""
    profiles = {r.profile for r in results}
    if len(profiles) != 1:
        raise ValueError(f"write one profile at a time, got {sorted(profiles)}")
    profile = profiles.pop()
    path = hparams_path(profile)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with _locked(profile):
            content = read_file(path) or {"profile": profile}
            content.setdefault("selected", {})
            content.setdefault("sweeps", {})
            for result in results:
                content["sweeps"][result.key] = _json_ready(result.record())
                if result.hparams is None:
                    content["selected"].pop(result.key, None)
                else:
                    content["selected"][result.key] = result.hparams
            _replace(path, content)
    except OSError as exc:
        raise UserError(
            f"cannot write {path}: {exc.strerror or exc}; set $SGMCMC_RESULTS to a writable folder"
        ) from None
    return path


def merge_file(source: Path, profile: str) -> list[str]:
    """Merge the sweeps of another store's selection file ``source`` (e.g. one a GPU machine
    returned) into ``results/hparams/<profile>.json``, under its lock, atomically: a sweep of
    ``source`` replaces this file's sweep of the same key, with its selection, when it was
    written later (``written_utc``) or this file has none; the rest is left as it is. Returns
    the keys taken."""
    incoming = read_file(Path(source))
    if incoming is None:
        raise UserError(f"no selection file {source} to merge")
    if incoming.get("profile", profile) != profile:
        raise UserError(
            f"{source} holds the {incoming['profile']!r} profile's selections, not {profile!r}; "
            f"pass --profile {incoming['profile']}"
        )
    path = hparams_path(profile)
    path.parent.mkdir(parents=True, exist_ok=True)
    taken = []
    with _locked(profile):
        content = read_file(path) or {"profile": profile}
        for section in ("selected", "sweeps"):
            content.setdefault(section, {})
        for key, sweep in incoming.get("sweeps", {}).items():
            ours = content["sweeps"].get(key)
            if ours is not None and ours.get("written_utc", "") >= sweep.get("written_utc", ""):
                continue
            content["sweeps"][key] = sweep
            if key in incoming.get("selected", {}):
                content["selected"][key] = incoming["selected"][key]
            else:
                content["selected"].pop(key, None)
            taken.append(key)
        _replace(path, content)
    return taken


def _replace(path: Path, content: dict[str, Any]) -> None:
    """Write ``content`` over ``path`` atomically (a temporary file renamed over it), its
    ``selected`` and ``sweeps`` sorted by key; the caller holds the file's lock."""
    for section in ("selected", "sweeps"):
        if section in content:
            content[section] = dict(sorted(content[section].items()))
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(content, indent=1, allow_nan=False) + "\n")
    os.replace(tmp, path)


def read_file(path: Path) -> dict[str, Any] | None:
    """The content of a selection file, ``None`` if there is none; a corrupt file is an error."""
    if not path.exists():
        return None
    try:
        content = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(
            f"{path} is not valid JSON ({exc}); restore it from git or delete it and rerun "
            "`sgmcmc sweep`"
        ) from None
    if not isinstance(content, dict):
        raise UserError(f"{path} does not hold a JSON object; restore it from git or delete it")
    return content


def selection_flags(profile: str) -> dict[str, list[str]]:
    """``{selection key: flags}`` of a profile's sweeps that carry any (module docstring), for
    the book to show beside the rates it uses."""
    return {key: list(entry["flags"]) for key, entry in load_sweeps(profile).items()
            if entry.get("flags")}  # fmt: skip


def load_sweeps(profile: str) -> dict[str, dict[str, Any]]:
    """The ``sweeps`` section of a profile's selection file (empty when there is none)."""
    return (read_file(hparams_path(profile)) or {}).get("sweeps", {})


def _locked(profile: str):
    """An exclusive lock per profile, outside the committed folder."""
    return file_lock(results_dir() / ".locks" / f"hparams-{profile}.lock")
