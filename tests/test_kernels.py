"""Each Numba kernel against its plain-NumPy twin, on drawn shapes, in float32 and float64: one
test over the table ``kernels.KERNELS`` ({op: (numpy_twin, numba_kernel)}), with one argument
drawer per op below; then the special cases (huge scores, NaN, query blocks, strided gemm) and
whole training steps without the JIT and under either BLAS."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from videomae_np import kernels
from videomae_np.kernels import activations as ka, attention as kt, layernorm as kl, softmax as ks

SETTINGS = settings(deadline=None, max_examples=15, derandomize=True)
TOL = {np.float64: 1e-12, np.float32: 2e-5}
DTYPES = [np.float32, np.float64]


def _close(a, b, dtype, what, scale=1.0):
    assert a.dtype == b.dtype and a.dtype in (dtype, np.float64), (what, a.dtype, b.dtype)
    scale = max(np.abs(b).max(initial=0.0), scale)
    assert np.abs(a.astype(np.float64) - b).max(initial=0.0) <= TOL[dtype] * scale, what


def _normal(draw, dtype, *shape, times=1.0):
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    return (rng.standard_normal(shape) * times).astype(dtype)


# ---- one argument drawer per op: (draw, dtype) -> the op's positional arguments -----------------
def _layernorm_fwd(draw, dtype):
    r, c = draw(st.integers(1, 300)), draw(st.integers(1, 70))
    x, w, b = (_normal(draw, dtype, *s, times=3) for s in [(r, c), (c,), (c,)])
    return x, w, b, draw(st.sampled_from([1e-12, 1e-5]))


def _layernorm_bwd(draw, dtype):
    x, w, b, eps = _layernorm_fwd(draw, dtype)
    _, mean, rstd = kl.layernorm_fwd_numpy(x, w, b, eps)
    return _normal(draw, dtype, *x.shape, times=3), x, w, mean, rstd


def _softmax_fwd(draw, dtype):
    r, n = draw(st.integers(1, 300)), draw(st.integers(1, 80))
    return _normal(draw, dtype, r, n, times=4), draw(st.floats(0.05, 3.0))


def _softmax_bwd(draw, dtype):
    s, scale = _softmax_fwd(draw, dtype)
    return _normal(draw, dtype, *s.shape, times=4), ks.softmax_fwd_numpy(s, scale), scale


ACT_KINDS = st.sampled_from(sorted(set(ka.ACT_CODES.values())))


def _bias_act_fwd(draw, dtype):
    r, c = draw(st.integers(1, 200)), draw(st.integers(1, 50))
    b = _normal(draw, dtype, c) if draw(st.booleans()) else None
    return _normal(draw, dtype, r, c, times=3), b, draw(ACT_KINDS)


def _act_bwd(draw, dtype):
    r, c = draw(st.integers(1, 200)), draw(st.integers(1, 50))
    return _normal(draw, dtype, r, c, times=3), _normal(draw, dtype, r, c, times=3), draw(ACT_KINDS)


def _linear_fwd(draw, dtype):
    """Few rows and wide outputs make the threads split columns, narrow ones rows: both drawn."""
    r, i, o = draw(st.integers(1, 70)), draw(st.integers(1, 150)), draw(st.integers(1, 150))
    b = _normal(draw, dtype, o) if draw(st.booleans()) else None
    res = _normal(draw, dtype, r, o) if draw(st.booleans()) else None
    return _normal(draw, dtype, r, i), _normal(draw, dtype, o, i), b, res


def _linear_bwd(draw, dtype):
    x, w, _, _ = _linear_fwd(draw, dtype)
    dy = _normal(draw, dtype, x.shape[0], w.shape[0])
    return dy, x, w, draw(st.booleans()), draw(st.booleans())


def _attention_fwd(draw, dtype):
    b, h, n, d = (draw(st.integers(1, k)) for k in (3, 4, 40, 16))
    return _normal(draw, dtype, b * n, 3 * h * d), b, h, d ** -0.5, draw(st.booleans())


def _attention_bwd(draw, dtype):
    qkv, b, h, scale, _ = _attention_fwd(draw, dtype)
    _, ctx, lse = kt.attention_fwd_numpy(qkv, b, h, scale)
    return _normal(draw, dtype, *ctx.shape), qkv, ctx, lse, b, h, scale


def _gather_tables(draw, dtype):
    """uint8 frames (T, h, w, C), sometimes a cropped (strided) view, through (256, C) tables."""
    t, h, w, c = (draw(st.integers(1, k)) for k in (3, 12, 12, 4))
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    x = rng.integers(0, 256, (t, h + 2, w + 3, c), dtype=np.uint8)
    x = x[:, 1:h + 1, 2:w + 2] if draw(st.booleans()) else np.ascontiguousarray(x[:, :h, :w])
    return x, _normal(draw, dtype, 256, c), np.full((t, c, h, w), np.nan, dtype)


def _paint_shapes(draw, dtype):
    """Toy-clip painting: a fixed camera (separable pixel grid) or a moving one (a position per
    pixel), one canvas for all frames or one each, shapes anywhere (also off the torus), every
    kind; out in the test's dtype."""
    b, t, c, s, k = (draw(st.integers(1, n)) for n in (3, 3, 3, 9, 3))
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    canvas = rng.uniform(0, 1, (b, draw(st.sampled_from((1, t))), c, s, s))
    pix = np.arange(s) + 0.5
    if draw(st.booleans()):
        sx, sy = pix[None, None, None, :], pix[None, None, :, None]
    else:
        sx, sy = rng.uniform(-s, 2 * s, (2, b, t, s, s))
    theta = rng.uniform(0, 2 * np.pi, (b, t, k))
    pose = np.stack([*rng.uniform(-s, 2 * s, (2, b, t, k)), np.cos(theta), np.sin(theta),
                     np.exp(rng.uniform(-0.5, 0.5, (b, t, k)))], axis=-1)
    look = np.concatenate([rng.integers(0, 3, (b, k, 1)), rng.uniform(0.5, s / 2, (b, k, 1)),
                           rng.uniform(-0.3, 0.3, (b, k, 2)), rng.uniform(0, 2 * np.pi, (b, k, 1)),
                           rng.uniform(-1, 1, (b, k, 2))], axis=-1).astype(np.float64)
    amps = np.array([draw(st.sampled_from((0.0, 0.4))), 0.3, 0.05, 0.5, 0.5])
    return (canvas, np.ascontiguousarray(sx), np.ascontiguousarray(sy), rng.uniform(0.5, 2, (b, t)),
            pose, look, rng.uniform(-1, 1, (b, k, 3, c)), rng.standard_normal((b, t, c, s, s)), amps,
            np.full((b, t, c, s, s), np.nan, dtype))


