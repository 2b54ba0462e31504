"""``sgmcmc run``: one run of the engine from the command line.

Every :class:`~sgmcmc_paper.protocol.config.RunConfig` field is a flag (``--lr``,
``--kfac-damping``, ...; ``none`` for an optional value; ``--fgsm-eps 0.1 0.3``; windows as
repeatable ``--window name=fig4,samples=10,every=12,end_epoch=3,sets=test+ood``, or ``--window
none``). Values are layered, later winning: the profile's sizes (``--profile``, default
``$SGMCMC_PROFILE`` or ``paper``), a named configuration (``--as-released`` or
``--as-described``), the tuned selection (``--tuned``), a JSON file (``--config``: a config
object, or a stored ``run.json``), then the flags given.

Without ``--out`` the result goes to the store (``results/<profile>/<key>/``) and an existing
result is loaded instead of rerun; with ``--out DIR`` the run is made afresh and written to DIR
(``run.json``, ``traces.nc``, ``predictions.npz``) without touching the store.

Exit status (:data:`EXIT_STATUS`): 0 when the run completed (trained or loaded), 2 for bad input
or a store entry found damaged (one line on stderr; the damaged folder is moved aside, so the
next run trains it), 3 when the run diverged (its result is stored or written all the same).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import re
import types
import typing
from pathlib import Path
from typing import Any

from sgmcmc_paper.protocol import config as cfg
from sgmcmc_paper.protocol.config import ConfigError, RunConfig, Window
from sgmcmc_paper.protocol.paper import METHODS

_SKIP = {"method", "windows", "fgsm_eps", "profile"}
#: A diverged run's exit status (its result is stored or written, as a complete run's is).
EXIT_DIVERGED = 3
EXIT_STATUS = {
    0: "the run completed (trained, or loaded from the store)",
    2: "bad input, an unwritable folder or a damaged store entry (one line on stderr; a "
    "damaged run folder is moved aside, so the next run trains it afresh)",
    EXIT_DIVERGED: "the run diverged (its result is stored or written all the same)",
}
_CHOICES = {
    "convention": cfg.CONVENTIONS,
    "precondition": cfg.PRECONDITIONS,
    "init": cfg.INITS,
    "dataset": cfg.DATASETS,
    "evaluate_on": cfg.SPLITS,
    "kfac_fisher": cfg.FISHERS,
    "kfac_damping_mode": cfg.DAMPING_MODES,
}


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "run",
        help="train and evaluate one configuration (a stored result is reused)",
        description="Train and evaluate one configuration. Fields are layered, later winning: "
        "the profile's sizes, --as-released or --as-described, --tuned, --config, the flags. "
        "Without --out the result is stored under results/<profile>/<key>/ (and reused).",
        epilog="exit status: "
        + "; ".join(f"{code} {meaning}" for code, meaning in EXIT_STATUS.items()),
        argument_default=argparse.SUPPRESS,
    )
    p.add_argument("--method", choices=METHODS, help="the method (required unless in --config)")
    p.add_argument("--profile", help="ci, quick or paper (default $SGMCMC_PROFILE, else paper)")
    named = p.add_mutually_exclusive_group()
    named.add_argument(
        "--as-released",
        action="store_true",
        help="the released code's behaviour (book/reproduction_notes.md)",
    )
    named.add_argument(
        "--as-described", action="store_true", help="what the paper describes (working K-FAC)"
    )
    p.add_argument(
        "--tuned", action="store_true", help="use the rates of results/hparams/<profile>.json"
    )
    p.add_argument("--config", metavar="FILE", help="JSON config fields, or a stored run.json")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    p.add_argument("--out", metavar="DIR", help="write the run here instead of the store")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    hints = typing.get_type_hints(RunConfig)
    for f in dataclasses.fields(RunConfig):
        if f.name in _SKIP:
            continue
        kind = _base_type(hints[f.name])
        choices = _CHOICES.get(f.name)
        p.add_argument(
            "--" + f.name.replace("_", "-"),
            type=_parser_for(kind, _optional(hints[f.name])),
            metavar="{" + ",".join(choices) + "}" if choices else kind.__name__.upper(),
            help=f"default: {f.default}",
        )
    p.add_argument("--fgsm-eps", type=float, nargs="+", metavar="EPS", help="FGSM radii")
    p.add_argument(
        "--window",
        action="append",
        type=_window,
        metavar="SPEC",
        help="an averaging window, e.g. name=fig4,samples=10,every=12,end_epoch=3,sets=test+ood "
        "(repeatable; 'none' for no window)",
    )
    p.set_defaults(func=handle)


def _optional(hint: Any) -> bool:
    return type(None) in typing.get_args(hint)


def _base_type(hint: Any) -> type:
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return args[0]
    return hint


def _parser_for(kind: type, optional: bool):
    def parse(text: str):
        if optional and text.lower() == "none":
            return None
        if kind is bool:
            if text.lower() in ("true", "1", "yes"):
                return True
            if text.lower() in ("false", "0", "no"):
                return False
            raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {kind.__name__}, got {text!r}") from None

    parse.__name__ = kind.__name__
    return parse


def _window(text: str) -> Window | None:
    if text.lower() == "none":
        return None
    fields: dict[str, Any] = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"window parts are key=value, got {part!r}")
        if name == "sets":
            fields[name] = tuple(value.split("+"))
        elif name in ("samples", "every", "end_epoch"):
            fields[name] = None if value.lower() == "none" else _int(value)
        elif name == "name":
            fields[name] = value
        else:
            raise argparse.ArgumentTypeError(f"unknown window part {name!r}")
    try:
        return Window(**fields)
    except (ConfigError, TypeError) as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def _read_config_file(path: str) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read --config {path}: {exc.strerror or exc}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--config {path} is not valid JSON ({exc}); fix the file") from None
    if isinstance(data, dict) and "config" in data and "key" in data:
        data = data["config"]  # a stored run.json
    if not isinstance(data, dict):
        raise ConfigError(f"--config {path} must hold a JSON object of config fields")
    return dict(data)


def build_config(args: argparse.Namespace) -> RunConfig:
    """The config the flags describe (see the module docstring for the layering)."""
    from sgmcmc_paper.protocol.hparams import hparams_path, tuned_overrides
    from sgmcmc_paper.protocol.profiles import as_described, as_released, get_profile

    given = vars(args)
    fields: dict[str, Any] = {}
    origins: dict[str, str] = {}  # where a field that did not come from a flag came from
    if "config" in given:
        fields.update(_read_config_file(given["config"]))
        origins.update(dict.fromkeys(fields, f"--config {given['config']}"))
    names = {f.name for f in dataclasses.fields(RunConfig)} - _SKIP
    flags = {k: v for k, v in given.items() if k in names or k == "method"}
    fields.update(flags)
    for name in (*flags, *(["fgsm_eps"] if "fgsm_eps" in given else [])):
        origins.pop(name, None)
    if "window" in given:
        origins.pop("windows", None)
    if "fgsm_eps" in given:
        fields["fgsm_eps"] = tuple(given["fgsm_eps"])
    if "window" in given:
        fields["windows"] = tuple(w for w in given["window"] if w is not None)
    fields.pop("profile", None)
    method = fields.pop("method", None)
    if method is None:
        raise ConfigError("no method: pass --method (" + ", ".join(METHODS) + ") or --config")
    if method not in METHODS:
        raise ConfigError(f"method must be one of {', '.join(METHODS)}; got {method!r}")
    profile = get_profile(given.get("profile"))
    if given.get("tuned"):
        convention = fields.get("convention", "paper")
        train_size = fields.get("train_size", profile.train_size)
        selection = tuned_overrides(profile.hparams, method, convention, train_size)
        if selection is None:
            raise ConfigError(
                f"--tuned: no selection for {method} ({convention} convention) in "
                f"{hparams_path(profile.hparams)}; run `sgmcmc sweep --method {method} "
                f"--profile {profile.name}` first"
            )
        for name in set(selection) - set(fields):
            origins[name] = str(hparams_path(profile.hparams))
        fields = {**selection, **fields}
    try:
        if given.get("as_released"):
            return as_released(method, profile.name, **fields)
        if given.get("as_described"):
            return as_described(method, profile.name, tuned=False, **fields)
        return profile.config(method, **fields)
    except ConfigError as exc:
        raise _named_origin(exc, origins) from None


def _named_origin(exc: ConfigError, origins: dict[str, str]) -> ConfigError:
    """``exc`` prefixed with the file its field came from (``--config`` or the tuned
    selection), when the message is about one such field."""
    message = str(exc)
    unknown = re.match(r"unknown config fields \['(\w+)'", message)
    field = unknown.group(1) if unknown else (message.replace(":", " ").split() or [""])[0]
    origin = origins.get("windows" if field in ("window", "bad", "a") else field)
    return ConfigError(f"{origin}: {exc}") if origin else exc


def _check_writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(
            f"--out {folder} is not writable ({exc.strerror or exc}); choose another folder"
        ) from None


def handle(args: argparse.Namespace) -> int:
    from sgmcmc_paper.engine.experiment import resolve_device, run
    from sgmcmc_paper.engine.store import run_or_load, write_folder

    config = build_config(args)
    device = resolve_device(args.device)
    progress = not getattr(args, "quiet", False)
    out = getattr(args, "out", None)
    if out is not None:
        folder = Path(out)
        created = not folder.exists()
        _check_writable(folder)
        try:
            result = run(config, device=device, progress=progress)
            write_folder(result, folder)
        except BaseException:
            if created and folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()  # leave no empty folder behind a failed run
            raise
    else:
        result = run_or_load(config, device=device, progress=progress)
        folder = result.path
    _print_summary(result, folder)
    return EXIT_DIVERGED if result.diverged else 0


def _print_summary(result, folder: Path) -> None:
    c = result.config
    print(f"{c.method} [{result.key}] {result.status}", end="")
    if result.divergence:
        print(f": {result.divergence.get('reason', 'no reason recorded')}", end="")
    print()
    if result.metrics["epochs"]:
        last = result.metrics["epochs"][-1]
        print(
            f"  epoch {last['epoch']}: test accuracy {_accuracy(last['single']):.4f} (final "
            f"model), {_accuracy(last['averaged']):.4f} (averaged over "
            f"{last['averaged'].get('samples', '?')} samples)"
        )
    for name, w in result.metrics["windows"].items():
        test = w["sets"].get("test", {}).get("averaged", {})
        line = f"  window {name}: {w['samples']} samples"
        if test:
            line += f", test accuracy {_accuracy(test):.4f}"
        for threat, by_eps in w.get("fgsm", {}).items():
            accs = ", ".join(f"{_accuracy(v.get('averaged')):.4f}@{e}" for e, v in by_eps.items())
            line += f", fgsm {threat} {accs}"
        print(line)
    for note in result.notes:
        print(f"  note: {note}")
    provenance = result.provenance
    seconds = provenance.get("timing", {}).get("total_s", math.nan)
    device = provenance.get("device_name", "an unrecorded device")
    print(f"  {seconds:.1f} s on {device}; written to {folder}")


def _accuracy(metrics: dict | None) -> float:
    value = (metrics or {}).get("accuracy")
    return float(value) if isinstance(value, (int, float)) else math.nan
