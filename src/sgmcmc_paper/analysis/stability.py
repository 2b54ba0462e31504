"""What a Langevin run's step looks like along the way: the stability of its drift, K-FAC's
spectra and staleness, and how far the weights have wandered against what the noise alone
would carry them (the diagnosis of KSGLD's collapse and divergence).

:class:`StabilityTracker` is called after every ``sampler.step()``; every ``every`` steps it
measures, on the current minibatch,

- ``sharpness``: ``c·λmax(P^a·H)``, the stability number of the drift
  (:func:`sgmcmc.diagnostics.preconditioned_sharpness`; stable below 2). In the langevin
  convention with ``precondition="both"`` (eq. 1) it is ``lr·λmax(P·H_U)``, ``H_U`` the
  Hessian of the potential; in the paper convention the drift is the plain half step, so it
  is ``(lr/2)·λmax(H)`` of the mean loss, and ``sharpness_preconditioned`` adds
  ``(lr/2)·λmax(P·H)`` (what the half step would face were the gradient preconditioned);
- per K-FAC layer, the spectra of its factors as of the last eigendecomposition (``a_min``,
  ``a_max``, ``g_min``, ``g_max``) and of the damped ``s·A⊗G + δI`` whose inverse powers
  precondition (``damped_min``, ``damped_max``: ``P``'s largest eigenvalue is
  ``1/damped_min``), how stale that inverse is (``steps_since_inverse``; ``factor_change``,
  ``‖A⊗G − A₀⊗G₀‖_F / ‖A⊗G‖_F`` with ``A₀``, ``G₀`` the factors it was computed from);
- per layer, the weights' spread ``‖θ_t − θ_0‖`` (``spread``; ``norm`` is ``‖θ_t‖``) against
  ``noise_spread``, the norm a random walk of the injected noise alone would have reached,
  ``sqrt(Σ_t noise²·Σ_i d_{t,i}^{−2b})`` (noise ``noise·P^b·ξ``, ``d`` the damped eigenvalues,
  ``b`` the noise power: 1 in the paper convention, ½ in the langevin one), and, along the
  *unconstrained* coordinates (damped eigenvalue within a factor 2 of the smallest, the floor
  the data leave alone: the damping, plus what is left of the factors' initial identity,
  ``ema_decay^updates``, until it fades), the measured root-mean-square displacement in the
  current eigenbasis
  (``unconstrained_rms``) against the random walk's (``unconstrained_noise_rms``), their share
  of the layer (``unconstrained_fraction``) and the per-step noise standard deviation along the
  least constrained one (``noise_step_max``: ``lr²/δ`` in the paper convention once the
  factors vanish there, ``sqrt(2·lr·T/δ)`` in the langevin one).

:meth:`StabilityTracker.frame` returns the measurements as a tidy ``DataFrame`` (``step``,
``layer``, ``quantity``, ``value``; ``layer`` is ``"model"`` for whole-model quantities).
It is standalone: a training loop calls it; ``benchmarks/ksgld_diagnosis.py`` is one.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd
from torch import Tensor, nn

from sgmcmc.diagnostics import (
    GGNProduct,
    HessianProduct,
    preconditioned_sharpness,
    step_scales,
)
from sgmcmc.kfac import KFAC, Eigenbasis, LayerFactors
from sgmcmc.samplers.base import LangevinSampler

#: A coordinate is unconstrained when its damped eigenvalue is below this many times the
#: smallest one (the floor the data leave alone).
UNCONSTRAINED = 2.0
#: The tidy frame's columns (:meth:`StabilityTracker.frame`).
COLUMNS = ["step", "layer", "quantity", "value"]
#: ``loss(model, x, y)``: the scalar the sampler's gradient is taken of.
Loss = Callable[[nn.Module, Tensor, Tensor], Tensor]


@dataclass
class _Spectrum:
    """What the noise bookkeeping needs from one eigenbasis (computed once per refresh)."""

    damped: Tensor  # s·λ_G λ_Aᵀ + δ (or the factored form), out × in
    total: float  # Σ_i d_i^{−2b}
    unconstrained: Tensor  # bool mask, d < UNCONSTRAINED·min(d)
    unconstrained_mean: float  # mean of d^{−2b} over the unconstrained coordinates (0: none)


class _LayerTrack:
    """One K-FAC layer's refresh bookkeeping and accumulated noise variance."""

    def __init__(self, layer: LayerFactors) -> None:
        self.layer = layer
        self.eigen: Eigenbasis | None = None
        self.refreshed_at = 0
        self.a0 = layer.a.detach().double().clone()
        self.g0 = layer.g.detach().double().clone()
        self.spectrum: _Spectrum | None = None
        self.noise_variance = 0.0
        self.unconstrained_variance = 0.0