DRAW_ARGS = {"layernorm_fwd": _layernorm_fwd, "layernorm_bwd": _layernorm_bwd,
             "softmax_fwd": _softmax_fwd, "softmax_bwd": _softmax_bwd,
             "bias_act_fwd": _bias_act_fwd, "act_bwd": _act_bwd,
             "linear_fwd": _linear_fwd, "linear_bwd": _linear_bwd,
             "attention_fwd": _attention_fwd, "attention_bwd": _attention_bwd,
             "gather_tables": _gather_tables, "paint_shapes": _paint_shapes}
OUT_ARG = {"gather_tables": 2, "paint_shapes": 9}      # kernels that write into an argument


def _layernorm_bwd_scale(dy, x, w, mean, rstd):
    """dx = rstd (g - mean(g) - x_hat mean(g x_hat)), g = dy w: the rounding of the bracket comes
    out times rstd, which is 1e6 for one channel and eps = 1e-12 (where dx is exactly 0)."""
    return float(np.abs(rstd).max(initial=0.0) * np.abs(dy * w).max(initial=0.0))


# How large an op's rounding can be, where that is more than its largest output (default 1).
ERROR_SCALE = {"layernorm_bwd": _layernorm_bwd_scale}


def _copy(args):
    return [a.copy() if isinstance(a, np.ndarray) else a for a in args]


