#!/usr/bin/env python3
"""Compare the glued outputs of two sets of executed notebooks: what the book's pages paste.

Usage::

    python .ci/compare_glue.py BEFORE AFTER          # two folders of executed notebooks
    python .ci/compare_glue.py --rev REV [AFTER]     # BEFORE read from git at revision REV

A notebook glues a value with ``myst_nb.glue(name, value)`` (``sgmcmc_paper.book.session``'s
``glue``, ``claims`` and ``finish``): the executed notebook holds it as an output whose metadata
is ``{"scrapbook": {"name": NAME, "mime_prefix": PREFIX}}`` and whose data keys are the MIME
types behind ``PREFIX`` (``application/papermill.record/`` for ``display=False``). For every
notebook and glue name found on either side this prints one line,

- ``identical``: every MIME type holds the same value;
- ``differs``: followed by a short line diff of the value (HTML tags stripped);
- ``missing before`` / ``missing after``: the name (or its whole notebook) exists on one side only;
- ``volatile``: a name in :data:`VOLATILE` (or ``--volatile NAME``), whose value changes with every
  execution; present on both sides, not compared;

and exits 0 when nothing differs or is missing, 1 otherwise, 2 when a side cannot be read.

``--rev REV`` reads ``git show REV:<path>/<name>.ipynb`` for every notebook under ``--path``
(default ``book/notebooks``, relative to the repository root) at that revision; AFTER then
defaults to that folder in the working tree. So ``--rev HEAD`` compares the book's executed
notebooks with their last committed version, and ``--rev main`` after a ``make book`` says
whether a change altered any table of the book.
"""

from __future__ import annotations

import argparse
import difflib
import html
import json
import re
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PATH = "book/notebooks"

#: Glue names whose value changes at every execution, with why; reported, never compared.
VOLATILE = {
    "provenance": "wall time, runs trained or loaded, and the hardware that made them "
    "(sgmcmc_paper.book.session's finish())",
}

#: At most this many diff lines are printed per differing value.
MAX_DIFF_LINES = 12

Glued = dict[str, dict[str, str]]  # glue name -> {MIME type: value}


class SourceError(Exception):
    """A side of the comparison cannot be read (a missing folder, an unknown revision)."""


def glued_outputs(notebook: Mapping) -> Glued:
    """Every glued value of an executed notebook (a parsed ``.ipynb``): name -> MIME bundle.

    The MIME prefix is removed from the data keys, and list-of-lines values are joined, so the
    same value stored either way compares equal. A name glued twice keeps its last value, as
    MyST-NB does.
    """
    glued: Glued = {}
    for cell in notebook.get("cells", []):
        for output in cell.get("outputs", []):
            meta = output.get("metadata", {}).get("scrapbook")
            if not isinstance(meta, Mapping) or "name" not in meta:
                continue
            prefix = meta.get("mime_prefix", "") or ""
            bundle = {}
            for mime, value in output.get("data", {}).items():
                if isinstance(value, list):
                    value = "".join(value)
                elif not isinstance(value, str):
                    value = json.dumps(value, sort_keys=True)
                bundle[mime.removeprefix(prefix)] = value
            glued[str(meta["name"])] = bundle
    return glued


def read_folder(folder: Path) -> dict[str, Glued]:
    """Notebook stem -> its glued outputs, for every ``*.ipynb`` in ``folder``."""
    if not folder.is_dir():
        raise SourceError(f"{folder} is not a folder of executed notebooks")
    return {
        path.stem: glued_outputs(json.loads(path.read_text(encoding="utf-8")))
        for path in sorted(folder.glob("*.ipynb"))
    }


def _git(*args: str, cwd: Path) -> str:
    result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise SourceError(f"git {' '.join(args)}: {result.stderr.strip() or 'failed'}")
    return result.stdout


def read_revision(rev: str, path: str = DEFAULT_PATH, repo: Path = ROOT) -> dict[str, Glued]:
    """Notebook stem -> glued outputs, for every ``<path>/*.ipynb`` at git revision ``rev``."""
    listing = _git("ls-tree", "--name-only", f"{rev}:{path}", cwd=repo).split()
    notebooks = sorted(name for name in listing if name.endswith(".ipynb"))
    return {
        PurePosixPath(name).stem: glued_outputs(
            json.loads(_git("show", f"{rev}:{path}/{name}", cwd=repo))
        )
        for name in notebooks
    }


