"""The core of attention for one group (a batch entry's head) at a time:

    forward:  P = softmax(scale * q k^T),  ctx = P v,  lse = log rowsum(exp(scale * q k^T))
    backward: P = exp(scale * q k^T - lse)  (rebuilt, not stored: G N^2 floats saved per layer)
              dP = dctx v^T,  dv = P^T dctx,  ds = scale * P * (dP - rowsum(dP * P)),
              dq = ds k,  dk = ds^T q

P is returned only when asked for (output_attentions); training keeps just the row log-sum-exp,
as flash attention does, and pays one more q k^T matmul in backward.

q, k, v, ctx: (G, N, d); P: (G, N, N), G = batch x heads. The Numba version runs the groups in
parallel and keeps each group's N x N scores in cache between the matmuls (BLAS through np.dot)
and the softmax, instead of streaming all G score matrices through memory three times as the
NumPy twin does with batched matmuls.
"""

import numpy as np
from numba import njit, prange

from .fastmath import fexp_as
from .softmax import softmax_bwd_numpy

_FLAGS = {"reassoc", "contract", "nsz"}   # see softmax.py


# ---- NumPy reference --------------------------------------------------------------------------
def attention_fwd_numpy(q, k, v, scale, keep_probs=False):
    G, N, d = q.shape
    z = (q @ k.transpose(0, 2, 1)) * q.dtype.type(scale)
    mx = z.max(axis=2, keepdims=True)
    e = np.exp(z - mx)
    tot = e.sum(axis=2, keepdims=True)
    p = e / tot
    lse = (mx + np.log(tot))[..., 0].astype(np.float64)
    return (p if keep_probs else None), p @ v, lse


def _probs_numpy(q, k, lse, scale):
    z = (q @ k.transpose(0, 2, 1)) * q.dtype.type(scale)
    return np.exp(z - lse[..., None].astype(q.dtype))


def attention_bwd_numpy(dctx, q, k, v, lse, scale):
    G, N, d = q.shape
    p = _probs_numpy(q, k, lse, scale)
    dp = dctx @ v.transpose(0, 2, 1)
    dv = p.transpose(0, 2, 1) @ dctx
    ds = softmax_bwd_numpy(dp.reshape(-1, N), p.reshape(-1, N), scale).reshape(G, N, N)
    return ds @ k, ds.transpose(0, 2, 1) @ q, dv


# ---- Numba ------------------------------------------------------------------------------------
@njit(parallel=True, cache=True, fastmath=_FLAGS, error_model="numpy")
def _attn_fwd(q, k, v, scale, keep, p, ctx, lse):
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
                s[i, j] = s[i, j] * inv
            lse[g, i] = mx + np.log(tot)            # enough to rebuild P in backward
        ctx[g] = np.dot(s, v[g])
        if keep:
            p[g] = s


def attention_fwd_numba(q, k, v, scale, keep_probs=False):
    G, N, d = q.shape
    p = np.empty((G, N, N) if keep_probs else (1, 1, 1), q.dtype)
    ctx = np.empty_like(q)
    lse = np.empty((G, N), np.float64)
    _attn_fwd(q, k, v, scale, keep_probs, p, ctx, lse)
    return (p if keep_probs else None), ctx, lse


@njit(parallel=True, cache=True, fastmath=_FLAGS, error_model="numpy")
def _attn_bwd(dctx, q, k, v, lse, scale, dq, dk, dv):
    G, N, d = q.shape
    sc = q.dtype.type(scale)
    for g in prange(G):
        p = np.dot(q[g], k[g].T)                   # rebuild P = exp(scale * q k^T - lse)
        for i in range(N):
            m = lse[g, i]
            for j in range(N):
                p[i, j] = fexp_as(p[i, j], p[i, j] * sc - m)
        dp = np.dot(dctx[g], v[g].T)               # (N, N)
        dv[g] = np.dot(p.T, dctx[g])
        for i in range(N):                         # dP -> d(scores), in place (softmax.py's row rule)
            dot = 0.0
            for j in range(N):
                dot += dp[i, j] * p[i, j]
            for j in range(N):
                dp[i, j] = sc * p[i, j] * (dp[i, j] - dot)
        dq[g] = np.dot(dp, k[g])
        dk[g] = np.dot(dp.T, q[g])


def attention_bwd_numba(dctx, q, k, v, lse, scale):
    dq, dk, dv = np.empty_like(q), np.empty_like(k), np.empty_like(v)
    _attn_bwd(dctx, q, k, v, lse, scale, dq, dk, dv)
    return dq, dk, dv
