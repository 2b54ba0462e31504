"""Which runs each notebook needs at a profile, declared once: :data:`NOTEBOOK_RUNS` maps each
notebook's file stem to the builder of its configs, and the notebooks get their runs from it
(:func:`notebook_runs`), so the same lists let the runs be trained ahead (on a GPU, by several
workers: ``.ci/device/precompute.py``), checked for before a long CPU job, or used to decide
which notebooks the store can execute at a profile without training.

Every builder returns ``{(label, method, seed): RunConfig}`` (``tables.run_all``'s input).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from sgmcmc_paper.analysis import tables
from sgmcmc_paper.analysis.tables import RunKey
from sgmcmc_paper.engine.store import find_result, satisfies
from sgmcmc_paper.protocol.alternatives import alternatives_configs
from sgmcmc_paper.protocol.config import RunConfig
from sgmcmc_paper.protocol.hparams import tuned_overrides
from sgmcmc_paper.protocol.paper import LANGEVIN_METHODS, PRECONDITIONED_METHODS
from sgmcmc_paper.protocol.profiles import get_profile

#: The chains of Fig. 2: FSGD's is SGD's, so the SGD family appears once, as SGD.
MIXING_METHODS = ("sgd", *LANGEVIN_METHODS)
#: The cold temperature of the langevin runs where the sweep selected none.
DEFAULT_COLD_TEMPERATURE = 0.01

Configs = dict[RunKey, RunConfig]


def main_configs(profile: str, seeds: Iterable[int]) -> Configs:
    """Figs. 1, 2, 4 and Table 1: both configurations, every method, the full training set."""
    return tables.reproduction_configs(profile, seeds)


def mixing_configs(profile: str, seeds: Iterable[int]) -> Configs:
    """Fig. 2: the runs of :func:`main_configs` whose chains it draws (:data:`MIXING_METHODS`)."""
    return tables.reproduction_configs(profile, seeds, methods=MIXING_METHODS)


def small_configs(profile: str, seeds: Iterable[int], train_size: int) -> Configs:
    """Fig. 3: the same at one smallMNIST size, for the profile's ``small_epochs``."""
    epochs = get_profile(profile).small_epochs
    return tables.reproduction_configs(profile, seeds, train_size=train_size, epochs=epochs)


def small_mnist_configs(profile: str, seeds: Iterable[int]) -> Configs:
    """Fig. 3: :func:`small_configs` at each of the profile's ``small_train_sizes``, the size
    appended to each label (``"as released 5000"``); :func:`by_train_size` splits them back."""
    seeds = tuple(seeds)
    configs: Configs = {}
    for size in get_profile(profile).small_train_sizes:
        configs.update(
            {(f"{k[0]} {size}", *k[1:]): c for k, c in small_configs(profile, seeds, size).items()}
        )
    return configs


def by_train_size(configs: Configs) -> dict[int, Configs]:
    """``{train_size: configs}`` of :func:`small_mnist_configs`, each label without its size."""
    split: dict[int, Configs] = {}
    for (label, method, seed), config in configs.items():
        size = config.train_size
        split.setdefault(size, {})[(label.removesuffix(f" {size}"), method, seed)] = config
    return split


def gradient_or_noise_configs(profile: str, seeds: Iterable[int]) -> Configs:
    """Eq. 1 (gradient and noise preconditioned) and eq. 2 (noise only), langevin convention;
    eq. 2 only where ``P`` is not the identity."""
    seeds = tuple(seeds)
    configs = tables.langevin_configs(
        profile, seeds, LANGEVIN_METHODS, "eq. 1", precondition="both"
    )
    configs.update(
        tables.langevin_configs(
            profile, seeds, PRECONDITIONED_METHODS, "eq. 2", precondition="noise"
        )
    )
    return configs


def cold_temperatures(profile: str) -> dict[str, float]:
    """Per langevin method, the temperature its sweep selected, else the default cold one."""
    prof = get_profile(profile)
    return {
        method: (tuned_overrides(prof.hparams, method, "langevin", prof.train_size) or {}).get(
            "temperature", DEFAULT_COLD_TEMPERATURE
        )
        for method in LANGEVIN_METHODS
    }


def noise_convention_configs(profile: str, seeds: Iterable[int]) -> Configs:
    """Langevin chains at T = 1 and at :func:`cold_temperatures`, beside the paper convention
    as described."""
    seeds = tuple(seeds)
    configs = tables.langevin_configs(
        profile, seeds, LANGEVIN_METHODS, "langevin T=1", temperature=1.0
    )
    for method, temperature in cold_temperatures(profile).items():
        configs.update(
            tables.langevin_configs(
                profile, seeds, [method], "langevin cold", temperature=temperature
            )
        )
    configs.update(
        tables.reproduction_configs(
            profile, seeds, methods=LANGEVIN_METHODS, configurations=["as described"]
        )
    )
    return configs


