"""isnas_fast.stats against SciPy (an independent implementation)."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.stats as st

from isnas_fast.stats import kendall_tau, mean_ci, paired_comparison, spearman_rho, t_quantile


@pytest.mark.parametrize("df", [1, 2, 3, 7, 15, 63, 500])
@pytest.mark.parametrize("p", [0.6, 0.9, 0.975, 0.995, 0.025])
def test_t_quantile(p, df):
    want = st.t.ppf(p, df)
    assert t_quantile(p, df) == pytest.approx(want, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("n", [2, 3, 8, 40])
def test_mean_ci_is_scipys_t_interval(n):
    x = np.random.default_rng(n).normal(3.0, 2.0, n)
    mean, half = mean_ci(list(x))
    lo, hi = st.t.interval(0.95, n - 1, loc=x.mean(), scale=st.sem(x))
    assert mean == pytest.approx(x.mean(), rel=1e-12)
    assert mean - half == pytest.approx(lo, rel=1e-9) and mean + half == pytest.approx(hi, rel=1e-9)
    assert np.isnan(mean_ci([1.0])[1]) and np.isnan(mean_ci([])[0])


@pytest.mark.parametrize("n", [4, 9, 16, 33, 70])
@pytest.mark.parametrize("ties", [False, True])
def test_kendall_and_spearman_match_scipy(n, ties):
    rng = np.random.default_rng(100 + n)
    if ties:
        x, y = rng.integers(0, 5, n).astype(float), rng.integers(0, 5, n).astype(float)
    else:
        x = rng.random(n)
        y = -x + rng.normal(0, 0.5, n)
    tau, p = kendall_tau(list(x), list(y))
    ref = st.kendalltau(x, y)
    assert tau == pytest.approx(ref.statistic, abs=1e-12)
    assert p == pytest.approx(ref.pvalue, rel=1e-9, abs=1e-15)
    rho, p = spearman_rho(list(x), list(y))
    ref = st.spearmanr(x, y)
    assert rho == pytest.approx(ref.statistic, abs=1e-12)
    assert p == pytest.approx(ref.pvalue, rel=1e-8, abs=1e-15)


def test_degenerate_correlations_are_nan():
    assert np.isnan(kendall_tau([1.0, 1.0, 1.0], [1.0, 2.0, 3.0])[0])
    assert np.isnan(spearman_rho([1.0, 2.0, 3.0], [5.0, 5.0, 5.0])[0])


def test_paired_comparison_counts_and_interval():
    a, b = [30.0, 31.0, 29.0, 28.0, 30.02], [29.0, 31.0, 30.0, 27.0, 30.0]
    r = paired_comparison(a, b, tie=0.05)
    d = np.array(a) - np.array(b)
    lo, hi = st.t.interval(0.95, len(d) - 1, loc=d.mean(), scale=st.sem(d))
    assert (r.wins, r.ties, r.losses, r.n) == (2, 2, 1, 5)
    assert r.mean - r.half_width == pytest.approx(lo, rel=1e-9)
    assert r.mean + r.half_width == pytest.approx(hi, rel=1e-9)
