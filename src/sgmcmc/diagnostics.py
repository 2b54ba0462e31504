"""Diagnostics: the paper's effective sample sizes, traces as ArviZ InferenceData, and the
stability of a preconditioned step.

Conventions. A trace is an array ``(n_samples, n_params)`` (draws down the rows); ESS is in
samples. The estimator of Palacci & Hess (2018, https://arxiv.org/abs/1806.02855, §4.2; the
released code's ``univess``) is

    ESS = n / (1 + 2 Σ_{k=1}^{K} ρ̂_k),

with ρ̂_k the sample autocorrelation (mean removed, autocovariances divided by ``n`` at every
lag, as ``statsmodels.tsa.stattools.acf``), summed from lag 1 up to the lag before the first
negative ρ̂_k, and never beyond ``max_lag = 20``. The cap makes ESS ≥ n / (1 + 2·max_lag)
(100/41 ≈ 2.44 on the paper's 100-sample windows); in exact arithmetic the smallest value the
estimator can return is larger (3.06 at n = 100, :func:`ess_minimum`). Everything here is computed
in float64: on float32 traces of weights that move by a few ulps, the released code's float32
arithmetic returned values between the two (the 2.6 minima of the paper's SGD windows).

ArviZ's ``az.ess`` (Geyer's initial-sequence estimator, rank-normalised and split for "bulk")
has no lag cap; for slowly mixing chains the two disagree by a large factor, and the book should
prefer ArviZ on functions of the weights (:func:`to_inference_data`).

Stability. A sampler's drift is gradient descent with a preconditioner, ``θ ← θ − c·P^a·∇L``
(``c``, ``a`` and ``L`` as :func:`preconditioned_sharpness` states them per convention); on a
quadratic with Hessian ``H`` it multiplies the error by ``I − c·P^a·H``, so it is stable when
``c·λmax(P^a·H) < 2`` and diverges along the top eigenvector when the product exceeds 2.
:func:`preconditioned_sharpness` estimates that largest eigenvalue on a minibatch by Lanczos
with Hessian- (:class:`HessianProduct`) or Gauss-Newton-vector products (:class:`GGNProduct`),
applying ``P`` through the sampler's own preconditioner.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from sgmcmc.samplers.base import LangevinSampler, _scales
from sgmcmc.samplers.preconditioner import GroupStep, Scales

if TYPE_CHECKING:
    import arviz

PAPER_MAX_LAG = 20


@dataclass(frozen=True)
class MESS:
    """Summary of per-parameter ESS over a window: the paper's diagonal mESS and the minimum.

    ``geometric_mean`` and ``minimum`` are taken over the finite per-parameter values only;
    ``n_nonfinite`` says how many were left out (constant traces: zero variance gives 0/0).
    Both are NaN when no value is finite.
    """

    geometric_mean: float
    minimum: float
    n_samples: int
    n_params: int
    n_nonfinite: int

    @property
    def fraction_finite(self) -> float:
        """Share of parameters whose ESS was finite (the released code printed this)."""
        return 1.0 - self.n_nonfinite / self.n_params


def _as_trace(samples: np.ndarray, name: str = "samples") -> np.ndarray:
    """Return ``samples`` as a float64 ``(n, p)`` array (a 1-d trace becomes one column)."""
    x = np.asarray(samples, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise ValueError(
            f"{name} must be (n_samples, n_params) or (n_samples,), got shape {x.shape}; "
            "flatten the parameter dimensions first"
        )
    if x.shape[0] < 2 or x.shape[1] == 0:
        raise ValueError(f"{name} needs at least 2 samples and 1 parameter, got shape {x.shape}")
    return x


def autocorrelation(samples: np.ndarray, max_lag: int = PAPER_MAX_LAG) -> np.ndarray:
    """Sample autocorrelation ρ̂_0..ρ̂_max_lag of each column, shape ``(max_lag + 1, p)``.

    Mean removed, every autocovariance divided by ``n`` (the biased, positive semi-definite
    estimator of ``statsmodels``' ``acf``). Constant columns give NaN.
    """
    x = _as_trace(samples)
    n = x.shape[0]
    if not 0 <= max_lag < n:
        raise ValueError(f"max_lag must be in [0, n_samples), got {max_lag} with {n} samples")
    x = x - x.mean(axis=0)
    acov = np.stack([np.einsum("ij,ij->j", x[: n - k], x[k:]) for k in range(max_lag + 1)])
    with np.errstate(invalid="ignore", divide="ignore"):
        return acov / acov[0]


def univariate_ess(samples: np.ndarray, max_lag: int = PAPER_MAX_LAG) -> np.ndarray:
    """The paper's per-column ESS, ``n / (1 + 2 Σ ρ̂_k)`` (module docstring); shape ``(p,)``.

    A 1-d trace gives shape ``(1,)``. Non-finite results (constant or non-finite traces) are
    kept as NaN, never dropped; :func:`mess` counts them.
    """
    if max_lag < 1:
        raise ValueError(f"max_lag must be >= 1, got {max_lag}")
    x = _as_trace(samples)
    rho = autocorrelation(x, max_lag)[1:]
    before_first_negative = np.cumsum(rho < 0, axis=0) == 0
    lag_sum = np.where(before_first_negative, rho, 0.0).sum(axis=0)  # NaN ρ̂ stays NaN
    return x.shape[0] / (1.0 + 2.0 * lag_sum)


def ess_floor(n_samples: int, max_lag: int = PAPER_MAX_LAG) -> float:
    """The bound ``n / (1 + 2·max_lag)`` implied by the lag cap (100/41 at n = 100)."""
    return n_samples / (1.0 + 2.0 * max_lag)


def ess_minimum(n_samples: int, max_lag: int = PAPER_MAX_LAG) -> float:
    """The smallest value :func:`univariate_ess` can return for ``n_samples`` draws.

    With autocovariances divided by ``n``, ``Σ_{k≤K} ρ̂_k`` is a Rayleigh quotient of the
    centred band matrix ``C·B_K·C`` (``B_K`` = ½(shifts by 1..K, both ways), ``C = I − 11ᵀ/n``),
    so the estimator is at least ``n / (1 + 2·max_K λ_max(C B_K C))``; the top eigenvector
    attains it. Dense eigendecompositions: meant for window sizes up to a few thousand.
    """
    if not 0 < max_lag < n_samples:
        raise ValueError(f"need 0 < max_lag < n_samples, got {max_lag} and {n_samples}")
    centre = np.eye(n_samples) - 1.0 / n_samples
    band = np.zeros((n_samples, n_samples))
    largest = -math.inf
    for k in range(1, max_lag + 1):
        band += 0.5 * (np.eye(n_samples, k=k) + np.eye(n_samples, k=-k))
        largest = max(largest, np.linalg.eigvalsh(centre @ band @ centre)[-1])
    return n_samples / (1.0 + 2.0 * largest)


def _summarise(ess: np.ndarray, n_samples: int) -> MESS:
    finite = ess[np.isfinite(ess)]
    if finite.size == 0:
        geometric_mean = minimum = math.nan
    else:
        geometric_mean = float(np.exp(np.mean(np.log(finite))))
        minimum = float(finite.min())
    return MESS(geometric_mean, minimum, n_samples, ess.size, int(ess.size - finite.size))


def mess(samples: np.ndarray, max_lag: int = PAPER_MAX_LAG) -> MESS:
    """The paper's diagonal multivariate ESS of an ``(n_samples, n_params)`` trace.

    Vats et al.'s ``n (|Λ|/|Σ|)^{1/p}`` with both covariances replaced by their diagonals is the
    geometric mean of univariate ESS; here each univariate ESS is :func:`univariate_ess`.
    """
    x = _as_trace(samples)
    return _summarise(univariate_ess(x, max_lag), x.shape[0])


def batch_means_mess(samples: np.ndarray, batch_size: int | None = None) -> MESS:
    """The released code's other mESS (``utils.mess``): diagonal batch means.

    Per parameter, ``ESS_j = n · var_j / (b · var(batch means)_j)``; the geometric mean of these
    equals the code's ``n·exp(mean log var − mean log bvar)``. Batch size ``b`` defaults to
    ``floor(sqrt(n))``; the trace is cut into ``a = n // b`` batches of exactly ``b`` draws, the
    earliest ``n − a·b`` draws being dropped (the code split unevenly with ``np.array_split``).
    Both variances divide by their count (``ddof = 0``), as the code did, which inflates ESS by
    about ``a / (a − 1)``. Constant parameters give NaN and are counted in ``n_nonfinite``.
    """
    x = _as_trace(samples)
    n = x.shape[0]
    b = math.isqrt(n) if batch_size is None else batch_size
    if not 1 <= b <= n // 2:
        raise ValueError(f"batch_size must be in [1, n_samples // 2] = [1, {n // 2}], got {b}")
    a = n // b
    batch_means = x[n - a * b :].reshape(a, b, -1).mean(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        ess = n * x.var(axis=0) / (b * batch_means.var(axis=0))
    return _summarise(ess, n)


def windowed_mess(
    trace: np.ndarray, window: int = 100, n_windows: int = 5, max_lag: int = PAPER_MAX_LAG
) -> list[MESS]:
    """:func:`mess` on consecutive windows ``trace[i·window:(i+1)·window]``, ``i < n_windows``.

    The paper's Fig. 2: 5 windows of 100 samples from the start of the trace (``split_mess``).
    """
    x = _as_trace(trace, "trace")
    if window < 2 or n_windows < 1:
        raise ValueError(f"need window >= 2 and n_windows >= 1, got {window} and {n_windows}")
    if x.shape[0] < window * n_windows:
        raise ValueError(
            f"trace has {x.shape[0]} samples, fewer than {n_windows} windows of {window}; "
            "collect more samples or use fewer/smaller windows"
        )
    return [mess(x[i * window : (i + 1) * window], max_lag) for i in range(n_windows)]


def windows_as_chains(trace: np.ndarray, window: int, n_windows: int) -> np.ndarray:
    """Reshape a ``(draw, *shape)`` trace into ``(n_windows, window, *shape)`` pseudo-chains."""
    x = np.asarray(trace)
    if window < 1 or n_windows < 1 or x.shape[0] < window * n_windows:
        raise ValueError(
            f"cannot cut {x.shape[0]} draws into {n_windows} windows of {window}; "
            "use fewer or smaller windows"
        )
    return x[: window * n_windows].reshape(n_windows, window, *x.shape[1:])


def _arviz():
    """Import ArviZ without its import-time notice about the coming 1.x refactor."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, module="arviz")
        import arviz

    return arviz


def to_inference_data(
    traces: Mapping[str, np.ndarray],
    *,
    probe_log_lik: np.ndarray | None = None,
    probe_probs: np.ndarray | None = None,
    chain_coords: list | None = None,
    draw_coords: list | np.ndarray | None = None,
    attrs: Mapping[str, object] | None = None,
) -> arviz.InferenceData:
    """Traces as ArviZ ``InferenceData`` (posterior group), so ``az.ess`` / ``az.rhat`` apply.

    ``traces`` maps a name to an array ``(chain, draw, *shape)``: weight traces, with chains
    seeds or windows (:func:`windows_as_chains`). Weight-space R-hat across seeds means little
    (permutation symmetry), so function-space quantities on a fixed probe set go in as extra
    posterior variables: ``probe_log_lik`` ``(chain, draw, probe)`` — log p(y|x, θ) per probe
    example, also summed as ``probe_log_lik_sum`` ``(chain, draw)`` — and ``probe_probs``
    ``(chain, draw, probe, class)``. ``chain_coords`` labels chains (e.g. seeds), ``draw_coords``
    draws (e.g. the optimizer step each sample was taken at).
    """
    posterior = {name: np.asarray(value) for name, value in traces.items()}
    dims: dict[str, list[str]] = {}
    if probe_log_lik is not None:
        ll = np.asarray(probe_log_lik, dtype=np.float64)
        posterior["probe_log_lik"] = ll
        posterior["probe_log_lik_sum"] = ll.sum(axis=-1)
        dims["probe_log_lik"] = ["probe"]
    if probe_probs is not None:
        posterior["probe_probs"] = np.asarray(probe_probs)
        dims["probe_probs"] = ["probe", "class"]
    if not posterior:
        raise ValueError("nothing to convert: give traces or probe quantities")
    leading = {name: value.shape[:2] for name, value in posterior.items()}
    if len(set(leading.values())) != 1 or any(len(s) < 2 for s in leading.values()):
        raise ValueError(f"every array must start with the same (chain, draw) shape, got {leading}")
    coords: dict[str, list | np.ndarray] = {}
    if chain_coords is not None:
        coords["chain"] = list(chain_coords)
    if draw_coords is not None:
        coords["draw"] = np.asarray(draw_coords)
    return _arviz().from_dict(
        posterior=posterior, coords=coords, dims=dims, attrs=dict(attrs or {})
    )


# ----------------------------------------------------------------- stability of a step
#: A step is stable when ``c·λmax(P^a·H) <`` this (:func:`preconditioned_sharpness`).
STABILITY_BOUND = 2.0

#: A curvature product: tensors shaped as its ``params`` in, the product out.
CurvatureProduct = Callable[[list[Tensor]], list[Tensor]]


class HessianProduct:
    """``v ↦ H·v``, ``H`` the Hessian of ``loss()`` in ``params``, by double backward.

    ``loss`` (no arguments, returning a scalar) is evaluated once, here, on whatever batch it
    closes over; its graph is kept for the products until this object is dropped. Parameters
    the loss depends on linearly or not at all have zero rows. ``self.loss``: the value,
    detached.
    """

    def __init__(self, loss: Callable[[], Tensor], params: Iterable[Tensor]) -> None:
        self.params = list(params)
        with torch.enable_grad():
            value = loss()
            grads = torch.autograd.grad(value, self.params, create_graph=True, allow_unused=True)
        self.loss = value.detach()
        # a gradient that is constant (or absent) is a zero row of H: left out of the products
        self._rows = [(i, g) for i, g in enumerate(grads) if g is not None and g.requires_grad]

    def __call__(self, vectors: list[Tensor]) -> list[Tensor]:
        """``H·v`` for ``v`` given as tensors shaped (and ordered) as ``params``."""
        if not self._rows:
            return [torch.zeros_like(v) for v in vectors]
        # Σ_i ⟨∂g_i/∂θ, v_i⟩ = Hᵀv = Hv
        products = torch.autograd.grad(
            [g for _, g in self._rows],
            self.params,
            [vectors[i] for i, _ in self._rows],
            retain_graph=True,
            allow_unused=True,
        )
        return [
            torch.zeros_like(v) if h is None else h for h, v in zip(products, vectors, strict=True)
        ]


class GGNProduct:
    """``v ↦ (Jᵀ·H_ℓ·J + prior_precision·I)·v``: the generalised Gauss-Newton matrix of
    ``loss_of_output(output())`` in ``params`` (``J`` the Jacobian of the output, ``H_ℓ`` the
    Hessian of the loss in the output), plus a Gaussian prior's precision.

    For a softmax cross-entropy, ``H_ℓ`` is the Fisher's, so this is the Fisher that K-FAC
    approximates: ``λmax(P·GGN)`` measures K-FAC's own error, with none of the Hessian's
    indefinite part. ``output`` (no arguments) is evaluated once, here; the langevin
    convention's potential is ``loss_of_output = lambda z: N·F.cross_entropy(z, y)`` and
    ``prior_precision = 1/prior_std²``. ``self.loss``: the loss's value, detached.
    """

    def __init__(
        self,
        output: Callable[[], Tensor],
        loss_of_output: Callable[[Tensor], Tensor],
        params: Iterable[Tensor],
        *,
        prior_precision: float = 0.0,
    ) -> None:
        self.params = list(params)
        self.prior_precision = float(prior_precision)
        with torch.enable_grad():
            self._output = output()
            value = loss_of_output(self._output)
            (self._output_grad,) = torch.autograd.grad(value, self._output, create_graph=True)
        self.loss = value.detach()

    def __call__(self, vectors: list[Tensor]) -> list[Tensor]:
        """``(Jᵀ·H_ℓ·J + prior_precision·I)·v`` for ``v`` shaped as ``params``."""
        out = self._output
        with torch.enable_grad():
            # J·v by the double-vjp trick: Jᵀu is linear in u, and its vjp with v is J·v
            dummy = torch.zeros_like(out, requires_grad=True)
            transposed = torch.autograd.grad(
                out, self.params, dummy, create_graph=True, allow_unused=True
            )
            pairs = [(t, v) for t, v in zip(transposed, vectors, strict=True) if t is not None]
            (jv,) = torch.autograd.grad(
                [t for t, _ in pairs], dummy, [v for _, v in pairs], retain_graph=True
            )
        hjv = torch.autograd.grad(self._output_grad, out, jv, retain_graph=True)[0]
        products = torch.autograd.grad(out, self.params, hjv, retain_graph=True, allow_unused=True)
        result = [
            torch.zeros_like(v) if p is None else p for p, v in zip(products, vectors, strict=True)
        ]
        if self.prior_precision:
            torch._foreach_add_(result, list(vectors), alpha=self.prior_precision)
        return result


@dataclass(frozen=True)
class Sharpness:
    """The largest eigenvalue of a sampler's drift Jacobian, ``c·P^a·(H + λI)``
    (:func:`preconditioned_sharpness`).

    ``value``: ``λmax(c·P^a·(H + λI))``, the number the step's stability compares with 2;
    ``lowest``: the smallest Ritz value (an upper bound on the smallest eigenvalue, less
    converged than ``value``; negative where ``H`` is indefinite); ``lr`` and ``step``
    (``c``): the groups' learning rate and drift coefficient when all groups share them, else
    ``None``; ``preconditioned``: whether ``P`` entered (``a = 1``) in every group;
    ``iterations`` (Lanczos steps) and ``residual`` (the top Ritz pair's residual norm over
    ``|value|``, which bounds the relative error of ``value``).
    """

    value: float
    lowest: float
    lr: float | None
    step: float | None
    preconditioned: bool
    iterations: int
    residual: float

    @property
    def stable(self) -> bool:
        """``value < 2``: gradient descent with this step and preconditioner contracts along
        every eigenvector of ``P^a·H`` (``False`` when the estimate is not finite)."""
        return self.value < STABILITY_BOUND

    @property
    def curvature(self) -> float | None:
        """``λmax(P^a·(H + λI))``, the step's coefficient divided out (``None`` when the groups
        have different coefficients)."""
        return None if self.step is None else self.value / self.step

    @property
    def largest_stable_lr(self) -> float | None:
        """The learning rate at which ``value`` would reach 2 (``value`` is proportional to
        ``lr`` in both conventions; ``None`` when the groups have different rates)."""
        return None if self.lr is None else self.lr * STABILITY_BOUND / self.value


def step_scales(sampler: LangevinSampler) -> list[Scales]:
    """The coefficients of each parameter group's step in its convention
    (:class:`~sgmcmc.samplers.preconditioner.Scales`: drift, noise, noise power, whether the
    drift is preconditioned, weight decay), as the sampler's next ``step()`` uses them."""
    return [_scales(group) for group in sampler.param_groups]


def preconditioned_sharpness(
    sampler: LangevinSampler,
    product: CurvatureProduct,
    *,
    precondition: bool | None = None,
    max_iterations: int = 30,
    rtol: float = 1e-3,
    generator: torch.Generator | None = None,
) -> Sharpness:
    """``λmax(c·P^a·(H + λI))``: whether the sampler's drift is stable on this curvature.

    ``product`` gives ``H·v`` (:class:`HessianProduct`, :class:`GGNProduct`, or any callable
    on tensors shaped as the sampler's parameters, in ``param_groups`` order) of the loss the
    sampler's gradient is taken of, on a minibatch. The drift of one step of a group is
    ``−c·P^a·(∇L + λθ)``, with ``λ`` its ``weight_decay``, ``P`` its preconditioner in its
    current state (the factors, eigenbases or averages the next ``step()`` would use; applied
    through :meth:`~sgmcmc.samplers.preconditioner.Preconditioner.apply`), and, by convention:

    - ``"langevin"``: ``L = U``, the potential (``N·`` mean loss + prior), ``c = lr``;
      ``a = 1`` with ``precondition="both"`` (eq. 1): stable when ``lr·λmax(P·H_U) < 2``;
      ``a = 0`` with ``"noise"``: ``lr·λmax(H_U) < 2``;
    - ``"paper"``: ``L`` the mean batch loss, ``c = lr/2`` (the released code's half step),
      ``a = 0``: the drift is not preconditioned, so it is stable when
      ``(lr/2)·λmax(H) < 2`` whatever ``P`` is (``P`` only scales the noise).

    ``precondition=True`` forces ``a = 1`` (e.g. the paper convention's ``(lr/2)·λmax(P·H)``,
    the bound its half step would face with the gradient preconditioned too), ``False``
    forces ``a = 0``; ``None`` takes each group's own rule.

    Computed as the top eigenvalue of the symmetric ``C^{1/2}P^{a/2}(H + λI)P^{a/2}C^{1/2}``
    (``C`` the groups' coefficients; the same spectrum as ``C·P^a·(H + λI)`` for a positive
    definite ``P``) by Lanczos with full reorthogonalisation from a random start
    (``generator``; default a fixed seed), stopped once the top Ritz pair's residual is below
    ``rtol·value`` or after ``max_iterations`` products (each one ``H``-product and two
    ``P^{1/2}``-products; the basis keeps ``max_iterations`` parameter-sized vectors).
    A non-finite product (a diverged model) gives a NaN ``value``, which is not ``stable``.
    The preconditioner's state is only read (pSGLD creates an empty one on first use).
    """
    if isinstance(max_iterations, bool) or not isinstance(max_iterations, int):
        raise ValueError(f"max_iterations must be an integer >= 1, got {max_iterations!r}")
    if max_iterations < 1:
        raise ValueError(f"max_iterations must be an integer >= 1, got {max_iterations!r}")
    if not 0 < rtol < 1:
        raise ValueError(f"rtol must be in (0, 1), got {rtol!r}")
    params = list(getattr(product, "params", None) or [])
    groups = [group for group in sampler.param_groups if group["params"]]
    ordered = [p for group in groups for p in group["params"]]
    if params and [id(p) for p in params] != [id(p) for p in ordered]:
        raise ValueError(
            "the curvature product's params must be the sampler's parameters in param_groups "
            "order: build it with [p for g in sampler.param_groups for p in g['params']]"
        )
    preconditioner = sampler.preconditioner
    parts = []  # per group: its GroupStep, sqrt(c), a, λ
    for group in groups:
        scales = _scales(group)
        powered = scales.drift_preconditioned if precondition is None else bool(precondition)
        step = GroupStep(group, sampler.state, list(group["params"]), [], scales)
        parts.append((step, math.sqrt(abs(scales.drift)), powered, scales.weight_decay))
    shapes = [p.shape for p in ordered]
    sizes = [p.numel() for p in ordered]

    def half(step: GroupStep, root_c: float, powered: bool, tensors: list[Tensor]):
        """``c^{1/2}·P^{a/2}`` applied to a group's tensors."""
        if powered:
            tensors = preconditioner.apply(step, tensors, 0.5)
        return [t * root_c for t in tensors]

    def operator(flat: Tensor) -> Tensor:
        pieces = [t.view(shape) for t, shape in zip(flat.split(sizes), shapes, strict=True)]
        inner, start = [], 0
        for step, root_c, powered, _ in parts:
            count = len(step.params)
            inner += half(step, root_c, powered, pieces[start : start + count])
            start += count
        curved = list(product(inner))
        out, start = [], 0
        for step, root_c, powered, weight_decay in parts:
            count = len(step.params)
            block = curved[start : start + count]
            if weight_decay:
                block = torch._foreach_add(block, inner[start : start + count], alpha=weight_decay)
            out += half(step, root_c, powered, block)
            start += count
        return torch.cat([t.reshape(-1) for t in out])

    reference = ordered[0]
    with torch.no_grad():
        top, bottom, iterations, residual = _lanczos(
            operator,
            sum(sizes),
            reference,
            max_iterations,
            rtol,
            generator or torch.Generator(reference.device).manual_seed(0),
        )
    scales = [step.scales for step, *_ in parts]
    lrs = {float(step.group["lr"]) for step, *_ in parts}
    drifts = {abs(s.drift) for s in scales}
    return Sharpness(
        value=top,
        lowest=bottom,
        lr=lrs.pop() if len(lrs) == 1 else None,
        step=drifts.pop() if len(drifts) == 1 else None,
        preconditioned=all(powered for _, _, powered, _ in parts),
        iterations=iterations,
        residual=residual,
    )


def _lanczos(
    operator: Callable[[Tensor], Tensor],
    dimension: int,
    like: Tensor,
    max_iterations: int,
    rtol: float,
    generator: torch.Generator,
) -> tuple[float, float, int, float]:
    """Extreme Ritz values of a symmetric operator: (top, bottom, iterations, relative
    residual of the top pair). Full reorthogonalisation (twice), so the basis stays
    orthonormal in floating point; stops early on convergence or an invariant subspace."""
    steps = min(max_iterations, dimension)
    basis = like.new_empty(steps, dimension)
    v = torch.randn(dimension, generator=generator, dtype=like.dtype, device=like.device)
    v /= v.norm()
    alphas: list[float] = []
    betas: list[float] = []
    top = bottom = residual = math.nan
    iterations = 0
    for k in range(steps):
        basis[k] = v
        w = operator(v)
        alpha = torch.dot(w, v).item()
        iterations = k + 1
        if not math.isfinite(alpha):
            return math.nan, math.nan, iterations, math.nan
        alphas.append(alpha)
        w -= alpha * v
        if k > 0:
            w -= betas[-1] * basis[k - 1]
        kept = basis[: k + 1]
        for _ in range(2):
            w -= kept.T @ (kept @ w)
        beta = w.norm().item()
        tridiagonal = np.diag(alphas) + np.diag(betas, 1) + np.diag(betas, -1)
        values, vectors = np.linalg.eigh(tridiagonal)
        top, bottom = float(values[-1]), float(values[0])
        residual = beta * abs(float(vectors[-1, -1])) / max(abs(top), np.finfo(float).tiny)
        scale = max(abs(top), abs(bottom))
        if residual <= rtol or beta <= 1e3 * np.finfo(np.float64).eps * scale:
            break
        betas.append(beta)
        v = w / beta
    return top, bottom, iterations, residual
