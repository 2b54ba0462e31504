"""Serve MathJax from a pinned local copy, so the book typesets math with no network.

Sphinx's default ``mathjax_path`` is a CDN URL. This extension copies the parts of MathJax 3 the
HTML pages need (the ``tex-mml-chtml`` combined component, TeX extensions loaded on demand, the
CHTML web fonts, the menu and the accessibility components) from the PyPI package
``django-static-mathjax`` (pinned in pyproject.toml; a plain copy of MathJax's ``es5`` build with
no dependencies) into ``<outdir>/_static/mathjax/``. ``_config.yml`` points ``mathjax_path`` at
``mathjax/tex-mml-chtml.js``, which Sphinx resolves inside ``_static/``.

A missing package, another MathJax version, or a ``mathjax_path`` that still names a URL stops the
build with one line that says what to do.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

from sphinx.application import Sphinx
from sphinx.config import Config
from sphinx.errors import ExtensionError

MATHJAX_VERSION = "3.2.2"
PACKAGE = "django-static-mathjax==3.2.2.1"
LOCAL_PATH = "mathjax/tex-mml-chtml.js"

# Paths under MathJax's es5/ that a page can load: the combined component it starts from, then
# what that component fetches lazily (TeX packages via autoload, MathML entities, fonts, the
# context menu and its accessibility/speech options).
SUBSET = (
    "tex-mml-chtml.js",
    "input/tex/extensions",
    "input/mml",
    "output/chtml/fonts/woff-v2",
    "ui",
    "a11y",
    "sre",
)


def mathjax_es5_dir() -> Path:
    """The es5 folder of the installed MathJax copy, checked to be version MATHJAX_VERSION."""
    spec = importlib.util.find_spec("mathjax")
    if spec is None or spec.origin is None:
        raise ExtensionError(
            f"MathJax is not installed: run `.venv/bin/pip install {PACKAGE}` (make book does)"
        )
    root = Path(spec.origin).parent / "static" / "mathjax"
    manifest = root / "package.json"
    version = json.loads(manifest.read_text())["version"] if manifest.is_file() else None
    if version != MATHJAX_VERSION:
        raise ExtensionError(
            f"expected MathJax {MATHJAX_VERSION} in {root}, found {version}: "
            f"run `.venv/bin/pip install {PACKAGE}`"
        )
    return root / "es5"


def check_config(app: Sphinx, config: Config) -> None:
    if config.mathjax_path != LOCAL_PATH:
        raise ExtensionError(
            f"mathjax_path is {config.mathjax_path!r}; set it to {LOCAL_PATH!r} in _config.yml "
            "(sphinx: config:) so that math renders offline"
        )
    mathjax_es5_dir()  # fail before the build, not after it


def copy_mathjax(app: Sphinx, exception: Exception | None) -> None:
    if exception is not None or app.builder.format != "html":
        return
    source = mathjax_es5_dir()
    target = Path(app.outdir) / "_static" / "mathjax"
    for part in SUBSET:
        src, dst = source / part, target / part
        if src.is_dir():
            shutil.copytree(src, dst, dirs_exist_ok=True)
        else:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)


def setup(app: Sphinx) -> dict[str, object]:
    app.setup_extension("sphinx.ext.mathjax")
    app.connect("config-inited", check_config)
    app.connect("build-finished", copy_mathjax)
    return {"version": MATHJAX_VERSION, "parallel_read_safe": True, "parallel_write_safe": True}
