"""Stored runs as tidy tables, and the run sets the reproduction notebooks share.

A run set maps ``(configuration, method, seed)`` to a
:class:`~sgmcmc_paper.protocol.config.RunConfig`; configurations are ``"as released"`` (the code's
behaviour: KSGLD's K-FAC never updated, so KSGLD ran as SGLD; book/reproduction_notes.md) and
``"as described"`` (working K-FAC, tuned rates). SGD and FSGD share one
training (their configs have one key): SGD reads the final single model, FSGD and the Langevin
methods the averaged predictive — the paper's reading, :func:`paper_mode`.

Every table is a long pandas DataFrame with the columns ``configuration, method, seed`` first,
so notebooks group, average over seeds (:func:`over_seeds`) and plot without reshaping.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from sgmcmc_paper.protocol.paper import METHODS

CONFIGURATIONS = ("as released", "as described")
RunKey = tuple[str, str, int]


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


def _rows(results: Mapping[RunKey, Any], records) -> Any:
    import pandas as pd

    rows = []
    for (configuration, method, seed), result in results.items():
        for record in records(method, result):
            rows.append({"configuration": configuration, "method": method, "seed": seed, **record})
    return pd.DataFrame(rows)


def epoch_table(results: Mapping[RunKey, Any]):
    """Per epoch and mode (``single``/``averaged``): test accuracy, NLL, ECE, Brier; column
    ``paper_mode`` marks the curve the paper plots for the method."""

    def records(method, result):
        for record in result.metrics["epochs"]:
            for mode in ("single", "averaged"):
                values = {k: v for k, v in record[mode].items() if k != "samples"}
                yield {
                    "epoch": record["epoch"],
                    "mode": mode,
                    "paper_mode": mode == paper_mode(method),
                    **values,
                }

    return _rows(results, records)


def window_table(results: Mapping[RunKey, Any], window: str):
    """A window's metrics on every clean set (test and out-of-distribution sets), long:
    ``set, mode, metric, value``; detection scores as ``metric = "<score>/<auroc|...>"``."""

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

    return _rows(results, records)


def fgsm_table(results: Mapping[RunKey, Any], window: str = "table1"):
    """FGSM accuracy per threat model, ε and mode, beside the window's clean test accuracy."""

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

    return _rows(results, records)


def predictions(results: Mapping[RunKey, Any], key: str):
    """One per-example array of every run (e.g. ``"fig4/notmnist/averaged/max_prob"``), long:
    ``value`` per example (float64)."""

    def records(method, result):
        if key not in result.predictions:
            return
        for value in np.asarray(result.predictions[key], dtype=np.float64):
            yield {"value": value}

    return _rows(results, records)


def over_seeds(frame, value: str, by: Iterable[str], level: float = 0.95):
    """Mean, standard deviation, count and a Student-t interval over seeds of ``value``,
    grouped by ``by`` (the interval is NaN with one seed)."""
    from scipy import stats

    grouped = frame.groupby(list(by), sort=False)[value]
    summary = grouped.agg(["mean", "std", "count"]).reset_index()
    half = [
        stats.t.ppf(0.5 + level / 2, n - 1) * s / math.sqrt(n) if n > 1 else math.nan
        for s, n in zip(summary["std"], summary["count"], strict=True)
    ]
    summary["low"] = summary["mean"] - np.asarray(half)
    summary["high"] = summary["mean"] + np.asarray(half)
    return summary


def weight_trace(result) -> tuple[np.ndarray, np.ndarray]:
    """The traced weights of a run as ``(draws, parameters)`` and the step of each draw."""
    posterior = _posterior(result)
    names = [n for n in posterior.data_vars if not n.startswith("probe")]
    columns = [
        np.asarray(posterior[n].values)[0].reshape(posterior.sizes["draw"], -1) for n in names
    ]
    return np.concatenate(columns, axis=1), np.asarray(posterior["draw"].values)