class StabilityTracker:
    """Records the stability of a sampler's steps along a run (module docstring).

    Args:
        model: the model being sampled.
        sampler: its :class:`sgmcmc.LangevinSampler` (K-FAC quantities when it is a KSGLD).
        loss: ``loss(model, x, y)``, the scalar the sampler's gradient is taken of (the
            potential ``U`` in the langevin convention, the mean loss in the paper one).
        every: measure every this many steps (bookkeeping is done every step).
        examples: the sharpness is estimated on the first this many examples of the batch
            (``None``: all of them); a mean loss over fewer examples is still an unbiased
            minibatch estimate, at a fraction of the cost.
        max_iterations, rtol: Lanczos steps and tolerance of each sharpness estimate
            (:func:`sgmcmc.diagnostics.preconditioned_sharpness`; each step with ``P`` costs
            two of its products, four K-FAC rotations per layer).
        curvature: ``"hessian"`` or ``"ggn"`` (the Gauss-Newton matrix; the loss must then be
            ``output_loss(model(x), y)`` plus an optional Gaussian prior, given as
            ``output_loss`` and ``prior_precision``).
        also_preconditioned: also measure ``c·λmax(P·H)`` when the drift is not
            preconditioned (paper convention, langevin ``"noise"``): a K-FAC sampler's
            rotations make it the costliest measurement.

    Call :meth:`after_step` after every ``sampler.step()`` with the step's index (from 0) and
    batch. The model's parameters at construction are ``θ_0``.
    """

    def __init__(
        self,
        model: nn.Module,
        sampler: LangevinSampler,
        loss: Loss,
        *,
        every: int = 50,
        examples: int | None = None,
        max_iterations: int = 15,
        rtol: float = 1e-2,
        curvature: str = "hessian",
        output_loss: Callable[[Tensor, Tensor], Tensor] | None = None,
        prior_precision: float = 0.0,
        also_preconditioned: bool = False,
    ) -> None:
        if curvature not in ("hessian", "ggn"):
            raise ValueError(f"curvature must be 'hessian' or 'ggn', got {curvature!r}")
        if curvature == "ggn" and output_loss is None:
            raise ValueError("curvature='ggn' needs output_loss(output, y)")
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be an integer >= 1, got {every!r}")
        self.model, self.sampler, self.loss = model, sampler, loss
        self.every, self.examples = every, examples
        self.max_iterations, self.rtol = max_iterations, rtol
        self.curvature, self.output_loss = curvature, output_loss
        self.prior_precision = prior_precision
        self.also_preconditioned = also_preconditioned
        self.params = [p for group in sampler.param_groups for p in group["params"]]
        self.kfac: KFAC | None = getattr(sampler, "kfac", None)
        self._start = {name: p.detach().clone() for name, p in model.named_parameters()}
        self._start_by_id = {id(p): self._start[name] for name, p in model.named_parameters()}
        self._layers = [_LayerTrack(layer) for layer in self.kfac.layers] if self.kfac else []
        self._rows: list[tuple[int, str, str, float]] = []

    # ------------------------------------------------------------------ every step
    def after_step(self, step: int, x: Tensor, y: Tensor) -> None:
        """Bookkeeping for the step just taken; a measurement every ``every`` steps."""
        self._account(step)
        if step % self.every == 0:
            self.measure(step, x, y)

    def _kfac_scale(self) -> float:
        """``s`` of ``P = (s·F̃ + δI)⁻¹``: ``num_data`` in the langevin convention, 1 in the
        paper's (:class:`sgmcmc.KSGLD`)."""
        group = self.sampler.param_groups[0]
        return float(group["num_data"]) if group["convention"] == "langevin" else 1.0

    def _account(self, step: int) -> None:
        """Notice refreshed eigenbases (snapshot their factors) and add this step's injected
        noise variance."""
        if not self._layers:
            return
        scales = step_scales(self.sampler)[0]
        noise = scales.noise if scales.noisy else 0.0
        for track in self._layers:
            layer = track.layer
            if layer.eigen is not track.eigen:
                track.eigen, track.refreshed_at = layer.eigen, step
                track.a0 = layer.a.detach().double().clone()
                track.g0 = layer.g.detach().double().clone()
                track.spectrum = self._spectrum(layer.eigen, scales.noise_power)
            spectrum = track.spectrum
            track.noise_variance += noise**2 * spectrum.total
            track.unconstrained_variance += noise**2 * spectrum.unconstrained_mean

    def _spectrum(self, eigen: Eigenbasis, noise_power: float) -> _Spectrum:
        kfac = self.kfac
        damped = eigen.eigenvalues(self._kfac_scale(), kfac.damping, kfac.damping_mode).double()
        powered = damped.pow(-2.0 * noise_power)
        unconstrained = damped < UNCONSTRAINED * damped.min()
        count = int(unconstrained.sum())
        mean = float(powered[unconstrained].mean()) if count else 0.0
        return _Spectrum(damped, float(powered.sum()), unconstrained, mean)

    # ---------------------------------------------------------------- measurements
    def measure(self, step: int, x: Tensor, y: Tensor) -> None:
        """Record every quantity at ``step`` on the batch ``(x, y)``."""
        if self.examples is not None:
            x, y = x[: self.examples], y[: self.examples]
        add = self._rows.append
        product = self._product(x, y)
        add((step, "model", "loss", float(product.loss)))
        if math.isfinite(float(product.loss)):
            sharp = preconditioned_sharpness(
                self.sampler, product, max_iterations=self.max_iterations, rtol=self.rtol
            )
            add((step, "model", "sharpness", sharp.value))
            add((step, "model", "sharpness_lowest", sharp.lowest))
            add((step, "model", "lanczos_residual", sharp.residual))
            if self.also_preconditioned and not sharp.preconditioned and self.kfac is not None:
                forced = preconditioned_sharpness(
                    self.sampler,
                    product,
                    precondition=True,
                    max_iterations=self.max_iterations,
                    rtol=self.rtol,
                )
                add((step, "model", "sharpness_preconditioned", forced.value))
        del product
        for track in self._layers:
            self._measure_layer(step, track)
        self._measure_spread(step)

    def _product(self, x: Tensor, y: Tensor):
        if self.curvature == "hessian":
            return HessianProduct(lambda: self.loss(self.model, x, y), self.params)
        return GGNProduct(
            lambda: self.model(x),
            lambda out: self.output_loss(out, y),
            self.params,
            prior_precision=self.prior_precision,
        )

    def _measure_layer(self, step: int, track: _LayerTrack) -> None:
        add, layer, name = self._rows.append, track.layer, track.layer.name
        eigen = layer.eigen
        for quantity, values in (("a", eigen.lambda_a), ("g", eigen.lambda_g)):
            add((step, name, f"{quantity}_min", float(values.min())))
            add((step, name, f"{quantity}_max", float(values.max())))
        spectrum = track.spectrum
        if spectrum is None:
            return
        add((step, name, "damped_min", float(spectrum.damped.min())))
        add((step, name, "damped_max", float(spectrum.damped.max())))
        add((step, name, "steps_since_inverse", float(step - track.refreshed_at)))
        add((step, name, "factor_change", _kronecker_change(layer, track.a0, track.g0)))
        scales = step_scales(self.sampler)[0]
        noise_step = scales.noise * float(spectrum.damped.min()) ** -scales.noise_power
        add((step, name, "noise_step_max", noise_step if scales.noisy else 0.0))
        add((step, name, "noise_spread", math.sqrt(track.noise_variance)))
        add((step, name, "unconstrained_fraction", float(spectrum.unconstrained.double().mean())))
        add((step, name, "unconstrained_noise_rms", math.sqrt(track.unconstrained_variance)))
        if bool(spectrum.unconstrained.any()):
            moved = layer.to_matrix(*(p.detach() - self._start_by_id[id(p)] for p in layer.params))
            coordinates = _rotate(eigen, moved).double()
            rms = coordinates[spectrum.unconstrained].pow(2).mean().sqrt()
            add((step, name, "unconstrained_rms", float(rms)))

    def _measure_spread(self, step: int) -> None:
        """``‖θ_t − θ_0‖`` (``spread``) and ``‖θ_t‖`` (``norm``) per module that owns
        parameters (weight and bias together)."""
        sums: dict[tuple[str, str], float] = {}
        for name, p in self.model.named_parameters():
            owner = name.rpartition(".")[0] or name
            value = p.detach().double()
            for quantity, tensor in (("spread", value - self._start[name]), ("norm", value)):
                key = (owner, quantity)
                sums[key] = sums.get(key, 0.0) + float(tensor.pow(2).sum())
        for (owner, quantity), squared in sums.items():
            self._rows.append((step, owner, quantity, math.sqrt(squared)))

    # ---------------------------------------------------------------------- output
    def frame(self) -> pd.DataFrame:
        """The measurements, one row per (step, layer, quantity)."""
        return pd.DataFrame(self._rows, columns=COLUMNS)

    def records(self) -> dict[str, list]:
        """The measurements as JSON-ready columns (:data:`COLUMNS`; a non-finite value is
        ``None``): what a run stores as ``metrics["stability"]`` (:func:`stability_frame`)."""
        columns: dict[str, list] = {name: [] for name in COLUMNS}
        for row in self._rows:
            for name, value in zip(COLUMNS, row, strict=True):
                finite = not isinstance(value, float) or math.isfinite(value)
                columns[name].append(value if finite else None)
        return columns

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """``θ_0``, the measurements and each layer's bookkeeping (a resumed run continues
        the same record)."""
        return {
            "start": dict(self._start),
            "rows": [list(row) for row in self._rows],
            "layers": [
                {
                    "refreshed_at": track.refreshed_at,
                    "a0": track.a0,
                    "g0": track.g0,
                    "noise_variance": track.noise_variance,
                    "unconstrained_variance": track.unconstrained_variance,
                }
                for track in self._layers
            ],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (the sampler's K-FAC restored first: the current
        eigenbases are taken as the ones the saved bookkeeping refers to)."""
        if len(state["layers"]) != len(self._layers):
            raise ValueError(
                f"state tracks {len(state['layers'])} K-FAC layers, this sampler has "
                f"{len(self._layers)}"
            )
        for name, value in state["start"].items():
            self._start[name].copy_(value)
        self._rows = [tuple(row) for row in state["rows"]]
        noise_power = step_scales(self.sampler)[0].noise_power
        for track, saved in zip(self._layers, state["layers"], strict=True):
            track.refreshed_at = int(saved["refreshed_at"])
            track.a0, track.g0 = saved["a0"].to(track.a0), saved["g0"].to(track.g0)
            track.noise_variance = float(saved["noise_variance"])
            track.unconstrained_variance = float(saved["unconstrained_variance"])
            track.eigen = track.layer.eigen
            track.spectrum = self._spectrum(track.eigen, noise_power)


def stability_frame(records: dict[str, list]) -> pd.DataFrame:
    """A stored ``metrics["stability"]`` (:meth:`StabilityTracker.records`) as the tidy
    frame :meth:`StabilityTracker.frame` gives (``None`` back to NaN)."""
    frame = pd.DataFrame({name: records[name] for name in COLUMNS})
    frame["value"] = pd.to_numeric(frame["value"], errors="coerce").astype(float)
    return frame


def _rotate(eigen: Eigenbasis, matrix: Tensor) -> Tensor:
    """``Q_Gᵀ·X·Q_A`` (identity eigenvectors stand for themselves), in ``X``'s dtype."""
    if eigen.q_g is not None:
        matrix = eigen.q_g.T @ matrix
    if eigen.q_a is not None:
        matrix = matrix @ eigen.q_a
    return matrix


def _kronecker_change(layer: LayerFactors, a0: Tensor, g0: Tensor) -> float:
    """``‖A⊗G − A₀⊗G₀‖_F / ‖A⊗G‖_F`` from inner products of the factors (no Kronecker
    product formed): ``‖X⊗Y‖_F = ‖X‖_F‖Y‖_F`` and ``⟨A⊗G, A₀⊗G₀⟩ = ⟨A, A₀⟩⟨G, G₀⟩``."""
    a, g = layer.a.detach().double(), layer.g.detach().double()
    now = float(a.pow(2).sum() * g.pow(2).sum())
    then = float(a0.pow(2).sum() * g0.pow(2).sum())
    cross = float((a * a0).sum() * (g * g0).sum())
    if now <= 0:
        return math.nan
    return math.sqrt(max(now + then - 2.0 * cross, 0.0) / now)
