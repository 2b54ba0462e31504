"""Short chains of every sampler and path on a small conv + linear model, from fixed seeds.

``tests/data/reference_chains.npz`` holds their final parameters as computed when the library
was split from the paper's harness; ``tests/test_reference_chains.py`` checks that today's code
computes them bit for bit (on a CPU). Regenerate (only for an intended change of the chains)::

    python tests/_reference_chains.py
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

FIXTURE = Path(__file__).parent / "data" / "reference_chains.npz"
STEPS = 6
NUM_DATA = 1000


class Small(nn.Module):
    """Conv and linear layers (covered by K-FAC) and a free scale vector (not covered)."""

    def __init__(self, hidden: int = 0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3, padding=1)
        width = hidden or 5
        self.fc = nn.Linear(3 * 6 * 6, width)
        self.out = nn.Linear(width, 5) if hidden else None
        self.scale = nn.Parameter(torch.ones(5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc(F.relu(self.conv(x)).flatten(1))
        if self.out is not None:
            h = self.out(F.relu(h))
        return h * self.scale


# name -> (sampler, keyword arguments, KFAC keyword arguments or None, hidden width)
CASES: dict[str, tuple[str, dict[str, Any], dict[str, Any] | None, int]] = {
    "sgld-langevin": ("SGLD", {"lr": 1e-4}, None, 0),
    "sgld-langevin-wd": ("SGLD", {"lr": 1e-4, "weight_decay": 2.0}, None, 0),
    "sgld-langevin-cold": ("SGLD", {"lr": 1e-4, "temperature": 0.01}, None, 0),
    "sgld-langevin-T0": ("SGLD", {"lr": 1e-4, "temperature": 0.0}, None, 0),
    "sgld-paper": ("SGLD", {"lr": 0.02, "convention": "paper"}, None, 0),
    "sgld-langevin-streams": ("SGLD", {"lr": 1e-5}, None, 600),
    "sgld-fused": ("SGLD", {"lr": 1e-4, "fused": True}, None, 0),
    "sgld-fused-paper-wd": (
        "SGLD",
        {"lr": 0.02, "convention": "paper", "weight_decay": 0.5, "fused": True},
        None,
        0,
    ),
    "psgld-langevin": ("PSGLD", {"lr": 1e-4}, None, 0),
    "psgld-langevin-noise": ("PSGLD", {"lr": 1e-4, "precondition": "noise"}, None, 0),
    "psgld-langevin-wd": ("PSGLD", {"lr": 1e-4, "weight_decay": 2.0}, None, 0),
    "psgld-langevin-burn-in": ("PSGLD", {"lr": 1e-4, "burn_in": 3, "alpha": 0.9}, None, 0),
    "psgld-paper": ("PSGLD", {"lr": 0.02, "convention": "paper"}, None, 0),
    "psgld-langevin-streams": ("PSGLD", {"lr": 1e-5}, None, 600),
    "psgld-fused": ("PSGLD", {"lr": 1e-4, "fused": True}, None, 0),
    "psgld-fused-paper": ("PSGLD", {"lr": 0.02, "convention": "paper", "fused": True}, None, 0),
    "psgld-fused-noise-wd-burn-in": (
        "PSGLD",
        {"lr": 1e-4, "precondition": "noise", "weight_decay": 1.0, "burn_in": 3, "fused": True},
        None,
        0,
    ),
    "ksgld-langevin": (
        "KSGLD",
        {"lr": 1e-3},
        {"damping": 1.0, "factor_every": 1, "inverse_every": 2},
        0,
    ),
    "ksgld-langevin-noise-factored": (
        "KSGLD",
        {"lr": 1e-4, "precondition": "noise"},
        {"damping": 1.0, "damping_mode": "factored", "factor_every": 1, "inverse_every": 2},
        0,
    ),
    "ksgld-langevin-empirical-first-batch": (
        "KSGLD",
        {"lr": 1e-3, "temperature": 0.5},
        {
            "damping": 1.0,
            "fisher": "empirical",
            "factor_init": "first_batch",
            "factor_every": 2,
            "inverse_every": 2,
        },
        0,
    ),
    "ksgld-langevin-rtol": (
        "KSGLD",
        {"lr": 1e-3},
        {"damping": 1.0, "eigen_rtol": 0.05, "factor_every": 1, "inverse_every": 2},
        16,
    ),
    "ksgld-paper": (
        "KSGLD",
        {"lr": 0.02, "convention": "paper"},
        {"damping": 1e-3, "factor_every": 1, "inverse_every": 3},
        0,
    ),
    "ksgld-paper-factored": (
        "KSGLD",
        {"lr": 0.02, "convention": "paper"},
        {"damping": 1e-3, "damping_mode": "factored", "factor_every": 1, "inverse_every": 3},
        0,
    ),
    "ksgld-langevin-T0": (
        "KSGLD",
        {"lr": 1e-3, "temperature": 0.0},
        {"damping": 1.0, "factor_every": 1, "inverse_every": 2},
        0,
    ),
}


def run_case(name: str) -> dict[str, np.ndarray]:
    """The case's final parameters (and pSGLD's averages), as float32 arrays by name."""
    import sgmcmc

    sampler_name, options, kfac_options, hidden = CASES[name]
    torch.manual_seed(0)
    model = Small(hidden)
    data = torch.Generator().manual_seed(1)
    x = torch.randn(STEPS, 16, 1, 6, 6, generator=data)
    y = torch.randint(0, 5, (STEPS, 16), generator=data)
    generator = torch.Generator().manual_seed(2)
    paper = options.get("convention") == "paper"
    prior_std = None if paper or "weight_decay" in options else 1.0
    kwargs = dict(options, generator=generator)
    kfac = None
    if kfac_options is not None:
        kfac = sgmcmc.KFAC(model, generator=torch.Generator().manual_seed(3), **kfac_options)
        kwargs.update(kfac=kfac, num_data=None if paper else NUM_DATA)
    sampler = getattr(sgmcmc, sampler_name)(model.parameters(), **kwargs)
    for i in range(STEPS):
        sampler.zero_grad()
        logits = model(x[i])
        if kfac is not None:
            kfac.observe(logits, y[i]) if kfac.fisher == "empirical" else kfac.observe(logits)
        loss = F.cross_entropy(logits, y[i])
        if not paper:
            loss = sgmcmc.potential(loss, NUM_DATA, model.parameters(), prior_std=prior_std)
        loss.backward()
        sampler.step()
    arrays = {f"param.{k}": v.detach().numpy().copy() for k, v in model.named_parameters()}
    for k, p in model.named_parameters():
        for key, value in sampler.state[p].items():
            if isinstance(value, torch.Tensor):
                arrays[f"state.{k}.{key}"] = value.numpy().copy()
    return arrays


def main() -> None:
    flat = {f"{name}/{key}": value for name in CASES for key, value in run_case(name).items()}
    FIXTURE.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(FIXTURE, **flat)
    print(f"wrote {len(flat)} arrays of {len(CASES)} chains to {FIXTURE}")


if __name__ == "__main__":
    main()
