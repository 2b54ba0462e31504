"""K-FAC: running Kronecker factors of a model's Fisher and their damped inverse powers."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sgmcmc.kfac.eigen import DAMPING_MODES, Blocks, Eigenbasis
from sgmcmc.kfac.factors import LayerFactors, layer_factors
from sgmcmc.rng.noise import check_generator

FISHERS = ("sampled", "empirical")
FACTOR_INITS = ("first_batch", "identity")
Likelihood = Callable[[Tensor], torch.distributions.Distribution]


@dataclass
class _Recorded:
    input: Tensor
    output: Tensor
    versions: tuple[int, int]


class KFAC:
    """Kronecker-factored approximate Fisher (Martens & Grosse 2015; KFC for convolutions,
    Grosse & Martens 2016) of every ``nn.Linear`` and ``nn.Conv2d`` (``groups=1``) in ``model``.

    Per layer, ``F̃ = A ⊗ G`` approximates the **per-example** Fisher block (the Fisher of the
    whole data set is ``N·F̃``); factor definitions and the convolution scaling (the number of
    spatial positions ``T`` goes into ``G``) are in :mod:`sgmcmc.kfac.factors`. The bias is an
    extra, constant-1 input column of ``A``. Inverse powers are exact for the damped matrix
    ``(s·A⊗G + δI)^p``, applied in the eigenbasis of the factors (:mod:`sgmcmc.kfac.eigen`),
    with ``δ = damping`` and a scale ``s`` chosen by the caller: :class:`sgmcmc.KSGLD` uses
    ``s = N`` in the langevin convention, so ``P = (N·F̃ + αI)⁻¹`` is exactly the inverse
    posterior Hessian wherever the Fisher is Kronecker-factored when ``damping = α``, the
    precision of the Gaussian prior (``1/prior_std²``); and ``s = 1`` in the paper convention,
    ``P = (F̃ + δI)⁻¹`` with ``δ = 1e-3`` as in the released code.
    ``damping_mode="factored"`` damps the two factors instead, as tf.contrib.kfac (and so the
    paper's code) did, with Martens & Grosse's π-adjusted split.

    **The training step needs one extra line**, ``kfac.observe(output)``, after the forward pass
    and before ``loss.backward()``::

        kfac = KFAC(model, damping=1 / prior_std**2)
        optimizer = KSGLD(model.parameters(), lr=..., kfac=kfac, num_data=N)
        for x, y in loader:
            logits = model(x)
            kfac.observe(logits)  # the one line (fisher="empirical": kfac.observe(logits, y))
            loss = potential(F.cross_entropy(logits, y), N, model.parameters(), prior_std)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

    Every ``factor_every``-th call, forward hooks have recorded each layer's input and output,
    and ``observe`` backpropagates ``−Σ_batch log p(y|x)`` to the layer outputs only (no
    parameter gradient is touched), with ``y`` drawn from the model's predictive distribution
    (``fisher="sampled"``: the true Fisher, as the paper's code) or the data's labels
    (``"empirical"``). The statistics are per-example log-likelihood gradients whatever loss the
    user backpropagates (a prior term never enters). Call it once per forward pass; the batch
    size is ``output.shape[0]``. Every ``inverse_every``-th call (the first one included) the
    factors are eigendecomposed.

    Cost per layer with ``in`` inputs (bias included) and ``out`` outputs: a factor update is
    one extra backward pass to the layer outputs (every ``factor_every`` steps) and
    ``O(R·in² + n·T·out²)`` for ``R`` input rows; an eigendecomposition (every
    ``inverse_every`` steps) ``O(in³ + out³)``; each preconditioned step ``O(out·in·(out + in))``
    (``O(out·in·k)`` with ``eigen_rtol > 0``, ``k`` kept eigenvectors). Less frequent inverses
    slow the natural-gradient drift early on and leave noise-only steps alone.

    Args:
        model: the module whose supported layers are registered (hooks stay until :meth:`remove`).
        damping: ``δ > 0`` (module docstring of :mod:`sgmcmc.kfac.eigen`).
        ema_decay: the factors move by ``1 − ema_decay`` per update.
        factor_init: ``"identity"``: every update, the first included, moves the factors
            from their initial ``I`` (tf.contrib.kfac's behaviour, so the paper's code's): a
            shrinkage towards ``I`` that fades as ``ema_decay^updates``, and keeps the first
            steps stable, since one batch leaves most directions of a wide layer's ``A``
            unseen (eigenvalue 0: the preconditioner is ``1/δ`` there). ``"first_batch"``: the
            first update replaces them (an unbiased estimate from the start).
        factor_every: update the factors every this many ``observe`` calls.
        inverse_every: eigendecompose every this many ``observe`` calls.
        fisher: ``"sampled"`` or ``"empirical"``.
        likelihood: ``"categorical"`` (``output`` are logits, classes on dimension 1), or a
            callable mapping ``output`` to a ``torch.distributions.Distribution`` over one
            batch (sampled from torch's global generator).
        damping_mode: ``"exact"`` (``s·A⊗G + δI``) or ``"factored"``.
        max_rows: at most this many (example, position) rows per layer and update enter ``A``,
            drawn uniformly (an unbiased estimate; a convolution's full ``A`` costs
            ``n·T·in²``: 6e10 multiply-adds for the paper CNN's second layer at batch 512);
            ``None`` uses all.
        eigen_rtol: merge each factor's smallest eigenvalues into their mean wherever that
            moves no eigenvalue of the damped matrix by more than this fraction
            (:meth:`Eigenbasis.truncated`); ``0`` is exact K-FAC. Preconditioning a wide
            layer then costs ``O(out·in·k)`` for ``k`` kept eigenvectors instead of
            ``O(out·in·(out + in))``, and with ``precondition="both"`` the chain still
            targets the posterior (any fixed positive-definite ``P`` does).
        generator: ``torch.Generator`` on the model's device for sampled labels and rows.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        damping: float = 1e-3,
        ema_decay: float = 0.95,
        factor_init: str = "identity",
        factor_every: int = 10,
        inverse_every: int = 100,
        fisher: str = "sampled",
        likelihood: str | Likelihood = "categorical",
        damping_mode: str = "exact",
        max_rows: int | None = 4096,
        eigen_rtol: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> None:
        _validate(damping, ema_decay, factor_every, inverse_every, fisher, likelihood)
        if factor_init not in FACTOR_INITS:
            raise ValueError(f"factor_init must be one of {FACTOR_INITS}, got {factor_init!r}")
        if damping_mode not in DAMPING_MODES:
            raise ValueError(f"damping_mode must be one of {DAMPING_MODES}, got {damping_mode!r}")
        if max_rows is not None and (not isinstance(max_rows, int) or max_rows < 1):
            raise ValueError(f"max_rows must be None or an integer >= 1, got {max_rows!r}")
        if isinstance(eigen_rtol, bool) or not isinstance(eigen_rtol, (int, float)):
            raise ValueError(f"eigen_rtol must be a number in [0, 1), got {eigen_rtol!r}")
        if not 0.0 <= eigen_rtol < 1.0:
            raise ValueError(f"eigen_rtol must be in [0, 1) (0: exact), got {eigen_rtol!r}")
        check_generator(generator)
        if not isinstance(model, nn.Module):
            raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.damping = float(damping)
        self.ema_decay = float(ema_decay)
        self.factor_init = factor_init
        self.factor_every = factor_every
        self.inverse_every = inverse_every
        self.fisher = fisher
        self.likelihood = likelihood
        self.damping_mode = damping_mode
        self.max_rows = max_rows
        self.eigen_rtol = float(eigen_rtol)
        self.generator = generator
        self.layers: list[LayerFactors] = []
        for name, module in model.named_modules():
            layer = layer_factors(name, module)
            if layer is not None:
                self.layers.append(layer)
        if not self.layers:
            raise ValueError(
                "KFAC found no supported layer in the model: it needs at least one nn.Linear or "
                "nn.Conv2d (groups=1) with a trainable weight"
            )
        self._by_module = {layer.module: layer for layer in self.layers}
        self._handles = [layer.module.register_forward_hook(self._record) for layer in self.layers]
        self._recorded: dict[LayerFactors, _Recorded] = {}
        self.steps = 0

    # ------------------------------------------------------------------- recording
    def _record(self, module: nn.Module, args: tuple[Any, ...], output: Tensor) -> None:
        if self.steps % self.factor_every != 0 or not torch.is_grad_enabled():
            return
        x = args[0]
        self._recorded[self._by_module[module]] = _Recorded(
            x, output, (x._version, output._version)
        )

    def observe(self, output: Tensor, target: Tensor | None = None) -> None:
        """Update the factors (and eigenbases) on schedule from this batch's model output.

        Call after the forward pass that produced ``output`` and before ``loss.backward()``.
        ``target`` (the data's labels) is needed with ``fisher="empirical"`` and ignored with
        ``"sampled"``.
        """
        step, recorded, self._recorded = self.steps, self._recorded, {}
        self.steps += 1
        if step % self.factor_every == 0:
            self._update_factors(output, target, recorded)
        if step % self.inverse_every == 0:
            self.refresh_eigenbasis()

    def _update_factors(
        self, output: Tensor, target: Tensor | None, recorded: dict[LayerFactors, _Recorded]
    ) -> None:
        if self.fisher == "empirical" and target is None:
            raise ValueError("fisher='empirical' needs the labels: call kfac.observe(output, y)")
        if not recorded or not output.requires_grad:
            raise RuntimeError(
                "KFAC.observe found no recorded layer: call it on the output of the model's "
                "forward pass, with gradients enabled, before loss.backward()"
            )
        for layer, record in recorded.items():
            if (record.input._version, record.output._version) != record.versions:
                raise RuntimeError(
                    f"the input or output of layer {layer.name!r} was modified in place after "
                    "the forward pass; K-FAC needs them intact (use e.g. nn.ReLU(inplace=False))"
                )
        if self.fisher == "sampled":
            with torch.no_grad():
                target = self._sample(output.detach())
        records = list(recorded.items())
        try:
            grads = torch.autograd.grad(
                self._negative_log_likelihood(output, target),
                [record.output for _, record in records],
                retain_graph=True,
                allow_unused=True,
            )
        except RuntimeError as error:
            if "second time" not in str(error):
                raise
            raise RuntimeError(
                "KFAC.observe must run before loss.backward() (the graph is freed by backward)"
            ) from error
        num_examples = output.shape[0] if output.dim() > 0 else 1
        for (layer, record), grad in zip(records, grads, strict=True):
            if grad is not None:  # layers off the path to ``output`` are left alone
                layer.update(
                    record.input,
                    grad,
                    num_examples,
                    self.ema_decay,
                    self.max_rows,
                    self.generator,
                    replace_first=self.factor_init == "first_batch",
                )

    def _sample(self, output: Tensor) -> Tensor:
        if callable(self.likelihood):
            return self.likelihood(output).sample()
        probabilities = torch.softmax(output.float().movedim(1, -1), dim=-1)
        flat = probabilities.reshape(-1, probabilities.shape[-1])
        # A diverged model's non-finite rows would trip multinomial's device-side assert on a
        # GPU, which ends the process; they draw uniformly instead, and the caller's
        # finiteness check reports the divergence.
        flat = torch.where(flat.isfinite().all(-1, keepdim=True), flat, torch.ones_like(flat))
        labels = torch.multinomial(flat, 1, generator=self.generator)
        return labels.reshape(probabilities.shape[:-1])

    def _negative_log_likelihood(self, output: Tensor, target: Tensor) -> Tensor:
        if callable(self.likelihood):
            return -self.likelihood(output).log_prob(target).sum()
        return F.cross_entropy(output, target, reduction="sum")

    # ------------------------------------------------------------- inverse powers
    @torch.no_grad()
    def refresh_eigenbasis(self) -> None:
        """Eigendecompose every estimated layer's current factors (done on schedule)."""
        for layer in self.layers:
            if layer.updates > 0:
                self._refresh(layer)

    def _refresh(self, layer: LayerFactors) -> None:
        if not (torch.isfinite(layer.a).all() and torch.isfinite(layer.g).all()):
            raise RuntimeError(
                f"the K-FAC factors of layer {layer.name!r} are not finite: the model diverged "
                "(lower the learning rate)"
            )
        layer.eigen = Eigenbasis.of(layer.a, layer.g)

    def layer(self, module: nn.Module) -> LayerFactors:
        """The factors of a registered layer."""
        if module not in self._by_module:
            raise ValueError(f"{type(module).__name__} is not a layer registered with this KFAC")
        return self._by_module[module]

    def set_factors(self, module: nn.Module, a: Tensor, g: Tensor) -> None:
        """Set a layer's factors (e.g. to exact values, for tests) and eigendecompose them.

        They count as one update; they stay fixed as long as :meth:`observe` is not called.
        """
        layer = self.layer(module)
        if a.shape != layer.a.shape or g.shape != layer.g.shape:
            raise ValueError(
                f"factors of layer {layer.name!r} must have shapes {tuple(layer.a.shape)} and "
                f"{tuple(layer.g.shape)}, got {tuple(a.shape)} and {tuple(g.shape)}"
            )
        layer.a.copy_(a)
        layer.g.copy_(g)
        layer.updates += 1
        self._refresh(layer)

    def eigenbasis(self, layer: LayerFactors, scale: float = 1.0) -> Eigenbasis:
        """The layer's eigenbasis as preconditioning uses it: with merged tails when
        ``eigen_rtol > 0`` (:meth:`Eigenbasis.truncated`; cached until the next refresh)."""
        return layer.eigen.truncated(self.eigen_rtol, scale, self.damping, self.damping_mode)

    def damped_power(self, layer: LayerFactors, power: float, scale: float) -> Blocks:
        """The eigenvalues of the damped ``s·A⊗G + δI`` in :meth:`eigenbasis`, to the
        ``power``, as :class:`Blocks` (cached until the next eigendecomposition; do not modify)."""
        return self.eigenbasis(layer, scale).damped_power(
            power, scale, self.damping, self.damping_mode
        )

    def power(self, module: nn.Module, matrix: Tensor, power: float, scale: float = 1.0) -> Tensor:
        """``(s·A⊗G + δI)^power`` applied to a weight-shaped ``out × in`` matrix (bias last).

        ``power=-1`` preconditions; ``power=-0.5`` on a standard normal matrix gives
        matrix-normal noise with covariance ``(s·A⊗G + δI)⁻¹``.
        """
        eigen = self.eigenbasis(self.layer(module), scale)
        return eigen.power(matrix, power, scale, self.damping, self.damping_mode)

    # ----------------------------------------------------------------- bookkeeping
    @property
    def updated(self) -> bool:
        """Whether any layer's factors have been estimated (or set) at least once."""
        return any(layer.updates > 0 for layer in self.layers)

    def remove(self) -> None:
        """Remove the forward hooks from the model."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._recorded.clear()

    def state_dict(self) -> dict[str, Any]:
        """Factors, eigenbases, counters and (when given) the generator's state."""
        state: dict[str, Any] = {
            "steps": self.steps,
            "layers": {
                layer.name: {
                    "a": layer.a.clone(),
                    "g": layer.g.clone(),
                    "updates": layer.updates,
                    "eigen": {name: getattr(layer.eigen, name) for name in Eigenbasis.FIELDS},
                }
                for layer in self.layers
            },
        }
        if self.generator is not None:
            state["generator_state"] = self.generator.get_state()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved, for the same model architecture."""
        saved, names = state["layers"], [layer.name for layer in self.layers]
        if sorted(saved) != sorted(names):
            raise ValueError(f"state has K-FAC layers {sorted(saved)}, this model {sorted(names)}")
        for layer in self.layers:
            entry = saved[layer.name]
            layer.a.copy_(entry["a"])
            layer.g.copy_(entry["g"])
            layer.updates = int(entry["updates"])
            layer.eigen = Eigenbasis(
                **{
                    name: value.to(layer.a.device) if isinstance(value, Tensor) else value
                    for name, value in entry["eigen"].items()
                }
            )
        self.steps = int(state["steps"])
        self._recorded.clear()
        if "generator_state" in state and self.generator is not None:
            self.generator.set_state(state["generator_state"])


def _validate(damping, ema_decay, factor_every, inverse_every, fisher, likelihood) -> None:
    """Raise ``ValueError`` naming the argument and what is allowed."""
    if isinstance(damping, bool) or not isinstance(damping, (int, float)):
        raise ValueError(f"damping must be a finite number > 0, got {damping!r}")
    if not 0 < damping < math.inf:
        raise ValueError(
            f"damping must be a finite number > 0 (the prior precision in the langevin "
            f"convention, e.g. 1e-3 in the paper's), got {damping!r}"
        )
    if not isinstance(ema_decay, (int, float)) or not 0 <= ema_decay < 1:
        raise ValueError(f"ema_decay must be a number in [0, 1), got {ema_decay!r}")
    for name, value in (("factor_every", factor_every), ("inverse_every", inverse_every)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    if fisher not in FISHERS:
        raise ValueError(f"fisher must be one of {FISHERS}, got {fisher!r}")
    if likelihood != "categorical" and not callable(likelihood):
        raise ValueError(
            "likelihood must be 'categorical' or a callable returning a "
            f"torch.distributions.Distribution, got {likelihood!r}"
        )
