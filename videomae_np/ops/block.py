"""Pre-norm transformer block of VideoMAE (``VideoMAELayer`` in transformers):

    x1 = x + Attention(LN_before(x))
    y  = x1 + MLP(LN_after(x1))

In training, each branch output is multiplied by a dropout x drop-path mask (ops/dropout.py).

Parameters are passed as a dict with the block's transformers key names (below), so the
model hands over ``state_dict`` slices directly and gets gradients back under the same names.
"""

from typing import NamedTuple

from .dropout import branch_mask, masks_branch
from .attention import AttentionCache, attention_backward, attention_forward
from .layernorm import LayerNormCache, layernorm_backward, layernorm_forward
from .linear import linear_backward
from .mlp import MLPCache, mlp_backward, mlp_forward, mlp_hidden

# short op name -> key inside one transformers VideoMAELayer
ATTN_KEYS = {
    "q_w": "attention.attention.query.weight", "q_b": "attention.attention.query.bias",
    "k_w": "attention.attention.key.weight",
    "v_w": "attention.attention.value.weight", "v_b": "attention.attention.value.bias",
    "o_w": "attention.output.dense.weight", "o_b": "attention.output.dense.bias",
}
MLP_KEYS = {
    "fc1_w": "intermediate.dense.weight", "fc1_b": "intermediate.dense.bias",
    "fc2_w": "output.dense.weight", "fc2_b": "output.dense.bias",
}
LN_KEYS = ("layernorm_before.weight", "layernorm_before.bias",
           "layernorm_after.weight", "layernorm_after.bias")


def block_param_names(qv_bias):
    names = [v for k, v in ATTN_KEYS.items() if qv_bias or k not in ("q_b", "v_b")]
    return names + list(MLP_KEYS.values()) + list(LN_KEYS)


class BlockCache(NamedTuple):
    ln_before: LayerNormCache  # of x (B, N, C)
    attn: AttentionCache
    mask_attn: object          # (B, N, C) or (B, 1, 1): dropout x drop-path mask of the attention
                               #   branch | None
    ln_after: LayerNormCache   # of x1 (B, N, C)
    mlp: MLPCache
    mask_mlp: object           # the same for the MLP branch | None


def block_forward(x, p, num_heads, eps, act, head_mask=None, drop=None, *, keep_probs=True, tape=None):
    """x: (B, N, C), p: {transformers key: array}, drop: ops.dropout.Drop | None
    -> y (B, N, C), attention probs (B, h, N, N) (may be None unless keep_probs), BlockCache.

    tape: a recorder ``tape(name, array)`` | None, handed each sub-module's output in execution
    order under the name of transformers' module inside one VideoMAELayer (videomae_np/tape.py);
    it must copy what it keeps, as some arrays are updated in place afterwards. With a tape the
    residual adds are not fused into the matmuls, so the attention branch exists on its own."""
    pa = {k: p.get(v) for k, v in ATTN_KEYS.items()}
    pm = {k: p[v] for k, v in MLP_KEYS.items()}
    h1, c_ln1 = layernorm_forward(x, p["layernorm_before.weight"], p["layernorm_before.bias"], eps)
    if tape is not None:
        tape("layernorm_before", h1)
    # Without dropout / drop path on the branches, each residual add rides on the matmul that
    # ends its branch (the output starts from residual + bias); with them, the branch is masked
    # first and added after.
    fuse = not masks_branch(drop) and tape is None
    x1, probs, c_att = attention_forward(h1, pa, num_heads, head_mask, drop, keep_probs=keep_probs,
                                         residual=x if fuse else None, tape=tape)
    m1 = branch_mask(drop, x.shape, x.dtype)
    if m1 is not None:
        x1 *= m1
    if tape is not None:
        tape("attention.output", x1)
    if not fuse:
        x1 += x                                               # first residual
    h2, c_ln2 = layernorm_forward(x1, p["layernorm_after.weight"], p["layernorm_after.bias"], eps)
    y, c_mlp = mlp_forward(h2, pm, act, residual=x1 if fuse else None)
    m2 = branch_mask(drop, y.shape, y.dtype)
    if m2 is not None:
        y *= m2
    if not fuse:
        y += x1                                               # second residual
    if tape is not None:
        tape("layernorm_after", h2)
        tape("intermediate", mlp_hidden(c_mlp))
        tape("output", y)
    return y, probs, BlockCache(c_ln1, c_att, m1, c_ln2, c_mlp, m2)


def block_backward(dy, cache, *, tape=None):
    """dy: (B, N, C) -> dx (B, N, C), grads {transformers key: array}, d(head_mask) | None.
    tape: a recorder | None, handed the gradient of each sub-module's output (names as in forward)."""
    g = {}
    dym = dy if cache.mask_mlp is None else dy * cache.mask_mlp
    dh2, gm = mlp_backward(dym, cache.mlp)
    if tape is not None:
        tape("output", dy)
        tape("intermediate", linear_backward(dym, cache.mlp.fc2)[0])   # mlp_backward keeps it inside
        tape("layernorm_after", dh2)
    dx1, g["layernorm_after.weight"], g["layernorm_after.bias"] = layernorm_backward(dh2, cache.ln_after)
    dx1 += dy                                                 # through the second residual
    if tape is not None:
        tape("attention.output", dx1)
    dx1m = dx1 if cache.mask_attn is None else dx1 * cache.mask_attn
    dh1, ga, dhead = attention_backward(dx1m, cache.attn, tape=tape)
    if tape is not None:
        tape("layernorm_before", dh1)
    dx, g["layernorm_before.weight"], g["layernorm_before.bias"] = layernorm_backward(dh1, cache.ln_before)
    dx += dx1                                                 # through the first residual
    g.update({MLP_KEYS[k]: v for k, v in gm.items()})
    g.update({ATTN_KEYS[k]: v for k, v in ga.items() if v is not None})
    return dx, g, dhead
