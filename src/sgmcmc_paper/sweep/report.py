"""What a sweep tried, as a table and a plot (notebook 00 shows both)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sgmcmc_paper.sweep.record import SweepResult, load_sweeps

_FIRST = ["sweep", "method", "convention", "train_size", "index", "stage", "axis"]
_LAST = ["status", "val_accuracy", "val_nll", "compute_s", "reused", "selected", "reason"]


def trial_table(source: str | Iterable[SweepResult] | Mapping[str, Any]):
    """Every trial of the given sweeps, one row each, as a pandas DataFrame.

    ``source``: a profile name (its ``results/hparams/<profile>.json``), sweep results, or a
    file's ``sweeps`` mapping. Columns: the sweep key, method, convention, training size,
    trial index, stage and the axis it tuned, the swept fields (``lr``, ``lr_decay``, ...),
    then status, validation accuracy and NLL, compute (s), whether it was loaded from the store,
    whether it is the selected trial, and the reason of a failure.
    """
    import pandas as pd

    if isinstance(source, str):
        sweeps = load_sweeps(source)
    elif isinstance(source, Mapping):
        sweeps = dict(source)
    else:
        sweeps = {r.key: r.record() for r in source}
    rows = []
    for key, sweep in sweeps.items():
        for trial in sweep["trials"]:
            row = {"sweep": key, "train_size": sweep["num_train"], **trial}
            row["selected"] = trial["index"] == sweep["selected_trial"]
            rows.append(row)
    table = pd.DataFrame(rows)
    if table.empty:
        return pd.DataFrame(columns=_FIRST + ["lr"] + _LAST)
    middle = [c for c in table.columns if c not in _FIRST + _LAST + ["key", "device"]]
    return table[_FIRST + middle + _LAST]


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
