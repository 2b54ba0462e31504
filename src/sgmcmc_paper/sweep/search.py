"""``run_sweep``: the paper's compute-budgeted grid search (§4: a budget of 5× SGD's training
time per method).

For each training size: run (or load) the SGD reference on the validation split and take its
wall time ``t``; then, per method, walk the method's grid (:mod:`sgmcmc_paper.sweep.grids`),
select by validation accuracy and merge the selection into ``results/hparams/<profile>.json``
(:mod:`sgmcmc_paper.sweep.record`) as soon as the method's walk is done. All of it is one plan,
hence one Ray Tune experiment whose workers are reused from trial to trial.

Two walks (:mod:`sgmcmc_paper.sweep.walk`): ``bracket=True`` (the default, the book's search)
tries the learning rate and the method's own constants (pSGLD's ``λ`` and ``α``, KSGLD's
damping) until every selected value lies strictly inside the values tried around it, with a
second seed where the best two are within seed noise, and records the compute used against
``budget × t``; ``bracket=False`` walks the grid with its schedule axis while the next trial
is predicted to fit in ``budget × t`` (how the first smallMNIST selections were made). In the
paper convention the trials are the "as described" configuration
(:func:`sgmcmc_paper.protocol.profiles.as_described`: Li et al.'s pSGLD average, KSGLD's
updated, factor-damped K-FAC): :func:`described_fields`.

``cyclical=True`` (``sgmcmc sweep --cyclical``) tunes SGLD, pSGLD or KSGLD under Zhang et al.'s
cyclical schedule (:class:`sgmcmc.CyclicalSchedule`, chapter 09) on the same budget and walk: the
grid is :func:`~sgmcmc_paper.sweep.grids.cyclical_grid` (the cycle's peak rate, ``cycles``,
``cycle_exploration``), the trials hold the method's constants where chapter 09's runs take them
(:func:`cyclical_fixed`: its "as described" configuration with the method's own selection) and
are scored by their sampling-stage iterates (:mod:`sgmcmc_paper.sweep.trial`), and the selection
is recorded as ``<method>+cyclical`` (:mod:`sgmcmc_paper.sweep.record`). Run it after the
method's own search: its constants are read when its walk starts.

Resuming: every trial is a stored run, so rerunning an interrupted sweep loads the finished
trials (counting the compute they cost when they ran) and trains only the rest.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Any

from sgmcmc_paper.errors import UserError
from sgmcmc_paper.paths import data_dir, results_dir
from sgmcmc_paper.protocol.config import RunConfig
from sgmcmc_paper.protocol.paper import LANGEVIN_METHODS
from sgmcmc_paper.protocol.profiles import get_profile
from sgmcmc_paper.sweep.engines import ENGINES, RayOptions, run_engine
from sgmcmc_paper.sweep.grids import Axis, Grid, cyclical_grid, grid_for
from sgmcmc_paper.sweep.plan import Plan
from sgmcmc_paper.sweep.record import SweepResult, write_results
from sgmcmc_paper.sweep.trial import RunTrial, trial_config
from sgmcmc_paper.sweep.walk import TrialFn, Walk

#: The SGD reference: the paper code's SGD (lr 0.01 on the mean loss) at the sweep's sizes.
REFERENCE = Grid("sgd", "paper", (Axis("lr", (0.01,), 0.01),))
DEFAULT_CONVENTION = RunConfig.__dataclass_fields__["convention"].default


def run_sweep(
    methods: Iterable[str],
    *,
    convention: str = DEFAULT_CONVENTION,
    profile: str | None = None,
    budget: float | None = None,
    train_sizes: Iterable[int | None] | None = None,
    engine: str = "ray",
    ray: RayOptions | None = None,
    workers: int | None = None,
    max_trials: int | None = None,
    device: str = "auto",
    progress: bool = False,
    log: Callable[[str], None] | None = print,
    trial: TrialFn | None = None,
    write: bool = True,
    bracket: bool = True,
    cyclical: bool = False,
) -> list[SweepResult]:
    """Tune ``methods`` in ``convention`` at ``profile``; returns one result per (size, method).

    Args:
        budget: multiples of the SGD reference's wall time (default: the profile's).
        train_sizes: training-set sizes to tune for (``None`` in it: all 50,000); default the
            profile's ``train_size``. smallMNIST gets its own selection: pass its size.
        engine: ``"ray"`` (Ray Tune trials; see :mod:`sgmcmc_paper.sweep.engines`),
            ``"serial"`` (the same trials in this process) or ``"processes"`` (in a pool of
            ``workers`` local processes, default one per CPU).
        max_trials: stop launching after this many trials per method.
        device, progress: passed to the runs (:func:`sgmcmc_paper.engine.experiment.run`).
        log: receives one line per finished trial and a summary per sweep.
        trial: the trial function (fields in, outcome out; :data:`sgmcmc_paper.sweep.walk.TrialFn`);
            default the run engine (:class:`sgmcmc_paper.sweep.trial.RunTrial`). Tests plant theirs.
        write: merge each selection into ``results/hparams/<profile>.json``.
        bracket: the bracketing walk (module docstring); ``False``: the budgeted walk.
        cyclical: tune the samplers under the cyclical schedule (module docstring); the
            selections are recorded as ``<method>+cyclical``.
    """
    prof = get_profile(profile)
    methods = list(dict.fromkeys(methods))
    if budget is None and not prof.sweep_budget > 0:
        raise UserError(
            f"profile {prof.name!r} does not search (it uses the {prof.hparams!r} selection); "
            "pass --budget or another --profile"
        )
    budget = prof.sweep_budget if budget is None else float(budget)
    if not budget > 0:
        raise UserError(f"the sweep budget must be positive, got {budget:g}; pass e.g. --budget 5")
    if engine not in ENGINES:
        raise UserError(f"unknown engine {engine!r}; use one of {', '.join(ENGINES)}")
    sizes = list(dict.fromkeys([prof.train_size] if train_sizes is None else train_sizes))
    num_train = {
        size: trial_config(prof.name, {"method": "sgd", "train_size": size}).num_train
        for size in sizes
    }
    for method in methods:
        grid_for(method, convention, 1)  # unknown methods fail before anything runs
    if cyclical:
        _check_cyclical(methods, convention)
    if trial is None:
        root, data = str(results_dir().resolve()), str(data_dir().resolve())
        trial = RunTrial(prof.name, root, data, device=device, progress=progress)
    say = log or (lambda line: None)

    results: list[SweepResult] = []
    reference_of: dict[int, Walk] = {}  # id(method walk) -> its SGD reference walk

    def method_walk(method: str, size: int | None, reference: Walk) -> Callable[[], Walk]:
        def make() -> Walk:
            reference_s = _reference_outcome(reference)["compute_s"]
            probe = trial_config(prof.name, {"method": method, "train_size": size})
            if cyclical:
                fixed, source = cyclical_fixed(method, prof.name, size)
                steps = probe.total_steps
                grid = cyclical_grid(method, convention, num_train[size], total_steps=steps)
                held = ", ".join(f"{k}={v}" for k, v in fixed.items()) or "none"
                say(f"{method}+cyclical: method constants held fixed: {held} ({source})")
            else:
                fixed = described_fields(method, convention, prof.name)
                grid = grid_for(
                    method,
                    convention,
                    num_train[size],
                    schedule=not bracket,
                    psgld_average=fixed.get("psgld_average"),
                )
            fixed = {k: v for k, v in fixed.items() if k not in grid}
            walk = Walk(
                grid,
                budget_s=budget * reference_s,
                expected_s=reference_s,
                max_trials=max_trials,
                fixed={"train_size": size, **fixed},
                log=lambda line: say(f"{method}{'+cyclical' if cyclical else ''}: {line}"),
                bracket=bracket,
                noise_n=(probe.test_size or VALIDATION_SIZE) if bracket else None,
            )
            reference_of[id(walk)] = reference
            return walk

        return make

    def finished(walk: Walk) -> None:
        if walk.grid is REFERENCE:
            return
        size = walk.fixed["train_size"]
        result = SweepResult(
            profile=prof.name,
            method=walk.grid.method,
            convention=convention,
            train_size=size,
            num_train=num_train[size],
            epochs=prof.sweep_epochs,
            budget=budget,
            reference=_reference_outcome(reference_of[id(walk)]),
            walk=walk,
            engine=engine,
            cyclical=cyclical,
        )
        if write:
            write_results([result])
        say(result.summary())
        results.append(result)

    steps: list[Walk | Callable[[], Walk]] = []
    for size in sizes:
        reference = Walk(
            REFERENCE, fixed={"train_size": size}, log=lambda line: say(f"sgd reference: {line}")
        )
        steps.append(reference)
        steps.extend(method_walk(method, size, reference) for method in methods)
    plan = Plan(steps, on_done=finished)
    run_engine(plan, trial, engine, ray=ray or RayOptions(), workers=workers)
    return results


#: Prefixes of the method fields :func:`described_fields` compares.
METHOD_FIELDS = ("psgld_", "kfac_")
#: Images of MNIST's validation split (a trial's ``test_size`` of ``None`` scores all of them).
VALIDATION_SIZE = 10_000


def described_fields(method: str, convention: str, profile: str) -> dict[str, Any]:
    """The method fields (``psgld_*``, ``kfac_*``) in which the "as described" configuration
    differs from a plain config, in the paper convention (none in the langevin one, whose
    runs use the config's own); the sweep's trials hold them fixed, so the search tunes the
    configuration the book runs, whatever its fields are."""
    if convention != "paper":
        return {}
    from sgmcmc_paper.protocol.profiles import as_described

    described = as_described(method, profile, tuned=False)
    plain = trial_config(profile, {"method": method})
    names = [f.name for f in dataclasses.fields(RunConfig) if f.name.startswith(METHOD_FIELDS)]
    return {
        name: getattr(described, name)
        for name in names
        if getattr(described, name) != getattr(plain, name)
    }


def cyclical_fixed(method: str, profile: str, train_size: int | None) -> tuple[dict[str, Any], str]:
    """The method fields (``psgld_*``, ``kfac_*``) a cyclical search holds fixed, and where
    they come from: those of chapter 09's cyclical run, the "as described" configuration with
    the method's own selection at ``train_size`` (pSGLD's ``λ`` and ``α``, KSGLD's damping),
    where they differ from a plain config or the selection names them; the described defaults
    while that selection is missing (said: e.g. Li et al.'s ``λ = 1e-5`` may start pSGLD at
    chance)."""
    from sgmcmc_paper.protocol.hparams import selection_key, tuned_overrides
    from sgmcmc_paper.protocol.profiles import as_described

    hparams = get_profile(profile).hparams
    key = selection_key(method, "paper", train_size)
    selection = tuned_overrides(hparams, method, "paper", train_size)
    described = as_described(method, profile, train_size=train_size)
    plain = trial_config(profile, {"method": method, "train_size": train_size})
    names = [f.name for f in dataclasses.fields(RunConfig) if f.name.startswith(METHOD_FIELDS)]
    fixed = {
        name: getattr(described, name)
        for name in names
        if getattr(described, name) != getattr(plain, name) or name in (selection or {})
    }
    source = (
        f"the selection {key} of {hparams}.json"
        if selection is not None
        else f"no selection {key} in {hparams}.json yet: the described defaults; run "
        f"`sgmcmc sweep --method {method}` first"
    )
    return fixed, source


def _check_cyclical(methods: list[str], convention: str) -> None:
    """One-line errors for what a cyclical search cannot tune."""
    plain = [m for m in methods if m not in LANGEVIN_METHODS]
    if plain:
        raise UserError(
            f"--cyclical tunes a sampler's cyclical schedule and {', '.join(plain)} has none: "
            f"drop it from --method (e.g. --method {' '.join(LANGEVIN_METHODS)} --cyclical)"
        )
    if convention != "paper":
        raise UserError(
            "--cyclical searches the paper convention (chapter 09's runs): drop --convention "
            f"{convention}"
        )


def _reference_outcome(reference: Walk) -> dict[str, Any]:
    """The SGD reference's fields and outcome; an error if it did not complete."""
    (trial,) = reference.trials
    outcome = trial.outcome
    if outcome.status != "ok" or not outcome.compute_s > 0:
        raise UserError(
            f"the SGD reference run did not complete ({outcome.status}: {outcome.reason}); "
            "the budget is measured in its wall time, so fix that first (try `sgmcmc run "
            "--method sgd` with the same profile)"
        )
    return {"fields": trial.fields, **dataclasses.asdict(outcome)}
