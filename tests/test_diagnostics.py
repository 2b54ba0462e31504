"""Effective sample sizes against AR(1) known answers, the lag-cap floor, and ArviZ conversion."""

import math
import warnings

import numpy as np
import pytest
from scipy.signal import lfilter
from scipy.special import digamma, polygamma

from sgmcmc.diagnostics import (
    MESS,
    PAPER_MAX_LAG,
    autocorrelation,
    batch_means_mess,
    ess_floor,
    ess_minimum,
    mess,
    to_inference_data,
    univariate_ess,
    windowed_mess,
    windows_as_chains,
)

with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)
    import arviz as az

RHOS = (0.0, 0.5, 0.9, 0.99)
N_AR = 200_000


def ar1(rng, rhos, n):
    """Stationary AR(1) columns with unit marginal variance, ``(n, len(rhos))``."""
    columns = []
    for rho in rhos:
        noise = rng.standard_normal(n) * math.sqrt(1 - rho**2)
        start = rng.standard_normal()
        columns.append(lfilter([1.0], [1.0, -rho], noise, zi=[rho * start])[0])
    return np.stack(columns, axis=1)


def true_ess(rho, n):
    return n * (1 - rho) / (1 + rho)


def expected_capped_ess(rho, n, max_lag=PAPER_MAX_LAG):
    """n / (1 + 2 Σ_{k≤max_lag} E[ρ̂_k]), E[ρ̂_k] ≈ E[γ̂_k]/E[γ̂_0] computed exactly for AR(1).

    γ̂_k = (1/n) Σ_{t<n-k} (x_t - x̄)(x_{t+k} - x̄); with Σ_ij = ρ^|i-j| and row sums r_t,
    E[γ̂_k] = ((n-k)ρ^k - (Σ_{t<n-k} r_t + Σ_{t≥k} r_t)/n + (n-k)Σr/n²) / n. The ratio of
    expectations and the missing cut-at-first-negative (all ρ^k ≫ noise here when ρ ≥ 0.9) are
    second-order, far inside the tolerance below.
    """
    t = np.arange(n)
    rows = np.ones(n) if rho == 0 else ((1 - rho ** (t + 1)) + (1 - rho ** (n - t))) / (1 - rho) - 1
    total = rows.sum()
    gamma = np.array(
        [
            (n - k) * rho**k - (rows[: n - k].sum() + rows[k:].sum()) / n + (n - k) * total / n**2
            for k in range(max_lag + 1)
        ]
    )
    return n / (1 + 2 * np.sum(gamma[1:] / gamma[0]))


def relative_tolerance(rho, n, max_lag=PAPER_MAX_LAG, n_sd=5):
    """n_sd standard deviations of ESS/E[ESS] by the delta method on S = Σ_{k≤max_lag} ρ̂_k.

    Bartlett: Var(S) ≈ (1/n) Σ_m (Σ_k ρ_{m+k} + ρ_{m-k} - 2ρ_k ρ_m)², ρ_j = ρ^|j|, and
    SD(ESS)/ESS ≈ 2 SD(S) / (1 + 2S). For the cut sum this is conservative (for ρ = 0 it
    charges the noise of all 20 lags, while the cut usually stops after one or two).
    """
    m = np.arange(-(max_lag + 10_000), max_lag + 10_001)  # ρ^10000 = 0 for ρ ≤ 0.99

    def r(lag):
        return rho ** np.abs(lag) if rho > 0 else (np.asarray(lag) == 0).astype(float)

    terms = sum(r(m + k) + r(m - k) - 2 * r(k) * r(m) for k in range(1, max_lag + 1))
    lag_sum = sum(rho**k for k in range(1, max_lag + 1))
    return n_sd * 2 * math.sqrt(np.sum(terms**2) / n) / (1 + 2 * lag_sum)


@pytest.fixture(scope="module")
def ar_chains():
    return ar1(np.random.default_rng(0), RHOS, N_AR)