def _text_lines(value: str) -> list[str]:
    """The value as lines of text: HTML tags stripped, entities decoded, blank lines dropped."""
    lines = (html.unescape(re.sub(r"<[^>]+>", " ", line)) for line in value.splitlines())
    return [" ".join(line.split()) for line in lines if line.strip()]


def short_diff(before: Mapping[str, str], after: Mapping[str, str]) -> list[str]:
    """A few ``-``/``+`` lines saying how two MIME bundles differ."""
    lines: list[str] = []
    for mime in sorted(set(before) | set(after)):
        if mime not in before or mime not in after:
            lines.append(f"{mime}: only {'after' if mime not in before else 'before'}")
            continue
        old, new = before[mime], after[mime]
        if old == new:
            continue
        if not mime.startswith("text/"):  # images, JSON: no readable line diff
            lines.append(f"{mime}: differs ({len(old)} and {len(new)} characters)")
            continue
        old_lines, new_lines = _text_lines(old), _text_lines(new)
        if old_lines == new_lines:  # markup only: show the raw lines
            old_lines, new_lines = old.splitlines(), new.splitlines()
        changed = [
            line
            for line in difflib.unified_diff(old_lines, new_lines, lineterm="", n=0)
            if line[:1] in "-+" and not line.startswith(("---", "+++"))
        ]
        lines.append(f"{mime}:")
        lines.extend(f"  {line}" for line in changed[:MAX_DIFF_LINES])
        if len(changed) > MAX_DIFF_LINES:
            lines.append(f"  ... {len(changed) - MAX_DIFF_LINES} more changed lines")
    return lines


def compare(
    before: Mapping[str, Glued], after: Mapping[str, Glued], volatile: Mapping[str, str]
) -> list[tuple[str, str, str, list[str]]]:
    """``(notebook, name, status, diff lines)`` for every glue name on either side, sorted."""
    rows = []
    for notebook in sorted(set(before) | set(after)):
        old, new = before.get(notebook, {}), after.get(notebook, {})
        for name in sorted(set(old) | set(new)):
            if name not in old:
                rows.append((notebook, name, "missing before", []))
            elif name not in new:
                rows.append((notebook, name, "missing after", []))
            elif name in volatile:
                rows.append((notebook, name, "volatile", []))
            elif old[name] == new[name]:
                rows.append((notebook, name, "identical", []))
            else:
                rows.append((notebook, name, "differs", short_diff(old[name], new[name])))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Compare the glued outputs (the book's pasted tables) of two sets of "
        "executed notebooks; exit 1 when any differs or is missing."
    )
    parser.add_argument("before", nargs="?", help="folder of executed notebooks (not with --rev)")
    parser.add_argument("after", nargs="?", help=f"folder of executed notebooks ({DEFAULT_PATH})")
    parser.add_argument("--rev", help="read BEFORE from this git revision (e.g. HEAD, main)")
    parser.add_argument(
        "--path", default=DEFAULT_PATH, help=f"notebook folder in the repository ({DEFAULT_PATH})"
    )
    parser.add_argument(
        "--volatile",
        action="append",
        default=[],
        metavar="NAME",
        help="another glue name not to compare (repeatable)",
    )
    args = parser.parse_args(argv)
    if args.rev is not None:
        if args.after is not None:
            parser.error("with --rev give one folder (AFTER) at most")
        args.after = args.before
    elif args.before is None or args.after is None:
        parser.error("give BEFORE and AFTER folders, or --rev REV [AFTER]")
    after_folder = Path(args.after) if args.after is not None else ROOT / args.path
    volatile = {**VOLATILE, **{name: "--volatile" for name in args.volatile}}
    try:
        before = read_revision(args.rev, args.path) if args.rev else read_folder(Path(args.before))
        after = read_folder(after_folder)
    except (SourceError, OSError, json.JSONDecodeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    before_label = f"{args.rev}:{args.path}" if args.rev else args.before
    print(f"before: {before_label} ({len(before)} notebooks)")
    print(f"after:  {after_folder} ({len(after)} notebooks)")
    rows = compare(before, after, volatile)
    width = max((len(f"{notebook}  {name}") for notebook, name, _, _ in rows), default=0)
    for notebook, name, status, diff in rows:
        print(f"{f'{notebook}  {name}':<{width}}  {status}")
        for line in diff:
            print(f"    {line}")
    counts: dict[str, int] = {}
    for _, _, status, _ in rows:
        counts[status] = counts.get(status, 0) + 1
    print(", ".join(f"{count} {status}" for status, count in sorted(counts.items())) or "no glue")
    bad = sum(count for status, count in counts.items() if status not in ("identical", "volatile"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
