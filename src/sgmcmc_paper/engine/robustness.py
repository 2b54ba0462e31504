"""Robustness at a window: PGD, the ε sweep, saturation and transfer attacks from SGD's model.

At the end of each window whose ``sets`` include ``"fgsm"``, on the first
``config.robustness_size`` attacked images (none when it is ``0``), with the window's posterior
samples (:mod:`sgmcmc_paper.analysis.robustness` computes every table; book/methods.md,
"Adversarial robustness", states the rules). ``run.json`` holds, under
``windows[<window>]["robustness"]``:

- ``images``: how many images were attacked; ``pgd``: ``steps``, ``restarts`` and ``step``
  (the step size as a multiple of ``ε/steps``, 2.5: Madry et al.'s);
- ``sweep``: rows of :data:`~sgmcmc_paper.analysis.robustness.SWEEP_COLUMNS` (``attack``
  ``FGSM`` or ``PGD-<steps>``, ``threat``, ``mode``, ``eps``, ``accuracy``, ``correct``,
  ``images``): threat ``per_sample`` mode ``single`` (the last sample on its own examples) at
  every ε of ``robustness_eps``; threat ``per_sample`` mode ``averaged`` (each sample attacked
  with its own gradient, the predictions averaged) at ``fgsm_eps``; threat ``predictive`` mode
  ``averaged`` (one perturbation against the averaged predictive) at every ε;
- ``transfer``: the same rows with threat ``transfer``, modes ``single`` and ``averaged``: the
  window's samples on the PGD examples the SGD run of the same seed stored (``[]`` when there
  is none); ``transfer_source``: that run's key, or ``null``;
- ``saturation``: rows of :func:`~sgmcmc_paper.analysis.robustness.saturation` (modes
  ``single``, ``per_sample``, ``predictive``).

Its wall time is not a result: ``provenance.timing.robustness`` holds it, every window's
together (runs stored before held each window's here, as ``seconds``).

The as-released SGD run of each seed (:func:`is_transfer_source`) also stores, in
``predictions.npz``,
``<window>/transfer/<ε>``: their PGD examples against their last sample (true labels,
clipped) at each ε of ``transfer_eps``, as uint8 pixels: each perturbation is truncated toward
zero onto the 8-bit pixel grid, so it stays inside the ε-ball, and ``<window>/transfer/index``,
the images' indices into the evaluation split. A run uses them only when its own attacked images
have the same indices.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor

from sgmcmc_paper.analysis import robustness
from sgmcmc_paper.analysis.attacks import FGSM, AttackSpec, perturb
from sgmcmc_paper.engine.attack_progress import AttackProgress
from sgmcmc_paper.protocol.config import RunConfig

Model = Callable[[Tensor], Tensor]
#: ``report(done, total, unit, read_back)``: told of each finished unit of the ε sweep.
Report = Callable[[int, int, str, bool], None]
#: PGD's step as a multiple of ``ε/steps`` (:class:`~sgmcmc_paper.analysis.attacks.AttackSpec`'s
#: default: the steps together cross the ball 1.25 times).
PGD_STEP = 2.5
#: The 8-bit pixel grid of MNIST: the transfer examples are stored on it.
LEVELS = 255


@dataclass(frozen=True)
class TransferImages:
    """PGD examples of an SGD run: ``images[ε]`` uint8 ``(n, 28, 28)``, of the evaluation
    split's images ``index``, made by run ``source`` with ``attack`` (its
    :class:`~sgmcmc_paper.analysis.attacks.AttackSpec`)."""

    source: str
    attack: AttackSpec
    index: np.ndarray
    images: dict[float, np.ndarray]


@dataclass(frozen=True)
class RobustnessPlan:
    """What one run's windows evaluate (from its config; see the module docstring)."""

    size: int
    pgd: AttackSpec
    eps: tuple[float, ...]
    fgsm_eps: tuple[float, ...]
    transfer_eps: tuple[float, ...]
    makes_transfer: bool
    seed: int
    transfer: TransferImages | None = None

    @classmethod
    def from_config(
        cls, config: RunConfig, transfer: TransferImages | None = None
    ) -> RobustnessPlan | None:
        """``None`` where ``config.robustness_size`` is 0."""
        if not config.robustness_size:
            return None
        pgd = AttackSpec("pgd", steps=config.pgd_steps, restarts=config.pgd_restarts)
        return cls(
            size=config.robustness_size,
            pgd=pgd,
            eps=config.robustness_eps,
            fgsm_eps=config.fgsm_eps,
            transfer_eps=config.transfer_eps,
            makes_transfer=is_transfer_source(config),
            seed=config.seed,
            transfer=transfer,
        )


