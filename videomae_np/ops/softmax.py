"""Softmax over the last axis with a fused input scale: p = softmax(scale * s)."""

from typing import NamedTuple

import numpy as np

from .. import kernels
from ._util import rows


class SoftmaxCache(NamedTuple):
    p: np.ndarray             # (..., N) the probabilities
    scale: float              # the input scale, which the gradient goes through too


def softmax_forward(s, scale=1.0):         # s: (..., N) -> p: (..., N)
    p = kernels.softmax_fwd(rows(s), scale).reshape(s.shape)
    return p, SoftmaxCache(p, scale)


def softmax_backward(dp, cache):            # dp: (..., N) -> ds: (..., N)
    p = cache.p
    return kernels.softmax_bwd(rows(dp), rows(p), cache.scale).reshape(p.shape)
