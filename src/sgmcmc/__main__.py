"""``python -m sgmcmc`` is the ``sgmcmc`` command."""

from sgmcmc.cli import main

raise SystemExit(main())
