"""Scalar math that LLVM can vectorise inside Numba loops.

Numba lowers ``math.exp`` / ``math.erf`` / ``math.tanh`` to calls into libm (or its own helpers),
one element at a time: a GELU over a (2048, 768) activation then costs more than the matmul that
produced it. The functions here are plain arithmetic -- a range reduction, a polynomial and an
exponent-bit trick -- so the loops around them compile to SIMD code.

  fexp(x)    e^x in float64 arithmetic; relative error below 5e-16 (a degree-12 Taylor polynomial
             on |r| <= ln2/2 after x = k ln2 + r, Cody-Waite split of ln2)
  fexp32(x)  e^x in float32 arithmetic (8 SIMD lanes), about 2 ulp
  fexp_as(ref, x)  e^x at the precision of ref's type: fexp32 when ref is float32, else fexp
  fexp_nonpos_as(ref, x)  the same for x <= 0 (softmax), a third cheaper: see its docstring
  fmax(a, b)  the larger of a and b, ignoring a NaN (LLVM's maxnum): a row-max loop over it
             compiles to SIMD, where Python's max (whose NaN rule depends on the argument order)
             left a scalar chain at 0.3 ns per element -- as long as the exponentials after it
  ferf_as(ref, x)  erf(x) at the precision of ref's type; float32 arguments use a rational
             approximation x P(x^2) / Q(x^2) on |x| <= 4 in float32 arithmetic (absolute error
             below 5e-7: GELU's output moves by less than its own float32 rounding); float64
             arguments use the exact libm erf, since the oracle tolerance there is 1e-10
"""

import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic, overload

# The fastmath flags of every kernel loop that reduces (the njit ``fastmath=`` option). reassoc lets
# LLVM vectorise row sums (another summation order: the same result up to rounding), contract lets
# it fuse multiply-adds, nsz ignores the sign of zero; no flag assumes away NaN or infinity.
# Numba cache trap, as in blas.py: the kernels compiled with these flags are cached with their own
# files (layernorm.py, softmax.py, attention.py), Numba only notices edits to a function's own
# file, and the flags are not part of its cache key. A change here must come with an edit to
# those files, or a warm cache keeps the old flags.
FASTMATH_FLAGS = {"reassoc", "contract", "nsz"}   # a set: Numba takes no frozenset

LOG2E = 1.4426950408889634
LN2_HI = 0.6931471803691238      # ln 2 split so that k * LN2_HI is exact for |k| < 2^20
LN2_LO = 1.9082149292705877e-10
EXP_MIN, EXP_MAX = -708.0, 709.0  # beyond these e^x under/overflows float64

# erf(x) ~ x P(x^2) / Q(x^2) for |x| <= 4 (beyond, erf is +-1 in float32): the coefficients of the
# float erf in Eigen and XLA. Absolute error 6.5e-8 in float64 arithmetic, 4.2e-7 in float32 (both
# against scipy over [-6, 6]). It replaced Abramowitz & Stegun 7.1.26, 1 - t P(t) e^(-x^2) with
# t = 1 / (1 + p |x|) (5.3e-7 in float32), whose exponential made GELU a quarter slower.
ERF_P = (-2.72614225801306e-10, 2.77068142495902e-08, -2.10102402082508e-06, -5.69250639462346e-05,
         -7.34990630326855e-04, -2.95459980854025e-03, -1.60960333262415e-02)   # highest power first
ERF_Q = (-1.45660718464996e-05, -2.13374055278905e-04, -1.68282697438203e-03, -7.37332916720468e-03,
         -1.42647390514189e-02)

_INV_FACT = [1.0 / math.factorial(n) for n in range(13)]
C2, C3, C4, C5, C6, C7, C8, C9, C10, C11, C12 = _INV_FACT[2:]


# Adding 1.5 * 2^52 to a float64 holding an integer puts that integer, offset, in the low mantissa
# bits; reading them through a bitcast avoids a float->int64 conversion, which AVX2 lacks in SIMD.
ROUND_MAGIC = 6755399441055744.0


def _bitcast(src, dst, llvm_type, name):
    """An intrinsic that reinterprets the bits of a src scalar as a dst scalar (no conversion)."""
    def impl(typingctx, x):
        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], llvm_type)
        return dst(src), codegen
    impl.__name__ = impl.__qualname__ = name   # distinct names keep Numba's cache keys apart
    return intrinsic(impl)


