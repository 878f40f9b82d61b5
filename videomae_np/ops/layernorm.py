"""LayerNorm over the last axis (math in kernels/layernorm.py)."""

from typing import NamedTuple

import numpy as np

from .. import kernels
from ._util import rows


class LayerNormCache(NamedTuple):
    # x itself, not x_hat: backward recomputes x_hat from (mean, rstd) in one pass
    x: np.ndarray             # (..., C) the input
    w: np.ndarray             # (C,)
    mean: np.ndarray          # (R,) per row of x, R = prod(...)
    rstd: np.ndarray          # (R,) 1 / sqrt(var + eps)


def layernorm_forward(x, w, b, eps):       # x: (..., C), w/b: (C,) -> y: (..., C)
    y, mean, rstd = kernels.layernorm_fwd(rows(x), w, b, eps)
    return y.reshape(x.shape), LayerNormCache(x, w, mean, rstd)


def layernorm_backward(dy, cache):          # dy: (..., C) -> dx (..., C), dw (C,), db (C,)
    x = cache.x
    dx, dw, db = kernels.layernorm_bwd(rows(dy), rows(x), cache.w, cache.mean, cache.rstd)
    return dx.reshape(x.shape), dw, db
