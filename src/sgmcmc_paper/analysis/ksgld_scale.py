"""KSGLD at the paper's scale (chapter 08, book/methods.md "KSGLD at scale"): the numbers the
chapter plots from the runs that collapse and diverge, the diagnosis runs and the fixed
configurations.

Runs (:func:`sgmcmc_paper.protocol.plan.ksgld_scale_configs`, keys ``(label, method, seed)``;
the constants named here live beside it in :mod:`sgmcmc_paper.protocol.plan`):

- *before*: KSGLD as described (paper convention, damping ``δ = 10⁻³`` split between the
  factors) and eq. 1 (langevin convention, ``P = (N·F̃ + 10⁻³·I)⁻¹``) at ``T = 1`` and cold:
  the stored runs that collapse and diverge, at their stored keys;
- *after*: as described with :func:`described_damping` (``δ = 1``: every eigenvalue of ``P``
  is at most 1, so no direction gets more noise than SGLD's) and eq. 1 damped by the prior
  precision ``1/σ²``, on :func:`after_seeds`; SGLD as described beside them;
- *diagnosis*: one seed (:data:`DIAGNOSIS_SEED`, a key of its own, so no other chapter's run
  is re-evaluated) with the stability tracker (``stability_every``): as described at each
  damping of :data:`COLLAPSE_DAMPINGS`, and eq. 1 cold at each of :data:`DIVERGENCE_DAMPINGS`.

The random-walk prediction (:func:`noise_floor`): in the paper convention a step adds
``lr²·P·ξ``; along a direction no data constrain, ``P``'s eigenvalue is ``1/d`` with ``d`` the
floor of the damped factors, which falls as the factors' initial identity fades
(``ema_decay^u`` after ``u`` factor updates) and settles at ``δ``; with no restoring drift the
spread there grows as ``sqrt(Σ_t lr⁴/d_t²)``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from sgmcmc_paper.protocol.config import RunConfig

#: How a trained run ended (:attr:`RunResult.status`); anything else was not trained.
TRAINED = ("complete", "diverged")

Configs = dict[tuple[str, str, int], RunConfig]


def load_stored(session: Any, configs: Configs, train: bool) -> dict:
    """``{key: result}`` through ``session.run`` when ``train`` or when the session trains
    nothing anyway (``stored_only``: a run the store lacks comes back "not trained");
    otherwise only the runs the store holds (the rest are left out)."""
    from sgmcmc_paper.engine.store import find_result

    through_session = train or bool(getattr(session, "stored_only", False))
    return {
        key: session.run(config)
        for key, config in configs.items()
        if through_session or find_result(config, session.store) is not None
    }


def not_trained(configs: Configs, results: dict) -> pd.DataFrame:
    """The runs of ``configs`` the store lacks (missing from ``results``, or there as "not
    trained"): label, seed, key and the command that trains them."""
    rows = [
        {
            "run": key[0],
            "seed": key[2],
            "key": config.key(),
            "train with": f"sgmcmc fill --profile {config.profile}",
        }
        for key, config in configs.items()
        if key not in results or results[key].status not in TRAINED
    ]
    return pd.DataFrame(rows, columns=["run", "seed", "key", "train with"])


def accuracy_curves(results: dict) -> pd.DataFrame:
    """Per run and epoch, the averaged predictive's test accuracy (label, seed, epoch,
    accuracy, fate)."""
    from sgmcmc_paper.analysis.tables import run_fate

    rows = []
    for (label, _, seed), result in results.items():
        fate = run_fate(result)
        for record in result.metrics["epochs"]:
            rows.append(
                {
                    "run": label,
                    "seed": seed,
                    "epoch": record["epoch"],
                    "accuracy": record["averaged"]["accuracy"],
                    "fate": fate.status,
                }
            )
    return pd.DataFrame(rows, columns=["run", "seed", "epoch", "accuracy", "fate"])


def fates(results: dict) -> pd.DataFrame:
    """One row per run: label, seed, fate, the epoch it failed at, final accuracy (NaN when
    it did not complete)."""
    from sgmcmc_paper.analysis.tables import run_fate

    rows = []
    for (label, _, seed), result in results.items():
        fate = run_fate(result)
        epochs = result.metrics["epochs"]
        final = epochs[-1]["averaged"]["accuracy"] if epochs else math.nan
        complete = fate.status == "complete" and len(epochs) == result.config.epochs
        rows.append(
            {
                "run": label,
                "seed": seed,
                "fate": fate.status,
                "fate epoch": fate.epoch,
                "final accuracy": final if complete else math.nan,
            }
        )
    return pd.DataFrame(rows, columns=["run", "seed", "fate", "fate epoch", "final accuracy"])


def stability(results: dict) -> pd.DataFrame:
    """The tracked runs' records (:func:`~sgmcmc_paper.analysis.stability.stability_frame`)
    with the run's label and damping, and ``epoch`` (fractional: steps / steps per epoch)."""
    from sgmcmc_paper.analysis.stability import COLUMNS, stability_frame

    frames = []
    for (label, _, _), result in results.items():
        records = result.metrics.get("stability")
        if not records:
            continue
        frame = stability_frame(records)
        frame["run"] = label
        frame["damping"] = result.config.kfac_damping
        frame["epoch"] = frame["step"] / result.config.steps_per_epoch
        frames.append(frame)
    columns = ["run", "damping", "epoch", *COLUMNS]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


def noise_floor(config: RunConfig, steps: int | None = None, pi: float = 1.0) -> pd.DataFrame:
    """The paper convention's noise along a direction no data constrain, step by step
    (module docstring): ``floor`` ``d_t`` (the identity part of the factors,
    ``ema_decay^u`` after ``u`` updates, plus the damping as ``config`` applies it, with the
    trace ratio ``π``), the per-step standard deviation ``lr²·sqrt(T)/d_t`` and the random
    walk's accumulated ``spread``; ``epoch`` fractional."""
    if config.convention != "paper" or config.method != "ksgld":
        raise ValueError("noise_floor is the paper convention's KSGLD noise (noise lr²·P·ξ)")
    steps = config.total_steps if steps is None else steps
    t = np.arange(1, steps + 1)
    updates = (t - 1) // config.kfac_factor_every + 1
    identity = config.kfac_ema_decay ** updates.astype(float)
    delta = config.kfac_damping
    if config.kfac_damping_mode == "factored":
        gamma = math.sqrt(delta)
        floor = (identity + gamma / pi) * (identity + gamma * pi)
    else:
        floor = identity**2 + delta
    noise = config.lr**2 * math.sqrt(config.temperature) / floor
    return pd.DataFrame(
        {
            "step": t,
            "epoch": t / config.steps_per_epoch,
            "floor": floor,
            "noise": noise,
            "spread": np.sqrt(np.cumsum(noise**2)),
        }
    )


def tracker_overhead(results: dict) -> pd.DataFrame:
    """Per tracked run: its training and tracking time (``provenance.timing``'s ``train``
    and ``stability`` phases, seconds), their ratio and where it ran."""
    rows = []
    for (label, _, seed), result in results.items():
        timing = (result.provenance or {}).get("timing", {})
        if not result.config.stability_every or "stability" not in timing:
            continue
        train, tracking = timing.get("train", math.nan), timing["stability"]
        rows.append(
            {
                "run": label,
                "seed": seed,
                "every (steps)": result.config.stability_every,
                "train (s)": train,
                "tracking (s)": tracking,
                "tracking / train": tracking / train if train else math.nan,
                "device": (result.provenance or {}).get("device_name", ""),
            }
        )
    columns = ["run", "seed", "every (steps)", "train (s)", "tracking (s)", "tracking / train"]
    return pd.DataFrame(rows, columns=[*columns, "device"])


def described_variance_ratio(
    curvature: float | np.ndarray,
    lr: float,
    damping: float,
    num_data: int,
    temperature: float = 1.0,
) -> float | np.ndarray:
    """What KSGLD as described samples on a Gaussian target, against the posterior: along an
    eigen-direction of the mean loss's Hessian with curvature ``h`` and ``P``'s eigenvalue
    ``1/(h + δ)`` (K-FAC exact, ``P`` frozen), the chain ``θ ← (1 − lr·h/2)·θ +
    lr²·sqrt(T)/(h + δ)·ξ`` has stationary variance ``T·lr⁴/((h + δ)²·(1 − (1 − lr·h/2)²))``;
    returned divided by the posterior's ``1/(N·h)`` (≈ ``N·lr³/(h + δ)²`` for ``lr·h ≪ 1``)."""
    h = np.asarray(curvature, dtype=float)
    contraction = 1.0 - (1.0 - lr * h / 2.0) ** 2
    variance = temperature * lr**4 / ((h + damping) ** 2 * contraction)
    return variance * num_data * h