def mess_windows(result, window: int = 100, max_lag: int = 20):
    """The paper's mESS (:func:`sgmcmc.diagnostics.mess`) on consecutive windows of ``window``
    draws of the weight trace (fewer draws when the trace is short; the lag cap shrinks to
    ``window − 1`` then). Columns: ``end_step``, ``epoch``, ``mess``, ``minimum``, ``floor``."""
    import pandas as pd

    from sgmcmc.diagnostics import ess_floor, mess

    trace, steps = weight_trace(result)
    draws = len(trace)
    size = min(window, draws)
    lag = min(max_lag, size - 1)
    spe = result.config.steps_per_epoch
    rows = []
    for start in range(0, draws - size + 1, size):
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
    return pd.DataFrame(rows)


def _posterior(result):
    traces = result.traces()
    return traces.posterior if hasattr(traces, "posterior") else traces["posterior"]


def probe_log_lik(result) -> np.ndarray:
    """``log p(y|x, θ)`` of each probe image at each traced draw: ``(draws, probes)``."""
    return np.asarray(_posterior(result)["probe_log_lik"].values, dtype=np.float64)[0]


def function_space_diagnostics(results: Iterable[Any]) -> dict[str, float]:
    """ArviZ's ESS (bulk, tail) and R-hat of the probe log-likelihoods, the seeds as chains
    (trimmed to the shortest trace); medians over probes, and the largest R-hat.

    Function space is where R-hat across seeds means something (weights have permutation
    symmetries). With one seed the trace's two halves are the chains (split R-hat).
    """
    from sgmcmc.diagnostics import _arviz, to_inference_data

    az = _arviz()
    chains = [probe_log_lik(r) for r in results]
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


