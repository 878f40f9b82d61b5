"""BLAS gemm callable from Numba code, on row-major strided views, writing into a given output.

    gemm(a, b, c, trans_a, trans_b, alpha, beta):   c = alpha * op(a) @ op(b) + beta * c
    op(x) = x.T if trans_x else x;  a, b, c 2-D float32 or float64 (one dtype), unit stride along
    the last axis, any row stride (so a head's columns inside a (rows, 3C) qkv matrix qualify).

Why not np.dot inside the kernels: it allocates its result, needs contiguous inputs and has no
beta, so every head of attention paid a copy in and a copy out, and every bias or residual add
another pass over memory. Calling the gemm directly lets the kernels read q, k and v where the
projection wrote them, write each head's context straight into its columns, and start a linear
layer's output from its bias (+ residual) with beta = 1.

Which library's gemm (VIDEOMAE_NP_BLAS=auto|mkl|openblas|scipy, read at import; choose()):
- auto, on an Intel CPU with the `mkl` wheel installed (``pip install videomae-np[mkl]``): MKL's
  ILP64 gemm on its sequential layer. On Sapphire Rapids, 2 threads, torch's MKL ran the models'
  gemms at 416 and 394 GFLOP/s where NumPy's OpenBLAS (SkylakeX kernels) ran 310 and 293
  (512x192x768, 128x64x1568), and that gap was most of the 14-28% by which we trailed torch.
- otherwise the OpenBLAS that NumPy's wheel bundles (scipy-openblas64), else scipy's BLAS
  (scipy.linalg.cython_blas, the one Numba's np.dot uses). NumPy's was the newer OpenBLAS here
  (0.3.31 against scipy's 0.3.30) and faster where it matters: a (392 x 1568) @ (1568 x 64)
  attention product ran at 89 GFLOP/s on one core against 68, and a ViT-B pretraining step took
  1408-1433 ms against 1490-1541. On the project's AMD machines OpenBLAS beat MKL
  (docs/performance.md), so MKL is never the automatic choice there.

The chosen gemm's address is registered with LLVM under a fixed symbol name, so compiled kernels
refer to the name, not the address, and stay cacheable across processes -- and across a change
of library: NumPy's and MKL's ILP64 entry points take 64-bit integers, scipy's 32-bit ones, and
the integers are passed as 64-bit values, whose first four bytes are the 32-bit value on a
little-endian machine (on a big-endian one only scipy's is used, with 32-bit integers). A
row-major matrix is the column-major matrix of its transpose, so c = op(a) op(b) is computed as
c^T = op(b)^T op(a)^T: the same transpose flags, the operands swapped.

Every caller runs several gemms at once from the kernel threads (threads.py), so BLAS itself must
be single-threaded meanwhile (one_blas_thread, at the end of this file).

Without the JIT (NUMBA_DISABLE_JIT=1) ``gemm`` runs its NumPy body.

For whoever edits this file: the kernels that call gemm (linear.py, attention.py) carry a copy of
its compiled code in their Numba cache, and Numba only notices edits to a function's own file.
A change here that alters how BLAS is called must come with an edit to those files, or a warm
cache keeps calling the old way.
"""

import contextlib
import ctypes
import os
import sys
import threading

import llvmlite.binding as ll
import numpy as np
from numba import njit, types
from numba.extending import get_cython_function_address, overload

_SYMBOLS = {"sgemm": "videomae_np_sgemm", "dgemm": "videomae_np_dgemm"}
_INT = np.int64 if sys.byteorder == "little" else np.int32   # see the docstring


def _numpy_openblas():
    """{name: address} of sgemm and dgemm in NumPy's bundled OpenBLAS, or None."""
    if _INT is not np.int64:
        return None
    try:
        from threadpoolctl import threadpool_info
        for info in threadpool_info():
            if os.path.basename(info.get("filepath", "")).startswith("libscipy_openblas64_"):
                lib = ctypes.CDLL(info["filepath"])        # the copy already loaded, not a new one
                return {n: ctypes.cast(getattr(lib, f"scipy_{n}_64_"), ctypes.c_void_p).value
                        for n in _SYMBOLS}
    except (ImportError, OSError, AttributeError):
        pass
    return None


