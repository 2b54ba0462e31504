"""The paper's claims, each decided by a function of the tables a chapter computes.

Every function takes the tables (pandas objects, plain values) its notebook already shows
and returns :class:`Claim` records: the section, the claim in words, the verdict (``"yes"``,
``"no"``, or ``"n/a"`` where the profile cannot test it), the statistic the verdict is decided
on, and the evidence in words. Each chapter's group function (:func:`search_budget`,
:func:`accuracy`, :func:`mixing`, :func:`small_mnist`, :func:`adversarial`,
:func:`out_of_distribution`, :func:`gradient_or_noise`, :func:`noise_conventions`) returns
its claims in the order its table lists them; ``Session.claims`` renders them.

The statistic is a float (NaN where the tables give none, e.g. a test with one seed); the
verdict is decided by the test each docstring states, of which the statistic is the number
that moves it (for a claim decided by a paired t-test: its p-value, the sign of the
difference being part of the test).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sgmcmc_paper.analysis.tables import CONFIGURATIONS, paired_difference, paper_mode
from sgmcmc_paper.protocol import paper
from sgmcmc_paper.protocol.paper import LANGEVIN_METHODS, PRECONDITIONED_METHODS

LANGEVIN = list(LANGEVIN_METHODS)


@dataclass(frozen=True)
class Claim:
    """One claim of the paper with its computed verdict."""

    section: str
    text: str
    verdict: str
    statistic: float
    evidence: str

    def row(self) -> dict[str, str]:
        """The claims table's row: ``section, claim, holds, evidence``."""
        return {
            "section": self.section,
            "claim": self.text,
            "holds": self.verdict,
            "evidence": self.evidence,
        }


def verdict(holds: bool | None) -> str:
    """``"yes"``/``"no"`` from a computed truth value, ``"n/a"`` for ``None`` (not testable)."""
    return "n/a" if holds is None else ("yes" if bool(holds) else "no")


def decide(section: str, text: str, holds: bool | None, statistic: Any, evidence: str) -> Claim:
    """A :class:`Claim` from a truth value (``None``: not testable) and its statistic."""
    number = math.nan if statistic is None else float(statistic)
    return Claim(section, text, verdict(holds), number, evidence)


# ---------------------------------------------------------------------- 00: the search (§4)
def search_budget(sweeps: Mapping[str, Mapping[str, Any]]) -> list[Claim]:
    """§4: every sweep used at most 5% more than its budget (``budget_used ≤ 1.05·budget``);
    statistic: the largest ``budget_used / budget``; n/a without a recorded sweep."""
    text = "Each method's search fits in a budget of 5× SGD's training time."
    if not sweeps:
        return [decide("4", text, None, None, "no sweep recorded for this profile")]
    within = [s["budget_used"] <= s["budget"] * 1.05 for s in sweeps.values()]
    used = [s["budget_used"] for s in sweeps.values()]
    ratio = max(
        s["budget_used"] / s["budget"] if s["budget"] else math.inf for s in sweeps.values()
    )
    return [
        decide(
            "4",
            text,
            all(within),
            ratio,
            f"budget used from {min(used):.2f}× to {max(used):.2f}× over {len(sweeps)} sweeps",
        )
    ]


# ---------------------------------------------------------------------- 01: Fig. 1 (§4.1)
def methods_agree(final_table, configuration: str, last: int) -> Claim:
    """§4.1: the final-epoch accuracies (column ``configuration`` of ``final_table``, one row
    per method) span at most one point; statistic: that spread in points."""
    accuracy = final_table[configuration]
    spread = 100 * (accuracy.max() - accuracy.min())
    return decide(
        "4.1",
        f"All methods end within about one point of each other ({configuration}).",
        spread <= 1.0,
        spread,
        f"final-epoch spread {spread:.2f} points (epoch {last})",
    )


def averaging_helps_little(final_table, final, configuration: str) -> Claim:
    """§4.1: the best averaged method (any but SGD in ``final``, the final epoch's curves)
    beats SGD's final model by at most one point; statistic: that gain in points."""
    averaged = final[(final.configuration == configuration) & (final.method != "sgd")]
    best_averaged = averaged["mean"].max()
    sgd_final = final_table[configuration].loc["sgd"]
    gain = 100 * (best_averaged - sgd_final)
    return decide(
        "4.1",
        f"Averaging does not clearly help: the best averaged method beats SGD by at most "
        f"one point ({configuration}).",
        gain <= 1.0,
        gain,
        f"best averaged {best_averaged:.4f} vs SGD {sgd_final:.4f}",
    )


