"""What practitioners use instead of the paper's samplers, in the run engine (notebook 09).

- **Cyclical SG-MCMC** (Zhang et al., ICLR 2020, https://arxiv.org/abs/1902.03932): a Langevin
  config with ``cycles`` trains under :class:`sgmcmc.CyclicalSchedule`; its windows keep only
  the steps of sampling stages (:func:`trajectory_window_steps`), so no exploration-stage
  iterate is ever averaged.
- **Deep ensemble** (Lakshminarayanan et al. 2017, https://arxiv.org/abs/1612.01474), method
  ``ensemble``: ``ensemble_size`` SGD runs in one run. Member 0 is the run itself (the same
  initialisation, batch order and steps as the ``sgd`` run of its seed); member ``k`` draws
  its seeds from ``SeedSequence(seed, spawn_key=(k,))``. The store keeps no weights and only
  per-example summaries of predictions, not probabilities, so an ensemble cannot be assembled
  from stored SGD runs afterwards: its members are trained here, and its cost is theirs.
- **K-FAC Laplace** (:mod:`sgmcmc.laplace`), method ``laplace``: after SGD training, the
  last-layer K-FAC Laplace (Laplace Redux's default; over the whole CNN the marginal likelihood
  leaves the millions of directions the data does not determine at the prior's width and the
  sampled predictive fails, :mod:`sgmcmc.laplace`): the output layer's K-FAC factors
  (sampled-label Fisher) averaged over the training set, the prior precision maximising the
  Laplace marginal likelihood on :data:`sgmcmc.laplace.PRIOR_PRECISION_GRID`, and
  ``laplace_samples`` posterior draws, the other layers at SGD's weights.

For both post-hoc methods every window is evaluated after the last epoch on the members or
draws (not on trajectory samples), whatever its ``end_epoch``; the per-epoch curves are those
of the SGD training of member 0 (the MAP). Training of the members and the Laplace fit count as
training time (``provenance.timing.train``), their predictions as ``window_eval``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from sgmcmc.schedules import sampling_stage
from sgmcmc_paper.protocol.config import RunConfig
from sgmcmc_paper.protocol.paper import ALTERNATIVE_METHODS

#: The engine's run in progress (``sgmcmc_paper.engine.experiment._Run``, not imported here:
#: the engine imports this module).
_Run = Any

#: The Fisher and input-row budget of the Laplace fit (:class:`sgmcmc.KFACLaplace`).
LAPLACE_FISHER, LAPLACE_MAX_ROWS = "sampled", 4096


def trajectory_window_steps(
    config: RunConfig, by_step: dict[int, list[str]]
) -> dict[int, list[str]]:
    """The steps whose iterates windows take: none for post-hoc methods, only sampling-stage
    steps under a cyclical schedule, else ``by_step`` unchanged."""
    if config.method in ALTERNATIVE_METHODS:
        return {}
    if config.cycles is None:
        return by_step
    total, cycles, exploration = config.total_steps, config.cycles, config.cycle_exploration
    return {
        s: names for s, names in by_step.items() if sampling_stage(s, total, cycles, exploration)
    }


def finish_alternative(run: _Run) -> dict[str, Any] | None:
    """After the last epoch of a post-hoc method's run: its members or draws into every
    window, each window finished. Returns a divergence (``{"step", "reason"}``) or ``None``."""
    c = run.config
    if c.method not in ALTERNATIVE_METHODS:
        return None
    if c.method == "ensemble":
        samples = [_values(run.model)]
        for k in range(1, c.ensemble_size):
            member = _train_member(run, k)
            if member is None:
                return {"step": c.total_steps, "reason": f"ensemble member {k} diverged"}
            samples.append(member)
    else:
        samples = _laplace_draws(run)
    return _evaluate(run, samples)


def _values(model: torch.nn.Module) -> list[Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def _train_member(run: _Run, k: int) -> list[Tensor] | None:
    """Member ``k`` of an ensemble: the run's SGD training from seeds of its own."""
    from sgmcmc_paper.engine.training import Trainer
    from sgmcmc_paper.protocol.models import PaperCNN

    c, device, data = run.config, run.device, run.data
    init_seed, batch_seed, noise_seed, kfac_seed, _ = (
        int(s) for s in np.random.SeedSequence(c.seed, spawn_key=(k,)).generate_state(5)
    )
    model = PaperCNN(c.init, generator=torch.Generator().manual_seed(init_seed)).to(device)
    if device.type == "cpu":
        model = model.to(memory_format=torch.channels_last)
    trainer = Trainer(
        c,
        model,
        c.num_train,
        torch.Generator(device).manual_seed(noise_seed),
        torch.Generator(device).manual_seed(kfac_seed),
    )
    batches = torch.Generator().manual_seed(batch_seed)
    losses = torch.zeros(c.total_steps, device=device)
    model.train()
    for epoch in range(c.epochs):
        order = torch.randperm(c.num_train, generator=batches).to(device)
        for i in range(c.steps_per_epoch):
            idx = order[i * c.batch_size : (i + 1) * c.batch_size]
            losses[epoch * c.steps_per_epoch + i] = trainer.step(
                data.x_train[idx], data.y_train[idx]
            )
    finite = bool(torch.isfinite(losses).all()) and all(
        bool(torch.isfinite(p).all()) for p in model.parameters()
    )
    return _values(model) if finite else None