_MKL_SEQUENTIAL = 1                      # MKL_THREADING_SEQUENTIAL of mkl_service.h


def mkl_library():
    """The path of libmkl_rt from the `mkl` wheel installed in this environment, or None. Only
    this environment's own lib folder is searched (where the wheel puts it): nothing is loaded
    from a path the user did not install into."""
    import glob
    for prefix in dict.fromkeys((sys.prefix, sys.base_prefix)):
        found = sorted(glob.glob(os.path.join(prefix, "lib", "libmkl_rt.so.*")))
        if found:
            return found[-1]
    return None


def _mkl():
    """({name: address} of MKL's ILP64 sgemm/dgemm, version) from the `mkl` wheel, set to its
    sequential layer (each kernel thread runs its own gemm), or None."""
    path = mkl_library() if _INT is np.int64 else None
    if path is None:
        return None
    try:
        lib = ctypes.CDLL(path)
        lib.MKL_Set_Threading_Layer.argtypes = [ctypes.c_int]
        lib.MKL_Set_Threading_Layer(_MKL_SEQUENTIAL)   # before any other call into MKL
        buf = ctypes.create_string_buffer(256)
        lib.mkl_get_version_string(buf, len(buf))
        version = buf.value.decode(errors="replace").split("Version")[-1].split("-")[0].strip()
        return ({n: ctypes.cast(getattr(lib, f"{n}_64"), ctypes.c_void_p).value for n in _SYMBOLS},
                version)
    except (OSError, AttributeError):
        return None


def _cpu_vendor():
    try:
        from .._openblas_core import cpu_vendor_and_flags
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            return cpu_vendor_and_flags(f.read())[0]
    except OSError:
        return None


CHOICES = ("auto", "mkl", "openblas", "scipy")


def _normalised(asked):
    return (asked or "").strip().lower() or "auto"


def choose(asked, vendor, have_mkl, have_openblas):
    """Which BLAS the kernels call: "mkl", "openblas" (NumPy's) or "scipy".

    auto: MKL on Intel CPUs when the `mkl` wheel is installed (on a Sapphire Rapids torch's MKL
    ran these models' gemm shapes faster than NumPy's OpenBLAS: docs/performance.md), else
    NumPy's OpenBLAS (faster than MKL on the project's AMD machines), else scipy's. An explicit choice that is not available falls
    back the same way, with a warning."""
    asked = _normalised(asked)
    if asked not in CHOICES:
        raise ValueError(f"VIDEOMAE_NP_BLAS: expected one of {', '.join(CHOICES)}, found {asked!r}")
    if asked == "scipy":
        return "scipy"
    if asked == "mkl" and have_mkl:
        return "mkl"
    if asked == "auto" and have_mkl and vendor == "GenuineIntel":
        return "mkl"
    if asked == "mkl":
        import warnings
        warnings.warn("VIDEOMAE_NP_BLAS=mkl: the `mkl` wheel is not installed in this environment "
                      "(pip install 'videomae_np[mkl]'); using " + ("NumPy's OpenBLAS" if have_openblas else "scipy's BLAS"),
                      stacklevel=2)
    return "openblas" if have_openblas else "scipy"


def _select(asked, vendor):
    want_mkl = asked == "mkl" or (asked == "auto" and vendor == "GenuineIntel")
    mkl = _mkl() if want_mkl else None               # loaded only where it may be used
    openblas = _numpy_openblas() if asked != "scipy" else None
    which = choose(asked, vendor, mkl is not None, openblas is not None)
    if which == "mkl":
        return mkl[0], f"MKL {mkl[1]} (sequential, the mkl wheel)"
    if which == "openblas":
        return openblas, "numpy's OpenBLAS"
    return ({n: get_cython_function_address("scipy.linalg.cython_blas", n) for n in _SYMBOLS},
            "scipy's BLAS")


ASKED = _normalised(os.environ.get("VIDEOMAE_NP_BLAS"))   # read once, at import
VENDOR = _cpu_vendor()
_ADDRESSES, BLAS = _select(ASKED, VENDOR)


