"""``python -m sgmcmc`` is the ``sgmcmc`` command, which the harness package provides.

The only place the library names the harness: an entry point, imported by nothing.
"""

import sys
from importlib import import_module

try:
    main = import_module("sgmcmc_paper.cli").main
except ModuleNotFoundError as exc:  # the harness is part of the distribution; this is a guard
    sys.exit(
        f"error: the sgmcmc command needs the harness ({exc.name} is missing): "
        "pip install 'sgmcmc[paper]'"
    )
raise SystemExit(main())
