"""Memory-bound kernels behind the ops: LayerNorm, scaled softmax, bias + activation, and the
attention core (softmax between two matmuls, one head at a time).

Each kernel exists twice, side by side in its module: a Numba ``njit(parallel=True, cache=True)``
version (the fast path) and a plain-NumPy version (the reference, and the path taken when Numba's
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

import os

from . import activations as _act
from . import attention as _attn
from . import layernorm as _ln
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


def _one_blas_thread():
    """A context in which BLAS runs single-threaded. The fused attention kernels call BLAS from
    each of Numba's threads; letting every such call fan out again puts 2 x 2 busy threads on two
    cores and made a decoder-sized attention 100x slower."""
    global _blas_ctl
    if _blas_ctl is None:
        from threadpoolctl import ThreadpoolController
        _blas_ctl = ThreadpoolController()
    return _blas_ctl.limit(limits=1, user_api="blas")


def attention_fwd(q, k, v, scale, keep_probs=False):
    """q, k, v: (G, N, d) -> P (G, N, N) | None, ctx (G, N, d), row log-sum-exp (G, N) float64."""
    if _backend == "numpy":
        return _attn.attention_fwd_numpy(q, k, v, float(scale), bool(keep_probs))
    with _one_blas_thread():
        return _attn.attention_fwd_numba(q, k, v, float(scale), bool(keep_probs))


def attention_bwd(dctx, q, k, v, lse, scale):   # -> dq, dk, dv (G, N, d)
    if _backend == "numpy":
        return _attn.attention_bwd_numpy(dctx, q, k, v, lse, float(scale))
    with _one_blas_thread():
        return _attn.attention_bwd_numba(dctx, q, k, v, lse, float(scale))


ACT_CODES = _act.ACT_CODES
