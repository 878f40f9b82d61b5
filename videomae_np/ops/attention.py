"""Multi-head self-attention of VideoMAE (no causal mask, no key bias).

    q = x Wq^T + bq,  k = x Wk^T,  v = x Wv^T + bv            (bq, bv present iff config.qv_bias)
    P = softmax(q k^T * d^-1/2)  per head,  P' = P * head_mask[head]
    out = concat_heads(P' v) Wo^T + bo

The three projections run as one matmul against the stacked (3C, C) weight. The key bias is
structurally zero: VideoMAE follows BEiT, whose key projection has no bias. Without head mask or
attention dropout, the softmax and the two matmuls around it run fused, one head at a time, and
backward rebuilds the probabilities from the row log-sum-exp (kernels/attention.py).

Backward, read bottom-up from the forward:
    dctx = dout Wo;   dP' = dctx v^T;   dv = P'^T dctx;   dP = dP' * head_mask * dropout_mask
    ds = scale * P * (dP - rowsum(dP * P))                        (kernels.softmax_bwd)
    dq = ds k;   dk = ds^T q;   dx = [dq dk dv] W_qkv
"""

import numpy as np

from .. import kernels
from .dropout import dropout_mask
from .softmax import softmax_backward, softmax_forward

# Parameter names of one attention layer (short names; ops/block.py maps them to HF keys).
ATTN_PARAMS = ("q_w", "q_b", "k_w", "v_w", "v_b", "o_w", "o_b")


def attention_forward(x, p, num_heads, head_mask=None, drop=None, need_probs=True):
    """x: (B, N, C); p: dict of ATTN_PARAMS (q_b/v_b may be None); head_mask: (h,) | None;
    drop: ops.dropout.Drop | None (its ``attn`` probability drops attention weights).

    Returns out (B, N, C), probs (B, h, N, N) (after dropout and the head mask, as transformers
    reports them; None when need_probs is False and the fused path could skip storing them),
    and the cache for attention_backward.
    """
    B, N, C = x.shape
    h = num_heads
    d = C // h
    scale = d ** -0.5
    has_qv_bias = p["q_b"] is not None
    w_qkv = np.concatenate([p["q_w"], p["k_w"], p["v_w"]])                        # (3C, C)
    qkv = x @ w_qkv.T                                                               # (B, N, 3C)
    if has_qv_bias:
        qkv[..., :C] += p["q_b"]
        qkv[..., 2 * C:] += p["v_b"]
    qkv = np.ascontiguousarray(qkv.reshape(B, N, 3, h, d).transpose(2, 0, 3, 1, 4))  # (3, B, h, N, d)
    q, k, v = (a.reshape(B * h, N, d) for a in qkv)                                 # heads as groups
    dmask = None
    if drop is not None and drop.attn > 0:
        dmask = dropout_mask(drop.rng, (B, h, N, N), drop.attn, x.dtype)
    lse = None
    if head_mask is None and dmask is None:                                         # fused per head
        probs, ctx, lse = kernels.attention_fwd(q, k, v, scale, keep_probs=need_probs)
        probs = pm = None if probs is None else probs.reshape(B, h, N, N)
    else:
        probs, _ = softmax_forward(q @ k.transpose(0, 2, 1), scale)
        probs = probs.reshape(B, h, N, N)
        pm = probs if dmask is None else probs * dmask
        if head_mask is not None:
            pm = pm * head_mask[None, :, None, None]
        ctx = pm.reshape(B * h, N, N) @ v
    ctx = ctx.reshape(B, h, N, d).transpose(0, 2, 1, 3).reshape(B, N, C)            # (B, N, C)
    out = ctx @ p["o_w"].T
    out += p["o_b"]
    # the stacked weight is rebuilt in backward rather than kept: 3C^2 floats per layer otherwise
    cache = (x, (p["q_w"], p["k_w"], p["v_w"]), qkv, lse, probs, scale, head_mask, dmask, pm, ctx,
             p["o_w"], has_qv_bias)
    return out, pm, cache


def attention_backward(dout, cache):
    """dout: (B, N, C) -> dx (B, N, C), grads dict of ATTN_PARAMS, d(head_mask) (h,) | None."""
    x, w_parts, qkv, lse, probs, scale, head_mask, dmask, pm, ctx, o_w, has_qv_bias = cache
    _, B, h, N, d = qkv.shape
    C = h * d
    G = B * h
    q, k, v = (a.reshape(G, N, d) for a in qkv)
    dout2 = dout.reshape(-1, C)
    g = {"o_w": dout2.T @ ctx.reshape(-1, C), "o_b": dout2.sum(axis=0)}
    dctx = np.ascontiguousarray((dout2 @ o_w).reshape(B, N, h, d).transpose(0, 2, 1, 3)).reshape(G, N, d)

    dhead = None
    if lse is not None:
        dq, dk, dv = kernels.attention_bwd(dctx, q, k, v, lse, scale)
    else:
        dpm = (dctx @ v.transpose(0, 2, 1)).reshape(B, h, N, N)                    # d(P')
        dv = pm.reshape(G, N, N).transpose(0, 2, 1) @ dctx
        if head_mask is not None:
            dropped = probs if dmask is None else probs * dmask
            dhead = np.einsum("bhij,bhij->h", dpm, dropped)
            dpm *= head_mask[None, :, None, None]
        if dmask is not None:
            dpm *= dmask
        ds = softmax_backward(dpm, (probs, scale)).reshape(G, N, N)                 # includes scale
        dq, dk = ds @ k, ds.transpose(0, 2, 1) @ q
    dqkv = np.stack([dq, dk, dv]).reshape(3, B, h, N, d)
    dqkv2 = dqkv.transpose(1, 3, 0, 2, 4).reshape(B * N, 3 * C)                     # (B*N, 3C)
    dx = (dqkv2 @ np.concatenate(w_parts)).reshape(B, N, C)
    dw = dqkv2.T @ x.reshape(-1, C)                                                 # (3C, C)
    g["q_w"], g["k_w"], g["v_w"] = dw[:C], dw[C:2 * C], dw[2 * C:]
    if has_qv_bias:
        db = dqkv2.sum(axis=0)
        g["q_b"], g["v_b"] = db[:C], db[2 * C:]
    else:
        g["q_b"] = g["v_b"] = None
    return dx, g, dhead