@pytest.fixture(scope="module")
def ar_ess(ar_chains):
    return univariate_ess(ar_chains)  # one call: the estimator is vectorised over columns


@pytest.mark.parametrize("column, rho", list(enumerate(RHOS)))
def test_ess_matches_its_capped_expectation(ar_ess, column, rho):
    tolerance = relative_tolerance(rho, N_AR)
    assert ar_ess[column] == pytest.approx(expected_capped_ess(rho, N_AR), rel=tolerance)


@pytest.mark.parametrize("column, rho", [(0, 0.0), (1, 0.5)])
def test_ess_matches_truth_where_cap_is_negligible(ar_ess, column, rho):
    assert rho**21 / (1 - rho) < 1e-5  # what the cap leaves out of Σρ^k
    assert ar_ess[column] == pytest.approx(true_ess(rho, N_AR), rel=relative_tolerance(rho, N_AR))


def test_cap_overstates_ess_of_slow_chains_and_arviz_does_not(ar_chains, ar_ess):
    rho = 0.99
    # The capped estimator converges to n / (1 + 2ρ(1 - ρ^20)/(1 - ρ)) = n/37.1, not n/199.
    capped, truth = expected_capped_ess(rho, N_AR), true_ess(rho, N_AR)
    assert capped / truth > 5
    assert ar_ess[3] / truth - 1 > 10 * relative_tolerance(rho, N_AR)
    # ArviZ's bulk ESS (Geyer's initial sequence, no cap) finds the truth. Its relative SD is
    # about sqrt(2(2M + 1)/n) with M the truncation lag, ≈ ln(sqrt(n))/(1 - ρ) ≈ 610; 5 SD.
    arviz_ess = float(az.ess(ar_chains[:, 3][None, :]))
    lag_window = math.log(math.sqrt(N_AR)) / (1 - rho)
    assert arviz_ess == pytest.approx(truth, rel=5 * math.sqrt(2 * (2 * lag_window + 1) / N_AR))
    assert ar_ess[3] / arviz_ess > 3  # the disagreement the cap causes


def test_mess_of_independent_coordinates_is_geometric_mean(ar_chains, ar_ess):
    summary = mess(ar_chains)
    assert summary.geometric_mean == pytest.approx(np.exp(np.mean(np.log(ar_ess))), rel=1e-12)
    assert summary.minimum == ar_ess.min()
    assert (summary.n_samples, summary.n_params, summary.n_nonfinite) == (N_AR, len(RHOS), 0)
    # Against the known answer: the log of a geometric mean errs by the mean of log errors.
    expected = np.exp(np.mean([np.log(expected_capped_ess(r, N_AR)) for r in RHOS]))
    tolerance = np.mean([relative_tolerance(r, N_AR) for r in RHOS])
    assert summary.geometric_mean == pytest.approx(expected, rel=tolerance)


def test_autocorrelation_matches_direct_definition():
    x = np.random.default_rng(1).standard_normal((50, 2)).cumsum(axis=0)
    rho = autocorrelation(x, max_lag=5)
    centred = x[:, 0] - x[:, 0].mean()
    direct = [np.dot(centred[: 50 - k], centred[k:]) / np.dot(centred, centred) for k in range(6)]
    np.testing.assert_allclose(rho[:, 0], direct, rtol=1e-12)


def test_sum_stops_before_first_negative_autocorrelation():
    # Period-6 square wave: ρ̂_1 ≈ 1/3 > 0, ρ̂_2 ≈ -1/3 < 0, later lags positive again (ρ̂_6 ≈ 1),
    # and only ρ̂_1 may enter the sum.
    x = np.tile([1.0, 1.0, 1.0, -1.0, -1.0, -1.0], 16)
    rho = autocorrelation(x, 6)[:, 0]
    assert rho[1] > 0 > rho[2] and rho[5] > 0 and rho[6] > 0.5
    assert univariate_ess(x)[0] == pytest.approx(len(x) / (1 + 2 * rho[1]), rel=1e-12)


