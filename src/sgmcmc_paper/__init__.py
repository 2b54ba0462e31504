"""sgmcmc_paper: the harness that reproduces Palacci & Hess (2018) with the :mod:`sgmcmc` library.

It imports the library; the library never imports it. Subpackages:
:mod:`~sgmcmc_paper.protocol` (what a run is: configs, profiles, the paper's facts, which runs
each notebook needs), :mod:`~sgmcmc_paper.engine` (training, evaluation, traces, the run store),
:mod:`~sgmcmc_paper.analysis` (metrics, attacks, tables, claims, plots),
:mod:`~sgmcmc_paper.data` (MNIST, notMNIST-style letters, Fashion-MNIST),
:mod:`~sgmcmc_paper.sweep` (the hyper-parameter search on Ray Tune), :mod:`~sgmcmc_paper.book`
(the notebooks' session and runner) and the ``sgmcmc`` command (:mod:`~sgmcmc_paper.cli`).
Install it with ``pip install 'sgmcmc[paper]'`` (``[sweep]`` for the search, ``[book]`` for
the notebooks).
"""
