"""Known answers for preconditioned Langevin chains: what each update rule samples, exactly.

On a Gaussian target ``U(θ) = ½(θ − μ)ᵀH(θ − μ)`` (posterior ``N(μ, H⁻¹)``) a Langevin step
with a *constant* preconditioner ``P`` is the linear recursion

    ``θ' − μ = A(θ − μ) + sqrt(2·lr)·R·ξ``,  ``ξ ~ N(0, I)``,  ``A = I − lr·M·H``,

with ``M = P`` for the paper's eq. 1 (``precondition="both"``), ``M = I`` for its eq. 2
(``"noise"``), and ``R = P^{1/2}`` (the langevin convention's noise) or ``R = P`` (the paper's
literal ``P·ξ``, here at the langevin convention's scale so that only the noise's shape
differs). Its stationary law is ``N(μ, Σ)`` with ``Σ = AΣAᵀ + 2·lr·RRᵀ`` (discrete Lyapunov
equation); as ``lr → 0``, ``Σ`` solves ``MHΣ + ΣHMᵀ = 2RRᵀ`` (continuous Lyapunov), which is
``H⁻¹`` for eq. 1 and ``H⁻²`` for eq. 2 with ``P = H⁻¹`` (book/methods.md, "Gradient or noise").

:func:`simulate` runs many independent chains, vectorised as the rows of one parameter, through
the library's own Langevin step (:class:`sgmcmc.samplers.base.LangevinSampler`) with a frozen matrix
``P``, and returns the time-averaged covariance with Monte Carlo standard errors taken from
independent groups of chains, beside the posterior and both Lyapunov solutions.

Frozen preconditioners (:func:`preconditioner`): SGLD ``P = I``; pSGLD Li et al.'s
``P = diag(1/(ε + sqrt(V)))`` frozen at ``V = E_post[(∇U)²] = diag(H)``; KSGLD the damped
inverse Fisher ``P = (N·G⊗A + α·I)⁻¹`` from its exact Kronecker factors where the model has them
(multi-output linear regression: then ``P = H⁻¹`` exactly), else ``P = H⁻¹``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.linalg
import scipy.stats
import torch

from sgmcmc.samplers.base import LangevinSampler
from sgmcmc.samplers.preconditioner import Preconditioner
from sgmcmc_paper.protocol.paper import LANGEVIN_METHODS

SAMPLERS = LANGEVIN_METHODS
_BURN_IN_TOLERANCE = 1e-3


@dataclass(frozen=True)
class Rule:
    """Where the preconditioner acts: ``precondition`` (``"both"``/``"noise"``) and the noise
    factor ``noise`` (``"sqrt"``: ``P^{1/2}ξ``; ``"literal"``: ``P·ξ``)."""

    precondition: str
    noise: str
    label: str


RULES: dict[str, Rule] = {
    "eq1": Rule("both", "sqrt", "eq. 1: P∇U, P^½ξ"),
    "eq2": Rule("noise", "sqrt", "eq. 2: ∇U, P^½ξ"),
    "eq2_literal": Rule("noise", "literal", "eq. 2 as printed: ∇U, Pξ"),
}


# --------------------------------------------------------------------------------- targets
@dataclass(frozen=True, eq=False)
class KroneckerFisher:
    """Exact K-FAC factors of a linear layer: ``F = G ⊗ A`` per example (row-major ``vec``).

    ``input_factor`` ``A = E[x xᵀ]``, ``output_factor`` ``G`` (the output's Fisher), and the
    damped inverse power ``(N·G⊗A + α·I)^p`` applied in the eigenbases of ``G`` and ``A``.
    """

    input_factor: np.ndarray
    output_factor: np.ndarray
    num_data: int
    prior_precision: float

    def power(self, p: float) -> np.ndarray:
        """``(N·G⊗A + α·I)^p`` as a dense matrix, built as ``Q_G[(Q_Gᵀ X Q_A) ⊘ D^{-p}]Q_Aᵀ``
        applied to each basis matrix ``X`` (no Kronecker product of the factors is formed)."""
        a, q_a = np.linalg.eigh(self.input_factor)
        g, q_g = np.linalg.eigh(self.output_factor)
        scale = (self.num_data * np.outer(g, a) + self.prior_precision) ** p
        n_out, n_in = len(g), len(a)
        basis = np.eye(n_out * n_in).reshape(-1, n_out, n_in)
        columns = q_g @ ((q_g.T @ basis @ q_a) * scale) @ q_a.T
        return columns.reshape(n_out * n_in, -1).T


@dataclass(frozen=True, eq=False)
class GaussianTarget:
    """A Gaussian posterior ``N(mean, precision⁻¹)``; ``kronecker`` holds exact K-FAC factors
    and ``data`` the ``(inputs, outputs)`` when the target comes from a regression model."""

    name: str
    mean: np.ndarray
    precision: np.ndarray
    kronecker: KroneckerFisher | None = None
    data: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def dim(self) -> int:
        return len(self.mean)

    @property
    def covariance(self) -> np.ndarray:
        return _symmetric(np.linalg.inv(self.precision))

    @property
    def condition_number(self) -> float:
        eigenvalues = np.linalg.eigvalsh(self.precision)
        return float(eigenvalues[-1] / eigenvalues[0])


def gaussian_target(dim: int = 10, condition: float = 100.0, seed: int = 0) -> GaussianTarget:
    """``H = R·diag(λ)·Rᵀ``, ``λ`` log-spaced from 1 to ``condition``, ``R`` a Haar rotation;
    mean drawn from ``N(0, I)``."""
    if dim < 2 or condition < 1:
        raise ValueError(f"need dim >= 2 and condition >= 1, got dim={dim}, condition={condition}")
    rng = np.random.default_rng(seed)
    rotation = scipy.stats.special_ortho_group.rvs(dim, random_state=rng)
    eigenvalues = np.geomspace(1.0, condition, dim)
    precision = _symmetric((rotation * eigenvalues) @ rotation.T)
    return GaussianTarget(f"Gaussian (d={dim}, κ={condition:g})", rng.normal(size=dim), precision)


def linear_regression_target(
    num_data: int = 200,
    in_features: int = 4,
    out_features: int = 3,
    prior_precision: float = 1.0,
    seed: int = 0,
) -> GaussianTarget:
    """Posterior of ``W`` (``out × in``, row-major) in ``y = W x + e``, ``e ~ N(0, Λ⁻¹)``, prior
    ``W ~ N(0, α⁻¹I)``.

    Inputs have correlated features of scales 1 to 3.5, the noise precision ``Λ`` correlated
    outputs, so the posterior precision ``H = Λ ⊗ XᵀX + α·I`` is ill-conditioned and not
    diagonal. Its exact K-FAC factors are ``A = XᵀX/N`` and ``G = Λ``.
    """
    rng = np.random.default_rng(seed)
    mixing = scipy.stats.special_ortho_group.rvs(in_features, random_state=rng)
    scales = np.geomspace(1.0, 3.5, in_features)
    inputs = rng.normal(size=(num_data, in_features)) @ (mixing * scales) @ mixing.T
    correlation = 0.4 * np.eye(out_features) + 0.6  # 0.6 between any two outputs
    noise_std = np.sqrt(np.geomspace(0.5, 2.0, out_features))
    noise_precision = _symmetric(np.linalg.inv(correlation * np.outer(noise_std, noise_std)))
    weights = rng.normal(size=(out_features, in_features))
    noise = rng.multivariate_normal(
        np.zeros(out_features), np.linalg.inv(noise_precision), num_data
    )
    outputs = inputs @ weights.T + noise
    gram = inputs.T @ inputs
    precision = _symmetric(np.kron(noise_precision, gram) + prior_precision * np.eye(weights.size))
    mean = np.linalg.solve(precision, (noise_precision @ outputs.T @ inputs).ravel())
    factors = KroneckerFisher(gram / num_data, noise_precision, num_data, prior_precision)
    name = f"linear regression ({out_features}×{in_features}, N={num_data})"
    return GaussianTarget(name, mean, precision, factors, (inputs, outputs))


def preconditioner(target: GaussianTarget, sampler: str, eps: float = 1e-5) -> np.ndarray:
    """The frozen ``P`` of ``sampler`` on ``target`` (module docstring); ``eps`` is pSGLD's."""
    if sampler == "sgld":
        return np.eye(target.dim)
    if sampler == "psgld":
        return np.diag(1.0 / (eps + np.sqrt(np.diag(target.precision))))
    if sampler == "ksgld":
        if target.kronecker is not None:
            return _symmetric(target.kronecker.power(-1.0))
        return target.covariance
    raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")


# ------------------------------------------------------------------------- linear algebra
def transition(
    target: GaussianTarget, P: np.ndarray, rule: Rule, lr: float
) -> tuple[np.ndarray, np.ndarray]:
    """``(A, Q)`` of ``θ' − μ = A(θ − μ) + N(0, Q)`` for one step of ``rule`` at step ``lr``."""
    drift = P if rule.precondition == "both" else np.eye(target.dim)
    noise_factor = matrix_power(P, 0.5 if rule.noise == "sqrt" else 1.0)
    return np.eye(target.dim) - lr * drift @ target.precision, 2 * lr * noise_factor @ noise_factor


def discrete_stationary_covariance(A: np.ndarray, Q: np.ndarray) -> np.ndarray:
    """``Σ = AΣAᵀ + Q``: the exact stationary covariance of the discrete chain."""
    if spectral_radius(A) >= 1:
        raise ValueError(f"the chain is unstable: spectral radius {spectral_radius(A):.4g} >= 1")
    return _symmetric(scipy.linalg.solve_discrete_lyapunov(A, Q))


def continuous_stationary_covariance(target: GaussianTarget, P: np.ndarray, rule: Rule):
    """The ``lr → 0`` limit: ``MHΣ + ΣHMᵀ = 2RRᵀ`` (``M``, ``R`` as in the module docstring)."""
    drift = (P if rule.precondition == "both" else np.eye(target.dim)) @ target.precision
    noise_factor = matrix_power(P, 0.5 if rule.noise == "sqrt" else 1.0)
    return _symmetric(
        scipy.linalg.solve_continuous_lyapunov(drift, 2 * noise_factor @ noise_factor)
    )


def step_size(target: GaussianTarget, P: np.ndarray, rule: Rule, step_fraction: float) -> float:
    """``lr = step_fraction / λ_max(M·H)``; the chain is stable for ``step_fraction < 2``."""
    drift = P if rule.precondition == "both" else np.eye(target.dim)
    root = matrix_power(drift, 0.5)
    return step_fraction / float(np.linalg.eigvalsh(root @ target.precision @ root)[-1])


def matrix_power(matrix: np.ndarray, p: float) -> np.ndarray:
    """``S^p`` of a symmetric positive-definite ``S``, by its eigendecomposition."""
    eigenvalues, vectors = np.linalg.eigh(matrix)
    return _symmetric((vectors * eigenvalues**p) @ vectors.T)


def spectral_radius(A: np.ndarray) -> float:
    return float(np.max(np.abs(np.linalg.eigvals(A))))


def _symmetric(matrix: np.ndarray) -> np.ndarray:
    return (matrix + matrix.T) / 2


def _whiten(matrices: np.ndarray, reference: np.ndarray) -> np.ndarray:
    root = matrix_power(reference, -0.5)
    return root @ matrices @ root


# ------------------------------------------------------------------------------- chains
class FrozenMatrixLangevin(LangevinSampler):
    """The library's Langevin step with a constant matrix ``P`` acting on the rows of each
    ``(n_chains, d)`` parameter (one chain per row).

    ``noise="literal"`` makes the noise factor ``P`` instead of ``P^{1/2}`` (the paper's
    printed ``P·ξ``) while keeping the langevin convention's scale ``sqrt(2·lr)``.
    """

    def __init__(self, params, lr: float, P: np.ndarray, *, noise: str = "sqrt", **kwargs: Any):
        if noise not in ("sqrt", "literal"):
            raise ValueError(f"noise must be 'sqrt' or 'literal', got {noise!r}")
        frozen = _FrozenMatrix(0.5 if noise == "sqrt" else 1.0)
        super().__init__(params, lr, frozen, **kwargs)
        device = self.param_groups[0]["params"][0].device
        dtype = self.param_groups[0]["params"][0].dtype
        frozen.powers = {
            p: torch.as_tensor(matrix_power(P, p), dtype=dtype, device=device) for p in (0.5, 1.0)
        }


class _FrozenMatrix(Preconditioner):
    """``P`` acting on the rows of each parameter; the noise's power 0.5 is ``noise_power``."""

    def __init__(self, noise_power: float) -> None:
        self.noise_power = noise_power
        self.powers: dict[float, torch.Tensor] = {}

    def apply(self, step, tensors, power):
        matrix = self.powers[self.noise_power if power == 0.5 else power]
        return [t @ matrix for t in tensors]


@dataclass(frozen=True, eq=False)
class StationaryEstimate:
    """The chains' stationary covariance beside the known answers.

    ``group_estimates`` are ``(groups, d, d)`` covariance estimates from disjoint groups of
    chains (independent replicates); ``estimate`` is their mean. References: ``posterior``
    (``H⁻¹``), ``lyapunov`` (the discrete chain's exact ``Σ``), ``continuous`` (its ``lr → 0``
    limit).
    """

    target: str
    sampler: str
    rule: str
    lr: float
    step_fraction: float
    chains: int
    burn_in: int
    steps: int
    group_estimates: np.ndarray
    posterior: np.ndarray
    lyapunov: np.ndarray
    continuous: np.ndarray
    posterior_precision: np.ndarray = field(repr=False)

    @property
    def estimate(self) -> np.ndarray:
        return self.group_estimates.mean(0)

    def relative_error(self, reference: str = "posterior") -> tuple[float, float]:
        """``(‖W − I‖_F/√d, se)`` with ``W = S^{-1/2}Σ̂S^{-1/2}`` whitened by the reference ``S``
        (so every direction counts equally), and ``se`` the Monte Carlo standard error of
        ``W`` in the same norm (root-sum-square of its entries' errors over ``√d``).

        Without bias ``error ≈ se``; a bias of ``k`` standard errors gives ``≈ sqrt(1 + k²)·se``.
        """
        whitened = _whiten(self.group_estimates, getattr(self, reference))
        d, groups = self.posterior.shape[0], len(whitened)
        error = np.linalg.norm(whitened.mean(0) - np.eye(d)) / math.sqrt(d)
        se = math.sqrt(whitened.var(0, ddof=1).sum() / groups / d)
        return float(error), float(se)

    def lyapunov_bias(self) -> float:
        """The exact relative error of the discrete chain's ``Σ`` against the posterior (same
        norm as :meth:`relative_error`): what the chains would show with infinitely many."""
        whitened = _whiten(self.lyapunov, self.posterior)
        return float(np.linalg.norm(whitened - np.eye(len(whitened))) / math.sqrt(len(whitened)))

    def variance_ratios(self) -> dict[str, np.ndarray]:
        """Variance along each posterior eigenvector (sorted by posterior variance, largest
        first) over the posterior's: ``estimate`` with its ``se``, ``lyapunov`` and
        ``continuous`` (1 everywhere means the posterior is sampled)."""
        precision_eigenvalues, vectors = np.linalg.eigh(self.posterior_precision)

        def ratio(matrices: np.ndarray) -> np.ndarray:
            return (
                np.einsum("di,...de,ei->...i", vectors, matrices, vectors) * precision_eigenvalues
            )

        groups = ratio(self.group_estimates)
        return {
            "estimate": groups.mean(0),
            "se": groups.std(0, ddof=1) / math.sqrt(len(groups)),
            "lyapunov": ratio(self.lyapunov),
            "continuous": ratio(self.continuous),
        }


def simulate(
    target: GaussianTarget,
    sampler: str,
    rule: str = "eq1",
    *,
    step_fraction: float = 0.05,
    chains: int = 1024,
    groups: int = 32,
    relaxation_times: float = 4.0,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> StationaryEstimate:
    """Run ``chains`` independent chains of ``sampler`` under ``rule`` and estimate ``Σ``.

    Chains start from the posterior (a draw of ``N(μ, H⁻¹)`` each), run ``burn_in`` steps, until
    what is left of the start is below 0.1% of the stationary covariance in every direction
    (exactly: the chain is linear), then average
    ``(θ − μ)(θ − μ)ᵀ`` over ``relaxation_times / (1 − ρ(A))`` further steps (the stationary
    mean ``μ`` is known). Step size: :func:`step_size`. Noise from a seeded generator.
    """
    if rule not in RULES:
        raise ValueError(f"rule must be one of {tuple(RULES)}, got {rule!r}")
    if chains % groups or chains < 2 * groups or groups < 2:
        raise ValueError(f"chains ({chains}) must be a multiple of groups ({groups}) >= 2×groups")
    budget = ChainBudget(chains, groups, step_fraction, relaxation_times)
    shell = _estimate(target, sampler, rule, budget, np.zeros((groups, target.dim, target.dim)))
    P = preconditioner(target, sampler)
    with one_thread():
        sums = _run_chains(
            target,
            P,
            RULES[rule],
            shell.lr,
            chains,
            groups,
            shell.burn_in,
            shell.steps,
            seed,
            device,
        )
    group_estimates = sums / (shell.steps * (chains // groups))
    symmetric = (group_estimates + group_estimates.transpose(0, 2, 1)) / 2
    return dataclasses.replace(shell, group_estimates=symmetric)


def _run_chains(target, P, spec, lr, chains, groups, burn_in, steps, seed, device) -> np.ndarray:
    """Per group of chains, ``Σ_t Σ_chains (θ − μ)(θ − μ)ᵀ`` over the ``steps`` after burn-in.

    The chains run on ``δ = θ − μ`` (every rule here is translation invariant: the same step
    with gradient ``Hδ``), so float32 resolves posteriors of any width around any mean; float32
    normal draws are several times faster than float64. Sums accumulate in float64.
    """
    generator = torch.Generator(device=device).manual_seed(seed)
    precision = torch.as_tensor(target.precision, dtype=torch.float32, device=device)
    root = torch.as_tensor(np.linalg.cholesky(target.covariance), device=device)
    start = torch.randn(chains, target.dim, generator=generator, dtype=root.dtype, device=device)
    delta = (start @ root.T).float().requires_grad_(True)
    optimizer = FrozenMatrixLangevin(
        [delta], lr, P, noise=spec.noise, precondition=spec.precondition, generator=generator
    )
    sums = torch.zeros(groups, target.dim, target.dim, dtype=torch.float64, device=device)
    for t in range(burn_in + steps):
        with torch.no_grad():
            delta.grad = delta @ precision
        optimizer.step()
        if t >= burn_in:
            with torch.no_grad():
                centred = delta.double().view(groups, chains // groups, target.dim)
                sums += centred.transpose(1, 2) @ centred
    return sums.cpu().numpy()


@contextmanager
def one_thread():
    """Run torch on one thread: the chains' tensors are tiny, and on a busy machine thread
    hand-offs cost far more than they save. The previous setting is restored."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _burn_in(A: np.ndarray, start: np.ndarray, stationary: np.ndarray, tolerance: float) -> int:
    """The first ``t`` at which what is left of the start is below ``tolerance`` of the
    stationary covariance in every direction: ``‖S^{-1/2}Aᵗ(Σ₀ − S)Aᵗᵀ S^{-1/2}‖₂ ≤ tolerance``
    (``Σ₀`` the start's covariance, ``S`` the stationary one; found by doubling, then
    bisection)."""
    radius = spectral_radius(A)
    if radius >= 1:
        raise ValueError(f"the chain is unstable: spectral radius {radius:.4g} >= 1")
    root = matrix_power(stationary, -0.5)
    gap = start - stationary

    def left(t: int) -> float:
        power = np.linalg.matrix_power(A, t)
        return float(np.linalg.norm(root @ power @ gap @ power.T @ root, 2))

    high = 1
    while left(high) > tolerance:
        high *= 2
    low = high // 2
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if left(middle) <= tolerance else (middle, high)
    return high


@dataclass(frozen=True)
class ChainBudget:
    """How many chains, in how many groups, at which step fraction, for how long."""

    chains: int
    groups: int
    step_fraction: float
    relaxation_times: float


BUDGETS = {
    "ci": ChainBudget(chains=256, groups=16, step_fraction=0.2, relaxation_times=3.0),
    "quick": ChainBudget(chains=1024, groups=32, step_fraction=0.1, relaxation_times=4.0),
    "paper": ChainBudget(chains=4096, groups=32, step_fraction=0.02, relaxation_times=6.0),
}
"""Chain budgets of notebook 06 (a) per profile (seconds at ci, minutes once at paper)."""

_SCHEMA = 3


def cache_key(target: GaussianTarget, sampler: str, rule: str, budget: ChainBudget, seed: int):
    """16 hex digits identifying one simulation (target's numbers, sampler, rule, budget, seed)."""
    digest = hashlib.sha256()
    for array in (target.mean, target.precision):
        digest.update(np.ascontiguousarray(array, dtype=np.float64).tobytes())
    fields = [sampler, rule, dataclasses.astuple(budget), seed, _SCHEMA]
    digest.update(json.dumps(fields).encode())
    return digest.hexdigest()[:16]


def simulate_or_load(
    target: GaussianTarget,
    sampler: str,
    rule: str,
    budget: ChainBudget,
    seed: int = 0,
    folder: Path | None = None,
) -> StationaryEstimate:
    """:func:`simulate` with ``budget``, its group estimates kept in ``folder`` (one small
    ``.npz`` per simulation, written atomically) and reused when present."""
    path = None
    if folder is not None:
        path = Path(folder) / f"{cache_key(target, sampler, rule, budget, seed)}.npz"
        if path.exists():
            with np.load(path) as stored:
                return _estimate(target, sampler, rule, budget, stored["group_estimates"])
    estimate = simulate(
        target,
        sampler,
        rule,
        step_fraction=budget.step_fraction,
        chains=budget.chains,
        groups=budget.groups,
        relaxation_times=budget.relaxation_times,
        seed=seed,
    )
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as handle:
            np.savez_compressed(handle, group_estimates=estimate.group_estimates)
        os.replace(tmp, path)
    return estimate


def _estimate(target, sampler, rule, budget, group_estimates) -> StationaryEstimate:
    """A :class:`StationaryEstimate` from stored group estimates (known answers recomputed)."""
    spec = RULES[rule]
    P = preconditioner(target, sampler)
    lr = step_size(target, P, spec, budget.step_fraction)
    A, Q = transition(target, P, spec, lr)
    lyapunov = discrete_stationary_covariance(A, Q)
    return StationaryEstimate(
        target=target.name,
        sampler=sampler,
        rule=rule,
        lr=lr,
        step_fraction=budget.step_fraction,
        chains=budget.chains,
        burn_in=_burn_in(A, target.covariance, lyapunov, _BURN_IN_TOLERANCE),
        steps=max(1, math.ceil(budget.relaxation_times / (1.0 - spectral_radius(A)))),
        group_estimates=group_estimates,
        posterior=target.covariance,
        lyapunov=lyapunov,
        continuous=continuous_stationary_covariance(target, P, spec),
        posterior_precision=target.precision,
    )


def plot_variance_ratios(estimates: list[StationaryEstimate]):
    """One panel per (target, sampler): the chains' variance along each posterior eigenvector
    over the posterior's (markers, ± 2 standard errors) and the Lyapunov prediction (lines),
    one marker and line style per rule; 1 is the posterior."""
    import matplotlib.pyplot as plt

    from sgmcmc_paper.analysis.plotting import label_axes, method_color
    from sgmcmc_paper.protocol.paper import METHOD_LABELS

    targets = list(dict.fromkeys(e.target for e in estimates))
    samplers = list(dict.fromkeys(e.sampler for e in estimates))
    fig, axes = plt.subplots(
        len(targets),
        len(samplers),
        figsize=(3.6 * len(samplers), 3.2 * len(targets)),
        squeeze=False,
        sharey=True,
    )
    styles = {"eq1": ("o", "-"), "eq2": ("s", "--"), "eq2_literal": ("^", ":")}
    for est in estimates:
        row, col = targets.index(est.target), samplers.index(est.sampler)
        ax = axes[row, col]
        ratios = est.variance_ratios()
        index = np.arange(1, len(ratios["estimate"]) + 1)
        marker, line = styles[est.rule]
        color = method_color(est.sampler)
        label = "all rules (P = I)" if est.sampler == "sgld" else RULES[est.rule].label
        ax.plot(index, ratios["lyapunov"], linestyle=line, color=color, alpha=0.7)
        ax.errorbar(
            index,
            ratios["estimate"],
            yerr=2 * ratios["se"],
            fmt=marker,
            color=color,
            markersize=4,
            label=label,
        )
        ax.axhline(1.0, color="0.3", linewidth=0.8)
        ax.set_yscale("log")
        label_axes(
            ax,
            "posterior eigenvector" if row == len(targets) - 1 else "",
            "variance / posterior's" if col == 0 else "",
            title=f"{METHOD_LABELS[est.sampler]}: {est.target}",
        )
        ax.title.set_fontsize("small")
        ax.legend(fontsize="x-small", loc="lower left")
    fig.tight_layout()
    return fig


def comparison_table(estimates: list[StationaryEstimate], agree: float = 3.0, miss: float = 5.0):
    """One row per estimate: relative errors (± se) against the posterior and the discrete
    Lyapunov solution, and verdicts: ``error ≤ agree·se`` matches, ``error > miss·se`` misses."""
    import pandas as pd

    rows = []
    for est in estimates:
        post, post_se = est.relative_error("posterior")
        lyap, lyap_se = est.relative_error("lyapunov")
        rows.append(
            {
                "target": est.target,
                "sampler": est.sampler,
                "rule": est.rule,
                "lr": est.lr,
                "burn-in": est.burn_in,
                "steps": est.steps,
                "Lyapunov vs posterior (exact)": est.lyapunov_bias(),
                "error vs posterior": post,
                "se (posterior)": post_se,
                "error vs Lyapunov": lyap,
                "se (Lyapunov)": lyap_se,
                "matches posterior": post <= agree * post_se,
                "misses posterior": post > miss * post_se,
                "matches Lyapunov": lyap <= agree * lyap_se,
            }
        )
    return pd.DataFrame(rows)


__all__ = [
    "BUDGETS",
    "RULES",
    "SAMPLERS",
    "ChainBudget",
    "FrozenMatrixLangevin",
    "GaussianTarget",
    "KroneckerFisher",
    "Rule",
    "StationaryEstimate",
    "comparison_table",
    "continuous_stationary_covariance",
    "discrete_stationary_covariance",
    "gaussian_target",
    "linear_regression_target",
    "matrix_power",
    "plot_variance_ratios",
    "preconditioner",
    "simulate",
    "simulate_or_load",
    "step_size",
    "transition",
]
