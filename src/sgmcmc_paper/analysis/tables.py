"""Stored runs as tidy tables, and the run sets the reproduction notebooks share.

A run set maps ``(configuration, method, seed)`` to a
:class:`~sgmcmc_paper.protocol.config.RunConfig`; configurations are ``"as released"`` (the code's
behaviour: KSGLD's K-FAC never updated, so KSGLD ran as SGLD; book/reproduction_notes.md) and
``"as described"`` (working K-FAC, tuned rates). SGD and FSGD share one
training (their configs have one key): SGD reads the final single model, FSGD and the Langevin
methods the averaged predictive — the paper's reading, :func:`paper_mode`.

Every table is a long pandas DataFrame with the columns ``configuration, method, seed`` first,
then ``fate`` and ``fate_epoch`` (the run's :class:`~sgmcmc_paper.engine.fate.Fate`) and
``counted``, so notebooks group, average over seeds (:func:`over_seeds`) and plot without
reshaping.

**Failed runs** (:data:`FAILED_RUN_RULE`, the one rule every table, figure and claim follows,
stated again in book/methods.md, "Failed runs in tables"): a row reports an epoch (a per-epoch
value, or a window ending at that epoch, or a run's final epoch), and a run *counts* in it only
if it was still healthy there (:func:`counts_at`). Every row says how many of its seeds count;
means, intervals and tests use those seeds only, never a value from another epoch.

**Intervals over seeds** (:func:`seed_interval`): Student-t on a scale where the metric's range
is the whole real line — the logit for metrics bounded on both sides (accuracy, AUROC, AUPR,
FPR95, ECE, Brier), the logarithm for positive ones (NLL, mESS) — back-transformed, so an
interval never leaves the metric's range. Comparisons are paired by seed
(:func:`paired_interval`: a Student-t interval on the mean paired difference).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from sgmcmc_paper.protocol.paper import METHODS

CONFIGURATIONS = ("as released", "as described")
RunKey = tuple[str, str, int]

#: The level of every interval over seeds and every paired test in the book.
LEVEL = 0.95
#: The fewest seeds (counted for both sides of a paired difference) a tested claim needs;
#: with fewer its verdict is "n/a".
MIN_SEEDS = 3

FAILED_RUN_RULE = (
    "A row of a table or a point of a figure reports one epoch: a per-epoch value, a window "
    "ending at that epoch, or a run's final epoch. A run counts in it only if it was still "
    "healthy at that epoch: a complete run always, a run that diverged or collapsed only at "
    "epochs before the one its fate names. The others are counted as failed in the row "
    '("2 of 3 seeds", with their fates), never replaced by a value from an earlier epoch; '
    "means, intervals and tests use the seeds that count (a paired comparison, the seeds that "
    "count on both sides), and per-seed tables show the values that do not count in brackets."
)
"""The failed-run rule, stated once (book/methods.md quotes it)."""


# ---------------------------------------------------------------------- fates
def run_fate(result) -> Any:
    """The :class:`~sgmcmc_paper.engine.fate.Fate` of a run (``result.fate``)."""
    found = getattr(result, "fate", None)
    if found is not None:
        return found
    from sgmcmc_paper.engine.fate import fate

    return fate(result)


def trained(result) -> bool:
    """Whether a run was trained (stored or run here): not a stored-only build's stand-in for
    a run the store lacks (:class:`~sgmcmc_paper.engine.untrained.NotTrained`, whose fate is
    "not trained": it counts nowhere, and has no traces or per-example arrays)."""
    from sgmcmc_paper.engine.fate import NOT_TRAINED

    return run_fate(result).status != NOT_TRAINED


def counts_at(fate, epoch: int | float | None) -> bool:
    """Whether a run with ``fate`` counts in a row that reports ``epoch`` (:data:`FAILED_RUN_RULE`):
    always when it completed, before its fate's epoch when it diverged or collapsed."""
    if fate.status == "complete":
        return True
    if fate.epoch is None or epoch is None:
        return False
    return epoch < fate.epoch


def fate_text(status: str, epoch: Any = None) -> str:
    """``"complete"``, ``"diverged at epoch 13"``, ``"collapsed at epoch 7"``."""
    if status == "complete":
        return status
    if epoch is None or epoch != epoch:
        return status
    return f"{status} at epoch {int(epoch)}"


def failed_runs(results: Mapping[RunKey, Any]):
    """One row per run that did not complete: ``configuration, method, seed, fate, epoch,
    reason`` (empty when every run completed)."""
    import pandas as pd

    rows = []
    for (configuration, method, seed), result in results.items():
        fate = run_fate(result)
        if fate.status != "complete":
            rows.append(
                {
                    "configuration": configuration,
                    "method": method,
                    "seed": seed,
                    "fate": fate.status,
                    "epoch": fate.epoch,
                    "reason": fate.reason,
                }
            )
    columns = ["configuration", "method", "seed", "fate", "epoch", "reason"]
    return pd.DataFrame(rows, columns=columns)


# ---------------------------------------------------------------------- intervals
#: The range of each metric the tables summarise; intervals are computed on a scale where it
#: is the real line (:func:`seed_interval`). Keys are a metric's last ``/``-separated part.
METRIC_BOUNDS: dict[str, tuple[float, float]] = {
    **dict.fromkeys(
        (
            "accuracy",
            "auroc",
            "aupr_in",
            "aupr_out",
            "fpr95",
            "ece",
            "mean_max_prob",
            "fgsm accuracy",
            "notMNIST AUROC",
        ),
        (0.0, 1.0),
    ),
    "brier": (0.0, 2.0),
    **dict.fromkeys(
        ("nll", "mean_entropy", "mean_mi", "mess", "minimum", "ess_bulk", "ess_tail"),
        (0.0, math.inf),
    ),
}


def metric_bounds(name: str) -> tuple[float, float]:
    """The range of metric ``name`` (:data:`METRIC_BOUNDS`; unbounded when unknown)."""
    return METRIC_BOUNDS.get(str(name).rsplit("/", 1)[-1], (-math.inf, math.inf))