def note():
    """One line when this Intel CPU runs the kernels on OpenBLAS only because the mkl wheel is
    missing (for the training commands to print), else None."""
    if BLAS.startswith("MKL") or ASKED != "auto" or VENDOR != "GenuineIntel" or mkl_library() is not None:
        return None
    return ("note: on Intel CPUs MKL's gemm is expected to beat OpenBLAS's (docs/performance.md): "
            "pip install 'videomae_np[mkl]' to use it")
for _name, _sym in _SYMBOLS.items():
    ll.add_symbol(_sym, _ADDRESSES[_name])
# Fortran calling convention: every argument by pointer (transa, transb, m, n, k, alpha, a, lda,
# b, ldb, beta, c, ldc); neither library reads hidden string lengths.
_SIG = types.void(*([types.voidptr] * 13))
_sgemm = types.ExternalFunction(_SYMBOLS["sgemm"], _SIG)
_dgemm = types.ExternalFunction(_SYMBOLS["dgemm"], _SIG)

_N, _T = 78, 84  # ord("N"), ord("T")


@njit(cache=True, inline="always")
def gemm(a, b, c, trans_a, trans_b, alpha, beta):
    """c = alpha * op(a) @ op(b) + beta * c, in place."""
    # Every distinct combination of argument types is a compilation of its own, about half a
    # second cold; callers pass C-contiguous and strided views in five combinations. Viewed as
    # strided ('A' layout) they share one compiled gemm per dtype, and this shim is inlined.
    _gemm_strided(a[:, :], b[:, :], c[:, :], trans_a, trans_b, alpha, beta)


def _gemm_strided(a, b, c, trans_a, trans_b, alpha, beta):
    """The body run without the JIT (NUMBA_DISABLE_JIT=1); compiled code takes the BLAS overload
    below."""
    r = (a.T if trans_a else a) @ (b.T if trans_b else b)
    r *= c.dtype.type(alpha)
    if beta == 0:
        c[...] = r
    else:
        c *= c.dtype.type(beta)
        c += r


@overload(_gemm_strided, jit_options={"cache": True})
def _gemm_blas(a, b, c, trans_a, trans_b, alpha, beta):
    fn = _sgemm if c.dtype == types.float32 else _dgemm

    def impl(a, b, c, trans_a, trans_b, alpha, beta):
        m, n = c.shape
        k = a.shape[0] if trans_a else a.shape[1]
        if m == 0 or n == 0:
            return
        if k == 0:                                  # BLAS would want lda >= 1 of an empty operand
            for i in range(m):
                for j in range(n):
                    c[i, j] = c[i, j] * beta if beta != 0 else 0
            return
        isz = c.itemsize
        ints = np.empty(6, _INT)
        ints[0] = n
        ints[1] = m
        ints[2] = k
        # leading dimensions: the row stride, at least the row length (a single row's stride is
        # arbitrary)
        ints[3] = max(b.strides[0] // isz, b.shape[1], 1)
        ints[4] = max(a.strides[0] // isz, a.shape[1], 1)
        ints[5] = max(c.strides[0] // isz, c.shape[1], 1)
        scal = np.empty(2, c.dtype)
        scal[0] = alpha
        scal[1] = beta
        flags = np.empty(2, np.uint8)
        flags[0] = _T if trans_b else _N
        flags[1] = _T if trans_a else _N
        fn(flags[0:].ctypes, flags[1:].ctypes, ints[0:].ctypes, ints[1:].ctypes, ints[2:].ctypes,
           scal[0:].ctypes, b.ctypes, ints[3:].ctypes, a.ctypes, ints[4:].ctypes, scal[1:].ctypes,
           c.ctypes, ints[5:].ctypes)
    return impl


# ---- BLAS thread policy ---------------------------------------------------------------------
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


def c_contiguous(*arrays):
    """C-contiguous versions (no copy when already so; None stays None): the kernels' gemm calls
    want unit stride along rows, and their loops assume it."""
    return tuple(None if a is None else np.ascontiguousarray(a) for a in arrays)
