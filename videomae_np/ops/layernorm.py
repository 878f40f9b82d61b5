"""LayerNorm over the last axis (math in kernels/layernorm.py)."""

from .. import kernels
from ._util import rows


def layernorm_forward(x, w, b, eps):       # x: (..., C), w/b: (C,) -> y: (..., C)
    y, mean, rstd = kernels.layernorm_fwd(rows(x), w, b, eps)
    # cache x itself, not x_hat: backward recomputes x_hat from (mean, rstd) in one pass
    return y.reshape(x.shape), (x, w, mean, rstd)


def layernorm_backward(dy, cache):          # dy: (..., C) -> dx (..., C), dw (C,), db (C,)
    x, w, mean, rstd = cache
    dx, dw, db = kernels.layernorm_bwd(rows(dy), rows(x), w, mean, rstd)
    return dx.reshape(x.shape), dw, db
