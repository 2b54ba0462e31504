"""Let a Google-style ``Args:`` entry name several parameters, starred ones included.

The library's docstrings document shared arguments in one entry, ``params, lr, **options: as
LangevinSampler``. Napoleon escapes the stars of an entry that names one ``*args`` or
``**kwargs``, but its Google-style parser leaves them alone inside a comma-separated list of
names (its NumPy-style parser escapes them), and an unescaped ``**`` opens reStructuredText's
strong emphasis: the API reference (book/api.md) would warn, and the book build fails on
warnings. This extension escapes those stars, and nothing else, before napoleon reads the
docstring (it runs first: a lower priority than napoleon's default 500).
"""

from __future__ import annotations

import re
from typing import Any

from sphinx.application import Sphinx

SECTIONS = {
    "Args:",
    "Arguments:",
    "Parameters:",
    "Keyword Args:",
    "Keyword Arguments:",
    "Other Parameters:",
}
# "name, name, **name:" or with a type, "name, *name (type):"; group 2 is the list of names.
ENTRY = re.compile(r"^(\s+)(\*{0,2}\w+(?:\s*,\s*\*{0,2}\w+)+)(\s*(?:\([^)]*\))?\s*:.*)$")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def escape_starred_lists(lines: list[str]) -> None:
    """Escape ``*`` in the names of multi-name entries of argument sections, in place."""
    section_indent: int | None = None
    entry_indent: int | None = None
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        if line.strip() in SECTIONS:
            section_indent, entry_indent = _indent(line), None
            continue
        if section_indent is None:
            continue
        if _indent(line) <= section_indent:  # the section ended
            section_indent = None
            continue
        if entry_indent is None:
            entry_indent = _indent(line)
        if _indent(line) != entry_indent:  # a continuation line of an entry
            continue
        match = ENTRY.match(line)
        if match and "*" in match.group(2):
            names = re.sub(r"(?<!\\)\*", r"\\*", match.group(2))
            lines[i] = match.group(1) + names + match.group(3)


def _process(app: Sphinx, what: str, name: str, obj: Any, options: Any, lines: list[str]) -> None:
    escape_starred_lists(lines)


def setup(app: Sphinx) -> dict[str, bool]:
    app.connect("autodoc-process-docstring", _process, priority=400)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
