"""The core of attention, one (batch entry, head) group at a time, read from and written to the
projections' own layout:

    qkv: (B N, 3C), each row [q | k | v] with head j of each in columns j d .. (j+1) d
    forward:  P = softmax(scale * q k^T),  ctx = P v,  lse = log rowsum(exp(scale * q k^T))
    backward: P = exp(scale * q k^T - lse)  (rebuilt, not stored: G N^2 floats saved per layer)
              dP = dctx v^T,  dv = P^T dctx,  ds = scale * P * (dP - rowsum(dP * P)),
              dq = ds k,  dk = ds^T q;   rowsum(dP * P) = rowsum(dctx * ctx), as FlashAttention-2
              computes it (N d products per head instead of N^2)
    ctx, dctx: (B N, C), the layout the output projection takes; dqkv: (B N, 3C), the layout of
    the projections' backward.

P is returned only when asked for (output_attentions); training keeps just the row log-sum-exp,
as flash attention does, and pays one more q k^T matmul in backward.

The Numba version gives each thread (threads.py) a block of groups and a scratch block of query
rows by N keys (ROW_BLOCK); the matmuls are gemm calls on strided views (blas.py), so no head is
ever copied out of qkv or into ctx, and the scores stay in cache between the matmuls and the
softmax. Unless P is wanted, forward leaves the exponentials unnormalised and divides the N x d
product by the row sums instead. Inputs of any layout are copied to C order first, and BLAS is
held to one thread while the parts run (blas.one_blas_thread). The NumPy twin transposes to
(G, N, d) and uses batched matmuls. (gemm passes BLAS 64-bit integers; see blas.py.)
"""

import numpy as np
from numba import njit

from .blas import c_contiguous, gemm, one_blas_thread
from .fastmath import FASTMATH_FLAGS, fexp_nonpos_as, fmax
from .softmax import softmax_bwd_numpy
from .threads import MIN_FLOPS_PER_PART, part, run_parts, threads_for


# ---- NumPy reference --------------------------------------------------------------------------
def split_heads(qkv, B, h):
    """(B N, 3C) -> q, k, v each (B h, N, d), contiguous."""
    R, C3 = qkv.shape
    N, d = R // B, C3 // (3 * h)
    t = np.ascontiguousarray(qkv.reshape(B, N, 3, h, d).transpose(2, 0, 3, 1, 4))
    return (a.reshape(B * h, N, d) for a in t)


def merge_heads(x, B, h):
    """(B h, N, d) -> (B N, h d)."""
    G, N, d = x.shape
    return x.reshape(B, h, N, d).transpose(0, 2, 1, 3).reshape(B * N, h * d)


def attention_fwd_numpy(qkv, B, h, scale, keep_probs=False):
    q, k, v = split_heads(qkv, B, h)
    z = (q @ k.transpose(0, 2, 1)) * q.dtype.type(scale)
    mx = z.max(axis=2, keepdims=True)
    e = np.exp(z - mx)
    tot = e.sum(axis=2, keepdims=True)
    p = e / tot
    lse = (mx + np.log(tot))[..., 0].astype(np.float64)
    G, N, _ = p.shape
    return (p.reshape(B, h, N, N) if keep_probs else None), merge_heads(p @ v, B, h), lse


def attention_bwd_numpy(dctx, qkv, ctx, lse, B, h, scale):
    # (ctx is unused here: this twin takes rowsum(dP * P) directly; the Numba kernel takes the
    # equal rowsum(dctx * ctx))
    q, k, v = split_heads(qkv, B, h)
    G, N, d = q.shape
    dc = np.ascontiguousarray(dctx.reshape(B, N, h, d).transpose(0, 2, 1, 3)).reshape(G, N, d)
    p = np.exp((q @ k.transpose(0, 2, 1)) * q.dtype.type(scale) - lse[..., None].astype(q.dtype))
    dp = dc @ v.transpose(0, 2, 1)
    dv = p.transpose(0, 2, 1) @ dc
    ds = softmax_bwd_numpy(dp.reshape(-1, N), p.reshape(-1, N), scale).reshape(G, N, N)
    return np.concatenate([merge_heads(ds @ k, B, h), merge_heads(ds.transpose(0, 2, 1) @ q, B, h),
                           merge_heads(dv, B, h)], axis=1)


