"""The shared Langevin step: gradient drift plus preconditioned Gaussian noise.

Two conventions (DESIGN.md, "Library contract"), per parameter group:

``convention="langevin"`` (default): the loss is the potential ``U`` (see
:func:`sgmcmc.potential`) and, with ``ξ ~ N(0, I)``,

- ``precondition="both"`` (default, the paper's eq. 1):
  ``θ ← θ − lr·P·∇U + sqrt(2·lr·T)·P^{1/2}·ξ``
- ``precondition="noise"`` (the paper's eq. 2): ``θ ← θ − lr·∇U + sqrt(2·lr·T)·P^{1/2}·ξ``

``convention="paper"``: the released code's rule, with ``g`` the gradient of the *mean* batch
loss (no prior, no N scaling): ``θ ← θ − (lr/2)·g + lr²·sqrt(T)·P·ξ`` (noise only; its
``P·ξ`` is the code's, not ``P^{1/2}·ξ``).

``T`` is the temperature; ``T = 0`` turns the step into (preconditioned) gradient descent.
``weight_decay=λ`` adds ``λ·θ`` to the gradient inside the step, as in ``torch.optim``: the
gradient of a Gaussian prior ``N(0, I/λ)``, the same as ``potential(..., prior_std=λ^{-1/2})``
but one fused operation instead of an autograd branch per tensor (which costs ~20 kernel
launches a step, a third of a paper-CNN step on a GPU). Use one or the other, not both.
Subclasses define ``P`` through two hooks and never touch the step itself.

Randomness: the noise comes from ``generator`` (a ``torch.Generator`` on the parameters'
device) or, when it is ``None``, from torch's global generator. Each step draws one flat
standard-normal vector per parameter group (per device and dtype), in the order of the
group's parameters that have a gradient, and splits it into views; a large CPU draw is
filled by parallel streams seeded once from the generator (:mod:`sgmcmc.rng.noise`).
``state_dict()`` includes the generator's state (key ``"generator_state"``) and the streams'
(``"noise_streams"``), and ``load_state_dict()`` restores them, so a restored sampler
continues a chain bit-identically; the global generator is the user's to seed and restore,
as with any torch code.

``fused=True`` (SGLD and pSGLD) runs the elementwise part of a step as one compiled function
(:mod:`sgmcmc.samplers.fused`): the same update with other rounding and noise generated in the
kernel by Philox, keyed from the generator (saved as ``"counter_noise"``), in fewer passes over
memory; the first step compiles. It pays on a CPU, where a step is bound by memory traffic; on a GPU
a step of a small model is bound by the host's dispatch, and the compiled function's guards
and wrapper cost more host time than the few foreach operations they replace (measured on an
H200: ``benchmarks/sampler_overhead.py``). ``cuda_graph=True`` (with ``fused=True``, on a GPU)
removes that cost: the compiled update is captured as a CUDA graph and replayed
(:mod:`sgmcmc.samplers.graphed`), the same chain bit for bit.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from sgmcmc.rng.noise import NoiseSource
from sgmcmc.samplers import fused
from sgmcmc.samplers.graphed import GraphedUpdate, check_device
from sgmcmc.transfer import host_tensor

CONVENTIONS = ("langevin", "paper")
PRECONDITIONS = ("both", "noise")
_DEFAULT_PRECONDITION = {"langevin": "both", "paper": "noise"}


class LangevinSampler(torch.optim.Optimizer):
    """Stochastic-gradient Langevin dynamics with a preconditioner ``P`` (identity here).

    Args:
        params: parameters or parameter groups, as for any ``torch.optim.Optimizer``.
        lr: step size (``> 0``); read from ``param_groups`` at every step, so LR schedulers work.
        convention: ``"langevin"`` or ``"paper"`` (module docstring).
        precondition: ``"both"`` or ``"noise"``; ``None`` means ``"both"`` for the langevin
            convention and ``"noise"`` for the paper one (which only has ``"noise"``).
        temperature: ``T ≥ 0`` scaling the noise variance.
        weight_decay: ``λ ≥ 0``, a Gaussian prior's precision added to the gradient as ``λ·θ``.
        generator: ``torch.Generator`` for the noise, on the parameters' device.
        fused: compile the step's elementwise update into one function (module docstring);
            only for subclasses that implement :meth:`_prepare_fused`.
        cuda_graph: with ``fused=True`` and parameters on a CUDA device, replay the compiled
            update as a CUDA graph (:mod:`sgmcmc.samplers.graphed`).
        **extra_defaults: further per-group hyper-parameters of a subclass.

    Subclasses override :meth:`_update_preconditioner` and :meth:`_precondition`; a diagonal
    ``P`` may instead override :meth:`_add_preconditioned_` to fuse its product into the update,
    with what :meth:`_update_preconditioner` computed once for the step's drift and noise.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float,
        *,
        convention: str = "langevin",
        precondition: str | None = None,
        temperature: float = 1.0,
        weight_decay: float = 0.0,
        generator: torch.Generator | None = None,
        fused: bool = False,
        cuda_graph: bool = False,
        **extra_defaults: Any,
    ) -> None:
        self.noise_source = NoiseSource(generator)
        self._graphed: dict[int, GraphedUpdate] = {}  # per group, by id, for cuda_graph=True
        defaults = dict(
            lr=lr,
            convention=convention,
            precondition=precondition,
            temperature=temperature,
            weight_decay=weight_decay,
            fused=fused,
            cuda_graph=cuda_graph,
            **extra_defaults,
        )
        super().__init__(params, defaults)

    #: Whether :meth:`_prepare_fused` is implemented (``fused=True`` is accepted).
    fusable = False

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group (as torch does) and validate its Langevin hyper-parameters."""
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        _validate_group(group)
        if group["fused"] and not self.fusable:
            raise ValueError(f"fused=True is not available for {type(self).__name__}; use False")
        if group["cuda_graph"] and not group["fused"]:
            raise ValueError("cuda_graph=True replays the fused update; pass fused=True as well")
        if group["cuda_graph"]:
            for p in group["params"]:
                check_device(p.device)
        if group["precondition"] is None:
            group["precondition"] = _DEFAULT_PRECONDITION[group["convention"]]

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

    # ----------------------------------------------------------------------------- hooks
    def _update_preconditioner(
        self, group: dict[str, Any], params: list[Tensor], grads: list[Tensor]
    ) -> Any:
        """Update the state ``P`` depends on, from this step's gradients (before the move).

        Returns what this step's products need, computed once per step (for example ``P``'s
        diagonal), which the step passes back to :meth:`_add_preconditioned_`; here ``None``.
        """
        return None

    def _precondition(
        self, group: dict[str, Any], params: list[Tensor], tensors: list[Tensor], power: float
    ) -> list[Tensor]:
        """Return ``P**power`` applied to ``tensors`` (aligned with ``params``).

        ``power`` is 1 (langevin drift, paper noise) or 0.5 (langevin noise). Must not modify
        its inputs; may return them unchanged (here: ``P = I``).
        """
        return tensors

    def _add_preconditioned_(
        self,
        group: dict[str, Any],
        params: list[Tensor],
        tensors: list[Tensor],
        power: float,
        alpha: float,
        prepared: Any,
    ) -> None:
        """``θ ← θ + alpha·P**power·tensors`` in place (here through :meth:`_precondition`);
        ``prepared`` is this step's :meth:`_update_preconditioner` result."""
        torch._foreach_add_(params, self._precondition(group, params, tensors, power), alpha=alpha)

    def _prepare_fused(
        self, group: dict[str, Any], params: list[Tensor]
    ) -> tuple[list[Tensor], str | None, bool] | None:
        """For a fused step: ``(averages, kind, adapt)`` as
        :func:`sgmcmc.samplers.fused.langevin_update` takes them, with the state's step counters
        advanced; ``None`` takes the foreach path
        this step. Subclasses that set :attr:`fusable` implement it."""
        return None

    def _fused_step(
        self,
        group: dict[str, Any],
        params: list[Tensor],
        grads: list[Tensor],
        temperature: float,
        scales: tuple[float, float, float, bool],
    ) -> bool:
        """The step through :mod:`sgmcmc.samplers.fused`; ``False`` when this step cannot be
        fused."""
        prepared = self._prepare_fused(group, params)
        if prepared is None:
            return False
        averages, kind, adapt = prepared
        drift_scale, noise_scale, noise_power, preconditioned_drift = scales
        named = {
            "alpha": group.get("alpha") or 0.0,
            "eps": group.get("eps") or 0.0,
            "drift": drift_scale,
            "noise": noise_scale,
            "weight_decay": group["weight_decay"],
        }
        values = [named[name] for name in fused.SCALARS]
        flags = dict(
            average=kind,
            adapt=adapt,
            drift_preconditioned=preconditioned_drift,
            noise_power=noise_power,
            weight_decay=group["weight_decay"] != 0,
        )
        noisy = temperature > 0.0
        if group.get("cuda_graph"):
            graphed = self._graphed.setdefault(id(group), GraphedUpdate())
            draw = self.noise_source.next_draw() if noisy else None
            graphed(params, grads, averages, draw, values, **flags)
            return True
        device = params[0].device
        seed = self.noise_source.counter_seed(device) if noisy else None
        scalars = host_tensor(values, params[0].dtype, device)
        fused.langevin_update(params, grads, averages, seed, scalars, **flags)
        return True

    @classmethod
    @functools.cache
    def _identity_preconditioner(cls) -> bool:
        """Whether ``P = I``: no hook of this class is overridden (once per class)."""
        hooks = ("_update_preconditioner", "_precondition", "_add_preconditioned_")
        return all(getattr(cls, hook) is getattr(LangevinSampler, hook) for hook in hooks)

    # ------------------------------------------------------------------------------ step
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
            lr = float(group["lr"])
            temperature = float(group["temperature"])
            if group["convention"] == "langevin":
                drift_scale, noise_power = -lr, 0.5
                noise_scale = math.sqrt(2.0 * lr * temperature)
                preconditioned_drift = group["precondition"] == "both"
            else:
                drift_scale, noise_power = -lr / 2.0, 1.0
                noise_scale = lr * lr * math.sqrt(temperature)
                preconditioned_drift = False
            scales = (drift_scale, noise_scale, noise_power, preconditioned_drift)
            if group["fused"] and self._fused_step(group, params, grads, temperature, scales):
                continue
            if group["weight_decay"] != 0 and self._identity_preconditioner():
                # P = I: θ + drift·(g + λθ) = (1 + drift·λ)·θ + drift·g, with no new tensors
                torch._foreach_mul_(params, 1.0 + drift_scale * group["weight_decay"])
            elif group["weight_decay"] != 0:
                grads = torch._foreach_add(grads, params, alpha=group["weight_decay"])
            prepared = self._update_preconditioner(group, params, grads)
            # P depends on the state, not on θ: the drift may move θ before the noise is added.
            if preconditioned_drift:
                self._add_preconditioned_(group, params, grads, 1.0, drift_scale, prepared)
            else:
                torch._foreach_add_(params, grads, alpha=drift_scale)
            if temperature > 0.0:
                noise = self.noise_source.like(params)
                self._add_preconditioned_(group, params, noise, noise_power, noise_scale, prepared)
        return loss

    # ------------------------------------------------------------------------ state dict
    def state_dict(self) -> dict[str, Any]:
        """torch's state dict plus the noise's: ``"generator_state"`` when a generator was
        given, ``"noise_streams"`` once CPU streams are seeded, ``"counter_noise"`` once fused."""
        return {**super().state_dict(), **self.noise_source.state_dict()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load torch's state and restore the noise's (generator and streams) where saved."""
        state_dict = dict(state_dict)
        noise_state = {
            key: state_dict.pop(key) for key in NoiseSource.STATE_KEYS if key in state_dict
        }
        super().load_state_dict(state_dict)
        self.noise_source.load_state_dict(noise_state)
        self._graphed.clear()  # the groups are new dicts, the state new tensors


def _validate_group(group: dict[str, Any]) -> None:
    """Raise ``ValueError`` naming the argument and what is allowed."""
    lr, temperature, weight_decay = group["lr"], group["temperature"], group["weight_decay"]
    if isinstance(lr, bool) or not isinstance(lr, (int, float, Tensor)) or not 0 < lr < math.inf:
        raise ValueError(f"lr must be a finite number > 0, got {lr!r}")
    if (
        isinstance(temperature, bool)
        or not isinstance(temperature, (int, float))
        or not 0 <= temperature < math.inf
    ):
        raise ValueError(f"temperature must be a finite number >= 0, got {temperature!r}")
    if (
        isinstance(weight_decay, bool)
        or not isinstance(weight_decay, (int, float))
        or not 0 <= weight_decay < math.inf
    ):
        raise ValueError(f"weight_decay must be a finite number >= 0, got {weight_decay!r}")
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