# Chapter 08, KSGLD at scale (book/methods.md "KSGLD at scale").
#: The seed of the tracked diagnosis runs (its own keys: no other chapter asks for it).
DIAGNOSIS_SEED = 100
#: Dampings of the tracked "as described" runs (the collapse against δ).
COLLAPSE_DAMPINGS = (1e-3, 1e-2, 1e-1, 1.0)
#: Dampings of the tracked eq. 1 runs: the stored runs' and the prior precision (σ = 1).
DIVERGENCE_DAMPINGS = (1e-3, 1.0)
#: The damping of "as described" after the fix, unless the sweep selected one: ``P ≤ I``.
DESCRIBED_DAMPING = 1.0
#: The damping the stored runs used (tf.contrib.kfac's, the released code's).
RELEASED_DAMPING = 1e-3
#: Seeds of the "after" runs at the paper profile (the issue's acceptance: 5 seeds).
PAPER_AFTER_SEEDS = 5
#: Measurements per epoch of a tracked run.
MEASUREMENTS_PER_EPOCH = 6


def described_damping(profile: str) -> float:
    """The sweep's selected ``kfac_damping`` for KSGLD as described, else
    :data:`DESCRIBED_DAMPING`."""
    prof = get_profile(profile)
    selected = tuned_overrides(prof.hparams, "ksgld", "paper", prof.train_size) or {}
    return float(selected.get("kfac_damping", DESCRIBED_DAMPING))


def after_seeds(profile: str, seeds: Iterable[int]) -> tuple[int, ...]:
    """The seeds of the "after" runs: at the paper profile the first :data:`PAPER_AFTER_SEEDS`
    (and ``seeds``), elsewhere ``seeds``."""
    seeds = tuple(seeds)
    if profile != "paper":
        return seeds
    return tuple(sorted(set(seeds) | set(range(PAPER_AFTER_SEEDS))))


