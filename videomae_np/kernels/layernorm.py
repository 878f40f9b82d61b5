"""LayerNorm over the last axis: forward saves (mean, rstd), backward recomputes x_hat.

    y = (x - mean) * rstd * w + b,   rstd = 1 / sqrt(var + eps)   (biased variance, as torch)

Backward, with x_hat = (x - mean) * rstd and g = dy * w:
    dx = rstd * (g - mean(g) - x_hat * mean(g * x_hat)),  dw = sum_rows(dy * x_hat),  db = sum_rows(dy)
"""

import numpy as np
from numba import njit

from .fastmath import FASTMATH_FLAGS
from .threads import MIN_ITEMS_PER_PART, part, run_parts, threads_for

# Rows per partial-sum chunk in the parallel dw/db reduction.
_CHUNK = 256


# ---- NumPy reference --------------------------------------------------------------------------
def layernorm_fwd_numpy(x, w, b, eps):
    mean = x.mean(axis=1)
    xc = x - mean[:, None]
    var = np.mean(xc * xc, axis=1)
    rstd = (1.0 / np.sqrt(var + eps)).astype(x.dtype)
    y = xc * rstd[:, None] * w + b
    return y.astype(x.dtype, copy=False), mean.astype(x.dtype, copy=False), rstd


def layernorm_bwd_numpy(dy, x, w, mean, rstd):
    xhat = (x - mean[:, None]) * rstd[:, None]
    g = dy * w
    dx = rstd[:, None] * (g - g.mean(axis=1, keepdims=True)
                          - xhat * np.mean(g * xhat, axis=1, keepdims=True))
    return dx.astype(x.dtype, copy=False), (dy * xhat).sum(axis=0), dy.sum(axis=0)


# ---- Numba ------------------------------------------------------------------------------------
@njit(cache=True, nogil=True, fastmath=FASTMATH_FLAGS, error_model="numpy")
def _ln_fwd_part(x, w, b, eps, y, mean, rstd, t, T):
    C = x.shape[1]
    r0, r1 = part(x.shape[0], T, t)
    for r in range(r0, r1):
        s = 0.0
        for c in range(C):
            s += x[r, c]
        m = s / C
        v = 0.0
        for c in range(C):
            d = x[r, c] - m
            v += d * d
        rs = 1.0 / np.sqrt(v / C + eps)
        for c in range(C):
            y[r, c] = (x[r, c] - m) * rs * w[c] + b[c]
        mean[r] = m
        rstd[r] = rs


def layernorm_fwd_numba(x, w, b, eps):
    R, C = x.shape
    y = np.empty_like(x)
    mean = np.empty(R, x.dtype)
    rstd = np.empty(R, x.dtype)
    run_parts(_ln_fwd_part, threads_for(x.size, MIN_ITEMS_PER_PART), x, w, b, eps, y, mean, rstd)
    return y, mean, rstd


@njit(cache=True, nogil=True, fastmath=FASTMATH_FLAGS, error_model="numpy")
def _ln_bwd_part(dy, x, w, mean, rstd, dx, dw_part, db_part, chunk, t, T):
    """Thread t's share (of T) of the chunks of rows; chunk k sums into dw_part[k], db_part[k]."""
    k0, k1 = part(dw_part.shape[0], T, t)
    for k in range(k0, k1):
        _ln_bwd_chunk(dy, x, w, mean, rstd, dx, dw_part, db_part, chunk, k)


@njit(cache=True, inline="always", fastmath=FASTMATH_FLAGS, error_model="numpy")
def _ln_bwd_chunk(dy, x, w, mean, rstd, dx, dw_part, db_part, chunk, k):
    R, C = x.shape
    for r in range(k * chunk, min(R, (k + 1) * chunk)):
        m = mean[r]
        rs = rstd[r]
        sg = 0.0
        sgx = 0.0
        for c in range(C):
            xh = (x[r, c] - m) * rs
            g = dy[r, c] * w[c]
            sg += g
            sgx += g * xh
            dw_part[k, c] += dy[r, c] * xh
            db_part[k, c] += dy[r, c]
        sg /= C
        sgx /= C
        for c in range(C):
            xh = (x[r, c] - m) * rs
            dx[r, c] = rs * (dy[r, c] * w[c] - sg - xh * sgx)


def layernorm_bwd_numba(dy, x, w, mean, rstd):
    R, C = x.shape
    nchunk = max(1, -(-R // _CHUNK))
    dx = np.empty_like(x)
    dw_part = np.zeros((nchunk, C), np.float64)
    db_part = np.zeros((nchunk, C), np.float64)
    run_parts(_ln_bwd_part, threads_for(x.size, MIN_ITEMS_PER_PART, nchunk), dy, x, w, mean, rstd, dx, dw_part, db_part, _CHUNK)
    return dx, dw_part.sum(axis=0).astype(x.dtype), db_part.sum(axis=0).astype(x.dtype)
