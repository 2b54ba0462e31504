"""L∞ attacks against single models and posterior averages: FGSM, PGD and APGD-CE.

- FGSM, the fast gradient sign method (Goodfellow, Shlens & Szegedy 2014,
  `arXiv:1412.6572 <https://arxiv.org/abs/1412.6572>`_): one step ``x + ε·sign(∇_x loss)``.
- PGD, projected gradient descent (Madry et al. 2018,
  `arXiv:1706.06083 <https://arxiv.org/abs/1706.06083>`_): ``steps`` signed steps of
  ``step_size``, each projected back onto the ε-ball around ``x`` (and onto [0, 1] when clipped),
  from a uniformly random start in the ball, ``restarts`` times.
- APGD-CE (Croce & Hein 2020, `arXiv:2003.01690 <https://arxiv.org/abs/2003.01690>`_): PGD
  with momentum and a per-image step size that starts at 2ε and halves at checkpoints where the
  loss stopped rising, restarting from the best point found.

Images live in [0, 1]; ``eps`` is the L∞ radius in those units (the paper's 0.3). Every attack
maximises one loss, ``−log mean_s p_s(t|x)`` over a list of posterior samples ``s`` and target
labels ``t`` (:func:`perturb`); with one model it is that model's cross-entropy. Three threat
models, named as runs and the book name them (none is called stronger without measuring it):

- ``"as_released"``: what the paper's code did (cleverhans, ``y=None``): each posterior sample is
  attacked with its own gradient, toward its own *predicted* labels, without clipping to [0, 1];
  the predictions on the perturbed images are then averaged. For PGD and APGD this keeps
  cleverhans' conventions for iterative attacks with ``y=None``: the labels are the model's
  predictions on the *clean* images, fixed for every step and restart (no label leaking), the
  random start and every step are projected onto the ε-ball only, never onto [0, 1], and an
  image counts as fooled once the prediction leaves that label.
- ``"per_sample"``: the same with the *true* labels and clipping to [0, 1].
- ``"predictive"``: one perturbation per image against the averaged predictive, loss
  ``−log mean_s softmax(f_s(x))[y]``, clipped: what an adversary facing the deployed average can do.

How an attack is run is an :class:`AttackSpec` (:data:`FGSM`, :data:`PGD`, :data:`APGD`);
:func:`attack`, :func:`adversarial_probs` and :func:`adversarial_predictive` take one as
``spec=`` (FGSM by default, the paper's attack). Iterative attacks keep, per image, the best
point over every iterate and restart (``keep_best=True``; APGD always does): one that changes
the attacked prediction before one that does not, then the one of highest loss (for the
per-sample threat models, whose probabilities are averaged over samples, a confidently wrong
sample counts more than a barely wrong one); ``keep_best=False`` keeps the last iterate of each
restart (the best restart by the same rule), as Madry et al.'s PGD and ``torchattacks.PGD``
do. Random starts are drawn from ``generator`` (a CPU ``torch.Generator``; ``None``: torch's
global generator) for the whole ``x`` at once, so results do not depend on ``batch_size`` nor
on the device.

The loss is summed over the batch (only the sign of its gradient is used; a sum rather than a
mean keeps tiny float32 gradients from underflowing to a zero sign). Models are called as given:
put them in eval mode. Works inside ``torch.no_grad()`` (gradients are re-enabled locally), not
inside ``torch.inference_mode()``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

#: A posterior sample: an ``nn.Module`` or any callable mapping images to logits (e.g. a module
#: bound to stored parameters with ``torch.func.functional_call``).
Model = Callable[[Tensor], Tensor]
THREAT_MODELS = ("as_released", "per_sample", "predictive")
PER_SAMPLE_THREAT_MODELS = ("as_released", "per_sample")
#: Attack algorithms of :class:`AttackSpec`.
ATTACKS = ("fgsm", "pgd", "apgd")


@dataclass(frozen=True)
class AttackSpec:
    """An L∞ attack: its algorithm and budget (``eps`` and the threat model are given apart).

    ``name``: ``"fgsm"`` (one step of size ε; the other fields must keep their defaults),
    ``"pgd"`` or ``"apgd"``. ``steps``: gradient evaluations per restart. ``step_size``: PGD's
    absolute step; ``None`` gives ``2.5·ε/steps`` (the usual choice: the steps together can
    cross the ball 1.25 times; APGD sets its own, starting at 2ε). ``restarts``: independent
    runs from random starts (more than one needs ``random_start``). ``keep_best``: see the
    module docstring. ``rho``: APGD's threshold on the fraction of steps that raised the loss
    since the last checkpoint (0.75 in the paper).
    """

    name: str = "pgd"
    steps: int = 40
    step_size: float | None = None
    restarts: int = 1
    random_start: bool = True
    keep_best: bool = True
    rho: float = 0.75

    def __post_init__(self) -> None:
        if self.name not in ATTACKS:
            raise ValueError(f"unknown attack {self.name!r}; choose one of {ATTACKS}")
        if self.name == "fgsm" and (
            self.steps != 1 or self.restarts != 1 or self.random_start or self.step_size
        ):
            raise ValueError("FGSM is one step of size eps from x: use the FGSM constant")
        if self.steps < 1 or self.restarts < 1:
            raise ValueError(f"steps and restarts must be >= 1, got {self.steps}, {self.restarts}")
        if self.restarts > 1 and not self.random_start:
            raise ValueError("restarts > 1 repeat the same attack without random_start=True")
        if self.step_size is not None and not self.step_size > 0:
            raise ValueError(f"step_size must be > 0 (or None), got {self.step_size}")
        if not 0 < self.rho <= 1:
            raise ValueError(f"rho must be in (0, 1], got {self.rho}")

    @property
    def label(self) -> str:
        """Short name for tables: ``FGSM``, ``PGD-40``, ``PGD-40×5``, ``APGD-100``."""
        if self.name == "fgsm":
            return "FGSM"
        restarts = f"×{self.restarts}" if self.restarts > 1 else ""
        return f"{self.name.upper()}-{self.steps}{restarts}"

    def alpha(self, eps: float) -> float:
        """PGD's step for radius ``eps``."""
        return self.step_size if self.step_size is not None else 2.5 * eps / self.steps


