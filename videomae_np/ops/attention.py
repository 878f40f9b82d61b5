"""Multi-head self-attention of VideoMAE (no causal mask, no key bias).

    q = x Wq^T + bq,  k = x Wk^T,  v = x Wv^T + bv            (bq, bv present iff config.qv_bias)
    P = softmax(q k^T * d^-1/2)  per head,  P' = P * head_mask[head]
    out = concat_heads(P' v) Wo^T + bo

The three projections run as one matmul against the stacked (3C, C) weight, into a (B N, 3C)
matrix that the attention core reads in place. The key bias is structurally zero: VideoMAE follows
BEiT, whose key projection has no bias. Without head mask or attention dropout, the softmax and
the two matmuls around it run fused, one head at a time, and backward rebuilds the probabilities
from the row log-sum-exp (kernels/attention.py).

Backward, read bottom-up from the forward:
    dctx = dout Wo;   dP' = dctx v^T;   dv = P'^T dctx;   dP = dP' * head_mask * dropout_mask
    ds = scale * P * (dP - rowsum(dP * P))                        (kernels.softmax_bwd)
    dq = ds k;   dk = ds^T q;   dx = [dq dk dv] W_qkv
"""

from typing import NamedTuple

import numpy as np

from .. import kernels
from ..kernels.attention import split_heads, merge_heads
from ._util import rows
from .dropout import dropout_mask
from .softmax import SoftmaxCache, softmax_backward, softmax_forward

# Parameter names of one attention layer (short names; ops/block.py maps them to HF keys).
ATTN_PARAMS = ("q_w", "q_b", "k_w", "v_w", "v_b", "o_w", "o_b")


def stacked_base(q, k, v):
    """The (3C, C) array whose consecutive thirds q, k and v are (C-contiguous, in that order),
    or None when they are not laid out so."""
    base = q.base
    if (base is not None and k.base is base and v.base is base and base.dtype == q.dtype
            and base.shape == (3 * q.shape[0], q.shape[1]) and base.flags.c_contiguous
            and q.flags.c_contiguous and k.flags.c_contiguous and v.flags.c_contiguous):
        at = base.ctypes.data
        if (q.ctypes.data, k.ctypes.data, v.ctypes.data) == (at, at + q.nbytes, at + 2 * q.nbytes):
            return base
    return None


def _stacked(q, k, v):
    """The (3C, C) matrix [q; k; v]: without a copy when the three are consecutive thirds of one
    array (the models keep them so), else concatenated."""
    base = stacked_base(q, k, v)
    return np.concatenate([q, k, v]) if base is None else base


def _qkv_weights(p, C):
    """The stacked (3C, C) projection weight and its (3C,) bias (None without qv_bias)."""
    w = _stacked(p["q_w"], p["k_w"], p["v_w"])
    if p["q_b"] is None:
        return w, None
    return w, np.concatenate([p["q_b"], np.zeros(C, p["q_b"].dtype), p["v_b"]])


class AttentionCache(NamedTuple):
    """What attention_backward reads. The fused path (no head mask, no dropout) keeps lse and no
    probabilities (backward rebuilds them); the unfused path keeps probs and pm, and lse is None."""
    x2: np.ndarray            # (B N, C) the input as rows
    B: int
    N: int
    heads: int                # h
    qkv: np.ndarray           # (B N, 3C) the three projections, side by side
    lse: object               # (B h, N) float64 row log-sum-exp of the scores | None (unfused)
    probs: object             # (B, h, N, N) softmax before dropout and head mask | None (fused)
    scale: float              # d ** -0.5
    head_mask: object         # (h,) | None
    dmask: object             # (B, h, N, N) scaled attention-dropout mask | None
    pm: object                # (B, h, N, N) P' = probs * dmask * head_mask (fused: the kernel's
                              #   probabilities when keep_probs, else None; backward reads it unfused)
    ctx: np.ndarray           # (B N, C) concat_heads(P' v), the output projection's input
    p: dict                   # the parameters (the stacked qkv weight is looked up again)
    has_qv_bias: bool


