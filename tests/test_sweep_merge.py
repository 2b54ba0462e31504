"""Merging another store's selection file (``sgmcmc sweep --merge``): a sweep written later
wins, one written earlier is left out, and the rest of this store's file is untouched."""

from __future__ import annotations

import json

import pytest

from sgmcmc_paper.cli import main
from sgmcmc_paper.errors import UserError
from sgmcmc_paper.protocol.hparams import hparams_path, tuned_overrides
from sgmcmc_paper.sweep.record import merge_file


def _file(path, sweeps: dict[str, tuple[str, float | None]], profile: str = "paper") -> None:
    """A selection file whose sweep ``key`` was written at ``when`` and selected ``lr``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    content = {
        "profile": profile,
        "selected": {k: {"lr": lr} for k, (_, lr) in sweeps.items() if lr is not None},
        "sweeps": {k: {"written_utc": when, "trials": []} for k, (when, _) in sweeps.items()},
    }
    path.write_text(json.dumps(content))


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("SGMCMC_RESULTS", str(tmp_path / "results"))
    return tmp_path


def test_the_later_sweep_wins_and_the_rest_is_kept(store):
    _file(
        hparams_path("paper"),
        {
            "paper/sgd/3000": ("2026-12-05T05:00:00Z", 0.3),  # made here after the GPU's
            "paper/sgld/3000": ("2026-11-26T13:00:00Z", 0.06),  # older than the GPU's
            "paper/psgld/5000": ("2026-11-26T13:00:00Z", 0.06),  # the GPU did not run it
        },
    )
    gpu = store / "gpu" / "paper.json"
    _file(
        gpu,
        {
            "paper/sgd/3000": ("2026-12-05T04:00:00Z", 0.1),
            "paper/sgld/3000": ("2026-12-05T04:00:00Z", 0.2),
            "paper/sgd/full": ("2026-12-05T04:00:00Z", 0.3),
            "paper/ksgld/full": ("2026-12-05T04:00:00Z", None),  # a search that selected nothing
        },
    )
    taken = merge_file(gpu, "paper")
    assert sorted(taken) == ["paper/ksgld/full", "paper/sgd/full", "paper/sgld/3000"]
    assert tuned_overrides("paper", "sgd", "paper", 3000) == {"lr": 0.3}
    assert tuned_overrides("paper", "sgld", "paper", 3000) == {"lr": 0.2}
    assert tuned_overrides("paper", "sgd", "paper", None) == {"lr": 0.3}
    assert tuned_overrides("paper", "ksgld", "paper", None) is None
    assert tuned_overrides("paper", "psgld", "paper", 5000) == {"lr": 0.06}
    assert merge_file(gpu, "paper") == []  # merging twice changes nothing


def test_a_file_of_another_profile_is_refused(store):
    other = store / "ci.json"
    _file(other, {"ci/sgd/full": ("2026-12-05T04:00:00Z", 0.1)}, profile="ci")
    with pytest.raises(UserError, match="--profile ci"):
        merge_file(other, "paper")
    assert not hparams_path("paper").exists()


def test_the_command_merges_and_needs_a_method_otherwise(store, capsys):
    gpu = store / "gpu.json"
    _file(gpu, {"paper/sgd/full": ("2026-12-05T04:00:00Z", 0.3)})
    assert main(["sweep", "--profile", "paper", "--merge", str(gpu)]) == 0
    assert "1 sweep(s)" in capsys.readouterr().out
    assert tuned_overrides("paper", "sgd", "paper", None) == {"lr": 0.3}
    assert main(["sweep", "--profile", "paper"]) == 2
    assert "--method" in capsys.readouterr().err