def follows_logged_sgd(comparison, method: str, mode: str, common: Sequence[int]) -> Claim:
    """§4.1: ``method`` as released stays within 2 points of the range of the paper code's
    logged SGD curves at every common epoch; statistic: the largest distance in points."""
    gap = comparison[f"{method}: distance to the logged range (points)"].max()
    return decide(
        "4.1",
        f"{method.upper()} as released ({mode}) follows the paper code's logged SGD curve "
        "(within 2 points).",
        gap <= 2.0,
        gap,
        f"largest distance to the logged range {gap:.2f} points over epochs {common}",
    )


def accuracy(final_table, final, comparison, common: Sequence[int], last: int) -> list[Claim]:
    """§4.1's claims (Fig. 1): per configuration :func:`methods_agree` and
    :func:`averaging_helps_little`, then :func:`follows_logged_sgd` for SGD and FSGD."""
    claims = []
    for configuration in CONFIGURATIONS:
        claims.append(methods_agree(final_table, configuration, last))
        claims.append(averaging_helps_little(final_table, final, configuration))
    for method, mode in (("sgd", "final model"), ("fsgd", "averaged")):
        claims.append(follows_logged_sgd(comparison, method, mode, common))
    return claims


# ---------------------------------------------------------------------- 02: Fig. 2 (§4.2)
def mess_is_low(mess, window: int, floor: float) -> Claim:
    """§4.2: every window's mESS (column ``mess``) is below a tenth of the window's draws;
    statistic: the largest window mESS."""
    low = mess["mess"].max()
    return decide(
        "4.2",
        "mESS is very low for every method: the chains barely mix.",
        low < window / 10,
        low,
        f"largest window mESS {low:.2f} of {window} draws (floor {floor:.2f})",
    )


def not_stationary(diagnostics) -> Claim:
    """§4.2: every run's window R-hat of the weights (column ``window R-hat (weights)``) is
    above 1.1; statistic: the smallest; n/a where one is missing."""
    drift = diagnostics["window R-hat (weights)"]
    return decide(
        "4.2",
        "The traces are not stationary.",
        bool((drift > 1.1).all()) if drift.notna().all() else None,
        drift.min(),
        "window R-hat of the weights from "
        f"{drift.min():.2f} to {drift.max():.2f} over methods and configurations",
    )


def mixing(mess, diagnostics, window: int, floor: float) -> list[Claim]:
    """§4.2's claims (Fig. 2): :func:`mess_is_low` and :func:`not_stationary`."""
    return [mess_is_low(mess, window, floor), not_stationary(diagnostics)]


# ---------------------------------------------------------------------- 03: Fig. 3 (§4.3)
def langevin_underperform(accuracy, where: str) -> Claim:
    """§4.3: every Langevin method's final accuracy (``accuracy``, indexed by method) is below
    SGD's; statistic: the best Langevin accuracy minus SGD's."""
    sgd = accuracy.loc["sgd"]
    langevin = accuracy.loc[LANGEVIN]
    return decide(
        "4.3",
        f"The Langevin methods underperform SGD ({where}).",
        bool((langevin < sgd).all()),
        langevin.max() - sgd,
        f"SGD {sgd:.4f}; SGLD {langevin['sgld']:.4f}, pSGLD {langevin['psgld']:.4f}, "
        f"KSGLD {langevin['ksgld']:.4f}",
    )


def only_fsgd_matches(accuracy, where: str) -> Claim:
    """§4.3: FSGD's final accuracy is within one point of SGD's and no Langevin method's is;
    statistic: FSGD's distance to SGD."""
    sgd = accuracy.loc["sgd"]
    langevin = accuracy.loc[LANGEVIN]
    distance = abs(accuracy.loc["fsgd"] - sgd)
    fsgd_matches = distance <= 0.01
    langevin_match = (abs(langevin - sgd) <= 0.01).any()
    return decide(
        "4.3",
        f"Only FSGD matches SGD ({where}).",
        bool(fsgd_matches and not langevin_match),
        distance,
        f"FSGD {accuracy.loc['fsgd']:.4f} vs SGD {sgd:.4f}; a Langevin method within "
        f"one point: {'yes' if langevin_match else 'no'}",
    )


