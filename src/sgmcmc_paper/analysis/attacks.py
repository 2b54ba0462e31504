"""Fast gradient sign method (Goodfellow et al., 2014) against single models and posterior averages.

Images live in [0, 1]; ``eps`` is the L∞ radius in those units (the paper's 0.3). Three threat
models, named as runs and the book name them (none is called stronger without measuring it):

- ``"as_released"``: what the paper's code did (cleverhans, ``y=None``): each posterior sample is
  attacked with its own gradient, toward its own *predicted* labels, without clipping to [0, 1];
  the predictions on the perturbed images are then averaged.
- ``"per_sample"``: the same with the *true* labels and clipping to [0, 1].
- ``"predictive"``: one perturbation per image against the averaged predictive, loss
  ``−log mean_s softmax(f_s(x))[y]``, clipped: what an adversary facing the deployed average can do.

The loss is cross-entropy summed over the batch (only its sign is used; a sum rather than a mean
keeps tiny float32 gradients from underflowing to a zero sign). Models are called as given: put
them in eval mode. Works inside ``torch.no_grad()`` (gradients are re-enabled locally), not inside
``torch.inference_mode()``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

#: A posterior sample: an ``nn.Module`` or any callable mapping images to logits (e.g. a module
#: bound to stored parameters with ``torch.func.functional_call``).
Model = Callable[[Tensor], Tensor]
THREAT_MODELS = ("as_released", "per_sample", "predictive")
PER_SAMPLE_THREAT_MODELS = ("as_released", "per_sample")


def _check_eps(eps: float) -> None:
    if not eps >= 0:
        raise ValueError(f"eps must be >= 0 (an L-infinity radius on [0, 1] pixels), got {eps}")


def _perturb(x: Tensor, grad: Tensor, eps: float, clip: bool) -> Tensor:
    x_adv = x.detach() + eps * grad.sign()
    return x_adv.clamp_(0.0, 1.0) if clip else x_adv


def fgsm(
    model: Model, x: Tensor, eps: float = 0.3, *, y: Tensor | None = None, clip: bool = False
) -> Tensor:
    """``x + eps·sign(∇_x CE(model(x), y))``, optionally clipped to [0, 1]; returns a new tensor.

    ``y=None`` attacks the model's own predicted labels (cleverhans' default, as released).
    """
    _check_eps(eps)
    with torch.enable_grad():
        x_req = x.detach().requires_grad_(True)
        logits = model(x_req)
        target = logits.argmax(dim=1).detach() if y is None else y
        loss = F.cross_entropy(logits, target, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x_req)
    return _perturb(x, grad, eps, clip)


def attack(
    model: Model, x: Tensor, y: Tensor | None, threat_model: str, eps: float = 0.3
) -> Tensor:
    """Adversarial images for one posterior sample under a per-sample threat model.

    ``"as_released"`` ignores ``y`` (predicted labels, no clipping); ``"per_sample"`` needs it.
    """
    if threat_model == "as_released":
        return fgsm(model, x, eps, y=None, clip=False)
    if threat_model == "per_sample":
        if y is None:
            raise ValueError("threat model 'per_sample' attacks the true labels: pass y")
        return fgsm(model, x, eps, y=y, clip=True)
    if threat_model == "predictive":
        raise ValueError(
            "threat model 'predictive' needs every posterior sample at once: "
            "use fgsm_predictive(models, x, y) or adversarial_predictive(models, ...)"
        )
    raise ValueError(f"unknown threat model {threat_model!r}; choose one of {THREAT_MODELS}")


@torch.no_grad()
def adversarial_probs(
    model: Model, x: Tensor, y: Tensor | None, threat_model: str, eps: float = 0.3
) -> Tensor:
    """Softmax of one posterior sample on its own adversarial images, ``(n, C)``.

    Feed these to :class:`sgmcmc_paper.analysis.metrics.PredictiveAverage` as samples arrive, for
    the ``"as_released"`` and ``"per_sample"`` threat models.
    """
    return F.softmax(model(attack(model, x, y, threat_model, eps)), dim=1)


def fgsm_predictive(
    models: Sequence[Model], x: Tensor, y: Tensor, eps: float = 0.3, clip: bool = True
) -> Tensor:
    """One FGSM perturbation per image against the averaged predictive of ``models``.

    The loss ``−log mean_s p_s(y|x)`` has gradient ``Σ_s w_s ∇_x(−log p_s(y|x))`` with
    ``w_s = softmax_s(log p_s(y|x))``: a first pass computes the weights, a second accumulates
    the gradient one model at a time, so memory is that of one model's backward pass. With one
    model this is exactly ``fgsm(model, x, eps, y=y, clip=clip)``.
    """
    _check_eps(eps)
    if len(models) == 0:
        raise ValueError("fgsm_predictive needs at least one model")
    with torch.no_grad():
        log_p_label = torch.stack(
            [F.log_softmax(m(x), dim=1).gather(1, y[:, None]).squeeze(1) for m in models]
        )
        weights = torch.softmax(log_p_label, dim=0)
    grad = torch.zeros_like(x)
    with torch.enable_grad():
        x_req = x.detach().requires_grad_(True)
        for model, w in zip(models, weights, strict=True):
            loss = (w * F.cross_entropy(model(x_req), y, reduction="none")).sum()
            grad += torch.autograd.grad(loss, x_req)[0]
    return _perturb(x, grad, eps, clip)


@torch.no_grad()
def adversarial_predictive(
    models: Sequence[Model],
    x: Tensor,
    y: Tensor | None,
    threat_model: str = "per_sample",
    eps: float = 0.3,
) -> Tensor:
    """Averaged predictive probabilities ``(n, C)`` of ``models`` on FGSM images of ``x``.

    Per-sample threat models attack each model with its own gradient; ``"predictive"`` builds one
    perturbation with :func:`fgsm_predictive` and evaluates every model on it.
    """
    if len(models) == 0:
        raise ValueError("adversarial_predictive needs at least one model")
    if threat_model == "predictive":
        if y is None:
            raise ValueError("threat model 'predictive' attacks the true labels: pass y")
        x_adv = fgsm_predictive(models, x, y, eps)
        return torch.stack([F.softmax(m(x_adv), dim=1) for m in models]).mean(dim=0)
    total = adversarial_probs(models[0], x, y, threat_model, eps)
    for model in models[1:]:
        total += adversarial_probs(model, x, y, threat_model, eps)
    return total / len(models)
