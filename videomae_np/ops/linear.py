"""Linear layer in torch's layout: w is (out, in), y = x @ w.T + b (+ residual, when the caller
wants the residual add folded into the matmul; its gradient is dy itself, so backward is the same)."""

from .. import kernels
from ._util import rows


def linear_forward(x, w, b=None, residual=None):  # x: (..., I), w: (O, I), b: (O,) | None -> y (..., O)
    x2 = rows(x)
    y = kernels.linear_fwd(x2, w, b, None if residual is None else rows(residual))
    return y.reshape(*x.shape[:-1], w.shape[0]), (x2, w, b is not None, x.shape)


def linear_backward(dy, cache, need_dx=True):  # dy: (..., O) -> dx (..., I) | None, dw (O, I), db (O,) | None
    x2, w, has_bias, shape = cache
    dx, dw, db = kernels.linear_bwd(rows(dy), x2, w, need_dx, has_bias)
    return (None if dx is None else dx.reshape(shape)), dw, db
