"""The Langevin sampler: one step, two conventions, any preconditioner ``P``.

Per parameter group, with ``ξ ~ N(0, I)`` and temperature ``T``:

``convention="langevin"`` (default): the loss is the potential ``U`` (see
:func:`sgmcmc.potential`) and

- ``precondition="both"`` (default; eq. 1 of Palacci & Hess 2018,
  https://arxiv.org/abs/1806.02855): ``θ ← θ − lr·P·∇U + sqrt(2·lr·T)·P^{1/2}·ξ``
- ``precondition="noise"`` (their eq. 2): ``θ ← θ − lr·∇U + sqrt(2·lr·T)·P^{1/2}·ξ``

``convention="paper"``: the rule of Palacci & Hess's released code, with ``g`` the gradient of
the *mean* batch loss (no prior, no N scaling): ``θ ← θ − (lr/2)·g + lr²·sqrt(T)·P·ξ`` (noise
only; its ``P·ξ`` is the code's, not ``P^{1/2}·ξ``).

``T = 0`` turns the step into (preconditioned) gradient descent. ``weight_decay=λ`` adds ``λ·θ``
to the gradient inside the step, as in ``torch.optim``: the gradient of a Gaussian prior
``N(0, I/λ)``, the same as ``potential(..., prior_std=λ^{-1/2})`` but one fused operation
instead of an autograd branch per tensor (which costs a few kernel launches per tensor on a
GPU). Use one or the other, not both.

A sampler is this class with a :class:`~sgmcmc.samplers.preconditioner.Preconditioner`
(identity for SGLD, an RMS diagonal for pSGLD, K-FAC for KSGLD); it never overrides
:meth:`LangevinSampler.step`, which calls :func:`sgmcmc.samplers.functional.langevin_step`.

Randomness: the noise comes from ``generator`` (a ``torch.Generator`` on the parameters'
device) or, when it is ``None``, from torch's global generator. Each step draws one flat
standard-normal vector per parameter group (per device and dtype), in the order the
preconditioner names (for SGLD and pSGLD: the group's parameters that have a gradient), and
splits it into views; a large CPU draw is filled by parallel streams seeded once from the
generator (:mod:`sgmcmc.rng.noise`). ``state_dict()`` includes the generator's state (key
``"generator_state"``) and the streams' (``"noise_streams"``), and ``load_state_dict()``
restores them, so a restored sampler continues a chain bit-identically; the global generator is
the user's to seed and restore, as with any torch code.

``fused=True`` (SGLD and pSGLD) runs the elementwise part of a step as one compiled function
(:mod:`sgmcmc.samplers.fused`): the same update with other rounding and noise generated in the
kernel by Philox, keyed from the generator (saved as ``"counter_noise"``), in fewer passes over
memory; the first step compiles. It pays on a CPU, where a step is bound by memory traffic; on
a GPU a step of a small model is bound by the host's dispatch, and the compiled function's
guards and wrapper cost more host time than the few foreach operations they replace.
``cuda_graph=True`` (with ``fused=True``, on a GPU) removes that cost: the compiled update is
captured as a CUDA graph and replayed (:mod:`sgmcmc.samplers.graphed`), the same chain bit for
bit.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, TypedDict, Unpack

import torch
from torch import Tensor

from sgmcmc.rng.noise import NoiseSource
from sgmcmc.samplers.functional import langevin_step
from sgmcmc.samplers.graphed import GraphedUpdate, check_device
from sgmcmc.samplers.preconditioner import GroupStep, Identity, Preconditioner, Scales

CONVENTIONS = ("langevin", "paper")
PRECONDITIONS = ("both", "noise")
_DEFAULT_PRECONDITION = {"langevin": "both", "paper": "noise"}


class LangevinOptions(TypedDict, total=False):
    """The keyword options every sampler takes (:class:`LangevinSampler`)."""

    convention: str
    precondition: str | None
    temperature: float
    weight_decay: float
    generator: torch.Generator | None
    fused: bool
    cuda_graph: bool


_OPTION_DEFAULTS = LangevinOptions(
    convention="langevin",
    precondition=None,
    temperature=1.0,
    weight_decay=0.0,
    generator=None,
    fused=False,
    cuda_graph=False,
)


class LangevinSampler(torch.optim.Optimizer):
    """Stochastic-gradient Langevin dynamics with a preconditioner ``P``.

    Args:
        params: parameters or parameter groups, as for any ``torch.optim.Optimizer``; each
            parameter once.
        lr: step size (``> 0``); read from ``param_groups`` at every step, so LR schedulers work.
        preconditioner: ``P`` (:mod:`sgmcmc.samplers.preconditioner`); ``None``: ``P = I``.
        convention: ``"langevin"`` or ``"paper"`` (module docstring).
        precondition: ``"both"`` or ``"noise"``; ``None`` means ``"both"`` for the langevin
            convention and ``"noise"`` for the paper one (which only has ``"noise"``).
        temperature: ``T ≥ 0`` scaling the noise variance.
        weight_decay: ``λ ≥ 0``, a Gaussian prior's precision added to the gradient as ``λ·θ``.
        generator: ``torch.Generator`` for the noise, on the parameters' device.
        fused: compile the step's elementwise update into one function (module docstring);
            only for preconditioners that offer it (SGLD's and pSGLD's).
        cuda_graph: with ``fused=True`` and parameters on a CUDA device, replay the compiled
            update as a CUDA graph (:mod:`sgmcmc.samplers.graphed`).

    Every option is a per-group hyper-parameter, as in ``torch.optim``.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float,
        preconditioner: Preconditioner | None = None,
        **options: Unpack[LangevinOptions],
    ) -> None:
        unknown = sorted(set(options) - set(_OPTION_DEFAULTS))
        if unknown:
            name = type(self).__name__
            raise TypeError(
                f"{name}() got unexpected keyword argument(s) {unknown}; help({name}) lists "
                "its options"
            )
        options = {**_OPTION_DEFAULTS, **options}
        self.preconditioner = Identity() if preconditioner is None else preconditioner
        self.noise_source = NoiseSource(options.pop("generator"))
        self._graphed: dict[int, GraphedUpdate] = {}  # per group, by id, for cuda_graph=True
        defaults = dict(lr=lr, **options, **self.preconditioner.defaults())
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group (as torch does) and validate its hyper-parameters."""
        params = param_group["params"]
        if not isinstance(params, (Tensor, set)):
            param_group["params"] = list(params)
            _check_distinct(param_group["params"])
        super().add_param_group(param_group)
        try:
            self._check_group(self.param_groups[-1])
        except ValueError:
            self.param_groups.pop()  # a refused group is not kept
            raise

    def _check_group(self, group: dict[str, Any]) -> None:
        """Validate a group and fill its defaults; ``ValueError`` names the option and fix."""
        _validate_group(group)
        name = type(self).__name__
        for flag in ("fused", "cuda_graph"):
            if group[flag] and not self.preconditioner.fusable:
                raise ValueError(
                    f"{flag}=True is not available for {name} (its preconditioner has no "
                    f"compiled update); pass {flag}=False"
                )
        if group["cuda_graph"] and not group["fused"]:
            raise ValueError("cuda_graph=True replays the fused update; pass fused=True as well")
        if group["cuda_graph"]:
            for p in group["params"]:
                check_device(p.device)
        if group["precondition"] is None:
            group["precondition"] = _DEFAULT_PRECONDITION[group["convention"]]
        self.preconditioner.check_group(group)

    @property
    def generator(self) -> torch.Generator | None:
        """The noise's generator (``None``: torch's global one)."""
        return self.noise_source.generator

    @property
    def cuda_graph_counts(self) -> dict[str, int]:
        """For ``cuda_graph=True``, over all groups since construction or the last
        :meth:`load_state_dict`: ``"captures"``, the CUDA graphs captured, and
        ``"copied_steps"``, the steps whose gradients had moved and were copied first (a
        training loop whose gradients stay where they are has none;
        :mod:`sgmcmc.samplers.graphed`)."""
        graphs = self._graphed.values()
        return {
            "captures": sum(graph.captures for graph in graphs),
            "copied_steps": sum(graph.copied_steps for graph in graphs),
        }

    @torch.no_grad()
    def step(self, closure=None):
        """One Langevin step for every parameter with a gradient; returns ``closure()``'s loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params]
            if any(g.is_sparse for g in grads):
                raise ValueError("sparse gradients are not supported; use dense parameters")
            graph = None
            if group["cuda_graph"]:
                graph = self._graphed.setdefault(id(group), GraphedUpdate())
            step = GroupStep(group, self.state, params, grads, _scales(group))
            langevin_step(
                step, self.preconditioner, self.noise_source, fused=group["fused"], graph=graph
            )
        return loss

    def state_dict(self) -> dict[str, Any]:
        """torch's state dict plus the noise's (``"generator_state"`` when a generator was
        given, ``"noise_streams"`` once CPU streams are seeded, ``"counter_noise"`` once fused)
        and the preconditioner's (e.g. KSGLD's ``"kfac"``)."""
        return {
            **super().state_dict(),
            **self.noise_source.state_dict(),
            **self.preconditioner.state_dict(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load torch's state and restore the noise's and the preconditioner's where saved."""
        state_dict = dict(state_dict)
        noise_state = _pop(state_dict, NoiseSource.STATE_KEYS)
        preconditioner_state = _pop(state_dict, self.preconditioner.STATE_KEYS)
        super().load_state_dict(state_dict)
        self.noise_source.load_state_dict(noise_state)
        self.preconditioner.load_state_dict(preconditioner_state)
        self._graphed.clear()  # the groups are new dicts, the state new tensors


def _scales(group: dict[str, Any]) -> Scales:
    """The step's coefficients in the group's convention (module docstring)."""
    lr, temperature = float(group["lr"]), float(group["temperature"])
    noisy, weight_decay = temperature > 0.0, group["weight_decay"]
    if group["convention"] == "langevin":
        noise = math.sqrt(2.0 * lr * temperature)
        return Scales(-lr, noise, 0.5, group["precondition"] == "both", weight_decay, noisy)
    return Scales(-lr / 2.0, lr * lr * math.sqrt(temperature), 1.0, False, weight_decay, noisy)


def _pop(state_dict: dict[str, Any], keys: Iterable[str]) -> dict[str, Any]:
    return {key: state_dict.pop(key) for key in keys if key in state_dict}


def _check_distinct(params: list[Any]) -> None:
    """``ValueError`` when a group lists a tensor twice (it would step twice)."""
    seen: dict[int, int] = {}
    for index, p in enumerate(params):
        tensor = p[1] if isinstance(p, tuple) else p  # torch also takes (name, tensor) pairs
        first = seen.setdefault(id(tensor), index)
        if first != index:
            shape = tuple(getattr(tensor, "shape", ()))
            raise ValueError(
                f"a parameter group lists the same tensor twice (positions {first} and {index}, "
                f"shape {shape}), so it would move twice a step; pass each parameter once, "
                "e.g. list(dict.fromkeys(params))"
            )


def _validate_group(group: dict[str, Any]) -> None:
    """Raise ``ValueError`` naming the argument and what is allowed."""
    lr, temperature, weight_decay = group["lr"], group["temperature"], group["weight_decay"]
    if isinstance(lr, bool) or not isinstance(lr, (int, float, Tensor)) or not 0 < lr < math.inf:
        raise ValueError(f"lr must be a finite number > 0, got {lr!r}")
    for name, value in (("temperature", temperature), ("weight_decay", weight_decay)):
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not number or not 0 <= value < math.inf:
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    for flag in ("fused", "cuda_graph"):
        if not isinstance(group[flag], bool):
            raise ValueError(f"{flag} must be True or False, got {group[flag]!r}")
    convention, precondition = group["convention"], group["precondition"]
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
    if precondition is not None and precondition not in PRECONDITIONS:
        raise ValueError(
            f"precondition must be one of {PRECONDITIONS} (or None), got {precondition!r}"
        )
    if convention == "paper" and precondition == "both":
        raise ValueError(
            "precondition must be 'noise' (or None) with convention='paper': "
            "the released code preconditions only the noise"
        )