#: The paper's attack.
FGSM = AttackSpec("fgsm", steps=1, random_start=False)
#: PGD with Madry et al.'s MNIST budget: 40 steps from one random start (of 2.5·ε/40 each).
PGD = AttackSpec("pgd", steps=40)
#: APGD-CE with Croce & Hein's budget for one run (100 steps).
APGD = AttackSpec("apgd", steps=100)


def _check_eps(eps: float) -> None:
    if not eps >= 0:
        raise ValueError(f"eps must be >= 0 (an L-infinity radius on [0, 1] pixels), got {eps}")


def _per_image(v: Tensor, like: Tensor) -> Tensor:
    """A per-image vector shaped to broadcast over ``like``'s images."""
    return v.view(-1, *([1] * (like.dim() - 1)))


# ------------------------------------------------------------------------------ the objective
class Objective:
    """``x ↦ −log mean_s p_s(t|x)`` per image over ``models``, with its input gradient.

    Calling it gives ``(loss, grad, correct)``: the per-image loss ``(n,)``, its gradient with
    respect to ``x`` (``None`` when ``grad=False``) and whether the averaged predictive still
    predicts ``t`` ``(n,)``. The gradient ``Σ_s w_s ∇_x(−log p_s(t|x))``, ``w_s`` the softmax
    over samples of ``log p_s(t|x)``, is accumulated one model at a time with a running
    log-sum-exp, so memory is that of one model's backward pass and one pass per model suffices.
    With one model, loss and gradient are that model's cross-entropy's, bit for bit.
    """

    def __init__(self, models: Sequence[Model]) -> None:
        self.models = list(models)
        if not self.models:
            raise ValueError("an attack needs at least one model")

    def __call__(
        self, x: Tensor, target: Tensor, grad: bool = True
    ) -> tuple[Tensor, Tensor | None, Tensor]:
        top = weight = total = probs = None
        for model in self.models:
            with torch.enable_grad() if grad else torch.no_grad():
                x_req = x.detach().requires_grad_(grad)
                log_p = F.log_softmax(model(x_req), dim=1)
                log_p_target = log_p.gather(1, target[:, None]).squeeze(1)
                g = torch.autograd.grad(log_p_target.sum(), x_req)[0] if grad else None
            log_p_target, p = log_p_target.detach(), log_p.detach().exp()
            if top is None:
                top, weight, total, probs = log_p_target, torch.ones_like(log_p_target), g, p
                continue
            probs = probs + p
            new_top = torch.maximum(top, log_p_target)
            old_scale, new_scale = torch.exp(top - new_top), torch.exp(log_p_target - new_top)
            weight = weight * old_scale + new_scale
            if grad:
                total = total * _per_image(old_scale, x) + g * _per_image(new_scale, x)
            top = new_top
        loss = -(top + torch.log(weight) - math.log(len(self.models)))
        gradient = -total / _per_image(weight, x) if grad else None
        return loss, gradient, probs.argmax(dim=1) == target


