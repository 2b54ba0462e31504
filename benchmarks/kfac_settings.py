"""How KSGLD's results and cost move with K-FAC's ``inverse_every`` and ``eigen_rtol``.

Trains KSGLD at a profile's sizes (default ``quick``) through the store (``run_or_load``:
stored runs are reused), once per setting, for two configurations: the langevin convention
with eq. 1 (notebook 06, ``langevin``) and the paper convention as described (notebook 01,
``paper``), and prints
final-epoch averaged test accuracy and NLL and the median window mESS (paper estimator). The
cost of each setting is measured by ``sampler_overhead.py`` (ratios in one process), not here:
a stored run's wall time depends on what else the machine was doing.

    python benchmarks/kfac_settings.py [--profile quick] [--rtol 0 0.05] [--inverse-every 100]
"""

from __future__ import annotations

import argparse

from sgmcmc.samplers.base import CONVENTIONS
from sgmcmc_paper.analysis import tables
from sgmcmc_paper.engine.store import run_or_load
from sgmcmc_paper.protocol.profiles import as_described


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--rtol", type=float, nargs="+", default=[0.0, 0.05])
    parser.add_argument("--inverse-every", type=int, nargs="+", default=[100])
    parser.add_argument(
        "--configurations", nargs="+", default=list(CONVENTIONS), choices=CONVENTIONS
    )
    args = parser.parse_args(argv)
    import pandas as pd

    bases = {
        "langevin": next(
            iter(
                tables.langevin_configs(
                    args.profile, [0], ["ksgld"], "eq. 1", precondition="both"
                ).values()
            )
        ),
        "paper": as_described("ksgld", args.profile),
    }
    bases = {label: bases[label] for label in args.configurations}
    rows = []
    for label, base in bases.items():
        for inverse_every in args.inverse_every:
            for rtol in args.rtol:
                config = base.replace(kfac_inverse_every=inverse_every, kfac_eigen_rtol=rtol)
                result = run_or_load(config)
                summary = tables.run_summary({(label, "ksgld", 0): result}).iloc[0]
                rows.append(
                    {
                        "configuration": label,
                        "inverse_every": inverse_every,
                        "eigen_rtol": rtol,
                        "status": result.status,
                        "accuracy": summary["accuracy"],
                        "nll": summary["nll"],
                        "median mESS": summary["mess"],
                    }
                )
    print(pd.DataFrame(rows).round(4).to_string(index=False))


if __name__ == "__main__":
    main()
