"""Scalar math that LLVM can vectorise inside Numba loops.

Numba lowers ``math.exp`` / ``math.erf`` / ``math.tanh`` to calls into libm (or its own helpers),
one element at a time: a GELU over a (2048, 768) activation then costs more than the matmul that
produced it. The functions here are plain arithmetic -- a range reduction, a polynomial and an
exponent-bit trick -- so the loops around them compile to SIMD code.

  fexp(x)    e^x in float64 arithmetic; relative error below 5e-16 (a degree-12 Taylor polynomial
             on |r| <= ln2/2 after x = k ln2 + r, Cody-Waite split of ln2)
  fexp_as(ref, x)  e^x at the precision of ref's type: a degree-7 polynomial when ref is float32
  ferf_as(ref, x)  erf(x) at the precision of ref's type; float32 arguments use Abramowitz & Stegun 7.1.26 evaluated in float64 (absolute
             error below 1.5e-7, under float32's own rounding of GELU's output); float64 arguments
             use the exact libm erf, since the oracle tolerance there is 1e-10
"""

import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic, overload

LOG2E = 1.4426950408889634
LN2_HI = 0.6931471803691238      # ln 2 split so that k * LN2_HI is exact for |k| < 2^20
LN2_LO = 1.9082149292705877e-10
EXP_MIN, EXP_MAX = -708.0, 709.0  # beyond these e^x under/overflows float64

# Abramowitz & Stegun, Handbook of Mathematical Functions, formula 7.1.26
AS_P = 0.3275911
AS_A = (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)

_INV_FACT = [1.0 / math.factorial(n) for n in range(13)]
C2, C3, C4, C5, C6, C7, C8, C9, C10, C11, C12 = _INV_FACT[2:]


# Adding 1.5 * 2^52 to a float64 holding an integer puts that integer, offset, in the low mantissa
# bits; reading them through a bitcast avoids a float->int64 conversion, which AVX2 lacks in SIMD.
ROUND_MAGIC = 6755399441055744.0


@intrinsic
def _float64_bits_as_int64(typingctx, x):
    """Reinterpret the bits of a float64 as an int64 (no conversion)."""
    sig = types.int64(types.float64)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(64))

    return sig, codegen


@intrinsic
def _int64_bits_as_float64(typingctx, i):
    """Reinterpret the bits of an int64 as a float64 (no conversion)."""
    sig = types.float64(types.int64)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return sig, codegen


@njit(cache=True, inline="always")
def _pow2(k):
    """2^k for an integer-valued float64 k in [-1022, 1023]: k + 1023 written into the exponent."""
    ki = _float64_bits_as_int64(k + ROUND_MAGIC) - _float64_bits_as_int64(ROUND_MAGIC)
    return _int64_bits_as_float64((ki + 1023) << 52)


@njit(cache=True, inline="always")
def fexp(x):
    """e^x to float64 accuracy (relative error < 5e-16); 0 below EXP_MIN."""
    xc = min(max(float(x), EXP_MIN), EXP_MAX)
    k = math.floor(xc * LOG2E + 0.5)
    r = (xc - k * LN2_HI) - k * LN2_LO
    # Estrin's scheme: shorter dependency chains than Horner for the same polynomial
    r2 = r * r
    r4 = r2 * r2
    r8 = r4 * r4
    p = ((1.0 + r) + (C2 + C3 * r) * r2) + ((C4 + C5 * r) + (C6 + C7 * r) * r2) * r4 \
        + (((C8 + C9 * r) + (C10 + C11 * r) * r2) + C12 * r4) * r8
    y = p * _pow2(k)
    return y if x >= EXP_MIN else 0.0


@njit(cache=True, inline="always")
def fexp_f32(x):
    """e^x accurate enough for a float32 result (relative error < 1e-8): degree 7 suffices."""
    xc = min(max(float(x), -104.0), 89.0)        # float32's range, denormals included
    k = math.floor(xc * LOG2E + 0.5)
    r = (xc - k * LN2_HI) - k * LN2_LO
    r2 = r * r
    p = ((1.0 + r) + (C2 + C3 * r) * r2) + ((C4 + C5 * r) + (C6 + C7 * r) * r2) * (r2 * r2)
    return p * _pow2(k)


def fexp_as(ref, x):  # Python stub: e^x at the precision of ref's type (see the overload)
    raise NotImplementedError


@overload(fexp_as)
def _fexp_as_overload(ref, x):
    if ref == types.float32:
        return lambda ref, x: fexp_f32(x)
    return lambda ref, x: fexp(x)


@njit(cache=True, inline="always")
def _erf32(x):
    a = abs(float(x))
    t = 1.0 / (1.0 + AS_P * a)
    poly = ((((AS_A[4] * t + AS_A[3]) * t + AS_A[2]) * t + AS_A[1]) * t + AS_A[0]) * t
    e = 1.0 - poly * fexp_f32(-a * a)
    return e if x >= 0 else -e


def ferf_as(ref, x):  # Python stub: erf(x) at the precision of ref's type (see the overload)
    raise NotImplementedError


@overload(ferf_as)
def _ferf_as_overload(ref, x):
    if ref == types.float32:
        return lambda ref, x: _erf32(x)
    return lambda ref, x: math.erf(x)


@njit(cache=True, inline="always")
def ftanh(x):
    """tanh through e^(-2|x|), which cannot overflow."""
    e = fexp_as(x, -2.0 * abs(float(x)))
    t = (1.0 - e) / (1.0 + e)
    return t if x >= 0 else -t


@njit(cache=True, inline="always")
def fsigmoid(x):
    """1 / (1 + e^-x), evaluated on the side where the exponential is at most 1."""
    e = fexp_as(x, -abs(float(x)))
    return 1.0 / (1.0 + e) if x >= 0 else e / (1.0 + e)
