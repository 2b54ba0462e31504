"""Which runs each notebook needs at a profile, so they can be trained ahead (on a GPU, by
several workers: ``.ci/device/precompute.py``), checked for before a long CPU job, or used to
decide which notebooks the store can execute at that profile without training.

Each entry of :data:`NOTEBOOK_RUNS` mirrors one notebook's own calls
(``tables.reproduction_configs``, ``tables.langevin_configs``), keyed by the notebook's file
stem; a run it misses is still trained by the notebook that needs it.
"""

from __future__ import annotations

from collections.abc import Callable

from sgmcmc import tables
from sgmcmc.config import RunConfig
from sgmcmc.hparams import tuned_overrides
from sgmcmc.profiles import Profile, get_profile
from sgmcmc.store import find_result

LANGEVIN_METHODS = ["sgld", "psgld", "ksgld"]


def _main_runs(profile: Profile) -> list[RunConfig]:
    """Figs. 1, 2, 4 and Table 1: both configurations, every method, the full training set."""
    return list(tables.reproduction_configs(profile.name, profile.seeds).values())


def _small_runs(profile: Profile) -> list[RunConfig]:
    """Fig. 3: the same at each smallMNIST size."""
    return [
        config
        for size in profile.small_train_sizes
        for config in tables.reproduction_configs(
            profile.name, profile.seeds, train_size=size, epochs=profile.small_epochs
        ).values()
    ]


def _gradient_or_noise_runs(profile: Profile) -> list[RunConfig]:
    """Notebook 06: eq. 1 (both preconditioned) and eq. 2 (noise only), langevin convention."""
    configs = tables.langevin_configs(
        profile.name, profile.seeds, LANGEVIN_METHODS, "eq. 1", precondition="both"
    )
    configs.update(
        tables.langevin_configs(
            profile.name, profile.seeds, ["psgld", "ksgld"], "eq. 2", precondition="noise"
        )
    )
    return list(configs.values())


def _noise_convention_runs(profile: Profile) -> list[RunConfig]:
    """Notebook 07: langevin at T = 1 and at the selected cold temperature, beside the paper
    convention as described."""
    configs = tables.langevin_configs(
        profile.name, profile.seeds, LANGEVIN_METHODS, "langevin T=1", temperature=1.0
    )
    for method in LANGEVIN_METHODS:
        selected = tuned_overrides(profile.hparams, method, "langevin", profile.train_size) or {}
        configs.update(
            tables.langevin_configs(
                profile.name,
                profile.seeds,
                [method],
                "langevin cold",
                temperature=selected.get("temperature", 0.01),
            )
        )
    configs.update(
        tables.reproduction_configs(
            profile.name, profile.seeds, methods=LANGEVIN_METHODS, configurations=["as described"]
        )
    )
    return list(configs.values())


NOTEBOOK_RUNS: dict[str, Callable[[Profile], list[RunConfig]]] = {
    "00_hyperparameters": lambda profile: [],
    "01_test_accuracy": _main_runs,
    "02_mixing": _main_runs,
    "03_small_mnist": _small_runs,
    "04_adversarial": _main_runs,
    "05_out_of_distribution": _main_runs,
    "06_gradient_or_noise": _gradient_or_noise_runs,
    "07_noise_conventions": _noise_convention_runs,
}


def notebook_configs(profile_name: str, notebook: str | None = None) -> list[RunConfig]:
    """The configs ``notebook`` (a file stem) needs at ``profile_name``; ``None``: those of
    every notebook, each once, most needed first (Figs. 1, 2, 4, Table 1, then Fig. 3)."""
    profile = get_profile(profile_name)
    if notebook is not None and notebook not in NOTEBOOK_RUNS:
        raise KeyError(f"no run plan for notebook {notebook!r}; known: {sorted(NOTEBOOK_RUNS)}")
    names = [notebook] if notebook is not None else list(NOTEBOOK_RUNS)
    unique = {c.key(): c for name in names for c in NOTEBOOK_RUNS[name](profile)}
    return list(unique.values())


def missing_runs(profile_name: str, notebook: str | None = None) -> list[RunConfig]:
    """The configs of :func:`notebook_configs` that the store does not hold yet."""
    return [c for c in notebook_configs(profile_name, notebook) if find_result(c) is None]
