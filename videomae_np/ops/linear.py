"""Linear layer in torch's layout: w is (out, in), y = x @ w.T + b (+ residual, when the caller
wants the residual add folded into the matmul; its gradient is dy itself, so backward is the same)."""

from typing import NamedTuple

import numpy as np

from .. import kernels
from ._util import rows


class LinearCache(NamedTuple):
    x2: np.ndarray            # (R, I) the input as C-contiguous rows
    w: np.ndarray             # (O, I)
    has_bias: bool            # whether there is a bias to get a gradient
    shape: tuple              # the input's shape (..., I), to give dx back in it


def linear_forward(x, w, b=None, residual=None):  # x: (..., I), w: (O, I), b: (O,) | None -> y (..., O)
    x2 = rows(x)
    y = kernels.linear_fwd(x2, w, b, None if residual is None else rows(residual))
    return y.reshape(*x.shape[:-1], w.shape[0]), LinearCache(x2, w, b is not None, x.shape)


def linear_backward(dy, cache, *, need_dx=True):  # dy: (..., O) -> dx (..., I) | None, dw (O, I), db (O,) | None
    """need_dx: whether to compute the input gradient (the first layer's input needs none)."""
    dx, dw, db = kernels.linear_bwd(rows(dy), cache.x2, cache.w, need_dx=need_dx, need_db=cache.has_bias)
    return (None if dx is None else dx.reshape(cache.shape)), dw, db
