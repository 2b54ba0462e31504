"""The conda environment and the pip project declare the same pinned packages; the GPU
machine's scripts run every CUDA test."""

import re
import shlex
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _pyproject_requirements() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"].values()
    return set(project["dependencies"]).union(*extras)


def _environment_requirements() -> tuple[str, set[str]]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python"))
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    return python, {r for r in pip if not r.startswith("-e")}


def test_environment_yml_pins_what_pyproject_pins():
    python, env = _environment_requirements()
    assert python == "python=3.11"
    assert env == _pyproject_requirements()


def test_every_requirement_is_pinned_exactly():
    unpinned = sorted(r for r in _pyproject_requirements() if "==" not in r)
    assert not unpinned, f"pin these with ==: {unpinned}"


def test_design_pins():
    reqs = _pyproject_requirements()
    for pin in ("torch==2.14.1", "torchvision==0.29.1"):
        assert pin in reqs
    versions = {r.split("==")[0]: r.split("==")[1] for r in reqs}
    assert int(versions["jupyter-book"].split(".")[0]) < 2
    assert int(versions["arviz"].split(".")[0]) < 1
    assert tuple(map(int, versions["matplotlib"].split(".")[:2])) < (3, 11)


def test_the_device_scripts_run_every_module_with_cuda_tests():
    # A module holds CUDA tests when it takes a CUDA mark from _devices.py (or marks one itself).
    names = r"CUDA|CUDA_MARKS|COMPILE_DEVICES|needs_cuda"
    marks = re.compile(rf"from _devices import [^\n]*\b({names})\b|mark\.cuda\b")
    modules = {
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / "tests").glob("test_*.py")
        if path != Path(__file__) and marks.search(path.read_text())
    }
    listing = (ROOT / ".ci/device/cuda_tests.sh").read_text()
    listed = re.search(r'CUDA_TEST_FILES="([^"]*)"', listing).group(1)
    assert set(shlex.split(listed)) == modules
    for script in ("sampler_check.sh", "paper_profile.sh"):
        text = (ROOT / ".ci/device" / script).read_text()
        assert "source .ci/device/cuda_tests.sh" in text
        assert "-m cuda -p no:cacheprovider $CUDA_TEST_FILES" in text
