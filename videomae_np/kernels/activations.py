"""Bias add fused with the MLP activation: pre = x + b, y = act(pre); backward dpre = dy * act'(pre).

Activations (transformers' ACT2FN names):
  gelu                          0.5 x (1 + erf(x / sqrt 2))                  (exact)
  gelu_new / gelu_pytorch_tanh  0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
  relu                          max(x, 0)
  silu / swish                  x sigmoid(x)
  quick_gelu                    x sigmoid(1.702 x)
"""

import math

import numpy as np
from numba import njit
from scipy.special import erf as _erf

from .fastmath import fexp_as, ferf_as, fsigmoid, ftanh, like
from .threads import MIN_ITEMS_PER_PART, part, run_parts, threads_for

ACT_CODES = {"gelu": 0, "gelu_new": 1, "gelu_pytorch_tanh": 1, "relu": 2, "silu": 3, "swish": 3,
             "quick_gelu": 4}
SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
INV_SQRT_2 = 1.0 / math.sqrt(2.0)
INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
TANH_CUBIC = 0.044715          # coefficient of the tanh approximation (Hendrycks & Gimpel)
QUICK_GELU_ALPHA = 1.702       # sigmoid approximation of GELU (CLIP)


# ---- NumPy reference --------------------------------------------------------------------------
def _sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def act_numpy(x, kind):
    if kind == 0:
        return 0.5 * x * (1.0 + _erf(x * INV_SQRT_2))
    if kind == 1:
        return 0.5 * x * (1.0 + np.tanh(SQRT_2_OVER_PI * (x + TANH_CUBIC * x ** 3)))
    if kind == 2:
        return np.maximum(x, 0)
    if kind == 3:
        return x * _sigmoid(x)
    if kind == 4:
        return x * _sigmoid(QUICK_GELU_ALPHA * x)
    raise ValueError(f"unknown activation code {kind}")


def act_grad_numpy(x, kind):
    """act'(x)."""
    if kind == 0:
        return 0.5 * (1.0 + _erf(x * INV_SQRT_2)) + x * INV_SQRT_2PI * np.exp(-0.5 * x * x)
    if kind == 1:
        u = SQRT_2_OVER_PI * (x + TANH_CUBIC * x ** 3)
        t = np.tanh(u)
        return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * SQRT_2_OVER_PI * (1.0 + 3 * TANH_CUBIC * x * x)
    if kind == 2:
        return (x > 0).astype(x.dtype)
    if kind == 3:
        s = _sigmoid(x)
        return s * (1.0 + x * (1.0 - s))
    if kind == 4:
        s = _sigmoid(QUICK_GELU_ALPHA * x)
        return s * (1.0 + QUICK_GELU_ALPHA * x * (1.0 - s))
    raise ValueError(f"unknown activation code {kind}")


def bias_act_fwd_numpy(x, b, kind):
    pre = x + b if b is not None else x
    return pre, act_numpy(pre, kind).astype(x.dtype, copy=False)


def act_bwd_numpy(dy, pre, kind):
    return (dy * act_grad_numpy(pre, kind)).astype(pre.dtype, copy=False)


# ---- Numba ------------------------------------------------------------------------------------
# Each activation is written out in its own inner loop (the `kind` test sits outside it), and the
# transcendental functions come from fastmath.py, so LLVM can vectorise every loop.
# Constants go through like(x, c) so that float32 inputs are computed in float32 throughout.
@njit(cache=True, inline="always")
def _gelu(x):
    half, one = like(x, 0.5), like(x, 1.0)
    return half * x * (one + ferf_as(x, x * like(x, INV_SQRT_2)))


@njit(cache=True, inline="always")
def _gelu_grad(x):
    half, one = like(x, 0.5), like(x, 1.0)
    return (half * (one + ferf_as(x, x * like(x, INV_SQRT_2)))
            + x * like(x, INV_SQRT_2PI) * fexp_as(x, -half * x * x))


