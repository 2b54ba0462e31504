"""The ``sgmcmc`` command: one sub-command per module in :mod:`sgmcmc_paper.commands`.

Each sub-command module defines ``register(subparsers)``, which adds its parser and sets
``func`` to a handler ``(args) -> int``. A :class:`~sgmcmc_paper.errors.UserError` anywhere becomes
one line on stderr and exit status 2, never a traceback.
"""

import argparse
import sys
from importlib import import_module

from sgmcmc import __version__
from sgmcmc_paper.errors import UserError

COMMANDS = ("data", "run", "sweep", "notebooks")


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one line (argparse's own exit status, 2, is kept)."""

    def error(self, message: str):  # noqa: D102
        self.exit(2, f"error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="sgmcmc",
        description="Preconditioned SG-MCMC samplers and the experiments of Palacci & Hess (2018).",
    )
    parser.add_argument("--version", action="version", version=f"sgmcmc {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name in COMMANDS:
        try:
            module = import_module(f"sgmcmc_paper.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"sgmcmc_paper.commands.{name}":
                raise
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