# ------------------------------------------------------------------------------ the update rules
def _project(x_adv: Tensor, x: Tensor, eps: float, clip: bool) -> Tensor:
    """Onto the ε-ball around ``x`` (as ``x + clamp(x_adv − x, −ε, ε)``, cleverhans' and
    torchattacks' arithmetic) and, when ``clip``, onto [0, 1]."""
    x_adv = x + (x_adv - x).clamp(-eps, eps)
    return x_adv.clamp(0.0, 1.0) if clip else x_adv


def _fgsm_step(x: Tensor, grad: Tensor, eps: float, clip: bool) -> Tensor:
    x_adv = x.detach() + eps * grad.sign()
    return x_adv.clamp_(0.0, 1.0) if clip else x_adv


class _Best:
    """Per image, the best point offered: one that fools the classifier before one that does
    not, then the one of highest loss (a fooled sample that is also confident counts most in
    an average of probabilities)."""

    def __init__(self, x: Tensor) -> None:
        self.x = x.detach().clone()
        self.loss = torch.full((len(x),), -math.inf, device=x.device, dtype=x.dtype)
        self.fooled = torch.zeros(len(x), dtype=torch.bool, device=x.device)

    def offer(
        self,
        x_new: Tensor,
        loss: Tensor,
        fooled: Tensor,
        where: slice = slice(None),
        take_all: bool = False,
    ) -> None:
        """Keep the better of the held and the offered points of images ``where``."""
        held, held_loss = self.fooled[where], self.loss[where]
        if take_all:
            better = torch.ones_like(fooled)
        else:
            better = (fooled & ~held) | ((fooled == held) & (loss > held_loss))
        self.x[where][better] = x_new[better].detach()
        self.loss[where] = torch.where(better, loss, held_loss)
        self.fooled[where] = torch.where(better, fooled, held)


def _pgd_run(
    objective: Objective,
    x: Tensor,
    target: Tensor,
    start: Tensor,
    eps: float,
    spec: AttackSpec,
    clip: bool,
) -> _Best:
    """One PGD run from ``start``: the best iterate (``keep_best``) or the last one."""
    alpha = spec.alpha(eps)
    best = _Best(x)
    x_adv = start
    for _ in range(spec.steps):
        loss, grad, correct = objective(x_adv, target)
        if spec.keep_best:
            best.offer(x_adv, loss, ~correct)
        x_adv = _project(x_adv + alpha * grad.sign(), x, eps, clip)
    loss, _, correct = objective(x_adv, target, grad=False)
    best.offer(x_adv, loss, ~correct, take_all=not spec.keep_best)
    return best


def apgd_checkpoints(steps: int) -> list[int]:
    """APGD's checkpoints ``w_j = ⌈p_j·steps⌉`` (Croce & Hein 2020, §3.2): ``p_0 = 0``,
    ``p_1 = 0.22``, ``p_{j+1} = p_j + max(p_j − p_{j−1} − 0.03, 0.06)``."""
    p = [0.0, 0.22]
    while p[-1] < 1:
        p.append(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06))
    # rounded first: 0.22·100 is 22.000000000000004 in floating point
    return sorted({math.ceil(round(q * steps, 6)) for q in p if q <= 1} - {0})