def _nan_median(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(np.median(finite)) if finite.size else math.nan


def stationarity_rhat(result, n_windows: int = 4) -> float:
    """Median R-hat of the traced weights with consecutive windows of one run as chains: far
    above 1 when the trace drifts (is not stationary)."""
    from sgmcmc.diagnostics import _arviz, to_inference_data, windows_as_chains

    trace, _ = weight_trace(result)
    window = len(trace) // n_windows
    if window < 4:
        return math.nan
    chains = windows_as_chains(trace, window, n_windows)
    rhat = _arviz().rhat(to_inference_data({"weights": chains}))["weights"].values
    return _nan_median(rhat)


def paired_difference(frame, value: str, method: str, baseline: str, by_seed: str = "seed"):
    """Mean of ``value`` for ``method`` minus ``baseline``, paired by seed (same seed, same
    initialisation and batch order), with a two-sided paired t-test: returns ``(difference,
    p_value, seeds)``; ``p_value`` is NaN with fewer than two seeds."""
    from scipy import stats

    a = frame[frame.method == method].set_index(by_seed)[value]
    b = frame[frame.method == baseline].set_index(by_seed)[value]
    seeds = sorted(set(a.index) & set(b.index))
    diff = (a.loc[seeds] - b.loc[seeds]).to_numpy(dtype=float)
    if len(seeds) < 2:
        return float(diff.mean()) if len(seeds) else math.nan, math.nan, len(seeds)
    return float(diff.mean()), float(stats.ttest_rel(a.loc[seeds], b.loc[seeds]).pvalue), len(seeds)


TABLE1_ROWS = (
    ("sgd", "single", "SGD"),
    ("fsgd", "single", "FSGD (single model)"),
    ("fsgd", "averaged", "FSGD (averaged)"),
    ("sgld", "averaged", "SGLD"),
    ("psgld", "averaged", "pSGLD"),
    ("ksgld", "averaged", "KSGLD"),
)
THREATS = ("as_released", "per_sample", "predictive")


def table1(results: Mapping[RunKey, Any], eps: float = 0.3, window: str = "table1"):
    """Table 1 with the paper's numbers beside ours, in percent: one row per method and
    reading (FSGD both as a single model and averaged, as the code's output has it).

    Columns: the published table, the code's saved output, then per configuration the clean
    test accuracy and the FGSM accuracy of each threat model (the predictive attack only for
    averaged rows), as ``mean`` or ``mean ± half-width`` of the 95% interval over seeds.
    """
    import pandas as pd

    from sgmcmc_paper.protocol import paper

    clean = window_table(results, window)
    clean = clean[(clean.set == "test") & (clean.metric == "accuracy")]
    attacked = fgsm_table(results, window)
    attacked = attacked[np.isclose(attacked.eps, eps)]
    code = {(m, p): (t, a) for m, p, t, a in paper.TABLE1_CODE_OUTPUT}
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
            pick = (clean.configuration == configuration) & (clean.method == method)
            row[(configuration, "test")] = _percent(clean[pick & (clean["mode"] == mode)], "value")
            for threat in THREATS:
                chosen = attacked[
                    (attacked.configuration == configuration)
                    & (attacked.method == method)
                    & (attacked.threat == threat)
                    & (attacked["mode"] == mode)
                ]
                row[(configuration, f"FGSM {threat}")] = _percent(chosen, "accuracy")
        rows.append(row)
    frame = pd.DataFrame(rows)
    frame.columns = pd.MultiIndex.from_tuples(frame.columns)
    return frame.set_index(("", "method")).rename_axis("")


def table1_side_by_side(table):
    """:func:`table1` reduced to one ``test / FGSM`` cell per source, the FGSM figure under
    the paper's own attack (the ``as_released`` threat model): the paper, its code's output,
    and this edition's two configurations."""
    import pandas as pd

    def pair(test, fgsm) -> str:
        shown = ["" if v is None or v == "" or v != v else str(v) for v in (test, fgsm)]
        return " / ".join(shown) if any(shown) else ""

    columns = {
        "paper": ("paper", "test", "paper", "FGSM"),
        "paper's code": ("code", "test", "code", "FGSM"),
        **{c: (c, "test", c, "FGSM as_released") for c in CONFIGURATIONS},
    }
    return pd.DataFrame(
        {
            name: [pair(row[(a, b)], row[(c, d)]) for _, row in table.iterrows()]
            for name, (a, b, c, d) in columns.items()
        },
        index=table.index,
    )


def _percent(frame, value: str) -> str:
    if frame.empty:
        return ""
    summary = over_seeds(frame.assign(group=0), value, ["group"]).iloc[0]
    mean, half = 100 * summary["mean"], 100 * (summary["high"] - summary["mean"])
    return f"{mean:.2f}" if not np.isfinite(half) else f"{mean:.2f} ± {half:.2f}"


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
    some for this convention) with K-FAC damped exactly by the prior precision,
    ``langevin_epochs`` long where the profile sets it; ``overrides`` win."""
    from sgmcmc_paper.protocol.profiles import as_described, get_profile

    epochs = get_profile(profile).langevin_epochs
    configs = {}
    for method in methods:
        fields: dict[str, Any] = {"convention": "langevin"}
        if epochs is not None:
            fields["epochs"] = epochs
        if method == "ksgld":
            fields["kfac_damping_mode"] = "exact"
        fields.update(overrides)
        for seed in seeds:
            configs[(label, method, seed)] = as_described(method, profile, seed=seed, **fields)
    return configs


def run_summary(results: Mapping[RunKey, Any]):
    """One row per run: final-epoch averaged test accuracy and NLL, the median paper-style
    window mESS, FGSM accuracy (per-sample threat, largest ε, averaged) and notMNIST-style
    AUROC of the max probability (averaged), where the run measured them."""
    import pandas as pd

    rows = []
    for (label, method, seed), result in results.items():
        epochs = result.metrics["epochs"]
        last = epochs[-1]["averaged"] if epochs else {}  # none: diverged in its first epoch
        row = {
            "label": label,
            "method": method,
            "seed": seed,
            "status": result.status,
            "accuracy": last.get("accuracy"),
            "nll": last.get("nll"),
            "ece": last.get("ece"),
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
