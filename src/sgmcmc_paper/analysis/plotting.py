"""One look for every figure of the book.

- One colour per method, everywhere (:data:`METHOD_COLORS`, Okabe–Ito, safe for colour-blind
  readers): the SGD family warm, the Langevin family cool.
- One line style per configuration (:data:`CONFIGURATION_LINESTYLES`): "as described" solid,
  "as released" dashed, the beyond-the-paper conventions dotted and dash-dotted; in the
  gradient-or-noise chapter eq. 1 solid and eq. 2 dashed.
- The paper's own numbers in grey crosses (:func:`paper_reference`), drawn beside ours.

- Curves over seeds (:func:`seed_curve`): the mean of the seeds that count, its interval as a
  band, and a hollow marker wherever fewer seeds count than the row has (a run diverged or
  collapsed before that point: the failed-run rule of :mod:`sgmcmc_paper.analysis.tables`);
  :func:`counts_note` writes the counts into a panel.

Call :func:`apply_style` once at the top of a notebook; use :func:`style` for the keyword
arguments of a curve, :func:`label_axes` for axes, :func:`legend` for a legend that explains
colours and line styles separately.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import matplotlib as mpl
import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.lines import Line2D

from sgmcmc_paper.protocol.paper import METHOD_LABELS

METHOD_COLORS = {
    "sgd": "#D55E00",  # vermillion
    "fsgd": "#E69F00",  # orange
    "sgld": "#0072B2",  # blue
    "psgld": "#56B4E9",  # sky blue
    "ksgld": "#009E73",  # bluish green
}
CONFIGURATION_LINESTYLES = {
    "as described": "-",
    "as released": "--",
    "langevin T=1": ":",
    "langevin cold": "-.",
    "eq. 1": "-",
    "eq. 2": "--",
}
PAPER_STYLE = {"color": "0.45", "marker": "x", "linestyle": ":", "markersize": 6, "zorder": 3}
"""How the paper's numbers are drawn: grey crosses joined by a dotted line."""


def apply_style() -> None:
    """seaborn's white grid, the method palette as the colour cycle, readable sizes."""
    import seaborn as sns

    sns.set_theme(context="notebook", style="whitegrid", palette=list(METHOD_COLORS.values()))
    mpl.rcParams.update(
        {
            "figure.figsize": (7.0, 4.2),
            "figure.dpi": 100,
            "savefig.dpi": 150,
            "savefig.bbox": "tight",
            "axes.titlesize": "medium",
            "axes.titleweight": "bold",
            "legend.frameon": False,
            "legend.fontsize": "small",
            "lines.linewidth": 1.8,
        }
    )


def method_color(method: str) -> str:
    """The colour of ``method`` (one of ``sgd, fsgd, sgld, psgld, ksgld``)."""
    try:
        return METHOD_COLORS[method]
    except KeyError:
        raise ValueError(f"method must be one of {tuple(METHOD_COLORS)}, got {method!r}") from None


def configuration_linestyle(configuration: str) -> str:
    """The line style of a configuration (``"as described"``, ``"as released"``, ...)."""
    try:
        return CONFIGURATION_LINESTYLES[configuration]
    except KeyError:
        known = tuple(CONFIGURATION_LINESTYLES)
        raise ValueError(f"configuration must be one of {known}, got {configuration!r}") from None


def style(method: str, configuration: str = "as described", label: bool = True) -> dict:
    """Keyword arguments for ``ax.plot`` of one method in one configuration."""
    kwargs = {"color": method_color(method), "linestyle": configuration_linestyle(configuration)}
    if label:
        kwargs["label"] = f"{METHOD_LABELS[method]} ({configuration})"
    return kwargs


def paper_reference(ax: Axes, x, y, label: str = "paper", **kwargs) -> None:
    """Draw the paper's numbers ``y`` at ``x`` (scalars or sequences) in :data:`PAPER_STYLE`."""
    ax.plot(x, y, label=label, **{**PAPER_STYLE, **kwargs})


def band(ax: Axes, x, low, high, method: str, alpha: float = 0.18) -> None:
    """A shaded interval (e.g. over seeds) in the method's colour."""
    ax.fill_between(x, low, high, color=method_color(method), alpha=alpha, linewidth=0)


def seed_curve(
    ax: Axes,
    rows,
    method: str,
    configuration: str = "as described",
    x: str = "epoch",
    label: bool = False,
    interval: bool = True,
) -> None:
    """One method's curve over seeds from :func:`~sgmcmc_paper.analysis.tables.over_seeds`
    rows (``mean``, ``low``, ``high``, ``count``, ``seeds``): the line through the means, a
    filled marker where every seed counts, a hollow one where fewer do, and the interval as a
    band (``interval``). Nothing is drawn without a mean (no seed counts: e.g. runs not
    trained)."""
    rows = rows[rows["mean"].notna()].sort_values(x) if len(rows) else rows
    if not len(rows):
        return
    colour = method_color(method)
    ax.plot(rows[x], rows["mean"], **style(method, configuration, label=label))
    full = (rows["count"] == rows["seeds"]).to_numpy()
    ax.scatter(rows[x][full], rows["mean"][full], color=colour, s=14, zorder=3)
    ax.scatter(
        rows[x][~full], rows["mean"][~full], facecolors="white", edgecolors=colour, s=22, zorder=3
    )
    if interval:
        band(ax, rows[x], rows["low"], rows["high"], method)


def counts_note(ax: Axes, text: str, loc: str = "lower right") -> None:
    """A small note in a corner of ``ax`` (e.g. how many seeds count per method)."""
    x = 0.98 if "right" in loc else 0.02
    y = 0.02 if "lower" in loc else 0.98
    ax.text(
        x,
        y,
        text,
        transform=ax.transAxes,
        ha="right" if "right" in loc else "left",
        va="bottom" if "lower" in loc else "top",
        fontsize="x-small",
        color="0.25",
    )


def label_axes(ax: Axes, xlabel: str, ylabel: str, title: str | None = None) -> Axes:
    """Label both axes (with units where there are any) and optionally title them."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title is not None:
        ax.set_title(title)
    return ax


def legend(
    ax: Axes,
    methods: Iterable[str],
    configurations: Sequence[str] = (),
    paper: bool = False,
    partial: bool = False,
    **kwargs,
):
    """A legend with one entry per method (colour), per configuration (line style, in grey),
    if ``paper`` one for the paper's numbers, and if ``partial`` one for the hollow marker of
    :func:`seed_curve`, instead of one per curve."""
    handles = [Line2D([], [], color=method_color(m), label=METHOD_LABELS[m]) for m in methods]
    handles += [
        Line2D([], [], color="0.3", linestyle=configuration_linestyle(c), label=c)
        for c in configurations
    ]
    if paper:
        handles.append(Line2D([], [], label="paper", **PAPER_STYLE))
    if partial:
        handles.append(
            Line2D(
                [],
                [],
                color="0.3",
                marker="o",
                markerfacecolor="white",
                linestyle="",
                label="not every seed counts",
            )
        )
    return ax.legend(handles=handles, **kwargs)


def inset(ax: Axes, xlim: tuple[float, float], bounds=(0.42, 0.08, 0.55, 0.5)) -> Axes:
    """An inset of ``ax`` zoomed to ``xlim`` (y limits left for the caller), e.g. Fig. 1's
    last three epochs; it shares the parent's style."""
    child = ax.inset_axes(bounds)
    child.set_xlim(*xlim)
    child.tick_params(labelsize="x-small")
    return child


def close_all() -> None:
    """Close every open figure (long notebooks keep memory flat)."""
    plt.close("all")
