"""Adversarial robustness without gradient masking: the tables and the checklist.

A single-step attack that fails is no evidence of robustness: a saturated softmax or a
shattered gradient can hide adversarial examples from it (Athalye, Carlini & Wagner 2018,
"Obfuscated gradients give a false sense of security",
`arXiv:1802.00420 <https://arxiv.org/abs/1802.00420>`_). Carlini et al. 2019 ("On evaluating
adversarial robustness", `arXiv:1902.06705 <https://arxiv.org/abs/1902.06705>`_) list the
sanity checks an evaluation must pass before it claims robustness; four of them are computed
here, per method, from three tables:

- :func:`eps_sweep`: accuracy against ε for each attack (:mod:`~sgmcmc_paper.analysis.attacks`'
  FGSM, PGD, APGD), threat model and mode (``single``: the last posterior sample alone;
  ``averaged``: the averaged predictive);
- :func:`transfer_sweep`: the same with perturbations built on another model (SGD's) and
  evaluated on the method's;
- :func:`saturation`: how often the softmax is saturated in float32 and the input gradient of
  the loss exactly zero (where a gradient-sign attack cannot move).

The checks take those tables (a method's rows; rows that share every key column, e.g. seeds,
are pooled: correct answers and images summed) and return
:class:`~sgmcmc_paper.analysis.claims.Claim` records, rendered like the paper's claims:

(a) :func:`iterative_at_least_as_strong`: every iterative attack's accuracy is at most FGSM's
    at each ε, within a binomial tolerance; (b) :func:`unbounded_reaches_zero`: at an unbounded
    ε (≥ 1 on [0, 1] pixels: any image is reachable) accuracy is about 0; (c)
    :func:`transfer_not_stronger`: no transfer attack beats the white-box ones; (d)
    :func:`not_saturated`: the input gradient is exactly zero on at most 1 % of the images.
    :func:`robustness_claim` allows a robustness claim only when none of them fails;
    :func:`checklist` returns all five.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor

from sgmcmc_paper.analysis import tables
from sgmcmc_paper.analysis.attacks import (
    FGSM,
    PER_SAMPLE_THREAT_MODELS,
    PGD,
    THREAT_MODELS,
    AttackSpec,
    Model,
    Objective,
    adversarial_predictive,
    adversarial_probs,
    averaged_probs,
    perturb,
    predicted_probs,
)
from sgmcmc_paper.analysis.claims import Claim, decide

#: ε of the sweep's bounded part (the paper's 0.3 its end) and the unbounded ε of check (b).
EPS_SWEEP = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3)
EPS_UNBOUNDED = (0.5, 1.0)
#: Threat models an adversary with the true labels and valid images uses: the white-box
#: reference of check (c).
WHITE_BOX_THREATS = ("per_sample", "predictive")
#: Columns of :func:`eps_sweep`'s and :func:`transfer_sweep`'s tables.
SWEEP_COLUMNS = ["attack", "steps", "threat", "mode", "eps", "accuracy", "correct", "images"]
SECTION = "4.4"


# ---------------------------------------------------------------------- the tables
def _correct(probs: Tensor, y: Tensor) -> int:
    return int((probs.argmax(dim=1) == y).sum())


def _row(spec: AttackSpec, threat: str, mode: str, eps: float, probs: Tensor, y: Tensor) -> dict:
    correct = _correct(probs, y)
    return {
        "attack": spec.label,
        "steps": spec.steps,
        "threat": threat,
        "mode": mode,
        "eps": float(eps),
        "accuracy": correct / len(y),
        "correct": correct,
        "images": len(y),
    }


def eps_sweep(
    models: Sequence[Model],
    x: Tensor,
    y: Tensor,
    eps: Sequence[float] = EPS_SWEEP + EPS_UNBOUNDED,
    *,
    attacks: Sequence[AttackSpec] = (FGSM, PGD),
    threat_models: Sequence[str] = THREAT_MODELS,
    seed: int = 0,
    batch_size: int | None = None,
) -> pd.DataFrame:
    """Accuracy against ε, one row per attack, threat model, mode and ε (:data:`SWEEP_COLUMNS`).

    ``models`` are the posterior samples of one window (one model for SGD). Per-sample threat
    models give ``single`` (the last sample on its own adversarial images) and ``averaged``
    rows; ``"predictive"`` gives ``averaged`` (with one model all three coincide). Random
    starts come from a CPU generator seeded with ``seed`` afresh for every (attack, threat
    model, ε), so a row does not depend on which others are computed.
    """
    models = list(models)
    rows = []
    for spec in attacks:
        for threat in threat_models:
            for e in eps:
                generator = torch.Generator().manual_seed(seed)
                options = {"spec": spec, "generator": generator, "batch_size": batch_size}
                if threat in PER_SAMPLE_THREAT_MODELS:
                    probs = [adversarial_probs(m, x, y, threat, e, **options) for m in models]
                    rows.append(_row(spec, threat, "single", e, probs[-1], y))
                    averaged = torch.stack(probs).mean(dim=0)
                else:
                    averaged = adversarial_predictive(models, x, y, "predictive", e, **options)
                rows.append(_row(spec, threat, "averaged", e, averaged, y))
    return pd.DataFrame(rows, columns=SWEEP_COLUMNS)


def transfer_sweep(
    source: Sequence[Model],
    target: Sequence[Model],
    x: Tensor,
    y: Tensor,
    eps: Sequence[float] = EPS_SWEEP,
    *,
    attacks: Sequence[AttackSpec] = (FGSM, PGD),
    seed: int = 0,
    batch_size: int | None = None,
) -> pd.DataFrame:
    """Transfer attacks: perturbations built on ``source`` (its averaged predictive, true
    labels, clipped: SGD's single model in the checklist), evaluated on ``target``'s samples.

    Rows as :func:`eps_sweep`'s with threat ``"transfer"``, modes ``single`` (``target``'s last
    sample) and ``averaged``, plus ``source accuracy`` (the source's own, white-box).
    """
    source, target = list(source), list(target)
    rows = []
    for spec in attacks:
        for e in eps:
            generator = torch.Generator().manual_seed(seed)
            x_adv = perturb(
                source, x, y, e, spec, clip=True, generator=generator, batch_size=batch_size
            )
            own = averaged_probs(source, x_adv, batch_size)
            probs = [predicted_probs(m, x_adv, batch_size) for m in target]
            for mode, p in (("single", probs[-1]), ("averaged", torch.stack(probs).mean(0))):
                row = _row(spec, "transfer", mode, e, p, y)
                row["source accuracy"] = _correct(own, y) / len(y)
                rows.append(row)
    return pd.DataFrame(rows, columns=[*SWEEP_COLUMNS, "source accuracy"])


def saturation(
    models: Sequence[Model], x: Tensor, y: Tensor, batch_size: int | None = None
) -> pd.DataFrame:
    """How saturated the models are on ``(x, y)``, one row per mode:

    ``single`` (the last sample), ``per_sample`` (every image under every sample) and
    ``predictive`` (the averaged predictive and the gradient of ``−log mean_s p_s(y|x)``).
    Columns: ``max_prob_one``, the fraction whose largest class probability is exactly 1 in
    float32; ``zero_gradient``, the fraction whose input gradient of the loss (true labels) is
    exactly zero in every pixel, where FGSM and PGD steps cannot move; ``median_margin``, the
    median gap between the two largest log-probabilities; ``images``.
    """
    models = list(models)
    size = batch_size or len(x)

    def measure(group: Sequence[Model]) -> tuple[Tensor, Tensor, Tensor]:
        one, zero, margin = [], [], []
        objective = Objective(group)
        for xb, yb in zip(x.split(size), y.split(size), strict=True):
            _, grad, _ = objective(xb, yb)
            zero.append(grad.flatten(1).eq(0).all(dim=1))
            with torch.no_grad():
                log_p = torch.stack([F.log_softmax(m(xb), dim=1) for m in group])
            log_mean = torch.logsumexp(log_p, dim=0) - math.log(len(group))
            one.append(log_p.exp().mean(dim=0).max(dim=1).values == 1.0)
            top2 = log_mean.topk(2, dim=1).values
            margin.append(top2[:, 0] - top2[:, 1])
        return torch.cat(one), torch.cat(zero), torch.cat(margin)

    per_model = [measure([m]) for m in models]
    rows = {
        "single": per_model[-1],
        "per_sample": tuple(torch.cat(parts) for parts in zip(*per_model, strict=True)),
        "predictive": measure(models),
    }
    return pd.DataFrame(
        [
            {
                "mode": mode,
                "max_prob_one": one.float().mean().item(),
                "zero_gradient": zero.float().mean().item(),
                "median_margin": margin.median().item(),
                "images": len(y),
            }
            for mode, (one, zero, margin) in rows.items()
        ]
    )


# ---------------------------------------------------------------------- the checks
def binomial_tolerance(p1: float, n1: int, p2: float, n2: int, z: float = 2.0) -> float:
    """``z`` standard errors of a difference of two accuracies measured on ``n1`` and ``n2``
    images, ``z·sqrt(p1(1−p1)/n1 + p2(1−p2)/n2)`` (binomial; conservative for the paired case
    of two attacks on the same images)."""
    return z * math.sqrt(p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2)


def _no_excess(
    text: str,
    table: pd.DataFrame,
    higher: str,
    lower: str,
    z: float,
    describe: Callable[[pd.Series, int], str],
    suspect: str,
) -> Claim:
    """Yes when no row of ``table`` has an ``excess`` = ``accuracy{higher} − accuracy{lower}``
    beyond its :func:`binomial_tolerance` (from the ``images`` columns of the same suffixes);
    statistic: the largest excess. The evidence is ``describe(row of the largest excess, rows
    compared)``, then, where some excess is beyond tolerance, how many (``suspect``: what such
    an excess shows)."""
    table = table.assign(excess=table[f"accuracy{higher}"] - table[f"accuracy{lower}"])
    table["tolerance"] = [
        binomial_tolerance(
            r[f"accuracy{higher}"],
            r[f"images{higher}"],
            r[f"accuracy{lower}"],
            r[f"images{lower}"],
            z,
        )
        for _, r in table.iterrows()
    ]
    failed = table[table["excess"] > table["tolerance"]]
    worst = table.loc[table["excess"].idxmax()]
    evidence = describe(worst, len(table))
    if not failed.empty:
        evidence += f"; {suspect} beyond tolerance in {len(failed)}: masking suspected"
    return decide(SECTION, text, failed.empty, worst["excess"], evidence)


def _strongest(pooled: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Per ``keys``, the row of the lowest accuracy: the strongest attack's."""
    return pooled.loc[pooled.groupby(keys)["accuracy"].idxmin()]


def _pooled(table: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Accuracy per ``keys``, pooling the rows that share them (seeds): correct and images
    summed (``correct`` from ``accuracy·images`` where missing)."""
    table = table.copy()
    if "correct" not in table:
        table["correct"] = (table["accuracy"] * table["images"]).round()
    pooled = table.groupby(keys, as_index=False)[["correct", "images"]].sum()
    pooled["accuracy"] = pooled["correct"] / pooled["images"]
    return pooled


def _for(method: str) -> str:
    return f" ({method})" if method else ""


def _where(row) -> str:
    return f"ε = {row['eps']:g}, {row['threat']}, {row['mode']}"


def iterative_at_least_as_strong(sweep: pd.DataFrame, method: str = "", z: float = 2.0) -> Claim:
    """(a) At every ε > 0, threat model and mode of ``sweep`` (:func:`eps_sweep`'s columns),
    every iterative attack (``steps > 1``) leaves at most the accuracy of the single-step one
    (``steps == 1``, FGSM) plus :func:`binomial_tolerance`; statistic: the largest excess of an
    iterative attack's accuracy over FGSM's (a fraction; ≤ 0 where iterative attacks are
    stronger everywhere); n/a without an ε where both were run."""
    text = f"Iterative attacks are at least as strong as FGSM at every ε{_for(method)}."
    keys = ["threat", "mode", "eps"]
    pooled = _pooled(sweep[sweep["eps"] > 0], [*keys, "attack", "steps"])
    single = pooled[pooled["steps"] == 1]
    single = _strongest(single, keys)
    iterative = pooled[pooled["steps"] > 1].merge(single, on=keys, suffixes=("", " fgsm"))
    if iterative.empty:
        return decide(
            SECTION, text, None, None, "no ε with both a single-step and an iterative attack"
        )

    def describe(worst: pd.Series, compared: int) -> str:
        return (
            f"largest excess {100 * worst['excess']:+.1f} points ({worst['attack']} "
            f"{100 * worst['accuracy']:.1f}% vs FGSM {100 * worst['accuracy fgsm']:.1f}% at "
            f"{_where(worst)}; tolerance {100 * worst['tolerance']:.1f} points) over "
            f"{compared} comparisons"
        )

    return _no_excess(text, iterative, "", " fgsm", z, describe, "weaker than FGSM")


def unbounded_reaches_zero(
    sweep: pd.DataFrame, method: str = "", unbounded: float = 1.0, at_most: float = 0.01
) -> Claim:
    """(b) At the sweep's largest ε, if it is at least ``unbounded`` (1 on [0, 1] pixels: any
    image is reachable), the strongest attack leaves at most ``at_most`` accuracy in every
    threat model and mode; statistic: the largest such accuracy; n/a when the sweep stops
    below ``unbounded``."""
    text = f"Accuracy falls to about 0 as ε grows unbounded{_for(method)}."
    largest = sweep["eps"].max() if len(sweep) else math.nan
    if not largest >= unbounded:
        return decide(
            SECTION,
            text,
            None,
            None,
            f"the sweep stops at ε = {largest:g}, below the unbounded ε = {unbounded:g}",
        )
    pooled = _pooled(sweep[sweep["eps"] == largest], ["threat", "mode", "eps", "attack"])
    strongest = _strongest(pooled, ["threat", "mode"])
    worst = strongest.loc[strongest["accuracy"].idxmax()]
    return decide(
        SECTION,
        text,
        bool(worst["accuracy"] <= at_most),
        worst["accuracy"],
        f"at ε = {largest:g} the strongest attack leaves at most {100 * worst['accuracy']:.1f}% "
        f"({worst['attack']}, {worst['threat']}, {worst['mode']}; threshold "
        f"{100 * at_most:g}%)",
    )


def transfer_not_stronger(
    transfer: pd.DataFrame, sweep: pd.DataFrame, method: str = "", z: float = 2.0
) -> Claim:
    """(c) At every ε > 0 and mode of ``transfer`` (:func:`transfer_sweep`), the strongest
    transfer attack's accuracy is at least the strongest white-box attack's
    (:data:`WHITE_BOX_THREATS` in ``sweep``) minus :func:`binomial_tolerance`; statistic: the
    largest margin by which a transfer attack beats the white-box ones (white-box minus
    transfer accuracy); n/a without transfer rows (e.g. for the source model itself)."""
    text = f"Transfer attacks from SGD's model do not beat white-box ones{_for(method)}."
    keys = ["mode", "eps"]
    moved = transfer[transfer["eps"] > 0] if len(transfer) else transfer
    white_rows = sweep[sweep["threat"].isin(WHITE_BOX_THREATS) & (sweep["eps"] > 0)]
    if moved.empty or white_rows.empty:
        return decide(SECTION, text, None, None, "no transfer attack to compare")
    strongest = _strongest(_pooled(moved, [*keys, "attack"]), keys)
    white = _strongest(_pooled(white_rows, [*keys, "threat", "attack"]), keys)
    both = strongest.merge(white, on=keys, suffixes=(" transfer", " white"))
    if both.empty:
        return decide(SECTION, text, None, None, "no ε and mode with both attacks")

    def describe(worst: pd.Series, compared: int) -> str:
        return (
            f"largest margin of transfer over white-box {100 * worst['excess']:+.1f} points "
            f"(transfer {worst['attack transfer']} {100 * worst['accuracy transfer']:.1f}% vs "
            f"white-box {worst['attack white']} {100 * worst['accuracy white']:.1f}% at ε = "
            f"{worst['eps']:g}, {worst['mode']}; tolerance {100 * worst['tolerance']:.1f} points)"
        )

    return _no_excess(text, both, " white", " transfer", z, describe, "transfer stronger")


def not_saturated(saturation: pd.DataFrame, method: str = "", at_most: float = 0.01) -> Claim:
    """(d) In every mode of ``saturation`` (:func:`saturation`) the input gradient of the loss is
    exactly zero on at most ``at_most`` of the images; statistic: the largest such fraction. A
    gradient that is merely tiny still has a sign (the attacks sum the loss over images), so the
    fraction whose max probability is 1 in float32 is reported, not decided on; n/a without
    rows."""
    text = f"The softmax is not saturated: gradient-sign attacks see a gradient{_for(method)}."
    if saturation.empty:
        return decide(SECTION, text, None, None, "no saturation measured")
    worst = saturation.loc[saturation["zero_gradient"].idxmax()]
    ones = saturation.loc[saturation["max_prob_one"].idxmax()]
    return decide(
        SECTION,
        text,
        bool(worst["zero_gradient"] <= at_most),
        worst["zero_gradient"],
        f"input gradient exactly zero on {100 * worst['zero_gradient']:.1f}% of images "
        f"({worst['mode']}; threshold {100 * at_most:g}%); max probability 1 in float32 on up "
        f"to {100 * ones['max_prob_one']:.1f}% ({ones['mode']}); median log-probability margin "
        f"{worst['median_margin']:.3g}",
    )


def robustness_claim(checks: Sequence[Claim], method: str = "") -> Claim:
    """Whether ``method`` may claim robustness: ``"no"`` (no robustness claim) when any check
    says no, ``"n/a"`` when none could be decided, else ``"yes"``; statistic: how many failed."""
    text = f"The gradient-masking checks allow a robustness claim{_for(method)}."
    failed = [c for c in checks if c.verdict == "no"]
    decided = [c for c in checks if c.verdict != "n/a"]
    if failed:
        names = (c.text.removesuffix(".").removesuffix(_for(method)) for c in failed)
        evidence = "no robustness claim: fails " + "; ".join(names)
    elif decided:
        evidence = (
            f"passes {len(decided)} of {len(checks)} checks ({len(checks) - len(decided)} n/a)"
        )
    else:
        evidence = "no check could be decided"
    holds = None if not decided else not failed
    return decide(SECTION, text, holds, len(failed), evidence)


def checklist(
    sweep: pd.DataFrame,
    transfer: pd.DataFrame,
    saturation: pd.DataFrame,
    method: str = "",
) -> list[Claim]:
    """The four checks on one method's tables, then :func:`robustness_claim`."""
    checks = [
        iterative_at_least_as_strong(sweep, method),
        unbounded_reaches_zero(sweep, method),
        transfer_not_stronger(transfer, sweep, method),
        not_saturated(saturation, method),
    ]
    return [*checks, robustness_claim(checks, method)]


def checklists(
    sweep: pd.DataFrame, transfer: pd.DataFrame, saturation: pd.DataFrame, by: str = "method"
) -> list[Claim]:
    """:func:`checklist` for every value of column ``by`` of ``sweep`` (in order of first
    appearance), on the rows of each table with that value (a table without the column
    serves every method; a method missing from ``transfer`` gets n/a there)."""

    def rows(table: pd.DataFrame, value) -> pd.DataFrame:
        return table[table[by] == value] if by in table else table

    claims: list[Claim] = []
    for value in pd.unique(sweep[by]):
        claims += checklist(
            rows(sweep, value), rows(transfer, value), rows(saturation, value), str(value)
        )
    return claims


# ---------------------------------------------------------------------- from stored runs
def evaluated(results, window: str = "table1") -> pd.DataFrame:
    """Per run: whether its window holds the robustness record, and its transfer source."""
    rows = []
    for (configuration, method, seed), result in results.items():
        record = result.metrics["windows"].get(window, {}).get("robustness")
        rows.append(
            {
                "configuration": configuration,
                "method": method,
                "seed": seed,
                "robustness": "evaluated" if record else "not evaluated",
                "images": record["images"] if record else 0,
                "transfer from": (record or {}).get("transfer_source") or "—",
            }
        )
    return pd.DataFrame(rows)


def method_checklists(
    sweep: pd.DataFrame, transfer: pd.DataFrame, saturation: pd.DataFrame
) -> dict[tuple[str, str], list[Claim]]:
    """:func:`checklist` per ``(configuration, method)`` of ``sweep``, on the rows of the
    method's reading that count (seeds pooled); a method without rows is absent."""
    out: dict[tuple[str, str], list[Claim]] = {}
    if sweep.empty:
        return out

    def rows(table: pd.DataFrame, configuration: str, method: str) -> pd.DataFrame:
        if table.empty:
            return table
        keep = (
            (table["configuration"] == configuration)
            & (table["method"] == method)
            & table["reading"].astype(bool)
            & table["counted"].astype(bool)
        )
        return table[keep]

    for configuration, method in (
        sweep[["configuration", "method"]].drop_duplicates().itertuples(index=False)
    ):
        own = rows(sweep, configuration, method)
        if own.empty:
            continue
        out[(configuration, method)] = checklist(
            own,
            rows(transfer, configuration, method),
            rows(saturation, configuration, method),
            f"{method}, {configuration}",
        )
    return out


#: The checklist table's columns, one per check of :func:`checklist`.
CHECK_NAMES = (
    "iterative ≥ FGSM",
    "→ 0 as ε grows",
    "transfer ≤ white-box",
    "not saturated",
    "robustness claim allowed",
)


def checklist_table(checks: dict[tuple[str, str], list[Claim]]) -> pd.DataFrame:
    """:func:`method_checklists` as a table: one row per configuration and method, one column
    per check (:data:`CHECK_NAMES`) holding its verdict (``yes``/``no``/``n/a``)."""
    rows = [
        {
            "configuration": configuration,
            "method": method,
            **{name: c.verdict for name, c in zip(CHECK_NAMES, claims, strict=True)},
        }
        for (configuration, method), claims in checks.items()
    ]
    frame = pd.DataFrame(rows, columns=["configuration", "method", *CHECK_NAMES])
    return frame.set_index(["configuration", "method"])


def accuracy_curves(sweep: pd.DataFrame) -> pd.DataFrame:
    """Accuracy against ε of each method's reading over the seeds that count: one row per
    ``configuration, method, attack, threat, eps`` with the pooled accuracy and images."""
    if sweep.empty:
        return pd.DataFrame(columns=["configuration", "method", "attack", "threat", "eps"])
    chosen = sweep[sweep["reading"].astype(bool) & sweep["counted"].astype(bool)]
    return _pooled(chosen, ["configuration", "method", "attack", "threat", "eps"])


def strongest_white_box(sweep: pd.DataFrame, eps: float) -> pd.DataFrame:
    """Per run (``configuration, method, seed``), the lowest accuracy of the method's reading
    under any white-box attack (:data:`WHITE_BOX_THREATS`) at ``eps``, with ``counted``."""
    if sweep.empty:
        return pd.DataFrame(columns=["configuration", "method", "seed", "accuracy", "counted"])
    at = sweep[
        sweep["reading"].astype(bool)
        & sweep["threat"].isin(WHITE_BOX_THREATS)
        & ((sweep["eps"] - eps).abs() < 1e-9)
    ]
    keys = ["configuration", "method", "seed"]
    return at.groupby(keys, as_index=False).agg(
        accuracy=("accuracy", "min"), counted=("counted", "all"), fate=("fate", "first")
    )


def reading_tables(
    results, window: str = "table1", modes: Sequence[str | None] = (None,)
) -> dict[str, pd.DataFrame]:
    """``tables.robustness_table`` of every part (``tables.ROBUSTNESS_PARTS``) with only the
    rows of the reading;
    with several ``modes`` (e.g. ``("single", "averaged")``) each reading's rows, the mode
    appended to ``configuration`` (``"eq. 1, single"``), so a checklist is made per reading."""
    out = {}
    for part in tables.ROBUSTNESS_PARTS:
        frames = []
        for mode in modes:
            frame = tables.robustness_table(results, part, window, mode)
            if frame.empty:
                continue
            frame = frame[frame["reading"].astype(bool)]
            if len(modes) > 1:
                frame = frame.assign(configuration=frame["configuration"] + f", {mode}")
            frames.append(frame)
        out[part] = (
            pd.concat(frames, ignore_index=True)
            if frames
            else pd.DataFrame(columns=["configuration", "method", "seed", "reading", "counted"])
        )
    return out


def plot_accuracy_vs_eps(curves: pd.DataFrame):
    """Accuracy against ε (:func:`accuracy_curves`), one panel per configuration, one colour
    per method, PGD solid and FGSM dashed, each attack under the white-box threat model of the
    reading (the one swept over ε); returns the figure (``None`` without rows)."""
    import matplotlib.pyplot as plt

    from sgmcmc_paper.analysis import plotting

    if curves.empty:
        return None
    configurations = list(pd.unique(curves["configuration"]))
    fig, axes = plt.subplots(
        1, len(configurations), figsize=(5 * len(configurations), 3.8), sharey=True, squeeze=False
    )
    for ax, configuration in zip(axes[0], configurations, strict=True):
        here = curves[curves["configuration"] == configuration]
        for (method, attack), rows in here.groupby(["method", "attack"], sort=False):
            swept = rows.groupby("threat")["eps"].nunique().idxmax()
            rows = rows[rows["threat"] == swept].sort_values("eps")
            ax.plot(
                rows["eps"],
                rows["accuracy"],
                marker="o" if attack.startswith("PGD") else "x",
                linestyle="-" if attack.startswith("PGD") else "--",
                color=plotting.method_color(method),
                label=f"{method} {attack}",
            )
        ax.axvline(0.3, color="grey", linewidth=0.8, linestyle=":")
        plotting.label_axes(ax, "ε (L∞, pixels in [0, 1])", "accuracy", title=configuration)
    axes[0][-1].legend(fontsize="small", loc="upper right")
    return fig
