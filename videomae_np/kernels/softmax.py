"""Row softmax with the attention scale fused in: p = softmax(scale * s).

Backward (through the scale): ds = scale * p * (dp - sum(dp * p)).

The Numba version gives each thread (threads.py) a block of rows; rows are independent, so the
split changes no number.
"""

import numpy as np
from numba import njit

from .fastmath import FASTMATH_FLAGS, fexp_as
from .threads import MIN_ITEMS_PER_PART, part, run_parts, threads_for


# ---- NumPy reference --------------------------------------------------------------------------
def softmax_fwd_numpy(s, scale):
    z = s * s.dtype.type(scale)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def softmax_bwd_numpy(dp, p, scale):
    return (p * (dp - np.sum(dp * p, axis=1, keepdims=True))) * p.dtype.type(scale)


# ---- Numba ------------------------------------------------------------------------------------
@njit(cache=True, nogil=True, fastmath=FASTMATH_FLAGS, error_model="numpy")
def _sm_fwd_part(s, scale, p, t, T):
    """Thread t's block (of T) of the rows."""
    N = s.shape[1]
    sc = s.dtype.type(scale)
    r0, r1 = part(s.shape[0], T, t)
    for r in range(r0, r1):
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
    run_parts(_sm_fwd_part, threads_for(s.size, MIN_ITEMS_PER_PART, s.shape[0]), s, scale, p)
    return p


@njit(cache=True, inline="always")
def softmax_bwd_row(dp, p, scale, out):
    """One row: out = scale * p * (dp - sum(dp * p)); out may be dp itself."""
    dot = 0.0
    for j in range(p.shape[0]):
        dot += dp[j] * p[j]
    for j in range(p.shape[0]):
        out[j] = scale * p[j] * (dp[j] - dot)


@njit(cache=True, nogil=True, fastmath=FASTMATH_FLAGS, error_model="numpy")
def _sm_bwd_part(dp, p, scale, ds, t, T):
    """Thread t's block (of T) of the rows."""
    r0, r1 = part(p.shape[0], T, t)
    for r in range(r0, r1):
        softmax_bwd_row(dp[r], p[r], scale, ds[r])


def softmax_bwd_numba(dp, p, scale):
    ds = np.empty_like(p)
    run_parts(_sm_bwd_part, threads_for(p.size, MIN_ITEMS_PER_PART, p.shape[0]), dp, p, scale, ds)
    return ds