def _same_results(op, got, want, dtype, scale):
    """Return values and in-place outputs (arrays among the arguments) of both backends agree."""
    for i, (a, b) in enumerate(zip(got, want)):
        if isinstance(b, tuple):
            _same_results(f"{op}[{i}]", a, b, dtype, scale)
        elif b is None or not isinstance(b, np.ndarray):
            assert a is None if b is None else a == b, (op, i)
        else:
            assert isinstance(a, np.ndarray) and a.shape == b.shape, (op, i)
            if b.dtype.kind == "f":
                _close(a, b, dtype, f"{op}[{i}]", scale)
            else:
                np.testing.assert_array_equal(a, b, err_msg=f"{op}[{i}]")


def test_every_kernel_has_an_argument_drawer_and_a_facade_function():
    assert set(DRAW_ARGS) == set(kernels.KERNELS)
    for op, (numpy_twin, numba_kernel) in kernels.KERNELS.items():
        assert callable(getattr(kernels, op)), op
        assert numpy_twin.__name__.endswith("_numpy") and numba_kernel.__name__.endswith("_numba"), op


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("op", sorted(kernels.KERNELS))
@SETTINGS
@given(data=st.data())
def test_numba_kernel_equals_its_numpy_twin(op, dtype, data):
    numpy_twin, numba_kernel = kernels.KERNELS[op]
    args = DRAW_ARGS[op](data.draw, dtype)
    a1, a2 = _copy(args), _copy(args)
    r1, r2 = numba_kernel(*a1), numpy_twin(*a2)
    scale = max(1.0, ERROR_SCALE[op](*args)) if op in ERROR_SCALE else 1.0
    _same_results(op, (r1, *a1), (r2, *a2), dtype, scale)
    for before, after in zip(args, a1):          # inputs other than outputs are left alone
        if isinstance(before, np.ndarray) and not (op in OUT_ARG and before is args[OUT_ARG[op]]):
            np.testing.assert_array_equal(after, before, err_msg=op)


def test_backend_picks_each_ops_entry_of_the_table():
    prev = kernels.set_backend("numpy")
    try:
        assert kernels.get_backend() == "numpy"
        assert all(kernels.implementation(op) is twin for op, (twin, _) in kernels.KERNELS.items())
        kernels.set_backend("numba")
        assert all(kernels.implementation(op) is fast for op, (_, fast) in kernels.KERNELS.items())
        with pytest.raises(ValueError, match="unknown kernel backend"):
            kernels.set_backend("cuda")
    finally:
        kernels.set_backend(prev)


def test_softmax_is_stable_for_huge_scores():
    s = np.array([[1e4, 0.0, -1e4], [800.0, 800.0, 800.0]])
    for p in (ks.softmax_fwd_numba(s, 1.0), ks.softmax_fwd_numpy(s, 1.0)):
        assert np.all(np.isfinite(p))
        np.testing.assert_allclose(p, [[1, 0, 0], [1 / 3, 1 / 3, 1 / 3]], atol=1e-15)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_attention_in_query_blocks_equals_numpy(dtype):
    """N above kernels.attention.ROW_BLOCK: forward and backward run in several query-row blocks
    (backward sums dk and dv over the blocks)."""
    from videomae_np.kernels import attention as kt
    n = kt.ROW_BLOCK + 77
    assert kt.row_block(n) < n
    rng = np.random.default_rng(5)
    qkv = rng.standard_normal((2 * n, 3 * 2 * 8)).astype(dtype)
    dctx = rng.standard_normal((2 * n, 2 * 8)).astype(dtype)
    p1, c1, l1 = kt.attention_fwd_numba(qkv, 2, 2, 0.35, keep_probs=True)
    p2, c2, l2 = kt.attention_fwd_numpy(qkv, 2, 2, 0.35, keep_probs=True)
    _close(p1, p2, dtype, "P")
    _close(c1, c2, dtype, "ctx")
    _close(kt.attention_fwd_numba(qkv, 2, 2, 0.35)[1], c2, dtype, "ctx without P")
    np.testing.assert_allclose(l1, l2, rtol=TOL[dtype], atol=TOL[dtype])
    _close(kt.attention_bwd_numba(dctx, qkv, c2, l2, 2, 2, 0.35),
           kt.attention_bwd_numpy(dctx, qkv, c2, l2, 2, 2, 0.35), dtype, "dqkv")


