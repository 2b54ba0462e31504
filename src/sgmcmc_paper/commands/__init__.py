"""Sub-commands of the ``sgmcmc`` command line, one module each (see :mod:`sgmcmc_paper.cli`)."""