def _apgd_run(
    objective: Objective,
    x: Tensor,
    target: Tensor,
    start: Tensor,
    eps: float,
    spec: AttackSpec,
    clip: bool,
) -> _Best:
    """One APGD-CE run (Croce & Hein 2020, Alg. 1) from ``start``, batched with a step size per
    image: momentum 0.75 after the first step; at each checkpoint an image whose loss rose in
    fewer than ``rho`` of the steps since the last one, or whose step size and best loss have
    not changed since then, halves its step and restarts from its best point."""
    best = _Best(x)  # fooled first, then highest loss: what is returned
    loss, grad, correct = objective(start, target)
    best.offer(start, loss, ~correct)
    top_x, top_loss, top_grad = start.clone(), loss.clone(), grad.clone()  # highest loss
    eta = torch.full((len(x),), 2.0 * eps, device=x.device, dtype=x.dtype)
    checkpoints = apgd_checkpoints(spec.steps)
    last_check, last_eta, last_top = 0, eta.clone(), top_loss.clone()
    rises = torch.zeros(len(x), device=x.device)
    x_prev, x_cur, prev_loss = start, start, loss
    for k in range(spec.steps):
        step = _per_image(eta, x)
        z = _project(x_cur + step * grad.sign(), x, eps, clip)
        if k == 0:
            x_next = z
        else:
            x_next = _project(x_cur + 0.75 * (z - x_cur) + 0.25 * (x_cur - x_prev), x, eps, clip)
        need_grad = k + 1 < spec.steps
        loss, new_grad, correct = objective(x_next, target, grad=need_grad)
        best.offer(x_next, loss, ~correct)
        rises += (loss > prev_loss).float()
        higher = loss > top_loss
        top_x[higher], top_loss = x_next[higher], torch.where(higher, loss, top_loss)
        if need_grad:
            top_grad[higher] = new_grad[higher]
        x_prev, x_cur, grad, prev_loss = x_cur, x_next, new_grad, loss
        if k + 1 in checkpoints and need_grad:
            since = k + 1 - last_check
            stalled = (eta == last_eta) & (top_loss == last_top)
            halve = (rises < spec.rho * since) | stalled
            last_eta = eta.clone()
            eta = torch.where(halve, eta / 2, eta)
            x_cur[halve], grad[halve] = top_x[halve], top_grad[halve]
            last_check, last_top = k + 1, top_loss.clone()
            rises.zero_()
    return best


# ------------------------------------------------------------------------------ the one entry
def random_start(
    x: Tensor, eps: float, clip: bool, generator: torch.Generator | None = None
) -> Tensor:
    """``x + U(−ε, ε)`` per pixel (clipped to [0, 1] when ``clip``), drawn on ``generator``'s
    device and moved to ``x``'s (a CPU generator gives the same start on every device)."""
    device = generator.device if generator is not None else x.device
    noise = torch.empty(x.shape, dtype=x.dtype, device=device).uniform_(
        -eps, eps, generator=generator
    )
    start = x.detach() + noise.to(x.device)
    return start.clamp(0.0, 1.0) if clip else start


def perturb(
    models: Sequence[Model],
    x: Tensor,
    target: Tensor,
    eps: float = 0.3,
    spec: AttackSpec = FGSM,
    *,
    clip: bool = True,
    generator: torch.Generator | None = None,
    batch_size: int | None = None,
) -> Tensor:
    """Adversarial images of ``x`` in the ε-ball that maximise ``−log mean_s p_s(target|x)``.

    Every attack and threat model comes here: one model and its true labels (``"per_sample"``),
    its predicted labels without clipping (``"as_released"``), or all posterior samples
    (``"predictive"``). ``batch_size`` splits the images (memory, not results, depends on it).
    """
    _check_eps(eps)
    objective = Objective(models)
    if eps == 0:
        return x.detach().clone()
    size = batch_size or len(x)
    slices = [slice(i, i + size) for i in range(0, len(x), size)]
    if spec.name == "fgsm":
        parts = []
        for s in slices:
            _, grad, _ = objective(x[s], target[s])
            parts.append(_fgsm_step(x[s], grad, eps, clip))
        return torch.cat(parts)
    run = _pgd_run if spec.name == "pgd" else _apgd_run
    best = _Best(x)
    for restart in range(spec.restarts):
        start = random_start(x, eps, clip, generator) if spec.random_start else x.detach()
        for s in slices:
            found = run(objective, x[s].detach(), target[s], start[s], eps, spec, clip)
            best.offer(found.x, found.loss, found.fooled, s, take_all=restart == 0)
    return best.x


@torch.no_grad()
def predicted_labels(model: Model, x: Tensor, batch_size: int | None = None) -> Tensor:
    """``model``'s predicted labels on ``x``."""
    size = batch_size or len(x)
    return torch.cat([model(xb).argmax(dim=1) for xb in x.split(size)])


