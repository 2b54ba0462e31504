"""Every option a sampler accepts is honoured or refused: for each sampler and each keyword its
constructor takes, a few steps with the option at two values give different chains, or the
value is refused with a ``ValueError`` that names the option and the fix. A new option without
an entry here fails :func:`test_every_accepted_option_has_a_case`."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from _devices import NEEDS_COMPILER
from torch import nn

from sgmcmc import KFAC, KSGLD, PSGLD, SGLD
from sgmcmc.samplers.base import LangevinOptions, LangevinSampler

SAMPLERS: dict[str, type[LangevinSampler]] = {"SGLD": SGLD, "PSGLD": PSGLD, "KSGLD": KSGLD}
STEPS = 3


class _Model(nn.Module):
    """Two layers K-FAC covers and a scale it does not."""

    def __init__(self) -> None:
        super().__init__()
        self.first, self.second = nn.Linear(4, 3), nn.Linear(3, 2)
        self.scale = nn.Parameter(torch.ones(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.second(torch.tanh(self.first(x))) * self.scale


class Fresh:
    """An option value made anew for each chain (a generator, a KFAC of the chain's model)."""

    def __init__(self, make: Callable[[nn.Module], Any]) -> None:
        self.make = make


def _generator(seed: int) -> Fresh:
    return Fresh(lambda _model: torch.Generator().manual_seed(seed))


def _kfac(**options: Any) -> Fresh:
    settings = dict(damping=1.0, factor_every=1, inverse_every=1)
    return Fresh(lambda model: KFAC(model, **{**settings, **options}))


def _chain(sampler: str, **options: Any) -> list[torch.Tensor]:
    """The parameters after ``STEPS`` steps on fixed data from a fixed start."""
    torch.manual_seed(0)
    model = _Model()
    data = torch.Generator().manual_seed(1)
    x = torch.randn(STEPS, 8, 4, generator=data)
    y = torch.randint(0, 2, (STEPS, 8), generator=data)
    kwargs: dict[str, Any] = {"lr": 1e-3, "generator": _generator(2)}
    if sampler == "KSGLD":
        kwargs.update(kfac=_kfac(), num_data=100)
        if options.get("convention") == "paper":
            kwargs["num_data"] = None
    kwargs.update(options)
    kwargs = {k: v.make(model) if isinstance(v, Fresh) else v for k, v in kwargs.items()}
    optimizer = SAMPLERS[sampler](model.parameters(), **kwargs)
    for i in range(STEPS):
        optimizer.zero_grad()
        logits = model(x[i])
        if sampler == "KSGLD":
            optimizer.kfac.observe(logits)
        F.cross_entropy(logits, y[i]).mul(100).backward()
        optimizer.step()
    return [p.detach().clone() for p in model.parameters()]


_COMMON_CHANGES: dict[str, tuple[Any, Any]] = {
    "lr": (1e-3, 2e-3),
    "convention": ("langevin", "paper"),
    "temperature": (1.0, 0.5),
    "weight_decay": (0.0, 1.0),
    "generator": (_generator(2), _generator(3)),
}

#: Options whose two values give different chains.
CHANGES: dict[str, dict[str, Any]] = {
    "SGLD": {**_COMMON_CHANGES, "fused": (False, True)},
    "PSGLD": {
        **_COMMON_CHANGES,
        "precondition": ("both", "noise"),
        "alpha": (0.5, 0.99),
        "eps": (1e-5, 1.0),
        "burn_in": (None, 1),
        "average": ("square", "released"),
        "fused": (False, True),
    },
    "KSGLD": {
        **_COMMON_CHANGES,
        "precondition": ("both", "noise"),
        "kfac": (_kfac(damping=1.0), _kfac(damping=10.0)),
        "num_data": (100, 1000),
    },
}

_CPU_GRAPH = ({"fused": True, "cuda_graph": True}, "cuda_graph=True needs parameters on a CUDA")
_GRAPH_UNFUSED = ({"cuda_graph": True}, r"cuda_graph=True replays the fused update; pass fused")

#: Options whose second value compiles the step (``torch.compile`` needs a C++ compiler).
COMPILED = {"fused"}

#: Options whose value is refused here, with the message's pattern. ``cuda_graph=True`` on a GPU
#: replays the fused chain bit for bit (tests/test_graphed.py): a path, not another chain.
REFUSED: dict[str, dict[str, list[tuple[dict[str, Any], str]]]] = {
    "SGLD": {"cuda_graph": [_CPU_GRAPH, _GRAPH_UNFUSED]},
    "PSGLD": {"cuda_graph": [_CPU_GRAPH, _GRAPH_UNFUSED]},
    "KSGLD": {
        "fused": [({"fused": True}, r"fused=True is not available for KSGLD .*pass fused=False")],
        "cuda_graph": [
            ({"cuda_graph": True}, r"cuda_graph=True is not available for KSGLD .*pass cuda_graph"),
        ],
    },
}

#: Options that are the same step by definition: with ``P = I``, ``P·∇U = ∇U``.
SAME: dict[str, dict[str, tuple[Any, Any]]] = {"SGLD": {"precondition": ("both", "noise")}}

#: Combinations refused whatever the sampler: option values, the message's pattern.
REFUSED_TOGETHER = [
    ({"convention": "paper", "precondition": "both"}, r"precondition must be 'noise'"),
]


def _accepted(sampler: type[LangevinSampler]) -> set[str]:
    names = set(inspect.signature(sampler.__init__).parameters) - {"self", "params", "options"}
    return names | set(LangevinOptions.__annotations__)


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_every_accepted_option_has_a_case(sampler):
    cases = set(CHANGES[sampler]) | set(REFUSED.get(sampler, {})) | set(SAME.get(sampler, {}))
    assert _accepted(SAMPLERS[sampler]) == cases


@pytest.mark.parametrize(
    ("sampler", "option", "values"),
    [
        pytest.param(s, o, v, id=f"{s}-{o}", marks=[NEEDS_COMPILER] if o in COMPILED else [])
        for s, options in CHANGES.items()
        for o, v in options.items()
    ],
)
def test_the_option_changes_the_chain(sampler, option, values):
    first, second = (_chain(sampler, **{option: value}) for value in values)
    assert any(not torch.equal(a, b) for a, b in zip(first, second, strict=True))


@pytest.mark.parametrize(
    ("sampler", "options", "message"),
    [
        pytest.param(s, options, message, id=f"{s}-{o}-{i}")
        for s, refused in REFUSED.items()
        for o, cases in refused.items()
        for i, (options, message) in enumerate(cases)
    ]
    + [
        pytest.param(s, options, message, id=f"{s}-together-{i}")
        for s in SAMPLERS
        for i, (options, message) in enumerate(REFUSED_TOGETHER)
    ]
    + [
        pytest.param(
            "KSGLD", {"convention": "paper", "num_data": 100}, r"num_data=None", id="KSGLD-paper-N"
        )
    ],
)
def test_the_option_is_refused_naming_it_and_the_fix(sampler, options, message):
    with pytest.raises(ValueError, match=message):
        _chain(sampler, **options)


@pytest.mark.parametrize(
    ("sampler", "option", "values"),
    [(s, o, v) for s, same in SAME.items() for o, v in same.items()],
)
def test_the_option_is_the_same_step_by_definition(sampler, option, values):
    first, second = (_chain(sampler, **{option: value}) for value in values)
    assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True))


def test_an_unknown_option_is_a_type_error_naming_the_options():
    with pytest.raises(TypeError, match=r"unexpected keyword argument\(s\) \['tempreature'\]"):
        SGLD([torch.zeros(2)], lr=0.1, tempreature=0.5)


@pytest.mark.parametrize("sampler", SAMPLERS.values(), ids=list(SAMPLERS))
def test_no_sampler_defines_its_own_step(sampler):
    """torch wraps each optimizer class's ``step`` in profiling hooks: unwrapped, it is the
    base's."""
    assert inspect.unwrap(sampler.step).__qualname__ == "LangevinSampler.step"