def test_floor_and_exact_minimum_of_the_capped_estimator():
    n = 100
    assert ess_floor(n) == 100 / 41
    minimum = ess_minimum(n)
    assert ess_floor(n) < minimum == pytest.approx(3.0639, abs=1e-4)
    rng = np.random.default_rng(2)
    t = np.arange(n, dtype=float)
    worst_cases = np.column_stack(
        [
            rng.standard_normal((n, 5000)).cumsum(axis=0),  # random walks
            t,
            t**2,
            np.exp(-t / 30),
            (t >= 50).astype(float),
        ]
    )
    assert univariate_ess(worst_cases).min() >= minimum * (1 - 1e-12)
    # The top eigenvector of the centred band matrix attains the minimum.
    band = sum(np.eye(n, k=k) + np.eye(n, k=-k) for k in range(1, 21)) / 2
    centre = np.eye(n) - 1 / n
    top = np.linalg.eigh(centre @ band @ centre)[1][:, -1]
    assert univariate_ess(top)[0] == pytest.approx(minimum, rel=1e-9)


def test_float32_weight_traces_stay_above_the_exact_minimum():
    """Weights moving by a few float32 ulps: float64 arithmetic respects the bound; the released
    code's float32 arithmetic (statsmodels on float32 arrays) returned values down to ~2.6, the
    paper's SGD minima, below what the estimator can give."""
    rng = np.random.default_rng(3)
    base = rng.uniform(-0.1, 0.1, 2000).astype(np.float32)
    steps = rng.integers(-1, 2, (100, 2000)) * (rng.random((100, 2000)) < 0.1)
    traces = base + steps.cumsum(axis=0).astype(np.float32) * np.spacing(base)
    traces = traces[:, np.ptp(traces, axis=0) > 0]  # constant ones give NaN
    minimum = ess_minimum(100)
    assert univariate_ess(traces).min() >= minimum * (1 - 1e-9)

    def released_univess(ts):  # sgld_tf.utils.univess with statsmodels' acf, in float32
        centred = ts - ts.mean()
        acf = (np.correlate(centred, centred, "full")[len(ts) - 1 :] / len(ts))[:21]
        acf = acf / acf[0]
        stop = np.argmax(acf < 0) or len(acf)
        return len(ts) / (1 + 2 * np.sum(acf[1:stop]))

    released = np.array([released_univess(traces[:, j]) for j in range(traces.shape[1])])
    assert released.min() < 2.8 < minimum


def test_nonfinite_ess_is_reported_not_dropped():
    x = np.random.default_rng(4).standard_normal((100, 4))
    x[:, 1] = 0.25  # constant: 0/0
    x[10, 2] = np.nan
    ess = univariate_ess(x)
    assert np.isnan(ess[1]) and np.isnan(ess[2]) and np.isfinite(ess[[0, 3]]).all()
    summary = mess(x)
    assert summary.n_nonfinite == 2 and summary.fraction_finite == 0.5
    assert summary.minimum == ess[[0, 3]].min()
    assert math.isnan(mess(np.ones((30, 2))).geometric_mean)


def test_batch_means_mess_on_iid_draws_has_known_distribution():
    """n = a·b iid N(0,1) draws: ESS_j = a (W + B)/B with W ~ χ²_{n-a}, B ~ χ²_{a-1}, so
    ESS_j = a / Beta((a-1)/2, (n-a)/2): E log ESS_j = log a - ψ((a-1)/2) + ψ((n-1)/2),
    Var log ESS_j = ψ'((a-1)/2) - ψ'((n-1)/2). The geometric mean over p columns: 5 SD."""
    a = b = 20
    n, p = a * b, 2000
    summary = batch_means_mess(np.random.default_rng(5).standard_normal((n, p)))  # b = sqrt(n)
    expected_log = math.log(a) - digamma((a - 1) / 2) + digamma((n - 1) / 2)
    sd_log = math.sqrt((polygamma(1, (a - 1) / 2) - polygamma(1, (n - 1) / 2)) / p)
    assert math.log(summary.geometric_mean) == pytest.approx(expected_log, abs=5 * sd_log)
    # The code's formula n·exp(mean log var - mean log bvar) gives the same number.
    x = np.random.default_rng(6).standard_normal((n, 7))
    bvar = b * x.reshape(a, b, 7).mean(axis=1).var(axis=0)
    code = n * np.exp(np.mean(np.log(x.var(axis=0))) - np.mean(np.log(bvar)))
    assert batch_means_mess(x, batch_size=b).geometric_mean == pytest.approx(code, rel=1e-12)


