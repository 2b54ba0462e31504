"""Per-layer Kronecker factors: which rows enter ``A`` and ``G`` for each supported layer type.

For a layer with output ``s = W a`` at every *position* (one for a ``Linear`` on ``(n, in)``
inputs; every leading index beyond the batch for ``(n, …, in)`` inputs; every output location for
a ``Conv2d``, whose ``a`` is the input patch there), with ``g = ∂(−log p(y|x))/∂s`` the
per-example log-likelihood gradient at that position and ``T`` positions per example:

    ``A = mean over (example, position) of ã ãᵀ``,   ``ã = [a; 1]`` when the bias is sampled,
    ``G = (1/n) Σ_examples Σ_positions g gᵀ``  (= ``T`` × the mean over positions).

So ``A ⊗ G`` approximates the per-example Fisher ``E[vec(∇_W) vec(∇_W)ᵀ]`` of the whole layer:
for convolutions this is KFC (Grosse & Martens 2016) under spatial homogeneity and uncorrelated
derivatives, ``F ≈ T·E[aaᵀ] ⊗ E[ggᵀ]``, with the factor ``T`` in ``G``. (Libraries differ on
where ``T`` goes; only the product matters, and the ``"factored"`` damping is invariant to it.)
Weight matrices are seen as ``out × in`` (a convolution's ``in`` is ``channels·kh·kw``, in
``weight.view(out, -1)`` order) with the bias as the last column.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sgmcmc.kfac.eigen import Eigenbasis


class LayerFactors:
    """The running factors of one ``nn.Linear`` or ``nn.Conv2d`` (``groups=1``) layer.

    ``A`` and ``G`` start at the identity (so ``F̃ = I`` until the first update). Each update
    moves them by ``(1 − ema_decay)`` towards the batch's statistics, except that with
    ``replace_first`` the first update replaces them. ``eigen`` is the eigenbasis the inverse
    powers use, as of the last refresh.
    """

    def __init__(self, name: str, module: nn.Linear | nn.Conv2d) -> None:
        self.name = name
        self.module = module
        self.weight: Tensor = module.weight
        # a frozen bias is a constant, not a coordinate of the block: no homogeneous column
        bias = module.bias
        self.bias: Tensor | None = bias if bias is not None and bias.requires_grad else None
        out_features = self.weight.shape[0]
        in_features = self.weight[0].numel() + (self.bias is not None)
        factory = {"device": self.weight.device, "dtype": self.weight.dtype}
        self.a = torch.eye(in_features, **factory)
        self.g = torch.eye(out_features, **factory)
        self.updates = 0
        self.eigen = Eigenbasis.identity(self.a, self.g)  # refreshed by KFAC on its schedule

    @property
    def params(self) -> list[Tensor]:
        """The layer's parameters covered by this block: weight, then bias if any."""
        return [self.weight] if self.bias is None else [self.weight, self.bias]

    # ------------------------------------------------------------------ statistics
    def input_rows(self, x: Tensor, max_rows: int | None, generator: torch.Generator | None):
        """``ã`` rows ``(R, in)``: all of them, or ``max_rows`` drawn uniformly."""
        raise NotImplementedError

    def output_rows(self, grad_output: Tensor) -> Tensor:
        """``g`` rows ``(n·T, out)`` from the gradient with respect to the layer's output."""
        raise NotImplementedError

    @torch.no_grad()
    def update(
        self,
        x: Tensor,
        grad_output: Tensor,
        num_examples: int,
        ema_decay: float,
        max_rows: int | None,
        generator: torch.Generator | None,
        replace_first: bool = True,
    ) -> None:
        """Fold one batch's ``A`` and ``G`` into the running factors."""
        rows_a = self.input_rows(x.detach(), max_rows, generator).to(self.a.dtype)
        rows_g = self.output_rows(grad_output).to(self.g.dtype)
        new_a = rows_a.T @ rows_a / rows_a.shape[0]
        new_g = rows_g.T @ rows_g / num_examples
        if self.updates == 0 and replace_first:
            self.a.copy_(new_a)
            self.g.copy_(new_g)
        else:
            self.a.lerp_(new_a, 1.0 - ema_decay)
            self.g.lerp_(new_g, 1.0 - ema_decay)
        self.updates += 1

    def _homogeneous(self, rows: Tensor) -> Tensor:
        if self.bias is None:
            return rows
        return torch.cat([rows, rows.new_ones(rows.shape[0], 1)], dim=1)

    # ------------------------------------------------- weight-shaped matrices
    def to_matrix(self, weight_like: Tensor, bias_like: Tensor | None) -> Tensor:
        """``out × in`` matrix from tensors shaped like the weight and bias."""
        matrix = weight_like.reshape(weight_like.shape[0], -1)
        if self.bias is None:
            return matrix
        if bias_like is None:
            bias_like = matrix.new_zeros(matrix.shape[0])
        return torch.cat([matrix, bias_like.reshape(-1, 1)], dim=1)

    def from_matrix(self, matrix: Tensor) -> list[Tensor]:
        """Inverse of :meth:`to_matrix`: ``[weight_like]`` or ``[weight_like, bias_like]``."""
        columns = self.weight[0].numel()
        weight_like = matrix[:, :columns].reshape(self.weight.shape)
        if self.bias is None:
            return [weight_like]
        return [weight_like, matrix[:, columns]]