def small_mnist(final_table, sizes: Iterable[int]) -> list[Claim]:
    """§4.3's claims (Fig. 3): per training size and configuration (``final_table``'s columns
    ``(size, configuration)``) :func:`langevin_underperform` and :func:`only_fsgd_matches`."""
    claims = []
    for size in sizes:
        for configuration in CONFIGURATIONS:
            accuracy = final_table[(size, configuration)]
            where = f"{size:,} images, {configuration}"
            claims.append(langevin_underperform(accuracy, where))
            claims.append(only_fsgd_matches(accuracy, where))
    return claims


# ---------------------------------------------------------------------- 04: Table 1 (§4.4)
def paper_attack_means(attacked, configuration: str, eps: float = paper.FGSM_EPSILON):
    """Mean over seeds, per method, of the accuracy under the paper's own attack (threat model
    ``as_released`` at ``eps``) of the prediction the paper reports for the method."""
    rows = attacked[(attacked.threat == "as_released") & (attacked.eps == eps)]
    rows = rows[rows.apply(lambda r: r["mode"] == paper_mode(r["method"]), axis=1)]
    return rows[rows.configuration == configuration].groupby("method")["accuracy"].mean()


def fgsm_defeats(means, configuration: str) -> Claim:
    """§4.4: every method's adversarial accuracy (``means``, per method, a fraction) is below
    10%; statistic: the largest."""
    return decide(
        "4.4",
        f"FGSM at ε = 0.3 defeats every method ({configuration}).",
        bool((means < 0.10).all()),
        means.max(),
        f"adversarial accuracy from {100 * means.min():.1f}% to {100 * means.max():.1f}%",
    )


def langevin_not_robust(means, configuration: str) -> Claim:
    """§4.4: no Langevin method's adversarial accuracy is more than one point above SGD's;
    statistic: the best Langevin method minus SGD, in points."""
    gain = 100 * (means[LANGEVIN].max() - means["sgd"])
    return decide(
        "4.4",
        f"Langevin methods do not improve adversarial robustness ({configuration}).",
        bool(gain <= 1.0),
        gain,
        f"best Langevin method minus SGD: {gain:+.1f} points",
    )


def adversarial(attacked, eps: float = paper.FGSM_EPSILON) -> list[Claim]:
    """§4.4's claims (Table 1) from ``tables.fgsm_table``: per configuration
    :func:`fgsm_defeats` and :func:`langevin_not_robust` on :func:`paper_attack_means`."""
    claims = []
    for configuration in CONFIGURATIONS:
        means = paper_attack_means(attacked, configuration, eps)
        claims.append(fgsm_defeats(means, configuration))
        claims.append(langevin_not_robust(means, configuration))
    return claims


# ---------------------------------------------------------------------- 05: Fig. 4 (§4.5)
def sgd_most_confident(confidence, configuration: str) -> Claim:
    """§4.5: SGD has the largest mean max probability on notMNIST-style letters
    (``confidence``, per method); statistic: SGD's minus the largest other method's."""
    return decide(
        "4.5",
        f"SGD is the most confident method on notMNIST-style letters ({configuration}).",
        bool(confidence.idxmax() == "sgd"),
        confidence["sgd"] - confidence.drop("sgd").max(),
        "mean max probability: "
        + ", ".join(f"{paper.METHOD_LABELS[m]} {confidence[m]:.3f}" for m in paper.METHODS),
    )


def averaging_less_confident(confidence, configuration: str) -> Claim:
    """§4.5: every averaging method's mean max probability is below SGD's; statistic: the
    largest averaged one minus SGD's."""
    others = confidence.drop("sgd")
    return decide(
        "4.5",
        f"All averaging methods, FSGD included, are less over-confident than SGD "
        f"({configuration}).",
        bool((others < confidence["sgd"]).all()),
        others.max() - confidence["sgd"],
        f"largest averaged mean max probability {others.max():.3f} vs SGD {confidence['sgd']:.3f}",
    )


