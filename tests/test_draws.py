"""Counter-based random numbers of the array engine (`tissue_abm.engines.array.draws`).

Distribution tests use fixed keys and 200,000 draws, so each is deterministic; the thresholds
(p > 1e-3 for Kolmogorov-Smirnov and chi-square tests, 5 standard errors for means and
correlations) would be crossed by chance in fewer than 1 in 1,000 keys.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from tissue_abm.engines.array import KERNELS, draws

N = 200_000
SITES = np.arange(N, dtype=np.uint64)
KEY = np.uint64(0x243F6A8885A308D3)


def uniforms(day: int, stream: int, key: np.uint64 = KEY) -> np.ndarray:
    return draws.uniform(draws.day_keys(key, day)[stream], SITES)


def test_uniforms_are_uniform_on_the_unit_interval() -> None:
    u = uniforms(day=3, stream=draws.EVENT)
    assert u.dtype == np.float64
    assert u.min() >= 0.0 and u.max() < 1.0
    assert stats.kstest(u, "uniform").pvalue > 1e-3
    # successive sites are independent (lag-1 correlation within 5 standard errors of 0)
    assert abs(np.corrcoef(u[:-1], u[1:])[0, 1]) < 5 / np.sqrt(N)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ((3, draws.EVENT), (4, draws.EVENT)),
        ((3, draws.EVENT), (3, draws.RECRUIT)),
        ((0, draws.PRIORITY), (1, draws.PRIORITY)),
    ],
    ids=["next day", "other stream", "days 0 and 1"],
)
def test_days_and_streams_share_no_numbers(first: tuple, second: tuple) -> None:
    a, b = uniforms(*first), uniforms(*second)
    # An unhashed key (key + day) would make day t + 1 a shifted copy of day t: most values
    # shared. Hashed keys share none (a chance collision of 53-bit values is ~1e-6 here).
    assert np.intersect1d(a, b).size == 0
    assert abs(np.corrcoef(a, b)[0, 1]) < 5 / np.sqrt(N)


def test_different_run_keys_give_different_numbers() -> None:
    a = uniforms(day=1, stream=draws.EVENT)
    b = uniforms(day=1, stream=draws.EVENT, key=KEY + np.uint64(1))
    assert np.intersect1d(a, b).size == 0


def test_draws_are_a_function_of_key_day_stream_and_site() -> None:
    keys = draws.day_keys(KEY, 7)
    assert keys.dtype == np.uint64 and keys.size == draws.STREAMS
    assert np.unique(keys).size == draws.STREAMS
    assert_same = np.testing.assert_array_equal
    assert_same(draws.day_keys(KEY, 7), keys)
    # a draw does not depend on which other sites are drawn with it, nor in what order
    some = np.array([5, 99_999, 17], dtype=np.uint64)
    assert_same(draws.uniform(keys[2], some), uniforms(7, 2)[some.astype(np.int64)])


def test_standard_normal_is_standard_normal() -> None:
    z = draws.standard_normal(uniforms(2, draws.DAUGHTER_A), uniforms(2, draws.DAUGHTER_B))
    assert np.isfinite(z).all()
    assert stats.kstest(z, "norm").pvalue > 1e-3


@pytest.mark.parametrize("p", [1.0, 0.2, 1 / 30])
def test_geometric_is_the_first_day_of_a_daily_event(p: float) -> None:
    k = draws.geometric(uniforms(5, draws.RESIDENCE), draws.log_stay_prob(p))
    assert (k >= 1).all() and (k == np.floor(k)).all()
    if p == 1.0:
        assert (k == 1).all()
        return
    mean, sd = 1 / p, np.sqrt(1 - p) / p
    assert abs(k.mean() - mean) < 5 * sd / np.sqrt(N)
    # chi-square of the counts of 1..5 days and more against P(K = k) = (1 - p)^(k-1) p
    observed = np.array([*(np.sum(k == day) for day in range(1, 6)), np.sum(k > 5)])
    expected = N * np.array([*((1 - p) ** (day - 1) * p for day in range(1, 6)), (1 - p) ** 5])
    assert stats.chisquare(observed, expected).pvalue > 1e-3


@pytest.mark.skipif("numba" not in KERNELS, reason="numba is not installed")
def test_compiled_draws_equal_the_numpy_draws() -> None:
    import numba

    from tissue_abm.engines.array import kernel  # noqa: F401  (registers the draws with numba)

    @numba.njit
    def compiled(key, count):
        out = np.empty((count, 3))
        for i in range(count):
            u = draws.uniform(key, np.uint64(i))
            out[i, 0] = u
            out[i, 1] = draws.standard_normal(u, draws.uniform(key + np.uint64(1), np.uint64(i)))
            out[i, 2] = draws.geometric(u, np.log(0.8))
        return out

    key = draws.day_keys(KEY, 1)[0]
    got = compiled(key, 1000)
    u = draws.uniform(key, SITES[:1000])
    np.testing.assert_array_equal(got[:, 0], u)
    # log and cos may differ in the last bit between numpy's and the C library's versions
    np.testing.assert_allclose(
        got[:, 1],
        draws.standard_normal(u, draws.uniform(key + np.uint64(1), SITES[:1000])),
        rtol=1e-14,
        atol=1e-15,
    )
    np.testing.assert_array_equal(got[:, 2], draws.geometric(u, np.log(0.8)))
