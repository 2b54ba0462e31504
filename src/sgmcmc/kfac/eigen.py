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

**Merged tails** (:meth:`Eigenbasis.truncated`). A wide layer's factor has many small
eigenvalues the damping swamps, and its full rotations cost ``O(out·in·(out + in))`` per
product, more than the layer's forward and backward passes on a batch smaller than
``out + in``. A factor's smallest eigenvalues are
replaced by their mean ``t`` when that moves no eigenvalue of the damped matrix by more than
the fraction ``rtol``; the kept ``k`` eigenvectors ``Q_k`` and the projector ``I − Q_k Q_kᵀ``
onto the merged tail then carry the whole action, at ``O(out·in·k)`` per product instead of
``O(out·in·(out + in))``. The result is the exact damped power of the factors
``A' = Q_k Λ_k Q_kᵀ + t·(I − Q_k Q_kᵀ)`` (and ``G'``), a symmetric positive-definite matrix
within ``rtol`` of the original eigenvalue by eigenvalue, so a chain preconditioned with it
samples the same posterior (``precondition="both"``). Coordinates then come in four blocks
(:class:`Blocks`): kept × kept, kept ``G`` × ``A``'s tail, ``G``'s tail × kept ``A``, tail ×
tail; the last three are absent for a factor with no merged tail, and with none at all the
blocks are the plain eigen-coordinates.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import Tensor

DAMPING_MODES = ("exact", "factored")


@dataclass
class Blocks:
    """Coordinates of an ``out × in`` matrix in a (tail-merged) eigenbasis.

    ``kk``: ``Q_Gᵀ X Q_A`` (``k_G × k_A``); ``kt``: ``Q_Gᵀ X (I − Q_A Q_Aᵀ)`` (``k_G × in``);
    ``tk``: ``(I − Q_G Q_Gᵀ) X Q_A`` (``out × k_A``); ``tt``: ``(I − Q_G Q_Gᵀ) X (I − Q_A Q_Aᵀ)``
    (``out × in``). A block is ``None`` where a factor has no merged tail.
    """

    kk: Tensor
    kt: Tensor | None = None
    tk: Tensor | None = None
    tt: Tensor | None = None

    def parts(self) -> Iterator[Tensor | None]:
        yield from (self.kk, self.kt, self.tk, self.tt)

    def mul_(self, factors: Blocks, alpha: float = 1.0) -> Blocks:
        """``self ← alpha · self ⊙ factors`` block by block (``factors`` broadcast)."""
        for part, factor in zip(self.parts(), factors.parts(), strict=True):
            if part is not None:
                part.mul_(factor).mul_(alpha)
        return self

    def addcmul_(self, other: Blocks, factors: Blocks, value: float = 1.0) -> Blocks:
        """``self ← self + value · other ⊙ factors`` block by block."""
        for part, extra, factor in zip(self.parts(), other.parts(), factors.parts(), strict=True):
            if part is not None:
                part.addcmul_(extra, factor, value=value)
        return self