def test_attention_kernel_propagates_nan():
    """The row max skips a NaN (fmax), but the row sum still turns the output NaN, as torch does."""
    from videomae_np.kernels import attention as kt
    qkv = np.random.default_rng(0).standard_normal((6, 3 * 4)).astype(np.float32)
    qkv[2, 4 + 1] = np.nan                                  # one key entry of token 2
    for f in (kt.attention_fwd_numba, kt.attention_fwd_numpy):
        ctx = f(qkv, 1, 1, 0.5)[1]
        assert np.isnan(ctx).all()                          # every query attends to token 2


def test_split_and_merge_heads_are_inverse_and_follow_the_column_layout():
    from videomae_np.kernels.attention import merge_heads, split_heads
    B, N, h, d = 2, 5, 3, 4
    qkv = np.arange(B * N * 3 * h * d, dtype=np.float64).reshape(B * N, 3 * h * d)
    q, k, v = split_heads(qkv, B, h)
    # head j of batch entry b is rows b*N.., columns j*d.. of the q block
    np.testing.assert_array_equal(q[1 * h + 2], qkv[N:2 * N, 2 * d:3 * d])
    np.testing.assert_array_equal(v[0 * h + 1], qkv[:N, 2 * h * d + d:2 * h * d + 2 * d])
    np.testing.assert_array_equal(np.concatenate([merge_heads(a, B, h) for a in (q, k, v)], axis=1), qkv)


def test_linear_splits_rows_or_columns_as_documented():
    from videomae_np.kernels.linear import split_rows
    assert split_rows(2048, 576, 2) and split_rows(1568, 1152, 2)     # many rows
    assert not split_rows(157, 2304, 2) and not split_rows(208, 768, 2)  # few rows, wide output
    assert split_rows(8, 10, 2)                                         # narrow output


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gemm_on_strided_views_with_transposes_and_beta(dtype):
    """blas.gemm against NumPy on column blocks of wider matrices (leading dimension > width), all
    four transpose combinations, beta 0 and 1; entries outside the output block stay untouched."""
    from numba import njit

    from videomae_np.kernels.blas import gemm

    @njit
    def run(a, b, c, ta, tb, beta):
        gemm(a[:, 2:5], b[:, 1:4], c[:, 3:6], ta, tb, 1.0, beta)
        return c

    rng = np.random.default_rng(0)
    for ta in (False, True):
        for tb in (False, True):
            # every block is 3 columns wide inside a wider matrix; op(a) is (4, 3) or (3, 3)
            a = rng.standard_normal((3 if ta else 4, 9)).astype(dtype)
            b = rng.standard_normal((3, 6)).astype(dtype)
            av = a[:, 2:5].T if ta else a[:, 2:5]
            bv = b[:, 1:4].T if tb else b[:, 1:4]
            for beta in (0.0, 1.0):
                c = rng.standard_normal((av.shape[0], 8)).astype(dtype)
                want = c.copy()
                want[:, 3:6] = av @ bv + beta * c[:, 3:6]
                got = run(a, b, c.copy(), ta, tb, beta)
                np.testing.assert_allclose(got, want, rtol=TOL[dtype] * 10, atol=TOL[dtype] * 10)


