"""The core of attention for one group (a batch entry's head) at a time:

    forward:  P = softmax(scale * q k^T),  ctx = P v
    backward: dP = dctx v^T,  dv = P^T dctx,  ds = scale * P * (dP - rowsum(dP * P)),
              dq = ds k,  dk = ds^T q

q, k, v, ctx: (G, N, d); P: (G, N, N), G = batch x heads. The Numba version runs the groups in
parallel and keeps each group's N x N scores in cache between the matmuls (BLAS through np.dot)
and the softmax, instead of streaming all G score matrices through memory three times as the
NumPy twin does with batched matmuls.
"""

import numpy as np
from numba import njit, prange

from .fastmath import fexp_as
from .softmax import softmax_bwd_numpy, softmax_fwd_numpy

_FLAGS = {"reassoc", "contract", "nsz"}   # see softmax.py


# ---- NumPy reference --------------------------------------------------------------------------
def attention_fwd_numpy(q, k, v, scale):
    G, N, d = q.shape
    s = q @ k.transpose(0, 2, 1)
    p = softmax_fwd_numpy(s.reshape(-1, N), scale).reshape(G, N, N)
    return p, p @ v


def attention_bwd_numpy(dctx, q, k, v, p, scale):
    G, N, d = q.shape
    dp = dctx @ v.transpose(0, 2, 1)
    dv = p.transpose(0, 2, 1) @ dctx
    ds = softmax_bwd_numpy(dp.reshape(-1, N), p.reshape(-1, N), scale).reshape(G, N, N)
    return ds @ k, ds.transpose(0, 2, 1) @ q, dv


# ---- Numba ------------------------------------------------------------------------------------
@njit(parallel=True, cache=True, fastmath=_FLAGS, error_model="numpy")
def _attn_fwd(q, k, v, scale, p, ctx):
    G, N, d = q.shape
    sc = q.dtype.type(scale)
    for g in prange(G):
        s = np.dot(q[g], k[g].T)                   # (N, N), stays in cache for the softmax
        for i in range(N):
            mx = s[i, 0]
            for j in range(1, N):
                mx = max(mx, s[i, j])
            mx = mx * sc
            tot = 0.0
            for j in range(N):
                e = fexp_as(s[i, j], s[i, j] * sc - mx)
                s[i, j] = e
                tot += e
            inv = s.dtype.type(1.0 / tot)
            for j in range(N):
                p[g, i, j] = s[i, j] * inv
        ctx[g] = np.dot(p[g], v[g])


def attention_fwd_numba(q, k, v, scale):
    G, N, d = q.shape
    p = np.empty((G, N, N), q.dtype)
    ctx = np.empty_like(q)
    _attn_fwd(q, k, v, scale, p, ctx)
    return p, ctx


@njit(parallel=True, cache=True, fastmath=_FLAGS, error_model="numpy")
def _attn_bwd(dctx, q, k, v, p, scale, dq, dk, dv):
    G, N, d = q.shape
    sc = q.dtype.type(scale)
    for g in prange(G):
        dp = np.dot(dctx[g], v[g].T)               # (N, N)
        dv[g] = np.dot(p[g].T, dctx[g])
        for i in range(N):
            dot = 0.0
            for j in range(N):
                dot += dp[i, j] * p[g, i, j]
            for j in range(N):
                dp[i, j] = sc * p[g, i, j] * (dp[i, j] - dot)
        dq[g] = np.dot(dp, k[g])
        dk[g] = np.dot(dp.T, q[g])


def attention_bwd_numba(dctx, q, k, v, p, scale):
    dq, dk, dv = np.empty_like(q), np.empty_like(k), np.empty_like(v)
    _attn_bwd(dctx, q, k, v, p, scale, dq, dk, dv)
    return dq, dk, dv
