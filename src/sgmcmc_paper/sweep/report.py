"""What a sweep tried, as a table and a plot (notebook 00 shows both)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sgmcmc_paper.protocol.alternatives import CYCLICAL_SUFFIX
from sgmcmc_paper.sweep.record import SweepResult, load_sweeps

_FIRST = ["sweep", "method", "convention", "train_size", "index", "stage", "axis"]
_LAST = ["status", "val_accuracy", "val_nll", "compute_s", "reused", "selected", "reason"]


def trial_table(source: str | Iterable[SweepResult] | Mapping[str, Any]):
    """Every trial of the given sweeps, one row each, as a pandas DataFrame.

    ``source``: a profile name (its ``results/hparams/<profile>.json``), sweep results, or a
    file's ``sweeps`` mapping. Columns: the sweep key, method (``<method>+cyclical`` for a
    search under the cyclical schedule), convention, training size,
    trial index, stage and the axis it tuned, the swept fields (``lr``, ``lr_decay``, ...),
    then status, validation accuracy and NLL, compute (s), whether it was loaded from the store,
    whether it is the selected trial, and the reason of a failure.
    """
    import pandas as pd

    sweeps = _sweeps(source)
    rows = []
    for key, sweep in sweeps.items():
        for trial in sweep["trials"]:
            row = {"sweep": key, "train_size": sweep["num_train"], **trial}
            row["method"] = _method(sweep)
            row["selected"] = trial["index"] == sweep["selected_trial"]
            rows.append(row)
    table = pd.DataFrame(rows)
    if table.empty:
        return pd.DataFrame(columns=_FIRST + ["lr"] + _LAST)
    middle = [c for c in table.columns if c not in _FIRST + _LAST + ["key", "device"]]
    return table[_FIRST + middle + _LAST]


def axis_table(source: str | Iterable[SweepResult] | Mapping[str, Any]):
    """One row per searched axis of each sweep (``source`` as for :func:`trial_table`): the
    values tried on it (any other fields), the selected value, the values tried around it in
    the selected point's slice (every other axis as selected, any seed) and whether the
    selected value lies strictly inside those (the search's bracketing rule); then the sweep's
    validation accuracy (mean over the selected point's seeds), seeds, trials, budget and
    compute used (both in multiples of the SGD run's wall time), walk and notes. Computed from
    the trials, so sweeps recorded before the bracketing search read the same way; the axes are
    the recorded ones (an axis of one value, e.g. the cycles of a ci-sized cyclical trial, has
    no trial of its own), else those the trials were labelled with."""
    import pandas as pd

    table = trial_table(source)
    rows = []
    for key, trials in table.groupby("sweep", sort=False):
        sweep = _sweeps(source)[key]
        labelled = [a for a in dict.fromkeys(trials["axis"]) if a != "seed"]
        axes = [a for a in sweep.get("axes") or labelled if a in trials.columns]
        chosen = trials[trials["index"] == sweep["selected_trial"]]
        for axis in axes:
            values = sorted(trials[axis].dropna().unique())
            row = {"sweep": key, "method": _method(sweep), "axis": axis}
            row.update(tried=len(values), low=values[0], high=values[-1])
            if len(chosen):
                best = chosen.iloc[0]
                others = [a for a in axes if a != axis]
                here = trials[(trials[others] == best[others]).all(axis=1)] if others else trials
                near = sorted(here.loc[here["status"].notna(), axis].unique())
                row.update(
                    selected=best[axis],
                    around=f"{near[0]:g} … {near[-1]:g}" if len(near) > 1 else f"{near[0]:g}",
                    inside=bool(near[0] < best[axis] < near[-1]),
                )
            rows.append(
                {
                    **row,
                    "validation accuracy": sweep.get("validation_accuracy"),
                    "seeds": sweep.get("selected_seeds") or 1,
                    "trials": len(sweep["trials"]),
                    "budget (× SGD)": sweep["budget"],
                    "used (× SGD)": sweep["budget_used"],
                    "walk": sweep.get("walk", "budget"),
                    "notes": "; ".join(sweep.get("notes", [])) or sweep["stop_reason"],
                }
            )
    return pd.DataFrame(rows)


#: What notebook 00 searches at the ``ci`` profile when nothing is recorded there: pSGLD as
#: described (three axes; the SGD reference run sets the budget), on 512 images (one step a
#: trial), at most 6 trials: the search's mechanics in under a minute, saying nothing about
#: the paper (its axes need not end bracketed).
CI_SEARCH = {"methods": ("psgld",), "train_sizes": (512,), "max_trials": 6}


def recorded_search(profile: str, train: bool = True) -> tuple[dict[str, Any], list[str]]:
    """The sweeps notebook 00 shows at ``profile`` and the lines a reader needs beside them:
    one per method that has no full-MNIST selection in them, one per pSGLD sweep that the
    "as described" configuration does not use (searched for another rule than
    :data:`~sgmcmc_paper.protocol.profiles.DESCRIBED_PSGLD_AVERAGE`). At ``ci`` with none
    recorded (and ``train``) it runs :data:`CI_SEARCH` first (serially, in this process);
    other profiles only read their selection file (the paper's search is a GPU job:
    ``sgmcmc sweep``)."""
    from sgmcmc_paper.protocol.hparams import selection_key
    from sgmcmc_paper.protocol.paper import METHODS
    from sgmcmc_paper.protocol.profiles import DESCRIBED_PSGLD_AVERAGE, get_profile
    from sgmcmc_paper.sweep.search import run_sweep

    prof = get_profile(profile)
    sweeps = load_sweeps(prof.hparams)
    if not sweeps and prof.name == "ci" and train:
        run_sweep(profile="ci", engine="serial", log=None, **CI_SEARCH)
        sweeps = load_sweeps(prof.hparams)
    if prof.hparams != "paper":
        return sweeps, []
    missing = [
        f"{method}: no full-MNIST selection ({selection_key(method, 'paper', None)}); the "
        "search has not run, its 'as described' runs use the released rate"
        + (" and Li et al.'s constants" if method == "psgld" else "")
        for method in METHODS
        if selection_key(method, "paper", None) not in sweeps
    ]
    unused = [
        f"psgld ({key}): searched for pSGLD's released rule, not Li et al.'s average; the "
        "'as described' runs do not use it (Li et al.'s constants until their own search ends)"
        for key, sweep in sweeps.items()
        if sweep["method"] == "psgld"
        and sweep["convention"] == "paper"
        and sweep.get("psgld_average") != DESCRIBED_PSGLD_AVERAGE
    ]
    return sweeps, missing + unused


def _method(sweep: Mapping[str, Any]) -> str:
    """The method a sweep tuned, ``<method>+cyclical`` under the cyclical schedule."""
    cyclical = sweep.get("schedule") == "cyclical"
    return sweep["method"] + (CYCLICAL_SUFFIX if cyclical else "")


def _sweeps(source: str | Iterable[SweepResult] | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(source, str):
        return load_sweeps(source)
    if isinstance(source, Mapping):
        return dict(source)
    return {r.key: r.record() for r in source}


def plot_sweep(table, axes=None):
    """Validation accuracy against learning rate, per method; one panel per convention and
    training size (their rates are in different units). ``table``: a :func:`trial_table`, or
    anything it takes (e.g. a profile name).

    Filled markers joined by a line: the learning-rate stage (other axes at their defaults);
    hollow markers: later stages (schedule, method constants, temperature) at their rate;
    crosses on the bottom edge: diverged or failed trials; a star: the selected trial.
    Returns the matplotlib Figure.
    """
    import matplotlib.pyplot as plt

    if not hasattr(table, "columns"):
        table = trial_table(table)
    panels = sorted({(c, n) for c, n in zip(table["convention"], table["train_size"], strict=True)})
    if axes is None:
        fig, axes = plt.subplots(
            1, max(1, len(panels)), figsize=(5 * max(1, len(panels)), 3.6), squeeze=False
        )
        axes = list(axes[0])
    else:
        axes = list(axes) if isinstance(axes, Iterable) else [axes]
        fig = axes[0].figure
    if len(axes) < len(panels):
        raise ValueError(f"plot_sweep needs {len(panels)} axes, got {len(axes)}")
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    methods = list(dict.fromkeys(table["method"]))
    for ax, (convention, num_train) in zip(axes, panels, strict=False):
        panel = table[(table["convention"] == convention) & (table["train_size"] == num_train)]
        ok = panel[panel["status"] == "ok"]
        low = ok["val_accuracy"].min() if len(ok) else 0.0
        for method in methods:
            color = colors[methods.index(method) % len(colors)]
            rows = panel[panel["method"] == method]
            good = rows[rows["status"] == "ok"]
            first = good[good["stage"] == 0].sort_values("lr")
            later = good[good["stage"] > 0]
            bad = rows[rows["status"] != "ok"]
            best = good[good["selected"]]
            ax.plot(first["lr"], first["val_accuracy"], "o-", color=color, label=method)
            ax.plot(later["lr"], later["val_accuracy"], "o", mfc="none", color=color)
            ax.plot(bad["lr"], [low] * len(bad), "x", color=color, ms=8)
            ax.plot(best["lr"], best["val_accuracy"], "*", color=color, ms=16, mec="black")
        ax.set_xscale("log")
        ax.set_xlabel(f"learning rate ({convention} convention)")
        ax.set_title(f"N = {num_train:,} training images")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("validation accuracy\n(averaged predictive)")
    if table.empty:
        axes[0].text(0.5, 0.5, "no sweep recorded", ha="center", transform=axes[0].transAxes)
    else:
        axes[0].legend(frameon=False)
    fig.tight_layout()
    return fig
