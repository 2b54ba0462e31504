"""The ``sgmcmc`` command: one sub-command per module in :mod:`sgmcmc_paper.commands`.

Each sub-command module defines ``register(subparsers)``, which adds its parser and sets
``func`` to a handler ``(args) -> int``. A :class:`~sgmcmc_paper.errors.UserError` anywhere becomes
one line on stderr and exit status 2, never a traceback; so does a third-party module that is
not installed (``pip install sgmcmc`` brings the library alone): the line names the extra.
"""

import argparse
import sys
from importlib import import_module

from sgmcmc import __version__
from sgmcmc_paper.errors import UserError

#: Each command and the extras of pyproject.toml it needs beyond the library.
EXTRAS = {
    "data": ("paper",),
    "run": ("paper",),
    "sweep": ("paper", "sweep"),  # "sweep" (Ray) for --engine ray: auto is serial without it
    "fill": ("paper",),  # and "sweep" for --engine ray (the command says so)
    "notebooks": ("paper", "book"),
}
COMMANDS = tuple(EXTRAS)
_OWN_PACKAGES = {"sgmcmc", "sgmcmc_paper"}


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
    # commands whose module needs a module that is not installed: {name: the import error}
    parser.unavailable = {}
    for name in COMMANDS:
        try:
            module = import_module(f"sgmcmc_paper.commands.{name}")
        except ImportError as exc:
            if getattr(exc, "name", None) == f"sgmcmc_paper.commands.{name}":
                continue
            if _third_party(exc) is None:
                raise
            parser.unavailable[name] = exc
            extras = ",".join(EXTRAS[name])
            sub.add_parser(name, help=f"(needs the extras: pip install 'sgmcmc[{extras}]')")
            continue
        module.register(sub)
    return parser


def missing_extra(command: str, exc: ImportError) -> str:
    """The one line that says which extra ``command`` needs, given the import that failed."""
    extras = EXTRAS[command]
    which = f"the '{extras[0]}' extra"
    if len(extras) > 1:
        which = "the " + " and ".join(f"'{e}'" for e in extras) + " extras"
    return (
        f"`sgmcmc {command}` needs {which} (module '{_third_party(exc)}' is not installed): "
        f"pip install 'sgmcmc[{','.join(extras)}]'"
    )


def _third_party(exc: BaseException | None) -> str | None:
    """The top-level name of the third-party module whose absence raised ``exc`` (directly, or
    as the cause of another import error, as Ray re-raises), else ``None``: a missing module of
    the standard library or of this project is a bug, not an extra to install."""
    seen = set()
    while isinstance(exc, ImportError) and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, ModuleNotFoundError):
            top = (exc.name or "").split(".")[0]
            if top and top not in _OWN_PACKAGES and top not in sys.stdlib_module_names:
                return top
        exc = exc.__cause__ or exc.__context__
    return None


def _missing(command: str, exc: ImportError) -> int:
    print(f"error: {missing_extra(command, exc)}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    command = next((a for a in argv if not a.startswith("-")), None)
    if command in parser.unavailable:  # whatever its arguments, --help included
        return _missing(command, parser.unavailable[command])
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ImportError as exc:
        if _third_party(exc) is None:
            raise
        return _missing(args.command, exc)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