def stability_every(profile: str) -> int:
    """Steps between two tracker measurements: :data:`MEASUREMENTS_PER_EPOCH` an epoch at
    the paper profile, one an epoch below it (a CPU preview)."""
    spe = get_profile(profile).config("ksgld").steps_per_epoch
    return max(1, spe // MEASUREMENTS_PER_EPOCH) if profile == "paper" else spe


def diagnosis_dampings(profile: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The dampings of the tracked runs, (as described, eq. 1): :data:`COLLAPSE_DAMPINGS` and
    :data:`DIVERGENCE_DAMPINGS` at the paper profile; below it (a CPU preview) the released
    and the fixed damping of "as described" only, since each eq. 1 measurement rotates
    through K-FAC's eigenbases (about a TFLOP on the paper CNN: milliseconds on a GPU,
    minutes on two CPU cores)."""
    if profile == "paper":
        return COLLAPSE_DAMPINGS, DIVERGENCE_DAMPINGS
    return (RELEASED_DAMPING, DESCRIBED_DAMPING), ()


def ksgld_scale_configs(profile: str, seeds: Iterable[int]) -> Configs:
    """Chapter 08's runs, before, after and diagnosis
    (:mod:`sgmcmc_paper.analysis.ksgld_scale`'s docstring)."""
    seeds, after = tuple(seeds), after_seeds(profile, seeds)
    cold = cold_temperatures(profile)["ksgld"]
    described = ["as described"]
    configs: Configs = {}

    def relabel(found: Configs, label: str) -> Configs:
        return {(label, method, seed): c for (_, method, seed), c in found.items()}

    configs |= relabel(
        tables.reproduction_configs(profile, seeds, ["ksgld"], described), "before: as described"
    )
    for name, temperature in (("T=1", 1.0), ("cold", cold)):
        configs |= tables.langevin_configs(
            profile,
            seeds,
            ["ksgld"],
            f"before: eq. 1 {name}",
            kfac_damping=RELEASED_DAMPING,
            temperature=temperature,
        )
    damping = described_damping(profile)
    configs |= relabel(
        tables.reproduction_configs(profile, after, ["ksgld"], described, kfac_damping=damping),
        "after: as described",
    )
    configs |= relabel(
        tables.reproduction_configs(profile, after, ["sgld"], described), "as described"
    )
    configs |= tables.langevin_configs(
        profile, after, ["ksgld"], "after: eq. 1 T=1", temperature=1.0
    )
    configs |= tables.langevin_configs(
        profile, seeds, ["ksgld"], "after: eq. 1 cold", temperature=cold
    )
    every = stability_every(profile)
    collapse, divergence = diagnosis_dampings(profile)
    for delta in collapse:
        configs |= relabel(
            tables.reproduction_configs(
                profile,
                [DIAGNOSIS_SEED],
                ["ksgld"],
                described,
                kfac_damping=delta,
                stability_every=every,
            ),
            f"diagnosis: as described δ={delta:g}",
        )
    for delta in divergence:
        configs |= tables.langevin_configs(
            profile,
            [DIAGNOSIS_SEED],
            ["ksgld"],
            f"diagnosis: eq. 1 cold δ={delta:g}",
            kfac_damping=delta,
            temperature=cold,
            stability_every=every,
        )
    return configs


NOTEBOOK_RUNS: dict[str, Callable[[str, Iterable[int]], Configs]] = {
    "00_hyperparameters": lambda profile, seeds: {},
    "01_test_accuracy": main_configs,
    "02_mixing": mixing_configs,
    "03_small_mnist": small_mnist_configs,
    "04_adversarial": main_configs,
    "05_out_of_distribution": main_configs,
    "06_gradient_or_noise": gradient_or_noise_configs,
    "07_noise_conventions": noise_convention_configs,
    "08_ksgld_at_scale": ksgld_scale_configs,
    "09_alternatives": alternatives_configs,
}


#: The notebooks behind Table 1, Fig. 1 and Fig. 4: their runs use the profile's
#: ``main_seeds`` (5 at the paper profile), every other notebook its ``seeds``.
MAIN_SEED_NOTEBOOKS = ("01_test_accuracy", "04_adversarial", "05_out_of_distribution")
#: The order in which a fill trains the notebooks' runs (file stems, most needed first): (a)
#: Table 1, Figs. 1 and 4 (and Fig. 2's chains, a subset of theirs); (b) KSGLD at scale (#28);
#: (c) pSGLD as described and the full-MNIST searches (#29); (d) smallMNIST (Fig. 3); then the
#: langevin chapters; (e) the alternatives (#30). A notebook not listed comes after these, in
#: :data:`NOTEBOOK_RUNS` order: a new chapter slots in by adding its stem here.
FILL_PRIORITY = (
    "01_test_accuracy",
    "04_adversarial",
    "05_out_of_distribution",
    "02_mixing",
    "08_ksgld_at_scale",
    "03_small_mnist",
    "06_gradient_or_noise",
    "07_noise_conventions",
    "09_alternatives",
)


def notebook_seeds(notebook: str, profile: str) -> tuple[int, ...]:
    """The seeds of ``notebook``'s runs at ``profile``: ``main_seeds`` for
    :data:`MAIN_SEED_NOTEBOOKS`, else ``seeds``."""
    prof = get_profile(profile)
    return prof.main_seeds if notebook in MAIN_SEED_NOTEBOOKS else prof.seeds


def fill_order() -> list[str]:
    """Every notebook with a run plan, in :data:`FILL_PRIORITY` order (the others after)."""
    return [s for s in FILL_PRIORITY if s in NOTEBOOK_RUNS] + [
        s for s in NOTEBOOK_RUNS if s not in FILL_PRIORITY
    ]


def notebook_runs(notebook: str, profile: str, seeds: Iterable[int] | None = None) -> Configs:
    """The runs ``notebook`` (a file stem) trains or loads at ``profile`` with ``seeds``
    (``None``: :func:`notebook_seeds`), as :data:`NOTEBOOK_RUNS` declares them: what the
    notebook calls, and what the plan counts."""
    if notebook not in NOTEBOOK_RUNS:
        raise KeyError(f"no run plan for notebook {notebook!r}; known: {sorted(NOTEBOOK_RUNS)}")
    if seeds is None:
        seeds = notebook_seeds(notebook, profile)
    return NOTEBOOK_RUNS[notebook](profile, tuple(seeds))


def notebook_configs(profile: str, notebook: str | None = None) -> list[RunConfig]:
    """The configs ``notebook`` (a file stem) needs at ``profile`` with its seeds
    (:func:`notebook_seeds`); ``None``: those of every notebook, each once, in
    :func:`fill_order` (most needed first)."""
    names = [notebook] if notebook is not None else fill_order()
    unique = {c.key(): c for name in names for c in notebook_runs(name, profile).values()}
    return list(unique.values())


def missing_runs(profile: str, notebook: str | None = None) -> list[RunConfig]:
    """The configs of :func:`notebook_configs` to train: those the store does not hold yet,
    and those it holds with a stale evaluation (:func:`~sgmcmc_paper.engine.store.satisfies`
    is false: the notebooks read them, ``sgmcmc fill`` retrains them)."""
    return [
        c
        for c in notebook_configs(profile, notebook)
        if (found := find_result(c)) is None or not satisfies(found, c)
    ]
