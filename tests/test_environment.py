"""Packaging: the library depends on torch and numpy alone; constraints.txt pins every package
pyproject.toml names, at a version its range allows; environment.yml and the Makefile install
from those pins. And the GPU machine's scripts run every CUDA test."""

import re
import shlex
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
EXTRAS = {"paper", "sweep", "book", "dev"}


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _declared() -> dict[str, Requirement]:
    """Every requirement of pyproject.toml, the core's and each extra's, by package name."""
    project = _project()
    reqs = [*project["dependencies"], *sum(project["optional-dependencies"].values(), [])]
    out: dict[str, Requirement] = {}
    for text in reqs:
        req = Requirement(text)
        name = canonicalize_name(req.name)
        assert name not in out, f"{req.name} is declared twice in pyproject.toml"
        out[name] = req
    return out


def _pins(lines) -> dict[str, str]:
    """``name==version`` lines (comments and blank lines skipped) as {name: version}."""
    pins: dict[str, str] = {}
    for line in lines:
        line = line.split("#")[0].strip()
        if not line or line.startswith("-"):
            continue
        req = Requirement(line)
        (spec,) = req.specifier
        assert spec.operator == "==", f"pin {line!r} exactly, with =="
        name = canonicalize_name(req.name)
        assert name not in pins, f"{req.name} is pinned twice"
        pins[name] = spec.version
    return pins


def _lock() -> dict[str, str]:
    return _pins((ROOT / "constraints.txt").read_text().splitlines())


def _environment() -> tuple[str, list[str]]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python"))
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    return python, pip


def test_the_library_depends_on_torch_and_numpy_as_ranges():
    reqs = [Requirement(r) for r in _project()["dependencies"]]
    assert {canonicalize_name(r.name) for r in reqs} == {"torch", "numpy"}
    for req in reqs:
        assert req.specifier and all(s.operator in (">=", "<", "!=") for s in req.specifier), req
    assert "2.4" in next(r for r in reqs if r.name == "torch").specifier
    assert set(_project()["optional-dependencies"]) == EXTRAS


def test_the_lock_pins_exactly_what_pyproject_names_within_its_ranges():
    declared, lock = _declared(), _lock()
    assert set(lock) == set(declared), (
        f"pinned but not declared: {sorted(set(lock) - set(declared))}; "
        f"declared but not pinned: {sorted(set(declared) - set(lock))}"
    )
    outside = {n: v for n, v in lock.items() if v not in declared[n].specifier}
    assert not outside, f"pins outside pyproject.toml's ranges: {outside}"


def test_environment_yml_follows_the_lock():
    python, pip = _environment()
    assert python == "python=3.11"
    assert _pins(pip) == _lock()
    assert pip[-1] == "-e .[paper,sweep,book,dev]"


def test_make_installs_from_the_lock():
    makefile = (ROOT / "Makefile").read_text()
    stamp = re.search(r"^\$\(BIN\)/\.installed: (.*)$", makefile, re.M).group(1).split()
    assert stamp == ["pyproject.toml", "constraints.txt"]
    extras = re.search(r"^EXTRAS\s*:= (\S+)$", makefile, re.M).group(1)
    assert set(extras.split(",")) == EXTRAS
    assert "pip install --quiet -c constraints.txt -e '.[$(EXTRAS)]'" in makefile
    assert (ROOT / ".ci/run").read_text().strip().endswith("make test")


def test_design_pins():
    lock, declared = _lock(), _declared()
    assert lock["torch"] == "2.14.1"
    assert "torchvision" not in lock  # nothing imports it
    for name, first_excluded in (("jupyter-book", "2"), ("arviz", "1"), ("matplotlib", "3.11")):
        assert first_excluded not in declared[name].specifier, name
    assert int(lock["jupyter-book"].split(".")[0]) < 2
    assert int(lock["arviz"].split(".")[0]) < 1
    assert tuple(map(int, lock["matplotlib"].split(".")[:2])) < (3, 11)


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
