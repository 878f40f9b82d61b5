"""Softmax over the last axis with a fused input scale: p = softmax(scale * s)."""

from .. import kernels
from ._util import rows


def softmax_forward(s, scale=1.0):         # s: (..., N) -> p: (..., N)
    p = kernels.softmax_fwd(rows(s), scale).reshape(s.shape)
    return p, (p, scale)


def softmax_backward(dp, cache):            # dp: (..., N) -> ds: (..., N)
    p, scale = cache
    return kernels.softmax_bwd(rows(dp), rows(p), scale).reshape(p.shape)
