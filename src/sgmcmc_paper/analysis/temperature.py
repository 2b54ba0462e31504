"""The temperature a paper-convention Langevin run implies (book/methods.md, "The temperatures
the paper's runs imply").

The released code steps ``θ ← θ − (lr/2)·g + σ·ξ`` with ``g`` the gradient of the *mean* batch
loss and ``σ = lr²`` (times ``1/m`` for its pSGLD). Written in Welling & Teh's form
``Δθ = −(ε/2)·∇U + N(0, ε·T)`` with the full-data potential ``U = N·mean_loss`` (no prior), its
gradient step is ``ε = lr/N``, whose correct (``T = 1``) noise standard deviation is
``sqrt(lr/N)``; the run's temperature is ``T = (σ / sqrt(lr/N))² = σ²·N/lr`` (``lr³·N`` for SGLD).

Caveats the book states beside the numbers: the paper's *printed* eq. 2 (step ``λ∇log p``,
noise variance ``λ``) is itself a temperature-½ chain (:func:`printed_equation_temperature`);
minibatch gradient noise adds variance ``(lr/2)²·C/|B|`` per step and coordinate, of the same
order as the injected noise (:func:`minibatch_to_injected_variance`); and noise ``P·ξ`` with a
non-scalar ``P`` has no single temperature (a scalar ``P = 1/m``, e.g. the released pSGLD's
``m ≈ 0.96`` from :func:`released_psgld_scale`, is the ``noise_scale`` argument).
"""

from __future__ import annotations

import math


def _check_positive(**values: float) -> None:
    for name, value in values.items():
        if not (isinstance(value, (int, float)) and 0 < value < math.inf):
            raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


def welling_teh_step(lr: float, num_data: int) -> float:
    """``ε = lr/N``: the paper convention's step ``(lr/2)·∇mean_loss`` is ``(ε/2)·∇U``."""
    _check_positive(lr=lr, num_data=num_data)
    return lr / num_data


def correct_noise_std(lr: float, num_data: int) -> float:
    """``sqrt(lr/N)``: the noise standard deviation that would make the run sample at ``T = 1``."""
    return math.sqrt(welling_teh_step(lr, num_data))


def code_noise_std(lr: float, noise_scale: float = 1.0) -> float:
    """``lr²·noise_scale``: the released code's noise standard deviation."""
    _check_positive(lr=lr, noise_scale=noise_scale)
    return lr * lr * noise_scale


def implied_temperature(lr: float, num_data: int, noise_scale: float = 1.0) -> float:
    """``T = (code std / correct std)² = lr³·N·noise_scale²``.

    >>> round(implied_temperature(0.02, 60_000), 3)
    0.48
    """
    return (code_noise_std(lr, noise_scale) / correct_noise_std(lr, num_data)) ** 2


def printed_equation_temperature() -> float:
    """The paper's printed eq. 2, ``Δθ = λ∇log p + N(0, λ)``: in Welling & Teh's form
    ``ε = 2λ``, whose correct noise variance ``2λ`` is twice ``λ``, so ``T = ½``."""
    step = 1.0
    welling_teh_epsilon = 2 * step
    return step / welling_teh_epsilon


def released_psgld_scale(alpha: float = 0.96, eps: float = 1e-10) -> float:
    """The noise scale ``1/m`` of the released pSGLD once its recursion settles.

    With mean-loss gradients far smaller than ``m``, ``m ← sqrt(ε + α·m + (1 − α)·g²)`` tends
    to the root of ``m² = ε + α·m``, i.e. ``m ≈ α``: the released pSGLD is SGLD with its noise
    scaled by ``1/m ≈ 1.04``.
    """
    _check_positive(alpha=alpha, eps=eps)
    fixed_point = (alpha + math.sqrt(alpha * alpha + 4 * eps)) / 2
    return 1.0 / fixed_point


def minibatch_to_injected_variance(
    lr: float, gradient_variance: float, batch_size: int, noise_scale: float = 1.0
) -> float:
    """Per-step variance of the minibatch gradient noise over the injected noise's.

    The step ``(lr/2)·g`` with ``g`` a mean over ``|B|`` per-example gradients of variance
    ``C`` (per coordinate) carries noise of variance ``(lr/2)²·C/|B|``; the code injects
    ``(lr²·noise_scale)²``.
    """
    _check_positive(gradient_variance=gradient_variance, batch_size=batch_size)
    minibatch = (lr / 2) ** 2 * gradient_variance / batch_size
    return minibatch / code_noise_std(lr, noise_scale) ** 2


def gradient_noise_variance(model, x, y, batch_size: int = 32, generator=None) -> dict:
    """Per-example gradient variance ``C`` of the mean cross-entropy, averaged over the
    entries of each parameter tensor (keys: parameter names) and over all of them (``"all"``).

    Estimated from the spread of minibatch gradients: with ``k`` disjoint batches of ``b``
    examples, ``C ≈ b · Var_batches(ḡ)``; uses ``len(x) // batch_size`` batches. The model's
    parameters and their ``.grad`` are left untouched.
    """
    import torch
    import torch.nn.functional as F

    count = len(x) // batch_size
    if count < 2:
        raise ValueError(f"need at least 2 batches of {batch_size}, got {len(x)} examples")
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    params = [p for _, p in named]
    order = torch.randperm(len(x), generator=generator)[: count * batch_size]
    total = [torch.zeros_like(p, dtype=torch.float64) for p in params]
    sum_sq = [torch.zeros_like(p, dtype=torch.float64) for p in params]
    for indices in order.view(count, batch_size):
        loss = F.cross_entropy(model(x[indices]), y[indices])
        for t, s, g in zip(total, sum_sq, torch.autograd.grad(loss, params), strict=True):
            t += g.double()
            s += g.double() ** 2
    variances = {}
    entries = weighted = 0.0
    for (name, p), t, s in zip(named, total, sum_sq, strict=True):
        mean = t / count
        variance = batch_size * (s / count - mean * mean) * count / (count - 1)
        variances[name] = float(variance.mean())
        entries += p.numel()
        weighted += float(variance.sum())
    variances["all"] = weighted / entries
    return variances


def temperature_table(runs: dict[str, tuple[float, int]], noise_scale: float = 1.0):
    """A table (pandas) of ``ε``, the correct and the code's noise std and ``T`` per run;
    ``runs`` maps a name to ``(lr, num_data)``."""
    import pandas as pd

    rows = [
        {
            "run": name,
            "lr": lr,
            "N": num_data,
            "ε = lr/N": welling_teh_step(lr, num_data),
            "correct std sqrt(lr/N)": correct_noise_std(lr, num_data),
            "code std lr²": code_noise_std(lr, noise_scale),
            "T": implied_temperature(lr, num_data, noise_scale),
        }
        for name, (lr, num_data) in runs.items()
    ]
    return pd.DataFrame(rows).set_index("run")
