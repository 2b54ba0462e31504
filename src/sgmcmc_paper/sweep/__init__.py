"""Hyper-parameter search: the paper's compute-budgeted grid search, as Ray Tune trials.

``run_sweep(["sgld"], convention="paper", profile="paper")`` (or ``sgmcmc sweep``) tunes a
method on MNIST's validation split with a budget of ``k×`` the SGD training time and writes
the selection to ``results/hparams/<profile>.json``; tuned runs read it
(:mod:`sgmcmc_paper.protocol.hparams`). With ``cyclical=True`` (``sgmcmc sweep --cyclical``) it
tunes the samplers under chapter 09's cyclical schedule, selections ``<method>+cyclical``.
:func:`trial_table` and :func:`plot_sweep` show what a sweep tried.

Modules: :mod:`~sgmcmc_paper.sweep.grids` (what is tried, in which order),
:mod:`~sgmcmc_paper.sweep.walk` (budget, stages, selection), :mod:`~sgmcmc_paper.sweep.plan` (walks
in sequence), :mod:`~sgmcmc_paper.sweep.engines` (serial and Ray), :mod:`~sgmcmc_paper.sweep.trial`
(a trial on the run engine), :mod:`~sgmcmc_paper.sweep.record` (the selection file),
:mod:`~sgmcmc_paper.sweep.search` (the sweep), :mod:`~sgmcmc_paper.sweep.report` (table and plot).
Ray is imported only when a sweep uses it.
"""

from sgmcmc_paper.sweep.engines import RayOptions
from sgmcmc_paper.sweep.grids import grid_for
from sgmcmc_paper.sweep.record import SweepResult, load_sweeps
from sgmcmc_paper.sweep.report import plot_sweep, trial_table
from sgmcmc_paper.sweep.search import run_sweep

__all__ = [
    "RayOptions",
    "SweepResult",
    "grid_for",
    "load_sweeps",
    "plot_sweep",
    "run_sweep",
    "trial_table",
]