def detection_significant(tests, configuration: str) -> Claim:
    """The abstract: against SGD (rows of ``tests`` with ``baseline == "sgd"``: columns
    ``method``, ``AUROC difference``, ``p-value``, ``seeds``) every Langevin method's
    difference is positive with p < 0.05; statistic: the largest p-value; n/a below two
    seeds."""
    versus_sgd = tests[(tests.configuration == configuration) & (tests.baseline == "sgd")]
    testable = versus_sgd["seeds"].min() >= 2
    significant = (versus_sgd["AUROC difference"] > 0) & (versus_sgd["p-value"] < 0.05)
    return decide(
        "4.5",
        f"Langevin methods significantly improve out-of-sample detection over SGD "
        f"({configuration}; abstract).",
        bool(significant.all()) if testable else None,
        versus_sgd["p-value"].max(),
        f"paired t-test over {int(versus_sgd['seeds'].min())} seed(s): p-values "
        + ", ".join(
            f"{m} {p:.3g}" for m, p in zip(versus_sgd.method, versus_sgd["p-value"], strict=True)
        ),
    )


def out_of_distribution(metrics, tests) -> list[Claim]:
    """§4.5's claims (Fig. 4): per configuration :func:`sgd_most_confident` and
    :func:`averaging_less_confident` on the mean over seeds of ``mean_max_prob`` on
    ``notmnist`` (rows of ``metrics``, ``tables.window_table``'s long form), and
    :func:`detection_significant` on ``tests``."""
    confidence = metrics[(metrics.set == "notmnist") & (metrics.metric == "mean_max_prob")]
    mean_conf = confidence.groupby(["configuration", "method"])["value"].mean()
    claims = []
    for configuration in CONFIGURATIONS:
        conf = mean_conf.loc[configuration]
        claims.append(sgd_most_confident(conf, configuration))
        claims.append(averaging_less_confident(conf, configuration))
        claims.append(detection_significant(tests, configuration))
    return claims


# ---------------------------------------------------------------------- 06: gradient or noise
def eq1_samples_posterior(comparison) -> Claim:
    """Every eq. 1 chain of ``exact.comparison_table`` matches the posterior; statistic: the
    largest error in standard errors."""
    eq1 = comparison[comparison.rule == "eq1"]
    worst = (eq1["error vs posterior"] / eq1["se (posterior)"]).max()
    return decide(
        "eq. 1",
        "With a constant preconditioner, eq. 1 samples the posterior.",
        bool(eq1["matches posterior"].all()),
        worst,
        f"every eq. 1 chain within {worst:.1f} standard errors of H⁻¹",
    )


def eq2_samples_posterior(comparison) -> Claim:
    """Every eq. 2 chain (either noise rule, SGLD aside) matches the posterior; statistic: the
    smallest error in standard errors."""
    eq2 = comparison[(comparison.rule != "eq1") & (comparison.sampler != "sgld")]
    least = (eq2["error vs posterior"] / eq2["se (posterior)"]).min()
    return decide(
        "eq. 2",
        "Preconditioning only the noise (eq. 2, the paper's experiments) samples the posterior.",
        bool(eq2["matches posterior"].all()),
        least,
        f"eq. 2 chains miss H⁻¹ by at least {least:.0f} standard errors",
    )


def chains_sample_lyapunov(comparison) -> Claim:
    """Every chain matches its discrete Lyapunov solution; statistic: the largest error in
    standard errors."""
    largest = (comparison["error vs Lyapunov"] / comparison["se (Lyapunov)"]).max()
    return decide(
        "all",
        "Every chain samples its discrete Lyapunov solution.",
        bool(comparison["matches Lyapunov"].all()),
        largest,
        f"largest error {largest:.1f} standard errors",
    )


def eq1_more_accurate(summary, method: str) -> Claim:
    """On the CNN, ``method`` with eq. 1 is more accurate than with eq. 2 (``summary``:
    ``tables.run_summary``, rule in column ``label``): positive mean difference over seeds
    with a paired t-test p < 0.05; statistic: the p-value; n/a below two seeds."""
    here = summary[summary.method == method]
    diff, p_value, n = paired_difference(
        here.rename(columns={"label": "rule"}).assign(method=here.label),
        "accuracy",
        "eq. 1",
        "eq. 2",
    )
    return decide(
        "CNN",
        f"On the CNN, {paper.METHOD_LABELS[method]} with eq. 1 is more accurate than with eq. 2.",
        (diff > 0 and p_value < 0.05) if n >= 2 else None,
        p_value,
        f"accuracy difference {100 * diff:+.2f} points over {n} seed(s)"
        + (f", paired t-test p = {p_value:.3g}" if n >= 2 else ": no test with one seed"),
    )


