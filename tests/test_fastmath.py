"""The SIMD-friendly scalar math of kernels/fastmath.py against NumPy, special values included."""

import numpy as np
from numba import njit

from videomae_np.kernels.fastmath import fexp_as, fexp_nonpos_as, ferf_as, fmax


def _elementwise(f):
    """A jitted loop applying f(x[i], x[i]) -- the ``*_as`` functions take the precision from
    their first argument, as the kernels call them (fexp on float64 input, fexp32 on float32)."""
    @njit
    def run(x):
        out = np.empty_like(x)
        for i in range(x.shape[0]):
            out[i] = f(x[i], x[i])
        return out
    return run


_map_exp = _elementwise(fexp_as)
_map_exp_nonpos = _elementwise(fexp_nonpos_as)
_map_erf = _elementwise(ferf_as)


@njit
def _reduce_max(x):
    mx = x[0]
    for i in range(1, x.shape[0]):
        mx = fmax(mx, x[i])
    return mx


def test_exp_matches_numpy_in_both_precisions():
    x = np.concatenate([np.linspace(-700, 700, 20001), np.linspace(-5, 5, 20001)])
    np.testing.assert_allclose(_map_exp(x), np.exp(x), rtol=5e-16, atol=0)
    x32 = np.linspace(-86, 88, 40001).astype(np.float32)
    np.testing.assert_allclose(_map_exp(x32), np.exp(x32.astype(np.float64)), rtol=3e-7, atol=0)


def test_exp_special_values():
    for dt, lo in [(np.float64, -800.0), (np.float32, -100.0)]:
        got = _map_exp(np.array([np.nan, -np.inf, lo, 0.0], dt))
        assert np.isnan(got[0])                     # NaN in, NaN out (a softmax must not hide it)
        assert got[1] == 0 and got[2] == 0 and got[3] == 1


def test_nonpositive_exp_matches_numpy_and_keeps_nan():
    x = np.concatenate([np.linspace(-707, 0, 20001), np.linspace(-5, 0, 20001)])
    np.testing.assert_allclose(_map_exp_nonpos(x), np.exp(x), rtol=5e-16, atol=0)
    x32 = np.linspace(-86, 0, 40001).astype(np.float32)
    np.testing.assert_allclose(_map_exp_nonpos(x32), np.exp(x32.astype(np.float64)), rtol=3e-7, atol=0)
    for dt, lo in [(np.float64, -708.0), (np.float32, -87.0)]:
        got = _map_exp_nonpos(np.array([np.nan, -np.inf, 10 * lo, 0.0], dt))
        assert np.isnan(got[0])                     # NaN in, NaN out
        # below the underflow limit: e^limit, tiny and normal, instead of 0
        np.testing.assert_allclose(got[1:3], np.exp(lo), rtol=1e-6)
        assert got[3] == 1


def test_erf_matches_numpy_in_float32_and_is_exact_in_float64():
    from scipy.special import erf
    x = np.linspace(-6, 6, 24001)
    np.testing.assert_allclose(_map_erf(x), erf(x), rtol=0, atol=1e-15)
    x32 = x.astype(np.float32)
    np.testing.assert_allclose(_map_erf(x32), erf(x32.astype(np.float64)), rtol=0, atol=5e-7)


def test_fmax_reduction_finds_the_max_and_skips_nan():
    x = np.random.default_rng(0).standard_normal(1001).astype(np.float32)
    assert _reduce_max(x) == x.max()
    x[[0, 500]] = np.nan
    assert _reduce_max(x) == np.nanmax(x)
