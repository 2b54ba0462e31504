"""The command line's shell: version, help, one-line errors with exit status 2, and the line
that names the extra to install when a command's packages are not installed."""

import re
import subprocess
import sys
import tomllib

import pytest
from _isolation import EXTRA_MODULES, ROOT, run_without

from sgmcmc_paper.cli import COMMANDS, EXTRAS, main


def test_version(capsys):
    try:
        main(["--version"])
    except SystemExit as exc:
        assert exc.code == 0
    assert capsys.readouterr().out.startswith("sgmcmc ")


def test_python_dash_m_runs_the_cli():
    out = subprocess.run(
        [sys.executable, "-m", "sgmcmc", "--help"], capture_output=True, text=True, check=True
    )
    assert "usage: sgmcmc" in out.stdout


def test_unknown_command_is_one_line_and_exit_2():
    out = subprocess.run(
        [sys.executable, "-m", "sgmcmc", "no-such-command"], capture_output=True, text=True
    )
    assert out.returncode == 2
    assert len(out.stderr.strip().splitlines()) == 1
    assert "Traceback" not in out.stderr


CLI = "from sgmcmc_paper.cli import main\nraise SystemExit(main(sys.argv[1:]))"


NOT_INSTALLED = {
    "no extra": [m for extra in ("paper", "sweep", "book") for m in EXTRA_MODULES[extra]],
    "paper only": [*EXTRA_MODULES["sweep"], *EXTRA_MODULES["book"]],
}


@pytest.mark.parametrize(
    ("installed", "argv"),
    [
        ("no extra", ["data"]),
        ("no extra", ["data", "--help"]),
        ("no extra", ["run", "--method", "sgd", "--profile", "ci", "--out", "{tmp}/run"]),
        ("no extra", ["sweep", "--method", "sgd", "--profile", "ci"]),
        ("no extra", ["notebooks", "--profile", "ci", "--only", "01", "--out", "{tmp}/nb"]),
        ("paper only", ["sweep", "--method", "sgd", "--profile", "ci", "--engine", "ray"]),
        ("paper only", ["notebooks", "--profile", "ci", "--only", "01", "--out", "{tmp}/nb"]),
    ],
)
def test_a_missing_extra_is_one_line_naming_it(tmp_path, installed, argv):
    """Installed without the extras a command needs, it says which to install (exit 2) and
    writes no file."""
    argv = [a.format(tmp=tmp_path) for a in argv]
    env = {"SGMCMC_RESULTS": str(tmp_path / "results"), "SGMCMC_DATA": str(tmp_path / "data")}
    out = run_without(NOT_INSTALLED[installed], CLI, *argv, env=env)
    extras = EXTRAS[argv[0]]
    needs = " and ".join(f"'{e}'" for e in extras) + (" extras" if len(extras) > 1 else " extra")
    assert out.returncode == 2, out.stderr
    (line,) = out.stderr.splitlines()
    module = re.fullmatch(
        rf"error: `sgmcmc {argv[0]}` needs the {needs} \(module '(\w+)' is not installed\): "
        rf"pip install 'sgmcmc\[{','.join(extras)}\]'",
        line,
    )
    assert module and module.group(1) in NOT_INSTALLED[installed], line
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_help_lists_every_command_without_the_extras():
    out = run_without(NOT_INSTALLED["no extra"], CLI, "--help")
    assert out.returncode == 0, out.stderr
    for name in COMMANDS:
        assert name in out.stdout


def test_every_command_names_extras_that_exist():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    modules = {p.stem for p in (ROOT / "src/sgmcmc_paper/commands").glob("[!_]*.py")}
    assert set(COMMANDS) == set(EXTRAS) == modules
    for extras in EXTRAS.values():
        assert extras[0] == "paper" and set(extras) <= set(project["optional-dependencies"])
