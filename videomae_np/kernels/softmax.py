"""Row softmax with the attention scale fused in: p = softmax(scale * s).

Backward (through the scale): ds = scale * p * (dp - sum(dp * p)).
"""

import numpy as np
from numba import njit, prange

from .fastmath import fexp_as


# ---- NumPy reference --------------------------------------------------------------------------
def softmax_fwd_numpy(s, scale):
    z = s * s.dtype.type(scale)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def softmax_bwd_numpy(dp, p, scale):
    return (p * (dp - np.sum(dp * p, axis=1, keepdims=True))) * p.dtype.type(scale)


# ---- Numba ------------------------------------------------------------------------------------
# reassoc lets LLVM vectorise the row sums (a different summation order, not a different result
# beyond rounding); no flag assumes away NaN or infinity.
_FLAGS = {"reassoc", "contract", "nsz"}


@njit(parallel=True, cache=True, fastmath=_FLAGS, error_model="numpy")
def _sm_fwd(s, scale, p):
    R, N = s.shape
    sc = s.dtype.type(scale)
    for r in prange(R):
        mx = -np.inf
        for j in range(N):
            z = s[r, j] * sc
            if z > mx:
                mx = z
        tot = 0.0
        for j in range(N):
            e = fexp_as(s[r, j], s[r, j] * sc - mx)   # vectorisable, at s's precision
            p[r, j] = e
            tot += e
        inv = 1.0 / tot
        for j in range(N):
            p[r, j] = p[r, j] * inv


def softmax_fwd_numba(s, scale):
    p = np.empty_like(s)
    _sm_fwd(s, scale, p)
    return p


@njit(cache=True, inline="always")
def softmax_bwd_row(dp, p, scale, out):
    """One row: out = scale * p * (dp - sum(dp * p)); out may be dp itself."""
    dot = 0.0
    for j in range(p.shape[0]):
        dot += dp[j] * p[j]
    for j in range(p.shape[0]):
        out[j] = scale * p[j] * (dp[j] - dot)


@njit(parallel=True, cache=True, fastmath=_FLAGS, error_model="numpy")
def _sm_bwd(dp, p, scale, ds):
    for r in prange(p.shape[0]):
        softmax_bwd_row(dp[r], p[r], scale, ds[r])


def softmax_bwd_numba(dp, p, scale):
    ds = np.empty_like(p)
    _sm_bwd(dp, p, scale, ds)
    return ds
