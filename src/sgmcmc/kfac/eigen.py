"""Damped inverse powers of a Kronecker-factored matrix, applied in its eigenbasis.

A layer's Fisher block is approximated by ``F̃ = A ⊗ G`` (``A``: input factor, ``in × in``;
``G``: output-gradient factor, ``out × out``). Acting on a matrix ``X`` shaped like the layer's
weight (``out × in``, bias as the last input column), with ``A = Q_A Λ_A Q_Aᵀ`` and
``G = Q_G Λ_G Q_Gᵀ``,

    ``(s·A⊗G + δI)^p X = Q_G [(Q_Gᵀ X Q_A) ⊙ (s·λ_G λ_Aᵀ + δ)^p] Q_Aᵀ``

exactly (``vec`` stacks columns, so ``(A⊗G) vec X = vec(G X A)``); no Kronecker product is
formed. ``s`` is a scale (``N``, the number of data, in the langevin convention) and ``δ`` the
damping. ``damping_mode="factored"`` damps the factors instead (Martens & Grosse 2015, §6.3, as
tf.contrib.kfac did): ``s·(A + π·γI) ⊗ (G + γ/π·I)`` with ``γ = sqrt(δ/s)`` and
``π = sqrt((tr A / dim A) / (tr G / dim G))``, i.e. eigenvalues ``s·(λ_G + γ/π)(λ_A + π·γ)ᵀ``:
the same ``s·A⊗G + δI`` up to cross terms ``s·γ·(π·I⊗G + A⊗I/π)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

DAMPING_MODES = ("exact", "factored")


@dataclass
class Eigenbasis:
    """Eigendecompositions of one layer's factors ``A`` and ``G`` (eigenvalues clamped at 0).

    ``q_a`` / ``q_g`` of ``None`` stand for identity eigenvectors (factors not estimated yet).
    An eigenbasis is never modified, so :meth:`damped_power` caches its results.
    """

    q_a: Tensor | None
    lambda_a: Tensor
    q_g: Tensor | None
    lambda_g: Tensor
    pi: float = 1.0
    _powers: dict[tuple, Tensor] = field(default_factory=dict, init=False, repr=False)

    FIELDS = ("q_a", "lambda_a", "q_g", "lambda_g", "pi")

    @classmethod
    def identity(cls, a: Tensor, g: Tensor) -> Eigenbasis:
        """The eigenbasis of ``A = I``, ``G = I`` (shapes, device and dtype of ``a``, ``g``)."""
        return cls(None, a.new_ones(a.shape[0]), None, g.new_ones(g.shape[0]))

    @classmethod
    def of(cls, a: Tensor, g: Tensor) -> Eigenbasis:
        """Eigendecompose symmetric ``A`` and ``G``; ``π`` is the trace-norm ratio of §6.3."""
        lambda_a, q_a = _eigh(a)
        lambda_g, q_g = _eigh(g)
        trace_a = a.diagonal().mean().clamp_min(0.0).item()
        trace_g = g.diagonal().mean().clamp_min(0.0).item()
        pi = math.sqrt(trace_a / trace_g) if trace_a > 0 and trace_g > 0 else 1.0
        return cls(q_a, lambda_a.clamp_min(0.0), q_g, lambda_g.clamp_min(0.0), pi)

    def rotate_in(self, x: Tensor) -> Tensor:
        """Coordinates of ``X`` in the eigenbasis: ``Q_Gᵀ X Q_A``."""
        if self.q_g is not None:
            x = self.q_g.T @ x
        return x if self.q_a is None else x @ self.q_a

    def rotate_out(self, y: Tensor) -> Tensor:
        """Back from eigenbasis coordinates: ``Q_G Y Q_Aᵀ``."""
        if self.q_g is not None:
            y = self.q_g @ y
        return y if self.q_a is None else y @ self.q_a.T

    def eigenvalues(self, scale: float, damping: float, damping_mode: str = "exact") -> Tensor:
        """The ``out × in`` eigenvalues of the damped ``s·A⊗G + δI`` (module docstring)."""
        if damping_mode == "exact":
            return torch.outer(self.lambda_g, self.lambda_a).mul_(scale).add_(damping)
        gamma = math.sqrt(damping / scale)
        return torch.outer(self.lambda_g + gamma / self.pi, self.lambda_a + gamma * self.pi).mul_(
            scale
        )

    def damped_power(
        self, power: float, scale: float, damping: float, damping_mode: str = "exact"
    ) -> Tensor:
        """``eigenvalues(...)^power``, cached (a sampler asks for the same ones every step)."""
        key = (power, scale, damping, damping_mode)
        if key not in self._powers:
            if len(self._powers) >= 8:  # a changing scale or damping: keep the cache small
                self._powers.clear()
            self._powers[key] = self.eigenvalues(scale, damping, damping_mode).pow_(power)
        return self._powers[key]

    def power(
        self, x: Tensor, power: float, scale: float, damping: float, damping_mode: str = "exact"
    ) -> Tensor:
        """``(s·A⊗G + δI)^power`` applied to ``X`` (``out × in``)."""
        return self.rotate_out(
            self.rotate_in(x) * self.damped_power(power, scale, damping, damping_mode)
        )


def _eigh(matrix: Tensor) -> tuple[Tensor, Tensor]:
    """``torch.linalg.eigh``, retried in float64 when the float32 solver does not converge."""
    try:
        return torch.linalg.eigh(matrix)
    except torch.linalg.LinAlgError:
        values, vectors = torch.linalg.eigh(matrix.double())
        return values.to(matrix.dtype), vectors.to(matrix.dtype)