_float64_bits_as_int64 = _bitcast(types.float64, types.int64, ir.IntType(64), "_float64_bits_as_int64")
_int64_bits_as_float64 = _bitcast(types.int64, types.float64, ir.DoubleType(), "_int64_bits_as_float64")
_float32_bits_as_int32 = _bitcast(types.float32, types.int32, ir.IntType(32), "_float32_bits_as_int32")
_int32_bits_as_float32 = _bitcast(types.int32, types.float32, ir.FloatType(), "_int32_bits_as_float32")


def fmax(a, b):
    """max(a, b) ignoring a NaN, like np.fmax (this body runs only without the JIT)."""
    return np.fmax(a, b)


@intrinsic
def _fmax_llvm(typingctx, a, b):
    if a != b or a not in (types.float32, types.float64):
        return None

    def codegen(context, builder, signature, args):
        ty = args[0].type
        fn = builder.module.declare_intrinsic("llvm.maxnum", [ty], ir.FunctionType(ty, [ty, ty]))
        return builder.call(fn, args)
    return a(a, b), codegen


@overload(fmax)
def _fmax_overload(a, b):
    if a == b and a in (types.float32, types.float64):
        return lambda a, b: _fmax_llvm(a, b)


@njit(cache=True, inline="always")
def _pow2(k):
    """2^k for an integer-valued float64 k in [-1022, 1023]: k + 1023 written into the exponent."""
    ki = _float64_bits_as_int64(k + ROUND_MAGIC) - _float64_bits_as_int64(ROUND_MAGIC)
    return _int64_bits_as_float64((ki + 1023) << 52)


@njit(cache=True, inline="always")
def _exp64_in_range(xc):
    """e^xc for EXP_MIN <= xc <= EXP_MAX (or NaN)."""
    k = np.floor(xc * LOG2E + 0.5)
    r = (xc - k * LN2_HI) - k * LN2_LO
    # Estrin's scheme: shorter dependency chains than Horner for the same polynomial
    r2 = r * r
    r4 = r2 * r2
    r8 = r4 * r4
    p = ((1.0 + r) + (C2 + C3 * r) * r2) + ((C4 + C5 * r) + (C6 + C7 * r) * r2) * r4 \
        + (((C8 + C9 * r) + (C10 + C11 * r) * r2) + C12 * r4) * r8
    return p * _pow2(k)


@njit(cache=True, inline="always")
def fexp(x):
    """e^x to float64 accuracy (relative error < 5e-16); 0 below EXP_MIN; NaN stays NaN."""
    y = _exp64_in_range(min(max(float(x), EXP_MIN), EXP_MAX))
    return y if x >= EXP_MIN else (0.0 if x < EXP_MIN else x)   # the last case: x is NaN


@njit(cache=True, inline="always")
def _fexp_nonpos64(x):
    """fexp for x <= 0 (see fexp_nonpos_as)."""
    return _exp64_in_range(EXP_MIN if x < EXP_MIN else float(x))   # NaN fails the test: stays NaN


# float32 versions of the constants: eight lanes per AVX2 register instead of four
_F = np.float32
LOG2E_32, LN2_HI_32, LN2_LO_32 = _F(LOG2E), _F(0.693359375), _F(-2.12194440e-4)   # Cephes' split
ROUND_MAGIC_32 = _F(12582912.0)   # 1.5 * 2^23
D2, D3, D4, D5, D6 = (_F(c) for c in (C2, C3, C4, C5, C6))
ERF_P_32 = tuple(_F(c) for c in ERF_P)
ERF_Q_32 = tuple(_F(c) for c in ERF_Q)


@njit(cache=True, inline="always")
def _exp32_in_range(xc):
    """e^xc in float32 for -87 <= xc <= 88 (or NaN)."""
    k = np.floor(xc * LOG2E_32 + _F(0.5))   # np.floor stays float; math.floor gives an int
    r = (xc - k * LN2_HI_32) - k * LN2_LO_32
    r2 = r * r
    p = (_F(1.0) + r) + (D2 + D3 * r) * r2 + (D4 + D5 * r + D6 * r2) * (r2 * r2)
    ki = _float32_bits_as_int32(k + ROUND_MAGIC_32) - _float32_bits_as_int32(ROUND_MAGIC_32)
    return p * _int32_bits_as_float32((ki + 127) << 23)


