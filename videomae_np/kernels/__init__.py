"""Kernels behind the ops: linear layers (gemm with the bias and residual folded in), LayerNorm,
scaled softmax, bias + activation, the attention core (softmax between two matmuls, one head
at a time), the processor's lookup-table gather and the toy clips' painter.

Each kernel exists twice, side by side in its module: a Numba version (the fast path: cached
``njit(nogil=True)`` parts run at once on the threads of threads.py) and a plain-NumPy version
(the reference, and the path taken when Numba's JIT is disabled). :data:`KERNELS` lists the
pairs, ``{op: (numpy_twin, numba_kernel)}``; the functions below pick one of the two by the
backend, and ``tests/test_kernels.py`` checks every pair against each other. A new op is one
entry there plus its pair in a module of its own.

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
from . import gather as _gather
from . import layernorm as _ln
from . import linear as _lin
from . import paint as _paint
from . import softmax as _sm
from .blas import one_blas_thread  # noqa: F401  (the models hold BLAS to one thread through it)

BACKENDS = ("numba", "numpy")

KERNELS = {          # op: (NumPy twin, Numba kernel), the same signature each
    "layernorm_fwd": (_ln.layernorm_fwd_numpy, _ln.layernorm_fwd_numba),
    "layernorm_bwd": (_ln.layernorm_bwd_numpy, _ln.layernorm_bwd_numba),
    "softmax_fwd": (_sm.softmax_fwd_numpy, _sm.softmax_fwd_numba),
    "softmax_bwd": (_sm.softmax_bwd_numpy, _sm.softmax_bwd_numba),
    "bias_act_fwd": (_act.bias_act_fwd_numpy, _act.bias_act_fwd_numba),
    "act_bwd": (_act.act_bwd_numpy, _act.act_bwd_numba),
    "linear_fwd": (_lin.linear_fwd_numpy, _lin.linear_fwd_numba),
    "linear_bwd": (_lin.linear_bwd_numpy, _lin.linear_bwd_numba),
    "attention_fwd": (_attn.attention_fwd_numpy, _attn.attention_fwd_numba),
    "attention_bwd": (_attn.attention_bwd_numpy, _attn.attention_bwd_numba),
    "gather_tables": (_gather.gather_tables_numpy, _gather.gather_tables_numba),
    "paint_shapes": (_paint.paint_shapes_numpy, _paint.paint_shapes_numba),
}


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


def implementation(op: str):
    """The function that runs op under the current backend."""
    numpy_twin, numba_kernel = KERNELS[op]
    return numba_kernel if _backend == "numba" else numpy_twin


def layernorm_fwd(x, w, b, eps):        # x: (R, C), w/b: (C,) -> y (R, C), mean (R,), rstd (R,)
    return implementation("layernorm_fwd")(x, w, b, float(eps))


def layernorm_bwd(dy, x, w, mean, rstd):  # -> dx (R, C), dw (C,), db (C,)
    return implementation("layernorm_bwd")(dy, x, w, mean, rstd)


def softmax_fwd(s, scale):              # s: (R, N) -> softmax(scale * s) (R, N)
    return implementation("softmax_fwd")(s, float(scale))


def softmax_bwd(dp, p, scale):          # dp, p: (R, N) -> d(s) (R, N), through the scale
    return implementation("softmax_bwd")(dp, p, float(scale))


def bias_act_fwd(x, b, kind):           # x: (R, C), b: (C,) or None -> (pre = x + b, y = act(pre))
    return implementation("bias_act_fwd")(x, b, kind)


def act_bwd(dy, pre, kind):             # -> d(pre) = dy * act'(pre)
    return implementation("act_bwd")(dy, pre, kind)


def linear_fwd(x, w, b=None, res=None):
    """x: (R, I), w: (O, I), b: (O,) | None, res: (R, O) | None -> x w^T + b + res (R, O)."""
    return implementation("linear_fwd")(x, w, b, res)


def linear_bwd(dy, x, w, *, need_dx=True, need_db=True):
    """dy: (R, O) -> dx (R, I) | None, dw (O, I), db (O,) | None (need_dx / need_db: whether to
    compute them; the twins take the two flags positionally, as the KERNELS table does)."""
    return implementation("linear_bwd")(dy, x, w, need_dx, need_db)


def attention_fwd(qkv, B, h, scale, *, keep_probs=False):
    """qkv: (B N, 3C) -> P (B, h, N, N) | None (keep_probs: whether to store it), ctx (B N, C),
    row log-sum-exp (B h, N) float64."""
    return implementation("attention_fwd")(qkv, B, h, float(scale), bool(keep_probs))


def attention_bwd(dctx, qkv, ctx, lse, B, h, scale):   # dctx, ctx: (B N, C) -> dqkv (B N, 3C)
    return implementation("attention_bwd")(dctx, qkv, ctx, lse, B, h, float(scale))


def gather_tables(x, tables, out):
    """x: (T, h, w, C) uint8, tables: (256, C) -> out[t, k] = tables[x[t, :, :, k], k], into
    out (T, C, h, w)."""
    implementation("gather_tables")(x, tables, out)


def paint_shapes(canvas, sx, sy, zoom, pose, look, tints, noise, amps, out):
    """The toy clips' shapes over canvas, then noise, clip and normalisation, into out
    (B, T, C, S, S); the arguments are described in kernels/paint.py."""
    implementation("paint_shapes")(canvas, sx, sy, zoom, pose, look, tints, noise, amps, out)


ACT_CODES = _act.ACT_CODES