def attention_forward(x, p, num_heads, head_mask=None, drop=None, *, keep_probs=True, residual=None,
                      tape=None):
    """x: (B, N, C); p: dict of ATTN_PARAMS (q_b/v_b may be None); head_mask: (h,) | None;
    drop: ops.dropout.Drop | None (its ``attn`` probability drops attention weights);
    keep_probs: whether the caller wants the probabilities (transformers' output_attentions);
    residual: (B, N, C) | None, added to the output inside the output projection;
    tape: a recorder ``tape(name, array)`` | None, handed the context (B, N, C) as
    "attention.attention" (transformers' VideoMAESelfAttention output; videomae_np/tape.py).

    Returns out (B, N, C), probs (B, h, N, N) (after dropout and the head mask, as transformers
    reports them; None when keep_probs is False and the fused path could skip storing them),
    and the AttentionCache for attention_backward.
    """
    B, N, C = x.shape
    h = num_heads
    d = C // h
    scale = d ** -0.5
    w_qkv, b_qkv = _qkv_weights(p, C)
    x2 = rows(x)
    qkv = kernels.linear_fwd(x2, w_qkv, b_qkv)                                     # (B N, 3C)
    dmask = None
    if drop is not None and drop.attn > 0:
        dmask = dropout_mask(drop.rng, (B, h, N, N), drop.attn, x.dtype)
    lse = probs = None
    if head_mask is None and dmask is None:                     # fused, one head at a time
        pm, ctx, lse = kernels.attention_fwd(qkv, B, h, scale, keep_probs=keep_probs)
    else:
        q, k, v = split_heads(qkv, B, h)                                                # (B h, N, d)
        probs, _ = softmax_forward(q @ k.transpose(0, 2, 1), scale)
        probs = probs.reshape(B, h, N, N)
        pm = probs if dmask is None else probs * dmask
        if head_mask is not None:
            pm = pm * head_mask[None, :, None, None]
        ctx = merge_heads(pm.reshape(B * h, N, N) @ v, B, h)                            # (B N, C)
    if tape is not None:
        tape("attention.attention", ctx.reshape(B, N, C))
    out = kernels.linear_fwd(ctx, p["o_w"], p["o_b"], None if residual is None else rows(residual))
    # the stacked weight is looked up again in backward rather than kept: when the model stores it
    # stacked that costs nothing, and otherwise keeping it would cost 3C^2 floats per layer
    cache = AttentionCache(x2, B, N, h, qkv, lse, probs, scale, head_mask, dmask, pm, ctx, p,
                           b_qkv is not None)
    return out.reshape(B, N, C), pm, cache


def attention_backward(dout, cache, *, tape=None):
    """dout: (B, N, C) -> dx (B, N, C), grads dict of ATTN_PARAMS, d(head_mask) (h,) | None.
    tape: a recorder | None, handed d(context) as "attention.attention"."""
    c = cache
    B, N, h, qkv, ctx, p = c.B, c.N, c.heads, c.qkv, c.ctx, c.p
    C = c.x2.shape[1]
    g = {}
    dctx, g["o_w"], g["o_b"] = kernels.linear_bwd(rows(dout), ctx, p["o_w"])      # dctx: (B N, C)
    if tape is not None:
        tape("attention.attention", dctx.reshape(B, N, C))
    dhead = None
    if c.lse is not None:
        dqkv = kernels.attention_bwd(dctx, qkv, ctx, c.lse, B, h, c.scale)             # (B N, 3C)
    else:
        q, k, v = split_heads(qkv, B, h)
        G, d = B * h, C // h
        dc = np.ascontiguousarray(dctx.reshape(B, N, h, d).transpose(0, 2, 1, 3)).reshape(G, N, d)
        dpm = (dc @ v.transpose(0, 2, 1)).reshape(B, h, N, N)                     # d(P')
        dv = c.pm.reshape(G, N, N).transpose(0, 2, 1) @ dc
        if c.head_mask is not None:
            dropped = c.probs if c.dmask is None else c.probs * c.dmask
            dhead = np.einsum("bhij,bhij->h", dpm, dropped)
            dpm *= c.head_mask[None, :, None, None]
        if c.dmask is not None:
            dpm *= c.dmask
        ds = softmax_backward(dpm, SoftmaxCache(c.probs, c.scale)).reshape(G, N, N)  # includes scale
        dqkv = np.concatenate([merge_heads(ds @ k, B, h), merge_heads(ds.transpose(0, 2, 1) @ q, B, h),
                               merge_heads(dv, B, h)], axis=1)
    w_qkv, _ = _qkv_weights(p, C)
    dx, dw, db = kernels.linear_bwd(dqkv, c.x2, w_qkv, need_dx=True, need_db=c.has_qv_bias)
    g["q_w"], g["k_w"], g["v_w"] = dw[:C], dw[C:2 * C], dw[2 * C:]
    g["q_b"], g["v_b"] = (db[:C], db[2 * C:]) if c.has_qv_bias else (None, None)
    return dx.reshape(B, N, C), g, dhead
