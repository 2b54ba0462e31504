"""The book's plotting style: fixed colours, line styles, the paper's numbers, legends."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from matplotlib.colors import to_hex  # noqa: E402

from sgmcmc_paper.analysis import plotting  # noqa: E402
from sgmcmc_paper.protocol import paper


@pytest.fixture
def ax():
    plotting.apply_style()
    fig, ax = plt.subplots()
    yield ax
    plt.close(fig)


def test_one_distinct_colour_per_method_and_the_cycle_uses_them(ax):
    colours = [plotting.method_color(m) for m in paper.METHODS]
    assert len(set(colours)) == len(paper.METHODS)
    cycle = [to_hex(c["color"]) for c in matplotlib.rcParams["axes.prop_cycle"]]
    assert [c.lower() for c in colours] == cycle[: len(colours)]


def test_style_of_a_curve(ax):
    released = plotting.style("ksgld", "as released")
    described = plotting.style("ksgld")
    assert released["color"] == described["color"] == plotting.METHOD_COLORS["ksgld"]
    assert released["linestyle"] != described["linestyle"]
    assert released["label"] == "KSGLD (as released)"
    (line,) = ax.plot([1, 2], [3, 4], **released)
    assert line.get_linestyle() == "--"
    assert "label" not in plotting.style("sgd", label=False)


def test_unknown_names_are_refused():
    with pytest.raises(ValueError, match="method must be one of"):
        plotting.method_color("adam")
    with pytest.raises(ValueError, match="configuration must be one of"):
        plotting.style("sgd", "as imagined")


def test_paper_reference_band_labels_legend_and_inset(ax):
    epochs = list(paper.sgd_logged_curve().index)
    plotting.paper_reference(ax, epochs, paper.sgd_logged_curve()["run 1"])
    plotting.band(ax, [1, 2], [0.1, 0.2], [0.3, 0.4], "sgld")
    plotting.label_axes(ax, "epoch", "test accuracy", title="Fig. 1")
    assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_title()) == (
        "epoch",
        "test accuracy",
        "Fig. 1",
    )
    (paper_line,) = [line for line in ax.get_lines() if line.get_label() == "paper"]
    assert paper_line.get_marker() == "x"
    legend = plotting.legend(ax, paper.METHODS, ["as described", "as released"], paper=True)
    labels = [text.get_text() for text in legend.get_texts()]
    assert labels == [
        "SGD",
        "FSGD",
        "SGLD",
        "pSGLD",
        "KSGLD",
        "as described",
        "as released",
        "paper",
    ]
    child = plotting.inset(ax, (8, 10))
    assert child.get_xlim() == (8, 10)


def test_a_curve_over_seeds_marks_the_points_where_not_every_seed_counts(ax):
    import pandas as pd

    rows = pd.DataFrame(
        {
            "epoch": [1, 2, 3],
            "mean": [0.5, 0.6, 0.7],
            "low": [0.4, 0.5, float("nan")],
            "high": [0.6, 0.7, float("nan")],
            "count": [3, 3, 1],
            "seeds": [3, 3, 3],
        }
    )
    plotting.seed_curve(ax, rows, "ksgld")
    (line,) = ax.get_lines()
    assert list(line.get_ydata()) == [0.5, 0.6, 0.7]
    full, partial = ax.collections[:2]
    assert len(full.get_offsets()) == 2 and len(partial.get_offsets()) == 1
    assert tuple(partial.get_facecolor()[0]) == (1.0, 1.0, 1.0, 1.0)  # hollow
    legend = plotting.legend(ax, ["ksgld"], partial=True)
    assert [t.get_text() for t in legend.get_texts()] == ["KSGLD", "not every seed counts"]
    plotting.counts_note(ax, "KSGLD 1 of 3")
    assert ax.texts[-1].get_text() == "KSGLD 1 of 3"