def gradient_or_noise(comparison, summary) -> list[Claim]:
    """The gradient-or-noise chapter's claims: exact (:func:`eq1_samples_posterior`,
    :func:`eq2_samples_posterior`, :func:`chains_sample_lyapunov`), then on the CNN
    :func:`eq1_more_accurate` for pSGLD and KSGLD."""
    claims = [
        eq1_samples_posterior(comparison),
        eq2_samples_posterior(comparison),
        chains_sample_lyapunov(comparison),
    ]
    for method in PRECONDITIONED_METHODS:
        claims.append(eq1_more_accurate(summary, method))
    return claims


# ---------------------------------------------------------------------- 07: noise conventions
def mnist_temperature(implied) -> Claim:
    """§2: the implied temperature on MNIST (``implied``'s first entry) is 0.48 ± 0.005;
    statistic: that temperature."""
    return decide(
        "§2",
        "The paper's Langevin runs on MNIST sample at a temperature of about 0.48.",
        abs(implied.iloc[0] - 0.48) < 0.005,
        implied.iloc[0],
        f"T = lr³·N = {implied.iloc[0]:.3f}",
    )


def small_mnist_colder(implied) -> Claim:
    """§2: on smallMNIST (``implied``'s second and third entries: 5,000 and 3,000 images) the
    temperatures are 0.04 and 0.024, each ± 0.001; statistic: the larger deviation."""
    deviations = (abs(implied.iloc[1] - 0.04), abs(implied.iloc[2] - 0.024))
    return decide(
        "§2",
        "On smallMNIST the same noise is a far colder chain (≈ 0.04 at 5,000; ≈ 0.024 at 3,000).",
        deviations[0] < 0.001 and deviations[1] < 0.001,
        max(deviations),
        f"T = {implied.iloc[1]:.3f} and {implied.iloc[2]:.3f}",
    )


def minibatch_noise_order(noise) -> Claim:
    """§2: over all weights (row ``all weights`` of ``noise``), minibatch over injected
    variance is between 0.1 and 10; statistic: that ratio."""
    column = noise["minibatch / injected variance per step"]
    ratio = noise.loc["all weights", "minibatch / injected variance per step"]
    return decide(
        "§2",
        "Minibatch gradient noise is of the same order as the injected noise (ratio 0.1–10).",
        0.1 <= ratio <= 10,
        ratio,
        f"ratio over all weights {ratio:.2e}, per tensor "
        f"from {column.min():.1e} to {column.max():.1e} (at initialisation)",
    )


def calibrated_wins(
    by_convention, methods: Sequence[str], metric: str, better: Callable[[Any, Any], Any]
) -> Claim:
    """Beyond the paper: the calibrated chain (label ``langevin T=1`` of ``by_convention``,
    indexed ``(method, label)``) is ``better`` (``max`` or ``min``) in ``metric`` than the
    paper convention (``as described``) for at least two methods; statistic: how many."""
    wins = sum(
        better(
            by_convention[metric][(m, "langevin T=1")], by_convention[metric][(m, "as described")]
        )
        == by_convention[metric][(m, "langevin T=1")]
        for m in methods
    )
    return decide(
        "beyond",
        f"Calibrated chains (T = 1) beat the paper convention in {metric} for most methods.",
        wins >= 2,
        wins,
        f"{wins} of {len(methods)} methods",
    )


def noise_conventions(temperatures, noise, by_convention, methods: Sequence[str]) -> list[Claim]:
    """The noise-conventions chapter's claims: on ``temperatures`` (column ``T``: MNIST,
    smallMNIST as described, as released) :func:`mnist_temperature` and
    :func:`small_mnist_colder`, :func:`minibatch_noise_order`, then :func:`calibrated_wins` in
    accuracy (higher is better) and NLL (lower), where ``by_convention`` has them."""
    implied = temperatures["T"]
    claims = [mnist_temperature(implied), small_mnist_colder(implied), minibatch_noise_order(noise)]
    for metric, better in (("accuracy", max), ("nll", min)):
        if metric in by_convention:
            claims.append(calibrated_wins(by_convention, methods, metric, better))
    return claims
