"""The book builds with warnings as errors, loads nothing from the network, and renders in Chromium.

The book is built once per session into a temporary folder (``jupyter-book build --path-output``),
from whatever ``_toc.yml`` lists; notebooks are rendered, never executed. About 10 s, plus about
3 s per page for the browser check when Chromium is installed.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

# Every work the paper cites, which the book cites too: (bibtex key, a surname shown in the list).
PAPER_REFERENCES = {
    "welling2011bayesian": "Welling",
    "li2016preconditioned": "Carin",
    "ma2015complete": "Fox",
    "izmailov2021what": "Izmailov",
    "martens2015optimizing": "Martens",
    "grosse2016kronecker": "Grosse",
    "nado2018stochastic": "Nado",
    "mandt2017stochastic": "Mandt",
    "girolami2011riemann": "Girolami",
    "marceaucaron2017natural": "Marceau-Caron",
    "vats2019multivariate": "Vats",
    "gelman2013bayesian": "Gelman",
    "goodfellow2015explaining": "Goodfellow",
    "hendrycks2017baseline": "Hendrycks",
    "betancourt2015fundamental": "Betancourt",
    "vollmer2016exploration": "Vollmer",
    "palacci2018scalable": "Palacci",
}

# Attributes and CSS constructs through which a page loads something.
ASSET_IN_HTML = re.compile(
    r"<(?:script|img|iframe|source|audio|video|embed)\b[^>]*?\bsrc\s*=\s*[\"']([^\"']+)"
    r"|<link\b[^>]*?\bhref\s*=\s*[\"']([^\"']+)",
    re.IGNORECASE,
)
ASSET_IN_CSS = re.compile(r"url\(\s*[\"']?([^\"')]+)|@import\s+[\"']([^\"']+)", re.IGNORECASE)
REMOTE = re.compile(r"^(?:https?:)?//", re.IGNORECASE)


@pytest.fixture(scope="session")
def book(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The HTML of a fresh build (fails the tests that use it if the build warns)."""
    out = tmp_path_factory.mktemp("book")
    command = [str(BIN / "jupyter-book"), "build", str(ROOT), "--path-output", str(out)]
    result = subprocess.run(
        [*command, "--warningiserror", "--keep-going"],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=ROOT,
    )
    assert result.returncode == 0, (
        "jupyter-book build failed:\n" + result.stdout[-4000:] + result.stderr[-4000:]
    )
    return out / "_build" / "html"


def test_every_toc_page_is_built(book: Path) -> None:
    toc = (ROOT / "_toc.yml").read_text()
    files = re.findall(r"^\s*(?:root|- file):\s*(\S+)", toc, re.MULTILINE)
    assert files, "no pages found in _toc.yml"
    missing = [f for f in files if not (book / f"{f}.html").is_file()]
    assert not missing, f"pages listed in _toc.yml but not built: {missing}"


def test_no_page_asset_comes_from_the_network(book: Path) -> None:
    remote = []
    for page in book.rglob("*.html"):
        for match in ASSET_IN_HTML.finditer(page.read_text(errors="replace")):
            url = match.group(1) or match.group(2)
            if REMOTE.match(url):
                remote.append(f"{page.relative_to(book)}: {url}")
    for sheet in book.rglob("*.css"):
        for match in ASSET_IN_CSS.finditer(sheet.read_text(errors="replace")):
            url = match.group(1) or match.group(2)
            if REMOTE.match(url):
                remote.append(f"{sheet.relative_to(book)}: {url}")
    assert not remote, "assets loaded from the network:\n" + "\n".join(remote)


def test_math_uses_the_pinned_local_mathjax(book: Path) -> None:
    page = (book / "book" / "methods.html").read_text()
    assert 'src="../_static/mathjax/tex-mml-chtml.js"' in page
    spec = importlib.util.find_spec("mathjax")
    assert spec is not None and spec.origin is not None
    shipped = Path(spec.origin).parent / "static" / "mathjax" / "es5"
    for part in ("tex-mml-chtml.js", "output/chtml/fonts/woff-v2/MathJax_Main-Regular.woff"):
        assert (book / "_static" / "mathjax" / part).read_bytes() == (shipped / part).read_bytes()


def test_references_cover_the_papers_bibliography(book: Path) -> None:
    bib = (ROOT / "book" / "references.bib").read_text()
    references = (book / "book" / "references.html").read_text()
    for key, surname in PAPER_REFERENCES.items():
        assert re.search(rf"@\w+\{{{key},", bib), f"{key} missing from book/references.bib"
        assert surname in references, f"{key} ({surname}) is never cited in the book"


def test_pages_render_in_chromium(book: Path, tmp_path: Path) -> None:
    if shutil.which("chromium") is None and not Path("/usr/bin/chromium").exists():
        pytest.skip("Chromium is not installed: `apt-get install chromium` enables this test")
    pytest.importorskip("websocket", reason="needs websocket-client (the [dev] extra)")
    result = subprocess.run(
        [sys.executable, str(ROOT / ".ci" / "browser_check.py"), str(book)]
        + ["--screenshots", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert len(list(tmp_path.glob("*.png"))) >= 2


def test_api_reference_documents_the_library(book: Path) -> None:
    """book/api.md is generated from the library's docstrings (autodoc): every name ``sgmcmc``
    exports, and the diagnostics and noise a sampler user needs, have an entry; the update rules
    are typeset and the papers linked."""
    import sgmcmc

    page = (book / "book" / "api.html").read_text()
    names = [f"sgmcmc.{name}" for name in sgmcmc.__all__ if not name.startswith("_")]
    names += [
        "sgmcmc.diagnostics.mess",
        "sgmcmc.diagnostics.univariate_ess",
        "sgmcmc.diagnostics.to_inference_data",
        "sgmcmc.rng.noise.NoiseSource",
    ]
    missing = [name for name in names if f'id="{name}"' not in page]
    assert not missing, f"not documented in book/api.md: {missing}"
    assert page.count('<div class="math notranslate nohighlight"') >= 4, "update rules not typeset"
    for arxiv in ("1806.02855", "1512.07666", "1503.05671", "1602.01407", "1506.04696"):
        assert f"https://arxiv.org/abs/{arxiv}" in page, f"arXiv:{arxiv} not linked"


def test_pasted_tables_are_glued_by_the_notebooks_they_name() -> None:
    """Every ``{glue} key`` + ``:doc:`` of the book's pages names a notebook whose source
    glues ``key`` (``session.glue("key", ...)``, or ``claims``/``provenance`` through
    ``session.claims``/``session.finish``): the build would fail on a missing key, this says
    which one without building."""
    pasted = []
    for page in (ROOT / "book").glob("*.md"):
        text = page.read_text()
        for key, doc in re.findall(r"```\{glue\} (\S+)\n:doc: (\S+)\n", text):
            pasted.append((page.name, key, doc))
    assert pasted, "no pasted tables found"
    implicit = {"claims": "session.claims(", "provenance": "session.finish()"}
    for page, key, doc in pasted:
        source = (ROOT / "notebooks" / Path(doc).name).read_text()
        glues = f'session.glue(\\"{key}\\"' in source or implicit.get(key, "\0") in source
        assert glues, f"{page} pastes {key!r} from {doc}, which never glues it"
