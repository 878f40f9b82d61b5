"""Hypothesis helpers: float64 arrays of drawn shapes, sometimes non-contiguous views."""

import numpy as np
from hypothesis import strategies as st


@st.composite
def arrays(draw, shape, scale=1.0):
    """A float64 array of `shape` drawn from a seeded normal, laid out C-contiguous, as a strided
    (non-contiguous) view into a larger array, or column-major."""
    seed = draw(st.integers(0, 2**31 - 1))
    layout = draw(st.sampled_from(["contiguous", "strided", "transposed"]))
    rng = np.random.default_rng(seed)
    if layout == "contiguous":
        return rng.standard_normal(shape) * scale
    if layout == "strided":
        big = rng.standard_normal(tuple(s * 2 for s in shape)) * scale
        return big[tuple(slice(None, None, 2) for _ in shape)]
    return np.asfortranarray(rng.standard_normal(shape) * scale)   # column-major layout


def numeric_grad(f, x, idx, eps=1e-6):
    """Central difference of the scalar f() w.r.t. x[idx], x modified in place and restored."""
    old = x[idx]
    x[idx] = old + eps
    fp = f()
    x[idx] = old - eps
    fm = f()
    x[idx] = old
    return (fp - fm) / (2 * eps)


def fd_check(f, x, analytic, rng, n=12, eps=1e-6, rtol=1e-5, atol=1e-7):
    """Compare `analytic` (same shape as x) with central differences at n random entries;
    tolerance rtol relative to the largest analytic entry, plus atol."""
    assert analytic.shape == x.shape, (analytic.shape, x.shape)
    picks = rng.choice(x.size, size=min(n, x.size), replace=False)
    scale = max(np.abs(analytic).max(), 1e-3)
    for i in picks:
        idx = np.unravel_index(i, x.shape)
        num = numeric_grad(f, x, idx, eps)
        assert abs(num - analytic[idx]) <= rtol * scale + atol, (idx, num, analytic[idx])