# ---- Numba ------------------------------------------------------------------------------------
@njit(cache=True, inline="always")
def _views(a, b, N, col, d):
    """Rows of batch entry b, columns col .. col + d: one head's q, k, v, ctx or their gradients."""
    return a[b * N:(b + 1) * N, col:col + d]


@njit(cache=True, fastmath=FASTMATH_FLAGS, inline="always")
def _row_max(r):
    mx = r[0]
    for c in range(1, r.shape[0]):
        mx = fmax(mx, r[c])     # a NaN is skipped here, but still turns its row's sum to NaN
    return mx


# Query rows per block. A head's full N x N scores (9.8 MB at ViT-B's N = 1568) live in L3 between
# the two matmuls and the softmax; blocks of at most this many rows cut ViT-B's attention layer
# from 65 ms to 59 ms forward, and a decoder-sized backward (6 heads, N = 1568) from 82 to 80 ms
# while holding a third of the scratch, while N = 256 stays one block. Rows are independent in
# softmax, so forward's numbers do not change; backward's dk and dv become sums over blocks.
ROW_BLOCK = 512


@njit(cache=True, inline="always")
def row_block(N):
    """Near-equal blocks of at most ROW_BLOCK rows: the block size."""
    nb = -(-N // ROW_BLOCK)
    return -(-N // nb)


@njit(cache=True, nogil=True, fastmath=FASTMATH_FLAGS, error_model="numpy")
def _attn_fwd_part(qkv, B, h, scale, keep, p, ctx, lse, t, T):
    """Thread t's share (of T) of the (batch entry, head) groups."""
    R, C3 = qkv.shape
    C = C3 // 3
    d, N, G = C // h, R // B, B * h
    sc = qkv.dtype.type(scale)
    one = qkv.dtype.type(1.0)
    bq = row_block(N)
    s = np.empty((bq, N), qkv.dtype)
    inv = np.empty(bq, qkv.dtype)
    g0, g1 = part(G, T, t)
    for g in range(g0, g1):
        b, j = g // h, g % h
        q, k = _views(qkv, b, N, j * d, d), _views(qkv, b, N, C + j * d, d)
        v, out = _views(qkv, b, N, 2 * C + j * d, d), _views(ctx, b, N, j * d, d)
        for r0 in range(0, N, bq):
            r1 = min(N, r0 + bq)
            sb, ob = s[:r1 - r0], out[r0:r1]
            gemm(q[r0:r1], k, sb, False, True, 1.0, 0.0)
            for i in range(r1 - r0):
                r = sb[i]
                mx = _row_max(r) * sc
                tot = sc - sc                         # zero in the input's precision
                for c in range(N):
                    e = fexp_nonpos_as(sc, r[c] * sc - mx)
                    r[c] = e
                    tot += e
                inv[i] = one / tot
                lse[g, r0 + i] = mx + np.log(np.float64(tot))   # enough to rebuild P in backward
            if keep:                                  # P itself is wanted: normalise it, then P v
                pg = p[b, j]
                for i in range(r1 - r0):
                    sr, pr = sb[i], pg[r0 + i]
                    for c in range(N):
                        sr[c] = sr[c] * inv[i]
                        pr[c] = sr[c]
            gemm(sb, v, ob, False, False, 1.0, 0.0)
            if not keep:                              # else normalise the rows of P v instead
                for i in range(r1 - r0):
                    orow = ob[i]
                    for c in range(d):
                        orow[c] = orow[c] * inv[i]


def attention_fwd_numba(qkv, B, h, scale, keep_probs=False):
    R, C3 = qkv.shape
    N = R // B
    qkv = np.ascontiguousarray(qkv)
    p = np.empty((B, h, N, N) if keep_probs else (1, 1, 1, 1), qkv.dtype)
    ctx = np.empty((R, C3 // 3), qkv.dtype)
    lse = np.empty((B * h, N), np.float64)
    with one_blas_thread():
        T = threads_for(4.0 * R * N * (C3 // 3), MIN_FLOPS_PER_PART, B * h)   # QK^T and PV
        run_parts(_attn_fwd_part, T, qkv, B, h, scale, keep_probs, p, ctx, lse)
    return (p if keep_probs else None), ctx, lse


@njit(cache=True, nogil=True, fastmath=FASTMATH_FLAGS, error_model="numpy")
def _attn_bwd_part(dctx, qkv, ctx, lse, B, h, scale, dqkv, t, T):
    """Thread t's share (of T) of the (batch entry, head) groups."""
    R, C3 = qkv.shape
    C = C3 // 3
    d, N, G = C // h, R // B, B * h
    sc = qkv.dtype.type(scale)
    bq = row_block(N)
    p = np.empty((bq, N), qkv.dtype)
    dp = np.empty((bq, N), qkv.dtype)
    g0, g1 = part(G, T, t)
    for g in range(g0, g1):
        b, j = g // h, g % h
        q, k = _views(qkv, b, N, j * d, d), _views(qkv, b, N, C + j * d, d)
        v, dc = _views(qkv, b, N, 2 * C + j * d, d), _views(dctx, b, N, j * d, d)
        o = _views(ctx, b, N, j * d, d)
        dq, dk = _views(dqkv, b, N, j * d, d), _views(dqkv, b, N, C + j * d, d)
        dv = _views(dqkv, b, N, 2 * C + j * d, d)
        # A block of query rows at a time, as in forward; dq's rows are the block's own,
        # dk and dv sum over the blocks (beta = 1 after the first).
        for r0 in range(0, N, bq):
            r1 = min(N, r0 + bq)
            pb, dpb = p[:r1 - r0], dp[:r1 - r0]
            acc = 0.0 if r0 == 0 else 1.0
            gemm(q[r0:r1], k, pb, False, True, 1.0, 0.0)      # rebuild P = exp(sc q k^T - lse)
            for i in range(r1 - r0):
                m = sc - sc + lse[g, r0 + i]
                pr = pb[i]                     # row views: the loops over them vectorise
                for c in range(N):
                    pr[c] = fexp_nonpos_as(sc, pr[c] * sc - m)
            gemm(dc[r0:r1], v, dpb, False, True, 1.0, 0.0)    # dP = dctx v^T
            gemm(pb, dc[r0:r1], dv, True, False, 1.0, acc)    # dv += P^T dctx
            for i in range(r1 - r0):
                # rowsum(dP * P) = rowsum(dctx * ctx): an N x d sum instead of an N x N one
                dot = sc - sc
                dci, oi = dc[r0 + i], o[r0 + i]
                for c in range(d):
                    dot += dci[c] * oi[c]
                pr, dpr = pb[i], dpb[i]
                for c in range(N):             # dP -> d(scores) in place (softmax.py's rule)
                    dpr[c] = sc * pr[c] * (dpr[c] - dot)
            gemm(dpb, k, dq[r0:r1], False, False, 1.0, 0.0)   # dq = ds k
            gemm(dpb, q[r0:r1], dk, True, False, 1.0, acc)    # dk += ds^T q


def attention_bwd_numba(dctx, qkv, ctx, lse, B, h, scale):
    dctx, qkv, ctx, lse = c_contiguous(dctx, qkv, ctx, lse)
    dqkv = np.empty_like(qkv)
    with one_blas_thread():
        R, C3 = qkv.shape
        T = threads_for(10.0 * R * (R // B) * (C3 // 3), MIN_FLOPS_PER_PART, B * h)  # 5 products
        run_parts(_attn_bwd_part, T, dctx, qkv, ctx, lse, B, h, scale, dqkv)
    return dqkv
