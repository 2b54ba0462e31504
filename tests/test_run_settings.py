"""The settings table says what each row of a chapter trains with (tables.run_settings)."""

from __future__ import annotations

import json

import pytest

from sgmcmc_paper.analysis import tables


@pytest.fixture(autouse=True)
def _empty_store(tmp_path, monkeypatch):
    """No selection file: the rows take the paper's and the samplers' own constants."""
    monkeypatch.setenv("SGMCMC_RESULTS", str(tmp_path / "results"))


def test_released_and_described_rows_state_their_updates():
    settings = tables.run_settings(tables.reproduction_configs("paper", (0, 1)))
    released, described = settings.loc["as released"], settings.loc["as described"]
    assert released.loc["ksgld", "trains as"] == "sgld"  # K-FAC never updated
    assert described.loc["ksgld", "trains as"] == "ksgld"
    assert (released.loc["psgld", "pSGLD average"], described.loc["psgld", "pSGLD average"]) == (
        "released",
        "square",
    )
    assert released.loc["psgld", ["pSGLD α", "pSGLD λ"]].tolist() == [0.96, 1e-10]
    assert described.loc["psgld", ["pSGLD α", "pSGLD λ"]].tolist() == [0.99, 1e-5]
    # the paper's convention injects lr²·√T·P·ξ: lr = 0.02 gives 4e-4, and KSGLD's 1/δ
    # (δ = 1e-3) a thousand times that along directions the Fisher does not see
    noise = settings["noise sd, flat directions"]
    assert noise.loc[("as released", "sgd")] == 0.0
    assert noise.loc[("as released", "sgld")] == pytest.approx(0.02**2)
    assert noise.loc[("as described", "ksgld")] == pytest.approx(0.02**2 / 1e-3)


def test_a_selected_damping_is_the_rows_damping(tmp_path):
    path = tmp_path / "results" / "hparams" / "paper.json"
    path.parent.mkdir(parents=True)
    selected = {"lr": 0.6, "kfac_damping": 1000.0, "kfac_damping_mode": "factored"}
    path.write_text(json.dumps({"profile": "paper", "selected": {"paper/ksgld/full": selected}}))
    configs = tables.reproduction_configs(
        "paper", (0,), methods=["ksgld"], configurations=["as described"]
    )
    row = tables.run_settings(configs).loc[("as described", "ksgld")]
    assert (row["lr"], row["K-FAC δ"]) == (0.6, 1000.0)
    assert row["noise sd, flat directions"] == pytest.approx(0.6**2 / 1000.0)


def test_psgld_noise_along_a_flat_direction_is_the_samplers_own():
    """Along a direction with no gradient, Li et al.'s ``P`` is ``1/λ`` and the released
    recursion's ``m`` settles where the sampler's own update leaves it."""
    import torch

    from sgmcmc.samplers.psgld import ReleasedRecursion

    settings = tables.run_settings(tables.reproduction_configs("paper", (0,)))
    noise = settings["noise sd, flat directions"]
    sgld = noise.loc[("as released", "sgld")]
    assert noise.loc[("as described", "psgld")] == pytest.approx(sgld / 1e-5)  # λ = 1e-5
    m = torch.ones(1, dtype=torch.float64)
    alpha, eps = torch.tensor(0.96, dtype=torch.float64), torch.tensor(1e-10, dtype=torch.float64)
    for _ in range(200):  # a contraction by α/(2m) ≈ 1/2 a step: converged
        m = ReleasedRecursion().update(m, torch.zeros_like(m), alpha, eps)
    assert noise.loc[("as released", "psgld")] == pytest.approx(sgld / m.item(), rel=1e-12)


def test_a_psgld_lambda_of_one_injects_sglds_noise(tmp_path):
    path = tmp_path / "results" / "hparams" / "paper.json"
    path.parent.mkdir(parents=True)
    selected = {"lr": 0.06, "psgld_eps": 1.0, "psgld_alpha": 0.8, "psgld_average": "square"}
    path.write_text(json.dumps({"profile": "paper", "selected": {"paper/psgld/full": selected}}))
    configs = tables.reproduction_configs(
        "paper", (0,), methods=["psgld"], configurations=["as described"]
    )
    row = tables.run_settings(configs).loc[("as described", "psgld")]
    assert (row["pSGLD α"], row["pSGLD λ"]) == (0.8, 1.0)
    assert row["noise sd, flat directions"] == pytest.approx(0.06**2)