@torch.no_grad()
def predicted_probs(model: Model, x: Tensor, batch_size: int | None = None) -> Tensor:
    """``model``'s softmax on ``x``, ``(n, C)``."""
    return torch.cat([F.softmax(model(xb), dim=1) for xb in x.split(batch_size or len(x))])


def averaged_probs(models: Sequence[Model], x: Tensor, batch_size: int | None = None) -> Tensor:
    """The averaged predictive of ``models`` on ``x``: the mean of their softmaxes, ``(n, C)``."""
    return torch.stack([predicted_probs(m, x, batch_size) for m in models]).mean(dim=0)


def _perturb_one(
    model: Model,
    x: Tensor,
    y: Tensor | None,
    eps: float,
    spec: AttackSpec,
    clip: bool,
    generator: torch.Generator | None = None,
    batch_size: int | None = None,
) -> Tensor:
    """:func:`perturb` against one model, toward ``y`` or, for ``None``, the model's predicted
    labels on the clean ``x`` (cleverhans' ``y=None``)."""
    _check_eps(eps)
    target = predicted_labels(model, x, batch_size) if y is None else y
    return perturb(
        [model], x, target, eps, spec, clip=clip, generator=generator, batch_size=batch_size
    )


# ------------------------------------------------------------------------------ named attacks
def fgsm(
    model: Model, x: Tensor, eps: float = 0.3, *, y: Tensor | None = None, clip: bool = False
) -> Tensor:
    """``x + eps·sign(∇_x CE(model(x), y))``, optionally clipped to [0, 1]; returns a new tensor.

    ``y=None`` attacks the model's own predicted labels (cleverhans' default, as released).
    """
    return _perturb_one(model, x, y, eps, FGSM, clip)


def fgsm_predictive(
    models: Sequence[Model], x: Tensor, y: Tensor, eps: float = 0.3, clip: bool = True
) -> Tensor:
    """One FGSM perturbation per image against the averaged predictive of ``models``.

    The loss ``−log mean_s p_s(y|x)`` has gradient ``Σ_s w_s ∇_x(−log p_s(y|x))`` with
    ``w_s = softmax_s(log p_s(y|x))`` (:class:`Objective`). With one model this is exactly
    ``fgsm(model, x, eps, y=y, clip=clip)``.
    """
    return perturb(models, x, y, eps, FGSM, clip=clip)


def pgd(
    model: Model,
    x: Tensor,
    eps: float = 0.3,
    *,
    y: Tensor | None = None,
    clip: bool = False,
    steps: int = 40,
    step_size: float | None = None,
    restarts: int = 1,
    random_start: bool = True,
    keep_best: bool = True,
    generator: torch.Generator | None = None,
    batch_size: int | None = None,
) -> Tensor:
    """L∞ PGD on one model's cross-entropy (:data:`PGD`'s defaults; the arguments of
    :class:`AttackSpec`). ``y=None`` attacks the predicted labels on the clean ``x``, as
    :func:`fgsm` does; ``y=y, clip=True`` is ``torchattacks.PGD`` (with ``keep_best=False``)."""
    spec = AttackSpec("pgd", steps, step_size, restarts, random_start, keep_best)
    return _perturb_one(model, x, y, eps, spec, clip, generator, batch_size)


def pgd_predictive(
    models: Sequence[Model],
    x: Tensor,
    y: Tensor,
    eps: float = 0.3,
    *,
    clip: bool = True,
    steps: int = 40,
    step_size: float | None = None,
    restarts: int = 1,
    random_start: bool = True,
    keep_best: bool = True,
    generator: torch.Generator | None = None,
    batch_size: int | None = None,
) -> Tensor:
    """L∞ PGD on ``−log mean_s p_s(y|x)``, the averaged predictive of ``models``; with one
    model this is :func:`pgd` with ``y=y`` bit for bit."""
    spec = AttackSpec("pgd", steps, step_size, restarts, random_start, keep_best)
    return perturb(models, x, y, eps, spec, clip=clip, generator=generator, batch_size=batch_size)


