"""Linear layers as one parallel region each: y = x W^T + b (+ residual), and its backward.

    forward:  y = x W^T + b + res                 x: (R, I), W: (O, I), b: (O,), res: (R, O)
    backward: dx = dy W,  dW = dy^T x,  db = sum_rows(dy)

The Numba version splits the work into one part per thread (threads.py) and calls a
single-threaded gemm on each part (blas.py). Forward splits the rows of y (its columns when
there are few rows); each thread first writes b + res into its block and then accumulates
x W^T onto it (beta = 1), so the bias and residual add cost no pass of their own -- OpenBLAS
would otherwise spend that pass zeroing y. Backward gives each thread a block of dx (rows or
columns, by the same rule) and a block of rows of dW with the matching entries of db: one
region, no partial sums to reduce.

Why not NumPy's own multi-threaded matmul between Numba kernels: two thread pools then take
turns on the same cores, and whichever was idle last keeps spinning. A Numba kernel that ran
just after a matmul took twice as long (7.7 ms instead of 3.9 ms for an attention layer), and
the environment variables that shorten OpenBLAS's spinning only work if set before NumPy loads.
With every matmul inside our own parts there is one set of threads, whatever the import order.

``linear_fwd_numba`` and ``linear_bwd_numba`` take any layout (they make C-contiguous copies
where needed) and hold BLAS to one thread while the parts run (blas.one_blas_thread).

The NumPy twins are the textbook formulas. (gemm passes BLAS 64-bit integers; see blas.py.)
"""

import numpy as np
from numba import njit

from .blas import c_contiguous, gemm, one_blas_thread
from .threads import MIN_FLOPS_PER_PART, part, run_parts, threads_for

_NONE1 = {np.dtype(np.float32): np.empty(0, np.float32), np.dtype(np.float64): np.empty(0, np.float64)}
_NONE2 = {k: v.reshape(0, 0) for k, v in _NONE1.items()}


# ---- NumPy reference --------------------------------------------------------------------------
def linear_fwd_numpy(x, w, b=None, res=None):
    y = x @ w.T
    if b is not None:
        y += b
    if res is not None:
        y += res
    return y


def linear_bwd_numpy(dy, x, w, need_dx=True, need_db=True):
    dx = dy @ w if need_dx else None
    db = dy.sum(axis=0) if need_db else None
    return dx, dy.T @ x, db


# ---- Numba ------------------------------------------------------------------------------------
@njit(cache=True, inline="always")
def split_rows(R, cols, T):
    """Whether T threads should split a product's R rows (else its columns). Each thread's gemm
    wants many rows: below about 256 a row split ran at 127 GF/s where a column split reached 154
    (ViT-B's 157 visible tokens); with plenty of rows the two are equal, and narrow outputs split
    by rows."""
    return R >= 256 * T or cols < 32 * T


@njit(cache=True, nogil=True, error_model="numpy")
def _lin_fwd_part(x, w, b, res, y, t, T):
    """Thread t's block (of T) of y."""
    R, O = y.shape
    has_b, has_res = b.shape[0] > 0, res.shape[0] > 0
    r0, r1, o0, o1 = 0, R, 0, O
    if split_rows(R, O, T):
        r0, r1 = part(R, T, t)
    else:
        o0, o1 = part(O, T, t)
    # Row slices, not y[i, j] with a variable column range: LLVM vectorises these, and the
    # 2-D form cost 10% of a K = 192 layer's time.
    bt = b[o0:o1] if has_b else b
    for i in range(r0, r1):
        yi = y[i, o0:o1]
        if has_res:
            ri = res[i, o0:o1]
            if has_b:
                for j in range(o1 - o0):
                    yi[j] = ri[j] + bt[j]
            else:
                for j in range(o1 - o0):
                    yi[j] = ri[j]
        elif has_b:
            for j in range(o1 - o0):
                yi[j] = bt[j]
    gemm(x[r0:r1], w[o0:o1], y[r0:r1, o0:o1], False, True, 1.0, 1.0 if (has_b or has_res) else 0.0)


@njit(cache=True, nogil=True, error_model="numpy")
def _lin_bwd_part(dy, x, w, dx, dw, db, need_dx, need_db, t, T):
    """Thread t's blocks (of T) of dx, and of the rows of dW with their entries of db."""
    R, O = dy.shape
    if need_dx:
        if split_rows(R, w.shape[1], T):
            r0, r1 = part(R, T, t)
            gemm(dy[r0:r1], w, dx[r0:r1], False, False, 1.0, 0.0)
        else:
            i0, i1 = part(w.shape[1], T, t)
            gemm(dy, w[:, i0:i1], dx[:, i0:i1], False, False, 1.0, 0.0)
    o0, o1 = part(O, T, t)
    gemm(dy[:, o0:o1], x, dw[o0:o1], True, False, 1.0, 0.0)
    if need_db and o1 > o0:
        acc = np.zeros(o1 - o0, np.float64)
        for i in range(R):
            dyi = dy[i, o0:o1]
            for j in range(o1 - o0):
                acc[j] += dyi[j]
        for j in range(o0, o1):
            db[j] = acc[j - o0]


def linear_fwd_numba(x, w, b=None, res=None):
    x, w, b, res = c_contiguous(x, w, b, res)
    y = np.empty((x.shape[0], w.shape[0]), x.dtype)
    with one_blas_thread():
        T = threads_for(2.0 * x.shape[0] * w.shape[0] * w.shape[1], MIN_FLOPS_PER_PART)
        run_parts(_lin_fwd_part, T, x, w, _NONE1[x.dtype] if b is None else b,
                  _NONE2[x.dtype] if res is None else res, y)
    return y


def linear_bwd_numba(dy, x, w, need_dx=True, need_db=True):
    dy, x, w = c_contiguous(dy, x, w)
    dx = np.empty((dy.shape[0], w.shape[1]), dy.dtype) if need_dx else _NONE2[dy.dtype]
    dw = np.empty(w.shape, dy.dtype)
    db = np.empty(w.shape[0], dy.dtype) if need_db else _NONE1[dy.dtype]
    with one_blas_thread():
        T = threads_for((4.0 if need_dx else 2.0) * dy.shape[0] * w.shape[0] * w.shape[1], MIN_FLOPS_PER_PART)
        run_parts(_lin_bwd_part, T, dy, x, w, dx, dw, db, need_dx, need_db)
    return (dx if need_dx else None), dw, (db if need_db else None)
