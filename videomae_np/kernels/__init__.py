"""Kernels behind the ops: linear layers (gemm with the bias and residual folded in), LayerNorm,
scaled softmax, bias + activation, and the attention core (softmax between two matmuls, one head
at a time).

Each kernel exists twice, side by side in its module: a Numba version (the fast path: cached
``njit(nogil=True)`` parts run at once on the threads of threads.py; softmax alone is a
``parallel=True`` kernel) and a plain-NumPy version (the reference, and the path taken when Numba's
JIT is disabled). ``tests/test_kernels.py`` checks that the two agree.

Calling conventions, shared by both backends:
  * inputs are 2-D C-contiguous arrays ``(R, C)`` -- callers reshape ``(..., C)`` views;
  * float32 and float64 only, output dtype = input dtype;
  * statistics (LayerNorm mean / rstd) are returned in the input dtype, shape ``(R,)``.

Choose the backend with the environment variable ``VIDEOMAE_NP_KERNELS=numba|numpy`` (default
numba; ``NUMBA_DISABLE_JIT=1`` implies numpy, since pure-Python loops would be needlessly slow),
or at run time with :func:`set_backend`.
"""

from __future__ import annotations

import contextlib
import os
import threading

import numpy as np

from . import activations as _act
from . import attention as _attn
from . import layernorm as _ln
from . import linear as _lin
from . import softmax as _sm

BACKENDS = ("numba", "numpy")


def _default_backend() -> str:
    b = os.environ.get("VIDEOMAE_NP_KERNELS", "").strip().lower()
    if b:
        if b not in BACKENDS:
            raise ValueError(f"VIDEOMAE_NP_KERNELS={b!r}; expected one of {BACKENDS}")
        return b
    try:
        from numba.core.config import DISABLE_JIT
    except Exception:  # numba missing or broken: the NumPy path still works
        return "numpy"
    return "numpy" if DISABLE_JIT else "numba"


_backend = _default_backend()


def get_backend() -> str:
    return _backend


def set_backend(name: str) -> str:
    """Switch the kernel backend; returns the previous one."""
    global _backend
    if name not in BACKENDS:
        raise ValueError(f"unknown kernel backend {name!r}; expected one of {BACKENDS}")
    prev, _backend = _backend, name
    return prev


def _pick(mod, name):
    return getattr(mod, f"{name}_{_backend}")


def layernorm_fwd(x, w, b, eps):        # x: (R, C), w/b: (C,) -> y (R, C), mean (R,), rstd (R,)
    return _pick(_ln, "layernorm_fwd")(x, w, b, float(eps))


def layernorm_bwd(dy, x, w, mean, rstd):  # -> dx (R, C), dw (C,), db (C,)
    return _pick(_ln, "layernorm_bwd")(dy, x, w, mean, rstd)


def softmax_fwd(s, scale):              # s: (R, N) -> softmax(scale * s) (R, N)
    return _pick(_sm, "softmax_fwd")(s, float(scale))


def softmax_bwd(dp, p, scale):          # dp, p: (R, N) -> d(s) (R, N), through the scale
    return _pick(_sm, "softmax_bwd")(dp, p, float(scale))


def bias_act_fwd(x, b, kind):           # x: (R, C), b: (C,) or None -> (pre = x + b, y = act(pre))
    return _pick(_act, "bias_act_fwd")(x, b, kind)


def act_bwd(dy, pre, kind):             # -> d(pre) = dy * act'(pre)
    return _pick(_act, "act_bwd")(dy, pre, kind)


_blas_ctl = None
_blas_state = threading.local()


@contextlib.contextmanager
def one_blas_thread():
    """A context in which BLAS runs single-threaded. Every Numba kernel that calls gemm does so
    from each of its threads at once (threads.py); letting each call fan out again puts 2 x 2 busy
    threads on two cores and made a decoder-sized attention 100x slower. Nested uses cost a
    counter: the models enter it once per forward or backward, the kernels again inside."""
    depth = getattr(_blas_state, "depth", 0)
    if depth:
        _blas_state.depth = depth + 1
        try:
            yield
        finally:
            _blas_state.depth = depth
        return
    global _blas_ctl
    if _blas_ctl is None:
        from threadpoolctl import ThreadpoolController
        _blas_ctl = ThreadpoolController()
    limiter = _blas_ctl.limit(limits=1, user_api="blas")
    _blas_state.depth = 1
    try:
        yield
    finally:
        _blas_state.depth = 0
        limiter.restore_original_limits()


def _c(*arrays):
    """C-contiguous versions (no copy when already so): the gemm kernels assume unit stride."""
    return tuple(None if a is None else np.ascontiguousarray(a) for a in arrays)


def linear_fwd(x, w, b=None, res=None):
    """x: (R, I), w: (O, I), b: (O,) | None, res: (R, O) | None -> x w^T + b + res (R, O)."""
    if _backend == "numpy":
        return _lin.linear_fwd_numpy(x, w, b, res)
    with one_blas_thread():
        return _lin.linear_fwd_numba(*_c(x, w, b, res))


def linear_bwd(dy, x, w, need_dx=True, need_db=True):
    """dy: (R, O) -> dx (R, I) | None, dw (O, I), db (O,) | None."""
    if _backend == "numpy":
        return _lin.linear_bwd_numpy(dy, x, w, need_dx, need_db)
    with one_blas_thread():
        return _lin.linear_bwd_numba(*_c(dy, x, w), need_dx, need_db)


def attention_fwd(qkv, B, h, scale, keep_probs=False):
    """qkv: (B N, 3C) -> P (B, h, N, N) | None, ctx (B N, C), row log-sum-exp (B h, N) float64."""
    if _backend == "numpy":
        return _attn.attention_fwd_numpy(qkv, B, h, float(scale), bool(keep_probs))
    with one_blas_thread():
        return _attn.attention_fwd_numba(*_c(qkv), B, h, float(scale), bool(keep_probs))


def attention_bwd(dctx, qkv, ctx, lse, B, h, scale):   # dctx, ctx: (B N, C) -> dqkv (B N, 3C)
    if _backend == "numpy":
        return _attn.attention_bwd_numpy(dctx, qkv, ctx, lse, B, h, float(scale))
    with one_blas_thread():
        return _attn.attention_bwd_numba(*_c(dctx, qkv, ctx, lse), B, h, float(scale))


ACT_CODES = _act.ACT_CODES
