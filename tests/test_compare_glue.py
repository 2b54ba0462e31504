""".ci/compare_glue.py on tiny synthetic notebooks: identical, differing, missing and volatile
glue outputs, from folders and from a git revision."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SPEC = importlib.util.spec_from_file_location("compare_glue", ROOT / ".ci" / "compare_glue.py")
assert SPEC is not None and SPEC.loader is not None
compare_glue = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(compare_glue)

PREFIX = "application/papermill.record/"


def glue_output(name: str, html: str, prefix: str = PREFIX) -> dict:
    """An output as ``myst_nb.glue(name, HTML(html), display=prefix != "")`` stores it."""
    return {
        "output_type": "display_data",
        "metadata": {"scrapbook": {"name": name, "mime_prefix": prefix}},
        "data": {prefix + "text/html": html, prefix + "text/plain": "<HTML object>"},
    }


def notebook(*outputs: dict) -> dict:
    cell = {"cell_type": "code", "metadata": {}, "source": "", "execution_count": 1}
    plain = {"output_type": "stream", "name": "stdout", "text": "not glued\n"}
    return {"cells": [{**cell, "outputs": [plain, *outputs]}], "metadata": {}, "nbformat": 4}


def write(folder: Path, name: str, nb: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.ipynb").write_text(json.dumps(nb))


TABLE = (
    "<table>\n<tr><td>SGD</td><td>96.07</td></tr>\n<tr><td>SGLD</td><td>97.22</td></tr>\n</table>"
)


@pytest.fixture
def sides(tmp_path: Path) -> tuple[Path, Path]:
    before, after = tmp_path / "before", tmp_path / "after"
    write(
        before,
        "01_same",
        notebook(glue_output("table1", TABLE), glue_output("provenance", "<p>wall 2.5 s</p>")),
    )
    write(after, "01_same", notebook(glue_output("table1", TABLE, prefix="")))
    after_nb = json.loads((after / "01_same.ipynb").read_text())
    after_nb["cells"][0]["outputs"].append(glue_output("provenance", "<p>wall 3.1 s</p>"))
    write(after, "01_same", after_nb)
    write(
        before,
        "02_changed",
        notebook(glue_output("claims", "<p>yes</p>"), glue_output("gone", "<p>1</p>")),
    )
    write(after, "02_changed", notebook(glue_output("claims", "<p>no</p>")))
    write(before, "03_only_before", notebook(glue_output("claims", "<p>x</p>")))
    return before, after


def test_glued_outputs_strip_the_prefix_and_ignore_plain_outputs() -> None:
    nb = notebook(glue_output("a", "<b>1</b>"), glue_output("b", "<b>2</b>", prefix=""))
    nb["cells"][0]["outputs"][1]["data"][PREFIX + "text/html"] = ["<b>", "1</b>"]  # as lines
    assert compare_glue.glued_outputs(nb) == {
        "a": {"text/html": "<b>1</b>", "text/plain": "<HTML object>"},
        "b": {"text/html": "<b>2</b>", "text/plain": "<HTML object>"},
    }


def test_reports_identical_differs_missing_and_volatile(sides: tuple[Path, Path]) -> None:
    before, after = sides
    rows = compare_glue.compare(
        compare_glue.read_folder(before), compare_glue.read_folder(after), compare_glue.VOLATILE
    )
    statuses = {(notebook, name): status for notebook, name, status, _ in rows}
    assert statuses == {
        ("01_same", "table1"): "identical",
        ("01_same", "provenance"): "volatile",
        ("02_changed", "claims"): "differs",
        ("02_changed", "gone"): "missing after",
        ("03_only_before", "claims"): "missing after",
    }
    diff = next(diff for _, name, status, diff in rows if status == "differs")
    assert diff == ["text/html:", "  -yes", "  +no"]


def test_exit_status(
    sides: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before, after = sides
    assert compare_glue.main([str(before), str(after)]) == 1
    out = capsys.readouterr().out
    assert "02_changed  claims" in out and "-yes" in out and "+no" in out
    assert compare_glue.main([str(after), str(before)]) == 1
    assert "missing before" in capsys.readouterr().out
    assert compare_glue.main([str(before), str(before)]) == 0
    assert compare_glue.main([str(before / "nowhere"), str(before)]) == 2
    # a changed provenance line alone is no difference; --volatile adds names
    same = [tmp_path / "same_before", tmp_path / "same_after"]
    for side, folder in zip((before, after), same, strict=True):
        folder.mkdir()
        shutil.copy(side / "01_same.ipynb", folder)
    assert compare_glue.main([str(folder) for folder in same]) == 0
    write(same[0], "02", notebook(glue_output("t", "<p>1</p>")))
    write(same[1], "02", notebook(glue_output("t", "<p>2</p>")))
    assert compare_glue.main([str(folder) for folder in same]) == 1
    assert compare_glue.main([*(str(folder) for folder in same), "--volatile", "t"]) == 0


def test_reads_a_git_revision(sides: tuple[Path, Path], tmp_path: Path) -> None:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    before, after = sides
    repo = tmp_path / "repo"
    shutil.copytree(before, repo / "book" / "notebooks")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(repo)]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "notebooks"], check=True)
    at_head = compare_glue.read_revision("HEAD", repo=repo)
    assert at_head == compare_glue.read_folder(before)
    with pytest.raises(compare_glue.SourceError):
        compare_glue.read_revision("no-such-rev", repo=repo)