# One float64 pretraining step of a tiny model, in a fresh interpreter: its loss and gradients go
# to the .npz named by argv[1]; extra lines (TAIL) may print what the test needs to know.
_STEP = (
    "import json, numpy as np, videomae_np as vm, sys\n"
    "cfg = vm.VideoMAEConfig(image_size=16, patch_size=8, num_frames=4, hidden_size=12, num_hidden_layers=2,"
    " num_attention_heads=3, intermediate_size=20, decoder_hidden_size=8, decoder_num_hidden_layers=1,"
    " decoder_num_attention_heads=2, decoder_intermediate_size=12)\n"
    "m = vm.VideoMAEForPreTraining(cfg, seed=0, dtype=np.float64)\n"
    "x = np.random.default_rng(0).standard_normal((2, 4, 3, 16, 16))\n"
    "out, g = m.value_and_grad(x, bool_masked_pos=vm.tube_mask(2, cfg.grid, 0.5, rng=0))\n"
    "np.savez(sys.argv[1], loss=out.loss, **g)\n")


def _step_in_subprocess(path, env, tail=""):
    """(loss and gradients, stdout) of _STEP run with the extra environment variables env."""
    import os
    import subprocess
    import sys
    done = subprocess.run([sys.executable, "-c", _STEP + tail, str(path)], check=True,
                          env=dict(os.environ, **env), capture_output=True, text=True)
    return np.load(path), done.stdout


def _assert_same_step(got, want):
    assert sorted(got.files) == sorted(want.files)
    for k in want.files:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-10, atol=1e-13, err_msg=k)