def _rows(frame: pd.DataFrame) -> list[dict]:
    return [
        {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}
        for row in frame.to_dict("records")
    ]


@dataclass
class _Units:
    """The ε sweep of a window one unit (attack, threat model, samples, ε) at a time, each
    read from ``progress`` where it was finished before, else computed and recorded there."""

    progress: AttackProgress
    models: list[Model]
    x: Tensor
    y: Tensor
    seed: int
    batch_size: int | None
    total: int
    report: Report | None = None
    done: int = 0

    def sweep(
        self, attacks: Sequence[AttackSpec], threat: str, eps: Sequence[float], last=False
    ) -> list[dict]:
        """:func:`~sgmcmc_paper.analysis.robustness.eps_sweep`'s rows (``last``: of the last
        sample alone)."""
        models = self.models[-1:] if last else self.models
        rows = []
        for spec in attacks:
            for e in eps:
                unit = f"{spec!r} {threat} samples={len(models)} eps={float(e)!r}"
                done = self.progress.rows(unit)
                read = done is not None
                if done is None:
                    frame = robustness.eps_sweep(
                        models,
                        self.x,
                        self.y,
                        [e],
                        attacks=[spec],
                        threat_models=[threat],
                        seed=self.seed,
                        batch_size=self.batch_size,
                    )
                    done = _rows(frame)
                    self.progress.save(unit, done)
                rows.extend(done)
                self.done += 1
                if self.report is not None:
                    label = f"{spec.label} {threat}, {len(models)} sample(s), ε {float(e):g}"
                    self.report(self.done, self.total, label, read)
        return rows


def evaluate(
    plan: RobustnessPlan,
    models: Sequence[Model],
    x: Tensor,
    y: Tensor,
    index: np.ndarray,
    window: str,
    batch_size: int | None = None,
    progress: AttackProgress | None = None,
    report: Report | None = None,
) -> tuple[dict, dict[str, np.ndarray]]:
    """The ``robustness`` record of one window and its arrays (module docstring);
    ``models`` are the window's samples, oldest first, ``(x, y, index)`` its attacked images.
    ``progress``: the sweep's units finished before an interruption, and where each finished
    unit is recorded (:mod:`sgmcmc_paper.engine.attack_progress`); ``report(done, total,
    unit, read_back)`` is called after each unit."""
    n = min(plan.size, len(x))
    x, y, index = x[:n], y[:n], np.asarray(index[:n])
    models = list(models)
    attacks = (FGSM, plan.pgd)
    others = [e for e in plan.eps if e not in plan.fgsm_eps]
    total = len(attacks) * (len(plan.fgsm_eps) + len(others) + len(plan.eps))
    progress = progress or AttackProgress()
    units = _Units(progress, models, x, y, plan.seed, batch_size, total, report)
    last = units.sweep(attacks, "per_sample", others, last=True)
    rows = [
        *units.sweep(attacks, "per_sample", plan.fgsm_eps),
        *(row for row in last if row["mode"] == "single"),
        *units.sweep(attacks, "predictive", plan.eps),
    ]
    sweep = pd.DataFrame(rows, columns=robustness.SWEEP_COLUMNS)
    sweep = sweep.sort_values(["attack", "threat", "mode", "eps"], kind="stable")
    arrays: dict[str, np.ndarray] = {}
    if plan.makes_transfer:
        arrays = transfer_arrays(plan, models[-1], x, y, index, window, batch_size)
    transfer, source = [], None
    if plan.transfer is not None and np.array_equal(plan.transfer.index[:n], index):
        source = plan.transfer.source
        transfer = _transfer_rows(plan.transfer, models, x, y, batch_size)
    saturation = robustness.saturation(models, x, y, batch_size)
    record = {
        "images": n,
        "pgd": {"steps": plan.pgd.steps, "restarts": plan.pgd.restarts, "step": PGD_STEP},
        "sweep": _rows(sweep),
        "transfer": transfer,
        "transfer_source": source,
        "saturation": _rows(saturation),
    }
    return record, arrays