def test_windowed_mess_uses_consecutive_windows_from_the_start():
    x = np.random.default_rng(7).standard_normal((530, 3)).cumsum(axis=0)
    windows = windowed_mess(x)
    assert len(windows) == 5 and all(isinstance(w, MESS) for w in windows)
    assert windows[2] == mess(x[200:300])
    with pytest.raises(ValueError, match="fewer than 6 windows"):
        windowed_mess(x, window=100, n_windows=6)


def test_bad_shapes_are_rejected():
    with pytest.raises(ValueError, match="n_samples, n_params"):
        univariate_ess(np.zeros((3, 4, 5)))
    with pytest.raises(ValueError, match="max_lag"):
        univariate_ess(np.zeros((10, 2)), max_lag=10)
    with pytest.raises(ValueError, match="batch_size"):
        batch_means_mess(np.zeros((10, 2)), batch_size=6)


def test_inference_data_supports_arviz_diagnostics():
    rng = np.random.default_rng(8)
    chains, draws, probes, classes = 4, 500, 6, 3
    weights = rng.standard_normal((chains, draws, 2))
    # One chain 2 SD away in this coordinate: split-R-hat ≈ sqrt(1 + 4·(1.5/7)) ≈ 1.36.
    weights[0, :, 1] += 2.0
    logits = rng.standard_normal((chains, draws, probes, classes))
    probs = np.exp(logits) / np.exp(logits).sum(axis=-1, keepdims=True)
    log_lik = np.log(probs[..., 0])
    idata = to_inference_data(
        {"dense_w": weights},
        probe_log_lik=log_lik,
        probe_probs=probs,
        chain_coords=[11, 12, 13, 14],
        draw_coords=np.arange(draws) * 20,
        attrs={"method": "sgld"},
    )
    post = idata.posterior
    assert post["probe_probs"].dims == ("chain", "draw", "probe", "class")
    assert list(post.chain.values) == [11, 12, 13, 14] and post.draw.values[-1] == 20 * 499
    np.testing.assert_allclose(post["probe_log_lik_sum"].values, log_lik.sum(axis=-1))
    assert idata.attrs["method"] == "sgld"
    rhat = az.rhat(idata)
    # iid chains: split-R-hat - 1 ≈ (F - 1)/(2·draws), F ~ χ²_7/7 (8 split chains) < 4.
    assert abs(float(rhat["dense_w"][0]) - 1) < 3 / (2 * draws)
    assert float(rhat["dense_w"][1]) > 1.1  # the stuck chain is flagged
    assert (rhat["probe_log_lik"].values < 1 + 3 / (2 * draws)).all()
    assert float(az.ess(idata, var_names=["probe_log_lik_sum"])["probe_log_lik_sum"]) > 1000


def test_windows_as_chains_and_shape_checks():
    trace = np.arange(23 * 2).reshape(23, 2)
    chains = windows_as_chains(trace, window=5, n_windows=4)
    assert chains.shape == (4, 5, 2) and chains[1, 0, 0] == trace[5, 0]
    with pytest.raises(ValueError, match="same \\(chain, draw\\)"):
        to_inference_data({"a": np.zeros((2, 5)), "b": np.zeros((3, 5))})
