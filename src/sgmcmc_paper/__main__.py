"""``python -m sgmcmc`` is the ``sgmcmc`` command."""

from sgmcmc_paper.cli import main

raise SystemExit(main())