def apgd(
    model: Model,
    x: Tensor,
    eps: float = 0.3,
    *,
    y: Tensor | None = None,
    clip: bool = False,
    steps: int = 100,
    restarts: int = 1,
    rho: float = 0.75,
    generator: torch.Generator | None = None,
    batch_size: int | None = None,
) -> Tensor:
    """APGD-CE (Croce & Hein 2020) on one model, from uniformly random starts in the ball."""
    spec = AttackSpec("apgd", steps, None, restarts, True, True, rho)
    return _perturb_one(model, x, y, eps, spec, clip, generator, batch_size)


def apgd_predictive(
    models: Sequence[Model],
    x: Tensor,
    y: Tensor,
    eps: float = 0.3,
    *,
    clip: bool = True,
    steps: int = 100,
    restarts: int = 1,
    rho: float = 0.75,
    generator: torch.Generator | None = None,
    batch_size: int | None = None,
) -> Tensor:
    """APGD-CE on ``−log mean_s p_s(y|x)``, the averaged predictive of ``models``."""
    spec = AttackSpec("apgd", steps, None, restarts, True, True, rho)
    return perturb(models, x, y, eps, spec, clip=clip, generator=generator, batch_size=batch_size)


# ------------------------------------------------------------------------------ threat models
def attack(
    model: Model,
    x: Tensor,
    y: Tensor | None,
    threat_model: str,
    eps: float = 0.3,
    *,
    spec: AttackSpec = FGSM,
    generator: torch.Generator | None = None,
    batch_size: int | None = None,
) -> Tensor:
    """Adversarial images for one posterior sample under a per-sample threat model.

    ``"as_released"`` ignores ``y`` (predicted labels, no clipping); ``"per_sample"`` needs it.
    """
    if threat_model == "as_released":
        labels, clip = None, False  # the predicted labels
    elif threat_model == "per_sample":
        if y is None:
            raise ValueError("threat model 'per_sample' attacks the true labels: pass y")
        labels, clip = y, True
    elif threat_model == "predictive":
        raise ValueError(
            "threat model 'predictive' needs every posterior sample at once: "
            "use fgsm_predictive(models, x, y), pgd_predictive or adversarial_predictive"
        )
    else:
        raise ValueError(f"unknown threat model {threat_model!r}; choose one of {THREAT_MODELS}")
    return _perturb_one(model, x, labels, eps, spec, clip, generator, batch_size)


@torch.no_grad()
def adversarial_probs(
    model: Model,
    x: Tensor,
    y: Tensor | None,
    threat_model: str,
    eps: float = 0.3,
    *,
    spec: AttackSpec = FGSM,
    generator: torch.Generator | None = None,
    batch_size: int | None = None,
) -> Tensor:
    """Softmax of one posterior sample on its own adversarial images, ``(n, C)``.

    Feed these to :class:`sgmcmc_paper.analysis.metrics.PredictiveAverage` as samples arrive, for
    the ``"as_released"`` and ``"per_sample"`` threat models.
    """
    x_adv = attack(
        model, x, y, threat_model, eps, spec=spec, generator=generator, batch_size=batch_size
    )
    return predicted_probs(model, x_adv, batch_size)


@torch.no_grad()
def adversarial_predictive(
    models: Sequence[Model],
    x: Tensor,
    y: Tensor | None,
    threat_model: str = "per_sample",
    eps: float = 0.3,
    *,
    spec: AttackSpec = FGSM,
    generator: torch.Generator | None = None,
    batch_size: int | None = None,
) -> Tensor:
    """Averaged predictive probabilities ``(n, C)`` of ``models`` on adversarial images of ``x``.

    Per-sample threat models attack each model with its own gradient (random starts drawn in
    the order of ``models``); ``"predictive"`` builds one perturbation against the average
    (:func:`perturb`) and evaluates every model on it.
    """
    if len(models) == 0:
        raise ValueError("adversarial_predictive needs at least one model")
    if threat_model == "predictive":
        if y is None:
            raise ValueError("threat model 'predictive' attacks the true labels: pass y")
        x_adv = perturb(
            models, x, y, eps, spec, clip=True, generator=generator, batch_size=batch_size
        )
        return averaged_probs(models, x_adv, batch_size)
    options = {"spec": spec, "generator": generator, "batch_size": batch_size}
    total = adversarial_probs(models[0], x, y, threat_model, eps, **options)
    for model in models[1:]:
        total += adversarial_probs(model, x, y, threat_model, eps, **options)
    return total / len(models)