def quantise(x: Tensor, x_adv: Tensor) -> np.ndarray:
    """``x_adv`` as uint8 pixels: ``x`` (on the 8-bit grid) plus the perturbation truncated
    toward zero onto the grid, so every pixel stays in the ε-ball ``x_adv`` was in."""
    clean = torch.round(x * LEVELS)
    delta = torch.trunc((x_adv - x) * LEVELS)
    return (clean + delta).clamp(0, LEVELS).to(torch.uint8).squeeze(1).cpu().numpy()


def transfer_arrays(
    plan: RobustnessPlan,
    model: Model,
    x: Tensor,
    y: Tensor,
    index: np.ndarray,
    window: str,
    batch_size: int | None = None,
) -> dict[str, np.ndarray]:
    """An SGD run's PGD examples against ``model`` at each ε of ``plan.transfer_eps``."""
    arrays = {f"{window}/transfer/index": index.astype(np.int32)}
    for eps in plan.transfer_eps:
        generator = torch.Generator().manual_seed(plan.seed)
        x_adv = perturb(
            [model], x, y, eps, plan.pgd, clip=True, generator=generator, batch_size=batch_size
        )
        arrays[f"{window}/transfer/{eps:g}"] = quantise(x, x_adv)
    return arrays


@torch.no_grad()
def _transfer_rows(
    transfer: TransferImages,
    models: Sequence[Model],
    x: Tensor,
    y: Tensor,
    batch_size: int | None,
) -> list[dict]:
    rows = []
    n = len(y)
    for eps, images in sorted(transfer.images.items()):
        x_adv = torch.from_numpy(images[:n]).to(x.device, x.dtype).unsqueeze(1) / LEVELS
        probs = [
            torch.cat([F.softmax(m(xb), dim=1) for xb in x_adv.split(batch_size or n)])
            for m in models
        ]
        for mode, p in (("single", probs[-1]), ("averaged", torch.stack(probs).mean(0))):
            correct = int((p.argmax(dim=1) == y).sum())
            rows.append(
                {
                    "attack": transfer.attack.label,
                    "steps": transfer.attack.steps,
                    "threat": "transfer",
                    "mode": mode,
                    "eps": float(eps),
                    "accuracy": correct / n,
                    "correct": correct,
                    "images": n,
                }
            )
    return rows


# ---------------------------------------------------------------------- the source run
#: What the source run must share with a run for its examples to be the run's attacked images.
SAME_IMAGES = ("dataset", "evaluate_on", "test_size", "attack_size", "train_size")


def transfer_source(config: RunConfig) -> RunConfig | None:
    """The run whose PGD examples ``config``'s windows are attacked with: its profile's
    as-released SGD run of the same seed (``None`` for a config of no profile, without
    robustness, on other data or attacked images (:data:`SAME_IMAGES`), or that is that run
    itself)."""
    from sgmcmc_paper.protocol.profiles import PROFILES, as_released

    if not config.robustness_size or config.profile not in PROFILES:
        return None
    source = as_released("sgd", config.profile, seed=config.seed)
    same = all(getattr(source, name) == getattr(config, name) for name in SAME_IMAGES)
    if not same or source.key() == config.key() or not source.robustness_size:
        return None
    return source


def is_transfer_source(config: RunConfig) -> bool:
    """Whether ``config`` is its profile's as-released SGD run of its seed, the run whose PGD
    examples the other runs of the seed are attacked with (about 1.2 MB compressed per 1,000
    images and three ε)."""
    from sgmcmc_paper.protocol.profiles import PROFILES, as_released

    if not config.robustness_size or config.profile not in PROFILES:
        return False
    return as_released("sgd", config.profile, seed=config.seed).key() == config.key()


def transfer_images(
    config: RunConfig, run_source: Callable[[RunConfig], Any]
) -> TransferImages | None:
    """The PGD examples of :func:`transfer_source` (``None`` where there is none).

    ``run_source``: gives the source run's result (the store's ``run_or_load``, which trains
    it first where it is not stored, so that every run of a seed is attacked with them)."""
    source = transfer_source(config)
    if source is None:
        return None
    result = run_source(source)
    for window in source.windows:
        prefix = f"{window.name}/transfer/"
        names = [k for k in result.predictions if k.startswith(prefix) and k != f"{prefix}index"]
        if not names or f"{prefix}index" not in result.predictions:
            continue
        stored = result.config
        return TransferImages(
            source=source.key(),
            attack=AttackSpec("pgd", steps=stored.pgd_steps, restarts=stored.pgd_restarts),
            index=np.asarray(result.predictions[f"{prefix}index"]),
            images={float(k.removeprefix(prefix)): result.predictions[k] for k in names},
        )
    return None