def _to_line(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    if math.isfinite(lo) and math.isfinite(hi):
        u = np.clip((x - lo) / (hi - lo), 1e-6, 1 - 1e-6)
        return np.log(u) - np.log1p(-u)
    if math.isfinite(lo):
        return np.log(np.maximum(x - lo, 1e-12))
    if math.isfinite(hi):
        return -np.log(np.maximum(hi - x, 1e-12))
    return x


def _from_line(z: float, lo: float, hi: float) -> float:
    if math.isfinite(lo) and math.isfinite(hi):
        return lo + (hi - lo) / (1.0 + math.exp(-z)) if z > -700 else lo
    if math.isfinite(lo):
        return lo + math.exp(min(z, 700.0))
    if math.isfinite(hi):
        return hi - math.exp(min(-z, 700.0))
    return z


def seed_interval(
    values, bounds: tuple[float, float] = (-math.inf, math.inf), level: float = LEVEL
) -> tuple[float, float]:
    """The ``level`` interval for the mean of ``values`` (one per seed): a Student-t interval
    on the logit scale of ``bounds`` (both finite), the log scale (one finite) or as is
    (none), back-transformed, so it stays inside the metric's range. ``(nan, nan)`` below two
    finite values."""
    from scipy import stats

    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    if len(x) < 2:
        return math.nan, math.nan
    lo, hi = bounds
    z = _to_line(x, lo, hi)
    half = stats.t.ppf(0.5 + level / 2, len(z) - 1) * float(np.std(z, ddof=1)) / math.sqrt(len(z))
    centre = float(np.mean(z))
    return _from_line(centre - half, lo, hi), _from_line(centre + half, lo, hi)


def seeds_note(counted: int, seeds: int, fates: Mapping[str, int] | None = None) -> str:
    """``"3 of 3"``, ``"1 of 3 (2 collapsed)"``: how many of a row's seeds count, and why not
    the others."""
    note = f"{counted} of {seeds}"
    failed = {k: v for k, v in (fates or {}).items() if v and k != "complete"}
    missing = seeds - counted - sum(failed.values())
    if missing > 0:
        failed["not measured"] = missing
    if failed:
        note += " (" + ", ".join(f"{n} {status}" for status, n in failed.items()) + ")"
    return note


def over_seeds(frame, value: str, by: Iterable[str], level: float = LEVEL, bounds=None):
    """Mean, standard deviation and a ``level`` interval (:func:`seed_interval`) over seeds of
    ``value``, grouped by ``by``, from the rows that count (column ``counted``, when the frame
    has it: :data:`FAILED_RUN_RULE`) and are finite.

    Columns: ``by``, ``mean``, ``std``, ``count`` (seeds that count), ``seeds`` (rows of the
    group), ``failed`` (``seeds − count``), ``seeds counted`` (:func:`seeds_note`), ``low``,
    ``high`` (NaN below two seeds). ``bounds`` is the metric's range; by default it is looked
    up (:func:`metric_bounds`) from ``value``, or per group from a ``metric`` or ``measure``
    column in ``by``.
    """
    import pandas as pd

    by = list(by)
    rows = []
    for key, group in frame.groupby(by, sort=False, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        values = pd.to_numeric(group[value], errors="coerce").to_numpy(dtype=float)
        counted = (
            group["counted"].to_numpy(dtype=bool)
            if "counted" in group
            else np.ones(len(group), bool)
        )
        use = values[counted & np.isfinite(values)]
        fates: dict[str, int] = {}
        if "fate" in group:
            for status, ok in zip(group["fate"], counted, strict=True):
                if not ok:
                    fates[status] = fates.get(status, 0) + 1
        limits = bounds
        if limits is None:
            name = value
            for column in ("metric", "measure"):
                if column in by:
                    name = key[by.index(column)]
            limits = metric_bounds(name)
        low, high = seed_interval(use, limits, level)
        rows.append(
            {
                **dict(zip(by, key, strict=True)),
                "mean": float(np.mean(use)) if len(use) else math.nan,
                "std": float(np.std(use, ddof=1)) if len(use) > 1 else math.nan,
                "count": len(use),
                "seeds": len(group),
                "failed": len(group) - len(use),
                "seeds counted": seeds_note(len(use), len(group), fates),
                "low": low,
                "high": high,
            }
        )
    columns = [*by, "mean", "std", "count", "seeds", "failed", "seeds counted", "low", "high"]
    return pd.DataFrame(rows, columns=columns)


def interval_text(mean: float, low: float, high: float, digits: int = 4, scale: float = 1.0) -> str:
    """``"0.9712 [0.9601, 0.9790]"`` (``scale`` multiplies, e.g. 100 for percent); the mean
    alone without an interval; empty without a mean."""
    if mean != mean:
        return ""
    text = f"{scale * mean:.{digits}f}"
    if low == low and high == high:
        text += f" [{scale * low:.{digits}f}, {scale * high:.{digits}f}]"
    return text


def summary_cells(summary, digits: int = 4, scale: float = 1.0):
    """:func:`over_seeds`'s summary with a ``cell`` column, ``mean [low, high]`` as text."""
    cells = [
        interval_text(m, lo, hi, digits, scale)
        for m, lo, hi in zip(summary["mean"], summary["low"], summary["high"], strict=True)
    ]
    return summary.assign(cell=cells)


@dataclass(frozen=True)
class PairedInterval:
    """The mean over seeds of a paired difference ``a − b`` with its ``level`` Student-t
    interval (NaN below :data:`MIN_SEEDS` seeds counted for both), the seeds used and, when
    they are too few, why."""

    mean: float
    low: float
    high: float
    seeds: int
    level: float = LEVEL
    note: str = ""

    @property
    def testable(self) -> bool:
        return self.low == self.low and self.high == self.high

    def text(self, scale: float = 1.0, digits: int = 2, unit: str = "") -> str:
        """``"+0.52 [+0.10, +0.94] points"`` (``"+0.52 (1 seed)"`` without an interval)."""
        if self.mean != self.mean:
            return "no seed counted for both sides"
        mean = f"{scale * self.mean:+.{digits}f}"
        if not self.testable:
            return f"{mean}{unit} ({self.seeds} seed{'s' if self.seeds != 1 else ''})"
        return f"{mean} [{scale * self.low:+.{digits}f}, {scale * self.high:+.{digits}f}]{unit}"


def paired_interval(
    frame,
    value: str,
    a: str,
    b: str,
    column: str = "method",
    by_seed: str = "seed",
    level: float = LEVEL,
    min_seeds: int = MIN_SEEDS,
) -> PairedInterval:
    """``a − b`` in ``value``, where ``column`` names the side, paired by ``by_seed`` (same seed:
    same initialisation and batch order): the mean of the per-seed differences and its
    ``level`` Student-t interval, over the seeds whose rows count for both sides
    (:data:`FAILED_RUN_RULE`); NaN interval below ``min_seeds`` such seeds."""
    from scipy import stats

    def side(name):
        rows = frame[frame[column] == name]
        if "counted" in rows:
            dropped = rows[~rows["counted"].astype(bool)]
            rows = rows[rows["counted"].astype(bool)]
        else:
            dropped = rows.iloc[0:0]
        values = rows.set_index(by_seed)[value].astype(float)
        return values[np.isfinite(values)], dropped

    (x, x_dropped), (y, y_dropped) = side(a), side(b)
    seeds = sorted(set(x.index) & set(y.index))
    diff = (x.loc[seeds] - y.loc[seeds]).to_numpy(dtype=float)
    notes = []
    for name, dropped in ((a, x_dropped), (b, y_dropped)):
        if len(dropped):
            fates = dropped["fate"] if "fate" in dropped else ["not counted"] * len(dropped)
            counts: dict[str, int] = {}
            for status in fates:
                counts[status] = counts.get(status, 0) + 1
            notes.append(f"{name}: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
    mean = float(diff.mean()) if len(diff) else math.nan
    if len(diff) < max(min_seeds, 2):
        note = f"{len(diff)} seed(s) counted for both, fewer than {min_seeds}"
        if notes:
            note += " (" + "; ".join(notes) + ")"
        return PairedInterval(mean, math.nan, math.nan, len(diff), level, note)
    half = stats.t.ppf(0.5 + level / 2, len(diff) - 1) * diff.std(ddof=1) / math.sqrt(len(diff))
    return PairedInterval(mean, mean - half, mean + half, len(diff), level, "; ".join(notes))


def paper_mode(method: str) -> str:
    """``"single"`` for SGD (the paper's final model), else ``"averaged"``."""
    return "single" if method == "sgd" else "averaged"


def reproduction_configs(
    profile: str,
    seeds: Iterable[int],
    methods: Iterable[str] = METHODS,
    configurations: Iterable[str] = CONFIGURATIONS,
    **overrides: Any,
) -> dict[RunKey, Any]:
    """``{(configuration, method, seed): RunConfig}`` at ``profile``'s sizes; ``overrides``
    set config fields (e.g. ``train_size`` and ``epochs`` for smallMNIST)."""
    from sgmcmc_paper.protocol.profiles import as_described, as_released

    named = {"as released": as_released, "as described": as_described}
    return {
        (configuration, method, seed): named[configuration](method, profile, seed=seed, **overrides)
        for configuration in configurations
        for method in methods
        for seed in seeds
    }


def run_all(session, configs: Mapping[RunKey, Any]) -> dict[RunKey, Any]:
    """Each config through ``session.run`` (stored results are loaded, shared keys trained once)."""
    return {key: session.run(config) for key, config in configs.items()}


def _rows(results: Mapping[RunKey, Any], records, epoch_of=None) -> Any:
    """Rows of every run's ``records(method, result)``, each with the run's ``fate``,
    ``fate_epoch`` and ``counted`` (:func:`counts_at` the epoch ``epoch_of(record, result)``
    reports; a record may set ``counted`` itself)."""
    import pandas as pd

    rows = []
    for (configuration, method, seed), result in results.items():
        fate = run_fate(result)
        for record in records(method, result):
            epoch = epoch_of(record, result) if epoch_of is not None else None
            counted = record.pop("counted", None)
            if counted is None:
                counted = counts_at(fate, epoch)
            rows.append(
                {
                    "configuration": configuration,
                    "method": method,
                    "seed": seed,
                    "fate": fate.status,
                    "fate_epoch": fate.epoch,
                    "counted": bool(counted),
                    **record,
                }
            )
    return pd.DataFrame(rows)


def epoch_table(results: Mapping[RunKey, Any]):
    """Per epoch and mode (``single``/``averaged``): test accuracy, NLL, ECE, Brier; column
    ``paper_mode`` marks the curve the paper plots for the method. Every epoch of a run's
    config has rows: an epoch a run did not reach has NaN metrics, and ``counted`` follows
    :data:`FAILED_RUN_RULE`."""

    def records(method, result):
        reached = {record["epoch"]: record for record in result.metrics.get("epochs", [])}
        last = max([result.config.epochs, *reached])
        for epoch in range(1, last + 1):
            record = reached.get(epoch)
            for mode in ("single", "averaged"):
                values = (
                    {k: v for k, v in record[mode].items() if k != "samples"}
                    if record is not None
                    else {"accuracy": math.nan}
                )
                yield {
                    "epoch": epoch,
                    "mode": mode,
                    "paper_mode": mode == paper_mode(method),
                    **({} if record is not None else {"counted": False}),
                    **values,
                }

    return _rows(results, records, lambda record, result: record["epoch"])


def _window_end(result, window: str) -> int | None:
    try:
        return result.config.window(window).end_epoch
    except KeyError:
        return None


def window_table(results: Mapping[RunKey, Any], window: str):
    """A window's metrics on every clean set (test and out-of-distribution sets), long:
    ``set, mode, metric, value``; detection scores as ``metric = "<score>/<auroc|...>"``.
    ``counted`` follows :data:`FAILED_RUN_RULE` at the window's last epoch; a run that did
    not reach the window has the rows its method's other runs have, with NaN values."""

    def records(method, result):
        sets = result.metrics["windows"].get(window, {}).get("sets", {})  # none if diverged
        for set_name, by_mode in sets.items():
            for mode in ("single", "averaged"):
                for metric, value in by_mode.get(mode, {}).items():
                    yield {"set": set_name, "mode": mode, "metric": metric, "value": value}
                detection = by_mode.get("detection", {}).get(mode, {})
                for score, values in detection.items():
                    for metric, value in values.items():
                        yield {
                            "set": set_name,
                            "mode": mode,
                            "metric": f"{score}/{metric}",
                            "value": value,
                        }

    frame = _rows(results, records, lambda record, result: _window_end(result, window))
    return _with_unreached(frame, results, ["set", "mode", "metric"], "value")


def fgsm_table(results: Mapping[RunKey, Any], window: str = "table1"):
    """FGSM accuracy per threat model, ε and mode, beside the window's clean test accuracy;
    ``counted`` as in :func:`window_table`."""

    def records(method, result):
        metrics = result.metrics["windows"].get(window, {})  # none if the run diverged
        for threat, by_eps in metrics.get("fgsm", {}).items():
            for eps, by_mode in by_eps.items():
                for mode, values in by_mode.items():
                    yield {
                        "threat": threat,
                        "eps": float(eps),
                        "mode": mode,
                        "accuracy": values["accuracy"],
                    }

    frame = _rows(results, records, lambda record, result: _window_end(result, window))
    return _with_unreached(frame, results, ["threat", "eps", "mode"], "accuracy")


def _with_unreached(frame, results: Mapping[RunKey, Any], keys: list[str], value: str):
    """``frame`` plus, for every run without rows, the ``keys`` combinations of its method's
    other runs (of any run when none has rows), with NaN ``value``, not counted."""
    import pandas as pd

    if frame.empty:
        return frame
    present = set(zip(frame.configuration, frame.method, frame.seed, strict=True))
    extra = []
    for (configuration, method, seed), result in results.items():
        if (configuration, method, seed) in present:
            continue
        same = frame[frame.method == method]
        combos = (same if len(same) else frame)[keys].drop_duplicates()
        fate = run_fate(result)
        for combo in combos.itertuples(index=False):
            extra.append(
                {
                    "configuration": configuration,
                    "method": method,
                    "seed": seed,
                    "fate": fate.status,
                    "fate_epoch": fate.epoch,
                    "counted": False,
                    **dict(zip(keys, combo, strict=True)),
                    value: math.nan,
                }
            )
    if not extra:
        return frame
    return pd.concat([frame, pd.DataFrame(extra)], ignore_index=True)


def predictions(results: Mapping[RunKey, Any], key: str):
    """One per-example array of every run (e.g. ``"fig4/notmnist/averaged/max_prob"``), long:
    ``value`` per example (float64); ``counted`` as in :func:`window_table` for the window
    the key names."""
    window = key.split("/", 1)[0]

    def records(method, result):
        if key not in result.predictions:
            return
        for value in np.asarray(result.predictions[key], dtype=np.float64):
            yield {"value": value}

    return _rows(results, records, lambda record, result: _window_end(result, window))


def weight_trace(result, until_epoch: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The traced weights of a run as ``(draws, parameters)`` and the step of each draw
    (the draws up to the end of epoch ``until_epoch`` when given)."""
    posterior = _posterior(result)
    names = [n for n in posterior.data_vars if not n.startswith("probe")]
    columns = [
        np.asarray(posterior[n].values)[0].reshape(posterior.sizes["draw"], -1) for n in names
    ]
    trace, steps = np.concatenate(columns, axis=1), np.asarray(posterior["draw"].values)
    if until_epoch is not None:
        keep = steps <= until_epoch * result.config.steps_per_epoch
        trace, steps = trace[keep], steps[keep]
    return trace, steps


def mess_windows(result, window: int = 100, max_lag: int = 20, until_epoch: float | None = None):
    """The paper's mESS (:func:`sgmcmc.diagnostics.mess`) on consecutive windows of ``window``
    draws of the weight trace (up to epoch ``until_epoch`` when given; fewer draws when the
    trace is short; the lag cap shrinks to ``window − 1`` then). Columns: ``end_step``,
    ``epoch``, ``mess``, ``minimum``, ``floor``."""
    import pandas as pd

    from sgmcmc.diagnostics import ess_floor, mess

    trace, steps = weight_trace(result, until_epoch)
    draws = len(trace)
    size = min(window, draws)
    lag = min(max_lag, size - 1)
    spe = result.config.steps_per_epoch
    rows = []
    for start in range(0, draws - size + 1, size) if size > 1 else ():
        summary = mess(trace[start : start + size], lag)
        end = int(steps[start + size - 1])
        rows.append(
            {
                "end_step": end,
                "epoch": end / spe,
                "mess": summary.geometric_mean,
                "minimum": summary.minimum,
                "floor": ess_floor(size, lag),
                "window": size,
            }
        )
    return pd.DataFrame(rows, columns=["end_step", "epoch", "mess", "minimum", "floor", "window"])


def mess_table(
    results: Mapping[RunKey, Any],
    window: int = 100,
    max_lag: int = 20,
    until_epoch: float | None = None,
):
    """:func:`mess_windows` of every run, long, with the run's fate; a window counts
    (:data:`FAILED_RUN_RULE`) at the epoch in which it ends."""

    def records(method, result):
        if trained(result):
            yield from mess_windows(result, window, max_lag, until_epoch).to_dict("records")

    return _rows(results, records, lambda record, result: math.ceil(record["epoch"]))


def _posterior(result):
    traces = result.traces()
    return traces.posterior if hasattr(traces, "posterior") else traces["posterior"]


def probe_log_lik(result) -> np.ndarray:
    """``log p(y|x, θ)`` of each probe image at each traced draw: ``(draws, probes)``."""
    return np.asarray(_posterior(result)["probe_log_lik"].values, dtype=np.float64)[0]


def function_space_diagnostics(
    results: Iterable[Any], until_epoch: float | None = None
) -> dict[str, float]:
    """ArviZ's ESS (bulk, tail) and R-hat of the probe log-likelihoods, the seeds as chains
    (trimmed to the shortest trace; draws up to epoch ``until_epoch`` when given); medians over
    probes, and the largest R-hat.

    Function space is where R-hat across seeds means something (weights have permutation
    symmetries). With one seed the trace's two halves are the chains (split R-hat). No run
    (runs not trained are left out): NaN everywhere.
    """
    from sgmcmc.diagnostics import _arviz, to_inference_data

    results = [r for r in results if trained(r)]
    if not results:
        keys = ("ess_bulk", "ess_tail", "rhat", "rhat_max")
        return {"chains": 0, "draws": 0, **dict.fromkeys(keys, math.nan)}
    az = _arviz()
    chains = [_until(probe_log_lik(r), r, until_epoch) for r in results]
    draws = min(len(c) for c in chains)
    stacked = np.stack([c[-draws:] for c in chains])
    if len(chains) == 1:
        half = draws // 2
        stacked = np.stack([chains[0][-2 * half : -half], chains[0][-half:]])
    data = to_inference_data({}, probe_log_lik=stacked)
    variable = ["probe_log_lik"]
    bulk = az.ess(data, var_names=variable, method="bulk")["probe_log_lik"].values
    tail = az.ess(data, var_names=variable, method="tail")["probe_log_lik"].values
    rhat = az.rhat(data, var_names=variable)["probe_log_lik"].values
    return {
        "chains": len(chains),
        "draws": draws,
        "ess_bulk": _nan_median(bulk),
        "ess_tail": _nan_median(tail),
        "rhat": _nan_median(rhat),
        "rhat_max": float(np.max(rhat[np.isfinite(rhat)])) if np.isfinite(rhat).any() else math.nan,
    }


def _until(draws: np.ndarray, result, until_epoch: float | None) -> np.ndarray:
    """The rows of per-draw ``draws`` up to the end of epoch ``until_epoch``."""
    if until_epoch is None:
        return draws
    steps = np.asarray(_posterior(result)["draw"].values)
    return draws[steps <= until_epoch * result.config.steps_per_epoch]


def _nan_median(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(np.median(finite)) if finite.size else math.nan


def stationarity_rhat(result, n_windows: int = 4, until_epoch: float | None = None) -> float:
    """Median R-hat of the traced weights with consecutive windows of one run (up to epoch
    ``until_epoch`` when given) as chains: far above 1 when the trace drifts (is not
    stationary)."""
    from sgmcmc.diagnostics import _arviz, to_inference_data, windows_as_chains

    if not trained(result):
        return math.nan
    trace, _ = weight_trace(result, until_epoch)
    window = len(trace) // n_windows
    if window < 4:
        return math.nan
    chains = windows_as_chains(trace, window, n_windows)
    rhat = _arviz().rhat(to_inference_data({"weights": chains}))["weights"].values
    return _nan_median(rhat)


def paired_difference(frame, value: str, method: str, baseline: str, by_seed: str = "seed"):
    """Mean of ``value`` for ``method`` minus ``baseline``, paired by seed (same seed, same
    initialisation and batch order), with a two-sided paired t-test: returns ``(difference,
    p_value, seeds)``; ``p_value`` is NaN with fewer than two seeds. Only rows that count
    (:data:`FAILED_RUN_RULE`) enter, when the frame has ``counted``."""
    from scipy import stats

    if "counted" in frame:
        frame = frame[frame["counted"].astype(bool)]
    a = frame[frame.method == method].set_index(by_seed)[value].astype(float).dropna()
    b = frame[frame.method == baseline].set_index(by_seed)[value].astype(float).dropna()
    seeds = sorted(set(a.index) & set(b.index))
    diff = (a.loc[seeds] - b.loc[seeds]).to_numpy(dtype=float)
    if len(seeds) < 2:
        return float(diff.mean()) if len(seeds) else math.nan, math.nan, len(seeds)
    return float(diff.mean()), float(stats.ttest_rel(a.loc[seeds], b.loc[seeds]).pvalue), len(seeds)


def largest_paired_gap(frame, value: str, method: str, other: str, by: Iterable[str]):
    """Per group of ``by``, the largest ``|value(method) − value(other)|`` between runs of one
    seed at one epoch (same seed: same initialisation, batches and noise draws), over every
    seed and epoch both reached: how far two updates' same-seed runs ever part. Columns:
    ``by``, ``gap`` and ``pairs`` (the seed-epoch pairs compared)."""
    import pandas as pd

    by = list(by)
    index = [*by, "seed", "epoch"]
    a = frame[frame.method == method].set_index(index)[value].astype(float)
    b = frame[frame.method == other].set_index(index)[value].astype(float)
    gaps = (a - b).abs().dropna().rename("gap").reset_index()
    if gaps.empty:
        return pd.DataFrame(columns=[*by, "gap", "pairs"])
    return gaps.groupby(by, sort=False)["gap"].agg(gap="max", pairs="size").reset_index()


TABLE1_ROWS = (
    ("sgd", "single", "SGD"),
    ("fsgd", "single", "FSGD (single model)"),
    ("fsgd", "averaged", "FSGD (averaged)"),
    ("sgld", "averaged", "SGLD"),
    ("psgld", "averaged", "pSGLD"),
    ("ksgld", "averaged", "KSGLD"),
)
THREATS = ("as_released", "per_sample", "predictive")


#: The :func:`shared_runs` cell of a method whose two configurations are the same runs.
SAME_RUNS = "same runs"


def shared_runs(runs: Mapping[RunKey, Any]) -> dict[str, str]:
    """Per method, whether its "as released" and "as described" rows are the same runs: the
    same store keys on every seed (:data:`SAME_RUNS`, e.g. SGD on full MNIST until the search
    selects its own rate) or ``"different runs"``; ``runs`` maps ``(configuration, method,
    seed)`` to configs or results (anything with ``key()``). Methods with one configuration
    only are left out."""
    keys: dict[tuple[str, str], set[str]] = {}
    for (configuration, method, _), run in runs.items():
        key = run.key() if callable(getattr(run, "key", None)) else run.key
        keys.setdefault((method, configuration), set()).add(key)
    shared = {}
    for method in dict.fromkeys(method for _, method, _ in runs):
        released, described = keys.get((method, "as released")), keys.get((method, "as described"))
        if released is not None and described is not None:
            shared[method] = SAME_RUNS if released == described else "different runs"
    return shared


def shared_runs_note(runs: Mapping[RunKey, Any]) -> str:
    """One line for a chapter: the methods whose two configurations are the same runs
    (:func:`shared_runs`), so that their identical rows are not read as agreement."""
    from sgmcmc_paper.protocol.paper import METHOD_LABELS

    shared = shared_runs(runs)
    same = [METHOD_LABELS.get(m, m) for m, s in shared.items() if s == SAME_RUNS]
    differ = [METHOD_LABELS.get(m, m) for m, s in shared.items() if s != SAME_RUNS]
    if not shared:
        return "one configuration only"
    return (
        f"'as released' and 'as described' are the same runs for: {', '.join(same) or 'none'}; "
        f"different runs for: {', '.join(differ) or 'none'}"
    )


def flat_preconditioner_divisor(config) -> float:
    """What the paper convention's noise ``lr²·√T·P·ξ`` is divided by along a direction with no
    gradient and no curvature: KSGLD's damping ``δ``; pSGLD's ``λ + sqrt(V)`` at ``V = 0``
    (Li et al.'s average: ``λ``), or the released recursion's fixed point at ``g = 0``, ``m =
    sqrt(ε + α·m)``, i.e. ``m = (α + sqrt(α² + 4ε))/2`` (≈ α); 1 for SGLD and SGD."""
    if config.algorithm == "ksgld":
        return float(config.kfac_damping)
    if config.algorithm == "psgld":
        alpha, eps = config.psgld_constants
        if config.psgld_rule == "square":
            return float(eps)
        return (alpha + math.sqrt(alpha**2 + 4.0 * eps)) / 2.0
    return 1.0


def run_settings(runs: Mapping[RunKey, Any]):
    """Per ``(configuration, method)`` of a run set, the update its runs train with (equal on
    every seed; read from the first run): ``trains as`` (:attr:`RunConfig.algorithm
    <sgmcmc_paper.protocol.config.RunConfig.algorithm>`), the learning rate and its decay,
    pSGLD's average rule, α and λ as the sampler receives them, K-FAC's damping ``δ`` and its
    mode, and, in the paper's convention, the injected noise's standard deviation per step
    along a direction no preconditioner sees: ``lr²·√T`` for SGLD, divided by
    :func:`flat_preconditioner_divisor` for KSGLD (``δ``) and pSGLD (``λ``, or the released
    recursion's ``m ≈ α``), 0 for SGD. ``runs`` maps ``(configuration, method, seed)`` to
    configs or results."""
    import pandas as pd

    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for (configuration, method, _), run in runs.items():
        if (configuration, method) in rows:
            continue
        c = getattr(run, "config", run)  # a result or a config
        row: dict[str, Any] = {"trains as": c.algorithm, "lr": c.lr, "lr decay": c.lr_decay}
        if c.algorithm == "psgld":
            row["pSGLD average"] = c.psgld_rule
            row["pSGLD α"], row["pSGLD λ"] = c.psgld_constants
        if c.algorithm == "ksgld":
            row["K-FAC δ"] = c.kfac_damping
            row["δ mode"] = c.kfac_damping_mode
        if c.convention == "paper":
            noise = 0.0 if c.algorithm == "sgd" else c.lr**2 * math.sqrt(c.temperature)
            row["noise sd, flat directions"] = noise / flat_preconditioner_divisor(c)
        rows[(configuration, method)] = row
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame.index = pd.MultiIndex.from_tuples(frame.index, names=["configuration", "method"])
    return frame


def table1(results: Mapping[RunKey, Any], eps: float = 0.3, window: str = "table1"):
    """Table 1 with the paper's numbers beside ours, in percent: one row per method and
    reading (FSGD both as a single model and averaged, as the code's output has it).

    Columns: the published table, the code's saved output, then per configuration the clean
    test accuracy, the FGSM accuracy of each threat model (the predictive attack only for
    averaged rows) and PGD's (:data:`PGD_COLUMN`; "not evaluated" where the runs hold none),
    as ``mean [low, high]`` (:func:`over_seeds`' interval) over the seeds that
    count (:data:`FAILED_RUN_RULE`), and ``seeds``: how many count, and the others' fates;
    last, ``("", "configurations")``: whether the two configurations of the row's method are
    the same runs (:func:`shared_runs`), so identical cells are not read as agreement.
    """
    import pandas as pd

    from sgmcmc_paper.protocol import paper

    clean = window_table(results, window)
    if not clean.empty:
        clean = clean[(clean.set == "test") & (clean.metric == "accuracy")]
    attacked = fgsm_table(results, window)
    if not attacked.empty:
        attacked = attacked[np.isclose(attacked.eps, eps)]
    pgd = _pgd_rows(results, eps, window)
    code = {(m, p): (t, a) for m, p, t, a in paper.TABLE1_CODE_OUTPUT}
    shared = shared_runs(results)
    rows = []
    for method, mode, label in TABLE1_ROWS:
        row: dict[Any, Any] = {("", "method"): label}
        published = paper.TABLE1_PUBLISHED[method]
        # The published FSGD test accuracy is its single model's, its FGSM accuracy averaged.
        test_mode = "single" if method == "fsgd" else paper_mode(method)
        row[("paper", "test")] = published[0] if mode == test_mode else None
        row[("paper", "FGSM")] = published[1] if mode == paper_mode(method) else None
        row[("code", "test")], row[("code", "FGSM")] = code.get((method, mode), (None, None))
        for configuration in CONFIGURATIONS:
            chosen = _select(clean, configuration=configuration, method=method, mode=mode)
            row[(configuration, "test")], seeds = _percent(chosen, "value")
            for threat in THREATS:
                chosen = _select(
                    attacked, configuration=configuration, method=method, threat=threat, mode=mode
                )
                row[(configuration, f"FGSM {threat}")], _ = _percent(chosen, "accuracy")
            chosen = _select(pgd, configuration=configuration, method=method, mode=mode)
            row[(configuration, PGD_COLUMN)] = _percent(chosen, "accuracy")[0] or NOT_EVALUATED
            row[(configuration, "seeds")] = seeds
        row[("", "configurations")] = shared.get(method, "")
        rows.append(row)
    frame = pd.DataFrame(rows)
    frame.columns = pd.MultiIndex.from_tuples(frame.columns)
    return frame.set_index(("", "method")).rename_axis("")


#: Table 1's PGD column (#27): PGD at the table's ε, per-sample threat model (true labels,
#: clipped; each sample attacked with its own gradient), on the robustness subset.
PGD_COLUMN = "PGD per_sample"
#: A cell of runs whose window holds no robustness record (stored before it existed).
NOT_EVALUATED = "not evaluated"


def _pgd_rows(results: Mapping[RunKey, Any], eps: float, window: str):
    """The PGD rows of Table 1's :data:`PGD_COLUMN` (:func:`robustness_table`'s sweep)."""
    sweep = robustness_table(results, "sweep", window)
    if sweep.empty:
        return sweep
    keep = (
        (sweep.threat == "per_sample")
        & sweep.attack.str.startswith("PGD")
        & np.isclose(sweep.eps.astype(float), eps)
    )
    return sweep[keep]


#: The parts of a window's ``robustness`` record (:mod:`sgmcmc_paper.engine.robustness`).
ROBUSTNESS_PARTS = ("sweep", "transfer", "saturation")
#: Modes of the saturation table read for a method's checklist, by reading (SGD: its model).
_SATURATION_READING = {"single": ("single",), "averaged": ("per_sample", "predictive")}


def robustness_table(results, part: str, window: str = "table1", mode: str | None = None):
    """One part (:data:`ROBUSTNESS_PARTS`) of every run's stored robustness record, long, with
    the run's ``configuration, method, seed, fate, fate_epoch, counted`` (:data:`FAILED_RUN_RULE`
    at the window's last epoch) and ``reading``, whether the row is the method's reading:
    ``mode`` (``"single"``: the window's last sample; ``"averaged"``: the averaged predictive)
    or, when ``None``, the paper's (SGD its single model, the others the averaged predictive).
    A run evaluated without robustness (stored before it existed, or ``robustness_size = 0``)
    has no rows (``robustness.evaluated`` lists them)."""
    import pandas as pd

    if part not in ROBUSTNESS_PARTS:
        raise ValueError(f"unknown part {part!r}; choose one of {ROBUSTNESS_PARTS}")

    def records(method, result):
        record = result.metrics["windows"].get(window, {}).get("robustness", {})
        for row in record.get(part, []):
            mode_ = mode or paper_mode(method)
            if part == "saturation":
                reading = row["mode"] in _SATURATION_READING[mode_]
            else:
                reading = row["mode"] == mode_
            yield {**row, "reading": reading}

    frame = _rows(results, records, lambda record, result: _window_end(result, window))
    return frame if len(frame) else pd.DataFrame(columns=["configuration", "method", "seed"])


def _select(frame, **equal):
    if frame.empty:
        return frame
    keep = np.ones(len(frame), bool)
    for column, value in equal.items():
        keep &= (frame[column] == value).to_numpy()
    return frame[keep]


def table1_side_by_side(table):
    """:func:`table1` with the FGSM figure under the paper's own attack (the ``as_released``
    threat model) only: the paper's and its code's ``test / FGSM``, then per configuration
    of this edition ``test``, ``FGSM``, ``PGD`` (:data:`PGD_COLUMN`) and ``seeds``."""
    import pandas as pd

    def pair(test, fgsm) -> str:
        shown = ["" if v is None or v == "" or v != v else str(v) for v in (test, fgsm)]
        return " / ".join(shown) if any(shown) else ""

    columns: dict[tuple[str, str], list[str]] = {
        ("paper", "test / FGSM"): [
            pair(r[("paper", "test")], r[("paper", "FGSM")]) for _, r in table.iterrows()
        ],
        ("paper's code", "test / FGSM"): [
            pair(r[("code", "test")], r[("code", "FGSM")]) for _, r in table.iterrows()
        ],
    }
    for configuration in CONFIGURATIONS:
        for source, name in (
            ("test", "test"),
            ("FGSM as_released", "FGSM"),
            (PGD_COLUMN, "PGD"),
            ("seeds", "seeds"),
        ):
            columns[(configuration, name)] = list(table[(configuration, source)])
    columns[("", "configurations")] = list(table[("", "configurations")])
    frame = pd.DataFrame(columns, index=table.index)
    frame.columns = pd.MultiIndex.from_tuples(frame.columns)
    return frame


def _percent(frame, value: str) -> tuple[str, str]:
    """``("mean [low, high]", seeds note)`` in percent over the seeds that count (an
    accuracy: its interval stays in [0, 100])."""
    if frame.empty:
        return "", ""
    bounds = metric_bounds("accuracy")
    summary = over_seeds(frame.assign(group=0), value, ["group"], bounds=bounds).iloc[0]
    cell = interval_text(summary["mean"], summary["low"], summary["high"], digits=2, scale=100)
    return cell, summary["seeds counted"]


def langevin_configs(
    profile: str,
    seeds: Iterable[int],
    methods: Iterable[str],
    label: str,
    **overrides: Any,
) -> dict[RunKey, Any]:
    """``{(label, method, seed): RunConfig}`` in the langevin convention (the potential ``U``
    with a Gaussian prior, ``θ ← θ − lr·P·∇U + sqrt(2·lr·T)·P^{1/2}·ξ``), built by
    :func:`~sgmcmc_paper.protocol.profiles.as_described` (tuned rates where the sweep selected
    some for this convention) with K-FAC damped exactly (``kfac_damping_mode="exact"``) by
    the prior precision, ``kfac_damping = 1/prior_std²``: ``P = (N·F̃ + αI)⁻¹``, the inverse
    Hessian of ``U`` wherever the Fisher is Kronecker-factored (book/methods.md, "KSGLD at
    scale"; the runs stored before it damped by 1e-3: chapter 08's "before" runs),
    ``langevin_epochs`` long where the profile sets it; ``overrides`` win."""
    from sgmcmc_paper.protocol.config import RunConfig
    from sgmcmc_paper.protocol.profiles import as_described, get_profile

    epochs = get_profile(profile).langevin_epochs
    configs = {}
    for method in methods:
        fields: dict[str, Any] = {"convention": "langevin"}
        if epochs is not None:
            fields["epochs"] = epochs
        if method == "ksgld":
            fields["kfac_damping_mode"] = "exact"
            prior_std = overrides.get("prior_std", RunConfig.prior_std)
            if prior_std is not None:  # a flat prior has no precision: the config's default
                fields["kfac_damping"] = 1.0 / prior_std**2
        fields.update(overrides)
        for seed in seeds:
            configs[(label, method, seed)] = as_described(method, profile, seed=seed, **fields)
    return configs


def run_summary(results: Mapping[RunKey, Any]):
    """One row per run: its fate, then at its config's final epoch the averaged test accuracy,
    NLL and ECE, the median paper-style window mESS, FGSM accuracy (per-sample threat,
    largest ε, averaged) and notMNIST-style AUROC of the max probability (averaged), where the
    run measured them. ``counted`` (:data:`FAILED_RUN_RULE`): the row reports the final epoch,
    so a run counts only if it completed; a run that did not reach the final epoch has NaN
    there (never the values of an earlier epoch)."""
    import pandas as pd

    rows = []
    for (label, method, seed), result in results.items():
        fate = run_fate(result)
        final = result.config.epochs
        record = next((e for e in result.metrics["epochs"] if e["epoch"] == final), None)
        last = record["averaged"] if record is not None else {}
        row = {
            "label": label,
            "method": method,
            "seed": seed,
            "status": result.status,
            "fate": fate.status,
            "fate_epoch": fate.epoch,
            "counted": counts_at(fate, final),
            "accuracy": last.get("accuracy", math.nan),
            "nll": last.get("nll", math.nan),
            "ece": last.get("ece", math.nan),
        }
        try:
            row["mess"] = float(mess_windows(result)["mess"].median())
        except (ValueError, KeyError):
            row["mess"] = math.nan
        windows = result.metrics["windows"]
        fgsm = windows.get("table1", {}).get("fgsm", {}).get("per_sample", {})
        if fgsm:
            largest = max(fgsm, key=float)
            row["fgsm accuracy"] = fgsm[largest]["averaged"]["accuracy"]
        detection = windows.get("fig4", {}).get("sets", {}).get("notmnist", {})
        auroc = detection.get("detection", {}).get("averaged", {}).get("max_prob", {})
        row["notMNIST AUROC"] = auroc.get("auroc", math.nan)
        rows.append(row)
    return pd.DataFrame(rows)


def summary_over_seeds(summary, metrics: Iterable[str], by: Iterable[str], digits: int = 4):
    """:func:`run_summary` over seeds: per group of ``by`` and metric, ``mean [low, high]``
    over the runs that count (:func:`over_seeds`), and ``seeds``, how many count."""
    import pandas as pd

    by = list(by)
    metrics = [m for m in metrics if m in summary]
    frame = summary.melt(
        id_vars=[*by, "seed", "fate", "counted"], value_vars=metrics, var_name="metric"
    )
    cells = summary_cells(over_seeds(frame, "value", [*by, "metric"]), digits)
    table = cells.pivot_table(
        index=by, columns="metric", values="cell", aggfunc="first", sort=False
    )[metrics]
    seeds = cells.drop_duplicates(by).set_index(by)["seeds counted"]
    table.insert(0, "seeds", seeds.reindex(table.index))
    return pd.DataFrame(table).rename_axis(columns=None)


def summary_per_seed(summary, metrics: Iterable[str], by: Iterable[str], digits: int = 4):
    """:func:`run_summary` as a per-seed table (:func:`per_seed`): one row per run (``by``,
    then ``seed``), its fate, then ``metrics``; values of runs that do not count in brackets."""
    by = list(by)
    metrics = [m for m in metrics if m in summary]
    frame = summary.melt(
        id_vars=[*by, "seed", "fate", "fate_epoch", "counted"],
        value_vars=metrics,
        var_name="quantity",
    )
    return per_seed(frame, "value", [*by, "seed"], "quantity", digits)


def per_seed(frame, value: str, index: Iterable[str], columns: str, digits: int = 4):
    """A per-seed table: one row per ``index`` (which should end with ``seed``), one column
    per value of ``columns``, the run's fate first. Values that do not count
    (:data:`FAILED_RUN_RULE`) are shown in brackets, values never measured as ``—``."""
    import pandas as pd

    index = list(index)
    counted = frame["counted"] if "counted" in frame else pd.Series(True, index=frame.index)

    def cell(v, ok):
        if v is None or v != v:
            return "—"
        text = f"{v:.{digits}f}" if isinstance(v, (float, np.floating)) else str(v)
        return text if ok else f"({text})"

    shown = frame.assign(_cell=[cell(v, ok) for v, ok in zip(frame[value], counted, strict=True)])
    table = shown.pivot_table(
        index=index, columns=columns, values="_cell", aggfunc="first", sort=False
    )
    table = table.reindex(columns=list(dict.fromkeys(frame[columns])))
    if "fate" in frame:
        epochs = frame["fate_epoch"] if "fate_epoch" in frame else [None] * len(frame)
        fates = (
            shown.assign(
                _fate=[fate_text(s, e) for s, e in zip(frame["fate"], epochs, strict=True)]
            )
            .drop_duplicates(index)
            .set_index(index)["_fate"]
        )
        table.insert(0, "fate", fates.reindex(table.index))
    table.columns = [str(c) if not isinstance(c, str) else c for c in table.columns]
    return table.fillna("—")