def test_numba_kernels_run_as_python_without_the_jit():
    """NUMBA_DISABLE_JIT=1 (in a fresh interpreter): the Numba kernels' bodies, run as Python, still
    equal their twins -- every op of the table, both dtypes, a few drawn cases each."""
    import os
    import subprocess
    import sys
    script = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "import numba.core.config; assert numba.core.config.DISABLE_JIT\n"
        "from hypothesis import given, settings, strategies as st\n"
        "import test_kernels as T\n"
        "check = settings(deadline=None, max_examples=3, derandomize=True, database=None)("
        "given(data=st.data())(T.test_numba_kernel_equals_its_numpy_twin.hypothesis.inner_test))\n"
        "for op in T.kernels.KERNELS:\n"
        "    for dtype in T.DTYPES:\n"
        "        check(op=op, dtype=dtype)\n"
        "print('ok', len(T.kernels.KERNELS))\n")
    done = subprocess.run([sys.executable, "-c", script, os.path.dirname(__file__)], capture_output=True,
                          text=True, env=dict(os.environ, NUMBA_DISABLE_JIT="1"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["ok", str(len(kernels.KERNELS))]


def test_model_without_the_jit_gives_the_same_numbers(tmp_path):
    """NUMBA_DISABLE_JIT=1 (in a fresh interpreter) runs the NumPy twins; results must agree."""
    jit, _ = _step_in_subprocess(tmp_path / "jit.npz", {"NUMBA_DISABLE_JIT": "0"})
    nojit, _ = _step_in_subprocess(tmp_path / "nojit.npz", {"NUMBA_DISABLE_JIT": "1"})
    _assert_same_step(nojit, jit)


def test_every_blas_gives_the_same_numbers_from_one_numba_cache(tmp_path):
    """gemm calls NumPy's bundled OpenBLAS (64-bit integers) when the process has it, MKL's ILP64
    gemm when asked (VIDEOMAE_NP_BLAS=mkl, with the mkl wheel installed), else scipy's (32-bit
    integers; VIDEOMAE_NP_BLAS=scipy forces it). Kernels compiled under the first and loaded from
    the same Numba cache under the others must give the same numbers."""
    import json

    from videomae_np.kernels.blas import mkl_library
    tail = ("from videomae_np.kernels import attention, blas, linear\n"
            "hits = sum(sum(f.stats.cache_hits.values()) for f in (linear._lin_fwd_part, linear._lin_bwd_part,"
            " attention._attn_fwd_part, attention._attn_bwd_part))\n"
            "print(json.dumps([blas.BLAS, hits]))\n")
    cache = str(tmp_path / "numba_cache")
    runs, names, hits = {}, {}, {}
    choices = ("openblas", "scipy") + (("mkl",) if mkl_library() else ())
    for choice in choices:
        runs[choice], out = _step_in_subprocess(tmp_path / f"blas_{choice}.npz",
                                                {"VIDEOMAE_NP_BLAS": choice, "NUMBA_CACHE_DIR": cache}, tail)
        names[choice], hits[choice] = json.loads(out.strip().splitlines()[-1])
    if names["openblas"] != "numpy's OpenBLAS":
        pytest.skip(f"this NumPy has no bundled scipy-openblas ({names['openblas']} when asked)")
    assert names["scipy"] == "scipy's BLAS"
    assert hits["openblas"] == 0
    for choice in choices[1:]:               # the gemm callers came from the first run's cache
        assert hits[choice] == 4, (choice, hits)
        _assert_same_step(runs[choice], runs["openblas"])
    if "mkl" in choices:
        assert names["mkl"].startswith("MKL ")


@pytest.mark.parametrize("asked, vendor, mkl, openblas, want", [
    ("", "GenuineIntel", True, True, "mkl"),          # Intel with the mkl wheel: MKL
    ("auto", "GenuineIntel", False, True, "openblas"),  # without it: NumPy's OpenBLAS
    ("auto", "AuthenticAMD", True, True, "openblas"),  # AMD: OpenBLAS even with MKL installed
    ("MKL", "AuthenticAMD", True, True, "mkl"),        # asked for: MKL on any CPU
    ("openblas", "GenuineIntel", True, True, "openblas"),
    ("scipy", "GenuineIntel", True, True, "scipy"),
    ("auto", None, False, False, "scipy"),
])
def test_blas_choice(asked, vendor, mkl, openblas, want):
    from videomae_np.kernels.blas import choose
    assert choose(asked, vendor, mkl, openblas) == want


def test_blas_choice_bad_value_and_missing_mkl():
    from videomae_np.kernels.blas import choose
    with pytest.raises(ValueError, match="VIDEOMAE_NP_BLAS: expected one of auto, mkl, openblas, scipy, found 'atlas'"):
        choose("atlas", "GenuineIntel", True, True)
    with pytest.warns(UserWarning, match="the `mkl` wheel is not installed"):
        assert choose("mkl", "GenuineIntel", False, True) == "openblas"


@pytest.mark.parametrize("vendor, have_mkl, blas_in_use, env, says", [
    ("GenuineIntel", False, "numpy's OpenBLAS", "", True),     # Intel, no mkl wheel: say how to get it
    ("GenuineIntel", True, "MKL 2026.2 (sequential, the mkl wheel)", "", False),
    ("GenuineIntel", False, "numpy's OpenBLAS", "openblas", False),   # chosen on purpose
    ("AuthenticAMD", False, "numpy's OpenBLAS", "", False),   # OpenBLAS is the faster one there
])
def test_the_training_commands_name_a_missing_mkl_on_intel_only(monkeypatch, vendor, have_mkl, blas_in_use, env, says):
    from videomae_np.kernels import blas
    monkeypatch.setattr(blas, "VENDOR", vendor)
    monkeypatch.setattr(blas, "mkl_library", lambda: "/x/libmkl_rt.so.3" if have_mkl else None)
    monkeypatch.setattr(blas, "BLAS", blas_in_use)
    monkeypatch.setattr(blas, "ASKED", blas._normalised(env))
    line = blas.note()
    assert (line is not None) == says
    if says:
        assert "pip install 'videomae_np[mkl]'" in line and "\n" not in line