def _laplace_draws(run: _Run) -> list[list[Tensor]]:
    """The K-FAC Laplace posterior around the trained model: fit, prior precision, draws."""
    from sgmcmc.laplace import PRIOR_PRECISION_GRID, KFACLaplace

    c, device, data = run.config, run.device, run.data
    fit_seed, draw_seed = (
        int(s) for s in np.random.SeedSequence(c.seed, spawn_key=(0,)).generate_state(2)
    )
    last = [m for m in run.model.modules() if isinstance(m, torch.nn.Linear)][-1]
    laplace = KFACLaplace(
        run.model,
        c.num_train,
        layers=[last],
        fisher=LAPLACE_FISHER,
        max_rows=LAPLACE_MAX_ROWS,
        generator=torch.Generator(device).manual_seed(fit_seed),
    )
    try:
        x, y = data.x_train[: c.num_train], data.y_train[: c.num_train]
        laplace.fit(zip(x.split(c.batch_size), y.split(c.batch_size), strict=True))
        chosen = laplace.optimize_prior_precision()
        run.posthoc_metrics["laplace"] = {
            "prior_precision": chosen,
            "log_marginal_likelihood": laplace.log_marginal_likelihood(),
            "selection": "Laplace marginal likelihood on the training data, grid "
            f"{PRIOR_PRECISION_GRID[0]:g}..{PRIOR_PRECISION_GRID[-1]:g} (4 per decade)",
            "fisher": LAPLACE_FISHER,
            "layers": "last",
            "samples": c.laplace_samples,
        }
        generator = torch.Generator(device).manual_seed(draw_seed)
        order = {id(p): i for i, p in enumerate(laplace.parameters())}
        fixed = _values(run.model)  # the layers the posterior does not cover
        draws = []
        for _ in range(c.laplace_samples):
            values = laplace.sample(generator)
            draws.append([
                values[order[id(p)]] if id(p) in order else v
                for p, v in zip(run.model.parameters(), fixed, strict=True)
            ])  # fmt: skip
    finally:
        laplace.remove()
    return draws


def _evaluate(run: _Run, samples: list[list[Tensor]]) -> dict[str, Any] | None:
    """Every window on ``samples`` (parameter values in ``model.parameters()`` order)."""
    from sgmcmc_paper.engine.evaluation import NonFiniteOutputs, SamplePredictions

    c, model = run.config, run.model
    final = _values(model)
    model.eval()
    try:
        for values in samples:
            _load(model, values)
            sample = SamplePredictions(model, run.data)
            with run.timer("window_eval"):
                for window in run.windows.values():
                    window.add(c.total_steps, model, sample)
        with run.timer("window_eval"):
            for name, window in run.windows.items():
                metrics, arrays = window.finish(model)
                run.window_metrics[name] = metrics
                run.predictions.update(arrays)
    except NonFiniteOutputs as exc:
        return {"step": c.total_steps, "reason": f"{exc} ({c.method} sample)"}
    finally:
        _load(model, final)
    return None


@torch.no_grad()
def _load(model: torch.nn.Module, values: list[Tensor]) -> None:
    for p, v in zip(model.parameters(), values, strict=True):
        p.copy_(v)