def _subsample(total: int, max_rows: int | None, generator, device) -> Tensor | None:
    """Indices of ``max_rows`` rows drawn uniformly, with replacement, out of ``total``
    (``None``: keep all). With replacement: one cheap kernel; for ``max_rows ≪ total`` the
    variance is that of sampling without."""
    if max_rows is None or total <= max_rows:
        return None
    return torch.randint(total, (max_rows,), generator=generator, device=device)


class LinearFactors(LayerFactors):
    """``nn.Linear``: positions are the leading dimensions beyond the batch, if any."""

    def input_rows(self, x, max_rows, generator):
        rows = x.reshape(-1, x.shape[-1])
        index = _subsample(rows.shape[0], max_rows, generator, rows.device)
        return self._homogeneous(rows if index is None else rows[index])

    def output_rows(self, grad_output):
        return grad_output.reshape(-1, grad_output.shape[-1])


class Conv2dFactors(LayerFactors):
    """``nn.Conv2d`` (KFC): positions are output locations; ``a`` is the input patch there.

    Patches are gathered only at the sampled locations (no full ``unfold``), after padding as
    the layer does (any ``padding_mode``, ``"same"`` and ``"valid"`` included).
    """

    def input_rows(self, x, max_rows, generator):
        conv = self.module
        if x.dim() == 3:  # unbatched input
            x = x.unsqueeze(0)
        x = _pad(x, conv)
        (kh, kw), (sh, sw), (dh, dw) = conv.kernel_size, conv.stride, conv.dilation
        n, channels, height, width = x.shape
        out_h = (height - dh * (kh - 1) - 1) // sh + 1
        out_w = (width - dw * (kw - 1) - 1) // sw + 1
        total = n * out_h * out_w
        index = _subsample(total, max_rows, generator, x.device)
        if index is None:
            index = torch.arange(total, device=x.device)
        example, location = index // (out_h * out_w), index % (out_h * out_w)
        rows_h = (location // out_w * sh)[:, None] + dh * torch.arange(kh, device=x.device)
        cols_w = (location % out_w * sw)[:, None] + dw * torch.arange(kw, device=x.device)
        patches = x[example[:, None, None], :, rows_h[:, :, None], cols_w[:, None, :]]
        # (R, kh, kw, C) → (R, C·kh·kw), the order of weight.view(out, -1)
        return self._homogeneous(patches.permute(0, 3, 1, 2).reshape(index.numel(), -1))

    def output_rows(self, grad_output):
        if grad_output.dim() == 3:
            grad_output = grad_output.unsqueeze(0)
        return grad_output.permute(0, 2, 3, 1).reshape(-1, grad_output.shape[1])


def _pad(x: Tensor, conv: nn.Conv2d) -> Tensor:
    """Pad ``x`` exactly as ``conv`` does before its (unpadded) convolution."""
    if isinstance(conv.padding, str):
        if conv.padding == "valid":
            return x
        pads = []  # "same": F.pad order (left, right, top, bottom), extra on the right/bottom
        for dilation, kernel in zip(
            reversed(conv.dilation), reversed(conv.kernel_size), strict=True
        ):
            total = dilation * (kernel - 1)
            pads += [total // 2, total - total // 2]
    else:
        ph, pw = conv.padding
        pads = [pw, pw, ph, ph]
    if not any(pads):
        return x
    mode = "constant" if conv.padding_mode == "zeros" else conv.padding_mode
    return F.pad(x, pads, mode=mode)


def layer_factors(name: str, module: nn.Module) -> LayerFactors | None:
    """The factors for a supported layer with a trainable weight, ``None`` for anything else."""
    weight = getattr(module, "weight", None)
    if not isinstance(weight, Tensor) or not weight.requires_grad:
        return None
    if isinstance(module, nn.Linear):
        return LinearFactors(name, module)
    if isinstance(module, nn.Conv2d) and module.groups == 1:
        return Conv2dFactors(name, module)
    return None
