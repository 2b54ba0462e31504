"""The negative log posterior ``U`` (the potential) that the langevin convention backpropagates.

The module is not named ``potential``: ``sgmcmc.potential`` is the function, and a submodule of
the same name would shadow it on the package.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import Tensor


def potential(
    mean_batch_loss: Tensor,
    num_data: int,
    params: Iterable[Tensor],
    prior_std: float | None = 1.0,
) -> Tensor:
    """``U(θ) = N·mean_batch_loss + Σ‖θ‖² / (2σ²)``, the minibatch estimate of ``−log p(θ|D)``.

    ``mean_batch_loss`` is the mean negative log-likelihood over the batch (e.g.
    ``F.cross_entropy(logits, y)``), so ``N·mean_batch_loss = −(N/|B|) Σ_B log p(y|x,θ)``
    with ``N = num_data``. The prior is isotropic Gaussian ``N(0, σ² I)`` on every tensor in
    ``params``, ``σ = prior_std``; ``prior_std=None`` means a flat prior (no term). Additive
    constants (the prior's normalizer, and the prior of tensors that do not require a gradient)
    are dropped: they change neither ``∇U`` nor the chain.
    Chains stored as rows of one parameter simply add their potentials.
    """
    if isinstance(num_data, bool) or not isinstance(num_data, int) or num_data < 1:
        raise ValueError(f"num_data must be an integer >= 1, got {num_data!r}")
    if prior_std is not None and not 0 < prior_std < math.inf:
        raise ValueError(f"prior_std must be a finite number > 0 or None, got {prior_std!r}")
    if mean_batch_loss.dim() != 0:
        raise ValueError(
            f"mean_batch_loss must be a scalar tensor, got shape {tuple(mean_batch_loss.shape)}; "
            "use reduction='mean'"
        )
    u = num_data * mean_batch_loss
    if prior_std is None:
        return u
    params = [p for p in params if p.requires_grad]
    if not params:
        return u
    return u + _SquaredNorm.apply(*params) / (2.0 * prior_std**2)


class _SquaredNorm(torch.autograd.Function):
    """``Σ‖θ‖²`` with one multi-tensor kernel each way (forward ``_foreach_norm``, backward
    ``_foreach_mul``) instead of a few per tensor: on a GPU a training step is launch-bound."""

    @staticmethod
    def forward(ctx, *params: Tensor) -> Tensor:
        ctx.save_for_backward(*params)
        norms = torch._foreach_norm(params)
        first = norms[0]
        return torch.stack([n.to(first) for n in norms]).square().sum()

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, ...]:
        params = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True: stay differentiable
            return tuple(p * (2.0 * grad) for p in params)
        return tuple(torch._foreach_mul(params, 2.0 * grad))