@njit(cache=True, inline="always")
def fexp32(x):
    """e^x in float32 arithmetic (relative error < 3e-7, about 2 ulp); 0 below -87; NaN stays NaN."""
    y = _exp32_in_range(min(max(_F(x), _F(-87.0)), _F(88.0)))
    return y if x >= _F(-87.0) else (_F(0.0) if x < _F(-87.0) else _F(x))   # last case: NaN


@njit(cache=True, inline="always")
def _fexp_nonpos32(x):
    """fexp32 for x <= 0 (see fexp_nonpos_as)."""
    return _exp32_in_range(_F(-87.0) if x < _F(-87.0) else _F(x))


def fexp_as(ref, x):
    """e^x at the precision of ref's type. This body runs only without the JIT
    (NUMBA_DISABLE_JIT=1); compiled code takes the overload below."""
    return type(ref)(np.exp(np.float64(x)))


@overload(fexp_as)
def _fexp_as_overload(ref, x):
    if ref == types.float32:
        return lambda ref, x: fexp32(x)
    return lambda ref, x: fexp(x)


def fexp_nonpos_as(ref, x):
    """e^x for x <= 0 -- a softmax's shifted scores -- at the precision of ref's type. Cheaper
    than fexp_as: no overflow clamp, and below the underflow limit it returns that limit's
    exponential (e^-87 = 1.6e-38 in float32, e^-708 = 3.3e-308 in float64) instead of 0, which
    leaves every softmax sum unchanged; the two selects that fexp_as spends on those cases took
    its loop in attention from 0.33 to 0.48 ns per element. NaN stays NaN. A positive x within
    rounding of 0 is fine; a large one is not. This body runs only without the JIT."""
    lo = -87.0 if isinstance(ref, np.float32) else EXP_MIN
    return type(ref)(np.exp(np.float64(lo if x < lo else x)))


@overload(fexp_nonpos_as)
def _fexp_nonpos_as_overload(ref, x):
    if ref == types.float32:
        return lambda ref, x: _fexp_nonpos32(x)
    return lambda ref, x: _fexp_nonpos64(x)


@njit(cache=True, inline="always")
def _erf32(x):
    """erf in float32 arithmetic: absolute error below 5e-7, eight SIMD lanes, no exponential."""
    xc = min(max(_F(x), _F(-4.0)), _F(4.0))   # NaN stays NaN: min and max keep their first argument
                                              # unless the comparison holds
    z = xc * xc
    P, Q = ERF_P_32, ERF_Q_32
    p = (((((P[0] * z + P[1]) * z + P[2]) * z + P[3]) * z + P[4]) * z + P[5]) * z + P[6]
    q = (((Q[0] * z + Q[1]) * z + Q[2]) * z + Q[3]) * z + Q[4]
    return xc * p / q


def ferf_as(ref, x):
    """erf(x) at the precision of ref's type (Python body used only without the JIT)."""
    return type(ref)(math.erf(float(x)))


@overload(ferf_as)
def _ferf_as_overload(ref, x):
    if ref == types.float32:
        return lambda ref, x: _erf32(x)
    return lambda ref, x: math.erf(x)


def like(ref, c):
    """The constant c in ref's float type (Python body used only without the JIT)."""
    return type(ref)(c)


@overload(like)
def _like_overload(ref, c):
    # Numba promotes float32 op Python-float to float64; writing constants as like(x, c) keeps
    # float32 expressions in float32, i.e. eight SIMD lanes.
    if ref == types.float32:
        return lambda ref, c: np.float32(c)
    return lambda ref, c: np.float64(c)


@njit(cache=True, inline="always")
def ftanh(x):
    """tanh through e^(-2|x|), which cannot overflow; in x's precision."""
    one = like(x, 1.0)
    e = fexp_as(x, like(x, -2.0) * abs(x))
    t = (one - e) / (one + e)
    return t if x >= 0 else -t


@njit(cache=True, inline="always")
def fsigmoid(x):
    """1 / (1 + e^-x), evaluated on the side where the exponential is at most 1; in x's precision."""
    one = like(x, 1.0)
    e = fexp_as(x, -abs(x))
    return one / (one + e) if x >= 0 else e / (one + e)
