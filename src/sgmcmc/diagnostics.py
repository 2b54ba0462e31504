"""Mixing diagnostics: the paper's effective sample sizes, and traces as ArviZ InferenceData.

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
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

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
