"""Which runs the notebooks need at a profile, so they can be trained ahead (on a GPU, by
several workers: ``.ci/device/precompute.py``) or checked for before a long CPU job.

The list mirrors the notebooks' own calls (``tables.reproduction_configs``,
``tables.langevin_configs``); a run it misses is still trained by the notebook that needs it.
"""

from __future__ import annotations

from sgmcmc import tables
from sgmcmc.config import RunConfig
from sgmcmc.hparams import tuned_overrides
from sgmcmc.profiles import get_profile
from sgmcmc.store import find_result


def notebook_configs(profile_name: str) -> list[RunConfig]:
    """The configs of notebooks 01-07, most needed first (Figs. 1, 2, 4, Table 1)."""
    profile = get_profile(profile_name)
    seeds = profile.seeds
    configs = dict(tables.reproduction_configs(profile.name, seeds))
    for size in profile.small_train_sizes:
        small = tables.reproduction_configs(
            profile.name, seeds, train_size=size, epochs=profile.small_epochs
        )
        configs.update({(f"{k[0]} {size}", *k[1:]): c for k, c in small.items()})
    for precondition, label in (("both", "eq. 1"), ("noise", "eq. 2")):
        methods = ["sgld", "psgld", "ksgld"] if precondition == "both" else ["psgld", "ksgld"]
        configs.update(
            tables.langevin_configs(profile.name, seeds, methods, label, precondition=precondition)
        )
    langevin = ["sgld", "psgld", "ksgld"]
    configs.update(
        tables.langevin_configs(profile.name, seeds, langevin, "langevin T=1", temperature=1.0)
    )
    for method in langevin:
        selected = tuned_overrides(profile.hparams, method, "langevin", profile.train_size) or {}
        configs.update(
            tables.langevin_configs(
                profile.name,
                seeds,
                [method],
                "langevin cold",
                temperature=selected.get("temperature", 0.01),
            )
        )
    unique = {c.key(): c for c in configs.values()}
    return list(unique.values())


def missing_runs(profile_name: str) -> list[RunConfig]:
    """The configs of :func:`notebook_configs` that the store does not hold yet."""
    return [c for c in notebook_configs(profile_name) if find_result(c) is None]