@njit(cache=True, inline="always")
def _gelu_tanh(x):
    half, one = like(x, 0.5), like(x, 1.0)
    return half * x * (one + ftanh(like(x, SQRT_2_OVER_PI) * (x + like(x, TANH_CUBIC) * x * x * x)))


@njit(cache=True, inline="always")
def _gelu_tanh_grad(x):
    half, one = like(x, 0.5), like(x, 1.0)
    t = ftanh(like(x, SQRT_2_OVER_PI) * (x + like(x, TANH_CUBIC) * x * x * x))
    return (half * (one + t) + half * x * (one - t * t) * like(x, SQRT_2_OVER_PI)
            * (one + like(x, 3 * TANH_CUBIC) * x * x))


@njit(cache=True, inline="always")
def _silu_grad(x, alpha):          # d/dx [x sigmoid(alpha x)]
    one = like(x, 1.0)
    s = fsigmoid(alpha * x)
    return s * (one + alpha * x * (one - s))


@njit(cache=True, inline="always")
def _act_row(src, dst, kind):
    """dst = act(src) over one row (dst may be src)."""
    C = src.shape[0]
    if kind == 0:
        for c in range(C):
            dst[c] = _gelu(src[c])
    elif kind == 1:
        for c in range(C):
            dst[c] = _gelu_tanh(src[c])
    elif kind == 2:
        for c in range(C):
            dst[c] = max(src[c], 0)
    else:
        alpha = like(src[0], 1.0 if kind == 3 else QUICK_GELU_ALPHA)
        for c in range(C):
            dst[c] = src[c] * fsigmoid(alpha * src[c])


@njit(cache=True, nogil=True, fastmath={"contract"}, error_model="numpy")
def _bias_act_part(x, b, kind, pre, y, t, T):
    C = x.shape[1]
    r0, r1 = part(x.shape[0], T, t)
    has_b = b.shape[0] > 0
    for r in range(r0, r1):
        src = x[r]                   # no bias: pre is x itself, nothing to write but y
        if has_b:                    # pre = x + b, kept for backward; y = act(pre) from the row in cache
            pr, xr = pre[r], x[r]
            for c in range(C):
                pr[c] = xr[c] + b[c]
            src = pr                 # (not y in place: the aliased loop did not vectorise, 6x slower)
        _act_row(src, y[r], kind)    # one call site: the five activations are compiled once


@njit(cache=True, nogil=True, fastmath={"contract"}, error_model="numpy")
def _act_bwd_part(dy, pre, kind, dx, t, T):
    C = pre.shape[1]
    r0, r1 = part(pre.shape[0], T, t)
    for r in range(r0, r1):
        dyr, pr, dxr = dy[r], pre[r], dx[r]
        if kind == 0:
            for c in range(C):
                dxr[c] = dyr[c] * _gelu_grad(pr[c])
        elif kind == 1:
            for c in range(C):
                dxr[c] = dyr[c] * _gelu_tanh_grad(pr[c])
        elif kind == 2:
            for c in range(C):
                dxr[c] = dyr[c] if pr[c] > 0 else 0
        else:
            alpha = like(pr[0], 1.0 if kind == 3 else QUICK_GELU_ALPHA)
            for c in range(C):
                dxr[c] = dyr[c] * _silu_grad(pr[c], alpha)


def bias_act_fwd_numba(x, b, kind):
    """-> (pre, y); without a bias pre is x itself (the MLP's fc1 already added it in its matmul)."""
    y = np.empty_like(x)
    if b is None:
        run_parts(_bias_act_part, threads_for(x.size, MIN_ITEMS_PER_PART), x, np.empty(0, x.dtype), kind, np.empty((0, 0), x.dtype), y)
        return x, y
    pre = np.empty_like(x)
    run_parts(_bias_act_part, threads_for(x.size, MIN_ITEMS_PER_PART), x, b, kind, pre, y)
    return pre, y


def act_bwd_numba(dy, pre, kind):
    dx = np.empty_like(pre)
    run_parts(_act_bwd_part, threads_for(dy.size, MIN_ITEMS_PER_PART), dy, pre, kind, dx)
    return dx
