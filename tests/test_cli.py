"""The command line's shell: version, help, and one-line errors with exit status 2."""

import subprocess
import sys

from sgmcmc_paper.cli import main


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