@dataclass
class Eigenbasis:
    """Eigendecompositions of one layer's factors ``A`` and ``G`` (eigenvalues clamped at 0).

    ``q_a`` / ``q_g`` of ``None`` stand for identity eigenvectors (factors not estimated yet).
    ``tail_a`` / ``tail_g``: the merged-tail eigenvalue, with ``q_a`` / ``q_g`` then holding
    only the kept eigenvectors (``None``: no tail, all eigenvectors kept).
    An eigenbasis is never modified, so it caches its damped powers and truncations.
    """

    q_a: Tensor | None
    lambda_a: Tensor
    q_g: Tensor | None
    lambda_g: Tensor
    pi: float = 1.0
    tail_a: float | None = None
    tail_g: float | None = None
    _cache: dict[tuple, object] = field(default_factory=dict, init=False, repr=False)

    FIELDS = ("q_a", "lambda_a", "q_g", "lambda_g", "pi", "tail_a", "tail_g")

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

    # ----------------------------------------------------------------- eigenvalues
    def _damped(self, lambda_g: Tensor, lambda_a: Tensor, scale: float, damping: float, mode: str):
        if mode == "exact":
            return torch.outer(lambda_g, lambda_a).mul_(scale).add_(damping)
        gamma = math.sqrt(damping / scale)
        return torch.outer(lambda_g + gamma / self.pi, lambda_a + gamma * self.pi).mul_(scale)

    def eigenvalues(self, scale: float, damping: float, damping_mode: str = "exact") -> Tensor:
        """The ``k_G × k_A`` eigenvalues of the damped ``s·A⊗G + δI`` on the kept eigenvectors
        (all of them, ``out × in``, without merged tails; module docstring)."""
        return self._damped(self.lambda_g, self.lambda_a, scale, damping, damping_mode)

    def damped_power(
        self, power: float, scale: float, damping: float, damping_mode: str = "exact"
    ) -> Blocks:
        """The damped matrix's eigenvalues to the ``power``, as :class:`Blocks` shaped to
        broadcast against coordinates (cached: a sampler asks for the same ones every step)."""
        key = ("power", power, scale, damping, damping_mode)
        if key not in self._cache:
            if len(self._cache) >= 16:  # a changing scale or damping: keep the cache small
                self._cache.clear()
            lam_g, lam_a = self.lambda_g, self.lambda_a
            tail_g = None if self.tail_g is None else lam_g.new_tensor([self.tail_g])
            tail_a = None if self.tail_a is None else lam_a.new_tensor([self.tail_a])

            def value(g, a):
                if g is None or a is None:
                    return None
                return self._damped(g, a, scale, damping, damping_mode).pow_(power)

            self._cache[key] = Blocks(
                value(lam_g, lam_a), value(lam_g, tail_a), value(tail_g, lam_a),
                value(tail_g, tail_a),
            )  # fmt: skip
        return self._cache[key]

    # ------------------------------------------------------------------ truncation
    def truncated(
        self, rtol: float, scale: float, damping: float, damping_mode: str = "exact"
    ) -> Eigenbasis:
        """This eigenbasis with each factor's smallest eigenvalues merged into their mean where
        that moves no damped eigenvalue by more than ``rtol`` (relative), and only where it
        keeps fewer than half the factor's eigenvectors (otherwise the full rotation is as
        cheap). ``rtol = 0`` or identity factors: ``self``. Cached."""
        if rtol <= 0 or self.q_a is None or self.q_g is None:
            return self
        key = ("truncated", rtol, scale, damping, damping_mode)
        if key not in self._cache:
            gamma = math.sqrt(damping / scale)
            if damping_mode == "exact":  # the other factor's top eigenvalue sets the scale
                top_g, top_a = self.lambda_g.max().item(), self.lambda_a.max().item()
                offset_a = damping / (scale * top_g) if top_g > 0 else math.inf
                offset_g = damping / (scale * top_a) if top_a > 0 else math.inf
            else:
                offset_a, offset_g = gamma * self.pi, gamma / self.pi
            q_a, lambda_a, tail_a = _merge_tail(self.q_a, self.lambda_a, offset_a, rtol)
            q_g, lambda_g, tail_g = _merge_tail(self.q_g, self.lambda_g, offset_g, rtol)
            self._cache[key] = Eigenbasis(
                q_a, lambda_a, q_g, lambda_g, self.pi, tail_a=tail_a, tail_g=tail_g
            )
        return self._cache[key]  # type: ignore[return-value]

    @property
    def kept(self) -> tuple[int, int]:
        """How many eigenvectors of ``A`` and ``G`` are kept (their dimensions without tails)."""
        return self.lambda_a.numel(), self.lambda_g.numel()

    # ----------------------------------------------------------------- coordinates
    def coordinates(self, x: Tensor) -> Blocks:
        """``X``'s coordinates in the eigenbasis (``Q_Gᵀ X Q_A`` without merged tails)."""
        gx = x if self.q_g is None else self.q_g.T @ x
        kk = gx if self.q_a is None else gx @ self.q_a
        kt = tk = tt = None
        if self.tail_a is not None:
            kt = gx - kk @ self.q_a.T
        if self.tail_g is not None:
            tk = x @ self.q_a - self.q_g @ kk
            if self.tail_a is not None:
                tt = x - self.q_g @ gx - tk @ self.q_a.T
        return Blocks(kk, kt, tk, tt)

    def matrix(self, blocks: Blocks) -> Tensor:
        """The ``out × in`` matrix with these coordinates (``Q_G Y Q_Aᵀ`` without tails)."""
        if blocks.kt is None:
            y = blocks.kk if self.q_g is None else self.q_g @ blocks.kk
            if blocks.tk is not None:
                y = y + blocks.tk
            if self.q_a is not None:
                y = y @ self.q_a.T
        else:
            y = self.q_g @ (blocks.kk @ self.q_a.T + blocks.kt)
            if blocks.tk is not None:
                y = y + blocks.tk @ self.q_a.T
        if blocks.tt is not None:
            y = y + blocks.tt
        return y

    def noise_shapes(self) -> list[tuple[int, ...]]:
        """Shapes of the standard normal draws :meth:`noise_coordinates` turns into the
        coordinates of ``N(0, I)``: the ``kk`` block, then one draw per tail block."""
        k_a, k_g = self.kept
        out, inp = self._dims()
        shapes = [(k_g, k_a)]
        if self.tail_a is not None:
            shapes.append((k_g, inp))
        if self.tail_g is not None:
            shapes.append((out, k_a))
            if self.tail_a is not None:
                shapes.append((out, inp))
        return shapes

    def noise_coordinates(self, draws: list[Tensor]) -> Blocks:
        """Coordinates of a standard normal ``out × in`` matrix from independent standard
        normal ``draws`` shaped as :meth:`noise_shapes` (a rotation of ``N(0, I)`` is
        ``N(0, I)``; each tail block is the projection of its own draw, so the four blocks
        are independent as the coordinates of one draw are)."""
        draws = list(draws)
        blocks = Blocks(draws.pop(0))
        if self.tail_a is not None:
            w = draws.pop(0)
            blocks.kt = w - (w @ self.q_a) @ self.q_a.T
        if self.tail_g is not None:
            v = draws.pop(0)
            blocks.tk = v - self.q_g @ (self.q_g.T @ v)
            if self.tail_a is not None:
                blocks.tt = self.coordinates(draws.pop(0)).tt
        return blocks

    def _dims(self) -> tuple[int, int]:
        out = self.lambda_g.numel() if self.q_g is None else self.q_g.shape[0]
        inp = self.lambda_a.numel() if self.q_a is None else self.q_a.shape[0]
        return out, inp

    def power(
        self, x: Tensor, power: float, scale: float, damping: float, damping_mode: str = "exact"
    ) -> Tensor:
        """``(s·A⊗G + δI)^power`` applied to ``X`` (``out × in``)."""
        factors = self.damped_power(power, scale, damping, damping_mode)
        return self.matrix(self.coordinates(x).mul_(factors))


