"""Each Numba kernel against its plain-NumPy twin, on drawn shapes, in float32 and float64."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from videomae_np import kernels
from videomae_np.kernels import activations as ka, layernorm as kl, softmax as ks

SETTINGS = settings(deadline=None, max_examples=15, derandomize=True)
TOL = {np.float64: 1e-12, np.float32: 2e-5}
dtypes = st.sampled_from([np.float32, np.float64])


def _close(a, b, dtype, what):
    assert a.dtype == b.dtype == dtype, (what, a.dtype, b.dtype)
    scale = max(np.abs(b).max(), 1.0)
    assert np.abs(a.astype(np.float64) - b).max() <= TOL[dtype] * scale, what


@SETTINGS
@given(st.integers(1, 300), st.integers(1, 70), dtypes, st.integers(0, 2**31), st.sampled_from([1e-12, 1e-5]))
def test_layernorm_numba_equals_numpy(r, c, dtype, seed, eps):
    rng = np.random.default_rng(seed)
    x, w, b, dy = (rng.standard_normal(s).astype(dtype) * 3 for s in [(r, c), (c,), (c,), (r, c)])
    y1, m1, s1 = kl.layernorm_fwd_numba(x, w, b, eps)
    y2, m2, s2 = kl.layernorm_fwd_numpy(x, w, b, eps)
    for a, bb, n in [(y1, y2, "y"), (m1, m2, "mean")]:
        _close(a, bb, dtype, n)
    assert np.abs(s1.astype(np.float64) - s2).max() <= TOL[dtype] * np.abs(s2).max()
    g1 = kl.layernorm_bwd_numba(dy, x, w, m2, s2)
    g2 = kl.layernorm_bwd_numpy(dy, x, w, m2, s2)
    for a, bb, n in zip(g1, g2, ["dx", "dw", "db"]):
        _close(a, bb, dtype, n)


@SETTINGS
@given(st.integers(1, 300), st.integers(1, 80), dtypes, st.integers(0, 2**31), st.floats(0.05, 3.0))
def test_softmax_numba_equals_numpy(r, n, dtype, seed, scale):
    rng = np.random.default_rng(seed)
    s, dp = (rng.standard_normal((r, n)).astype(dtype) * 4 for _ in range(2))
    p1, p2 = ks.softmax_fwd_numba(s, scale), ks.softmax_fwd_numpy(s, scale)
    _close(p1, p2, dtype, "p")
    np.testing.assert_allclose(p1.sum(axis=1), 1.0, rtol=TOL[dtype] * 10)
    _close(ks.softmax_bwd_numba(dp, p2, scale), ks.softmax_bwd_numpy(dp, p2, scale), dtype, "ds")


@SETTINGS
@given(st.integers(1, 200), st.integers(1, 50), dtypes, st.integers(0, 2**31),
       st.sampled_from(sorted(set(ka.ACT_CODES.values()))), st.booleans())
def test_bias_activation_numba_equals_numpy(r, c, dtype, seed, kind, bias):
    rng = np.random.default_rng(seed)
    x, dy = (rng.standard_normal((r, c)).astype(dtype) * 3 for _ in range(2))
    b = rng.standard_normal(c).astype(dtype) if bias else None
    pre1, y1 = ka.bias_act_fwd_numba(x, b, kind)
    pre2, y2 = ka.bias_act_fwd_numpy(x, b, kind)
    _close(pre1, pre2, dtype, "pre")
    _close(y1, y2, dtype, "y")
    _close(ka.act_bwd_numba(dy, pre2, kind), ka.act_bwd_numpy(dy, pre2, kind), dtype, "dx")


def test_softmax_is_stable_for_huge_scores():
    s = np.array([[1e4, 0.0, -1e4], [800.0, 800.0, 800.0]])
    for p in (ks.softmax_fwd_numba(s, 1.0), ks.softmax_fwd_numpy(s, 1.0)):
        assert np.all(np.isfinite(p))
        np.testing.assert_allclose(p, [[1, 0, 0], [1 / 3, 1 / 3, 1 / 3]], atol=1e-15)


def test_backend_switch_round_trips_and_rejects_unknown_names():
    prev = kernels.set_backend("numpy")
    try:
        assert kernels.get_backend() == "numpy"
        with pytest.raises(ValueError, match="unknown kernel backend"):
            kernels.set_backend("cuda")
    finally:
        kernels.set_backend(prev)


@SETTINGS
@given(st.integers(1, 3), st.integers(1, 4), st.integers(1, 40), st.integers(1, 16), dtypes, st.integers(0, 2**31))
def test_fused_attention_numba_equals_numpy(b, h, n, d, dtype, seed):
    from videomae_np.kernels import attention as kt
    rng = np.random.default_rng(seed)
    qkv = rng.standard_normal((b * n, 3 * h * d)).astype(dtype)
    dctx = rng.standard_normal((b * n, h * d)).astype(dtype)
    scale = d ** -0.5
    p1, c1, l1 = kt.attention_fwd_numba(qkv, b, h, scale, keep_probs=True)
    p2, c2, l2 = kt.attention_fwd_numpy(qkv, b, h, scale, keep_probs=True)
    _close(p1, p2, dtype, "P")
    _close(c1, c2, dtype, "ctx")
    np.testing.assert_allclose(l1, l2, rtol=TOL[dtype], atol=TOL[dtype])
    assert kt.attention_fwd_numba(qkv, b, h, scale)[0] is None        # probabilities only on request
    _close(kt.attention_bwd_numba(dctx, qkv, c2, l2, b, h, scale),
           kt.attention_bwd_numpy(dctx, qkv, c2, l2, b, h, scale),
           dtype, "dqkv")


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


@SETTINGS
@given(st.integers(1, 70), st.integers(1, 150), st.integers(1, 150), dtypes, st.integers(0, 2**31),
       st.booleans(), st.booleans())
def test_linear_numba_equals_numpy(r, i, o, dtype, seed, bias, residual):
    """Few rows and wide outputs make the threads split columns, narrow ones rows: both drawn."""
    from videomae_np.kernels import linear as kn
    rng = np.random.default_rng(seed)
    x, w, dy = (rng.standard_normal(s).astype(dtype) for s in [(r, i), (o, i), (r, o)])
    b = rng.standard_normal(o).astype(dtype) if bias else None
    res = rng.standard_normal((r, o)).astype(dtype) if residual else None
    _close(kn.linear_fwd_numba(x, w, b, res), kn.linear_fwd_numpy(x, w, b, res), dtype, "y")
    for need_dx, need_db in [(True, True), (False, bias)]:
        g1 = kn.linear_bwd_numba(dy, x, w, need_dx, need_db)
        g2 = kn.linear_bwd_numpy(dy, x, w, need_dx, need_db)
        for a, bb, n in zip(g1, g2, ["dx", "dw", "db"]):
            assert (a is None) == (bb is None), n
            if a is not None:
                _close(a, bb, dtype, n)


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


def test_model_without_the_jit_gives_the_same_numbers(tmp_path):
    """NUMBA_DISABLE_JIT=1 (in a fresh interpreter) runs the NumPy twins; results must agree."""
    jit, _ = _step_in_subprocess(tmp_path / "jit.npz", {"NUMBA_DISABLE_JIT": "0"})
    nojit, _ = _step_in_subprocess(tmp_path / "nojit.npz", {"NUMBA_DISABLE_JIT": "1"})
    _assert_same_step(nojit, jit)


def test_either_blas_gives_the_same_numbers_from_one_numba_cache(tmp_path):
    """gemm calls NumPy's bundled OpenBLAS (64-bit integers) when the process has it, else scipy's
    (32-bit integers; VIDEOMAE_NP_BLAS=scipy forces it). Kernels compiled under the first and
    loaded from the same Numba cache under the second must give the same numbers."""
    import json
    tail = ("from videomae_np.kernels import attention, blas, linear\n"
            "hits = sum(sum(f.stats.cache_hits.values()) for f in (linear._lin_fwd_part, linear._lin_bwd_part,"
            " attention._attn_fwd_part, attention._attn_bwd_part))\n"
            "print(json.dumps([blas.BLAS, hits]))\n")
    cache = str(tmp_path / "numba_cache")
    runs, names, hits = {}, {}, {}
    for choice in ("", "scipy"):
        runs[choice], out = _step_in_subprocess(tmp_path / f"blas_{choice or 'default'}.npz",
                                                {"VIDEOMAE_NP_BLAS": choice, "NUMBA_CACHE_DIR": cache}, tail)
        names[choice], hits[choice] = json.loads(out.strip().splitlines()[-1])
    if names[""] != "numpy's OpenBLAS":
        pytest.skip(f"this NumPy has no bundled scipy-openblas ({names['']} by default)")
    assert names["scipy"] == "scipy's BLAS"
    assert hits[""] == 0 and hits["scipy"] == 4      # the gemm callers came from the first run's cache
    _assert_same_step(runs["scipy"], runs[""])
