"""Hyper-parameter search: the paper's compute-budgeted grid search, as Ray Tune trials.

``run_sweep(["sgld"], convention="paper", profile="paper")`` (or ``sgmcmc sweep``) tunes a
method on MNIST's validation split with a budget of ``k×`` the SGD training time and writes
the selection to ``results/hparams/<profile>.json``; tuned runs read it
(:mod:`sgmcmc.hparams`). :func:`trial_table` and :func:`plot_sweep` show what a sweep tried.

Modules: :mod:`~sgmcmc.sweep.grids` (what is tried, in which order),
:mod:`~sgmcmc.sweep.walk` (budget, stages, selection), :mod:`~sgmcmc.sweep.plan` (walks in
sequence), :mod:`~sgmcmc.sweep.engines` (serial and Ray), :mod:`~sgmcmc.sweep.trial` (a trial
on the run engine), :mod:`~sgmcmc.sweep.record` (the selection file),
:mod:`~sgmcmc.sweep.search` (the sweep), :mod:`~sgmcmc.sweep.report` (table and plot).
Ray is imported only when a sweep uses it.
"""

from sgmcmc.sweep.engines import RayOptions
from sgmcmc.sweep.grids import grid_for
from sgmcmc.sweep.record import SweepResult, load_sweeps
from sgmcmc.sweep.report import plot_sweep, trial_table
from sgmcmc.sweep.search import run_sweep

__all__ = [
    "RayOptions",
    "SweepResult",
    "grid_for",
    "load_sweeps",
    "plot_sweep",
    "run_sweep",
    "trial_table",
]