def _merge_tail(
    q: Tensor, values: Tensor, offset: float, rtol: float
) -> tuple[Tensor, Tensor, float | None]:
    """Kept eigenvectors and eigenvalues, and the merged tail's value (``None``: none merged).

    ``values`` ascend (as ``eigh`` returns them). Merging the ``m`` smallest into their mean
    ``t`` moves a damped eigenvalue ``c·(λ + offset)`` by the relative amount
    ``|λ − t| / (λ + offset)``, largest at the tail's two ends; the longest tail within
    ``rtol`` is merged if it leaves fewer than half the eigenvectors.
    """
    n = values.numel()
    if not math.isfinite(offset):
        return q, values, None
    v = values.double()
    counts = torch.arange(1, n + 1, dtype=v.dtype, device=v.device)
    means = v.cumsum(0) / counts  # the mean of the m smallest, m = 1..n
    below = (means - v[0]) / (v[0] + offset)
    above = (v - means) / (v + offset)
    within = torch.nonzero(torch.maximum(below, above) <= rtol)
    merged = int(within.max().item()) + 1 if within.numel() else 0
    if merged <= n // 2 or merged < 2:
        return q, values, None
    tail = float(means[merged - 1].item())
    return q[:, merged:].contiguous(), values[merged:].clone(), tail


def _eigh(matrix: Tensor) -> tuple[Tensor, Tensor]:
    """``torch.linalg.eigh``, retried in float64 when the float32 solver does not converge."""
    try:
        return torch.linalg.eigh(matrix)
    except torch.linalg.LinAlgError:
        values, vectors = torch.linalg.eigh(matrix.double())
        return values.to(matrix.dtype), vectors.to(matrix.dtype)
