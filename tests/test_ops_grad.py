"""Every op's backward against central finite differences (float64, hypothesis-drawn shapes and
memory layouts) and against torch autograd.

The objective is L = sum(op(inputs) * R) for a fixed random R, so dL/d(out) = R is what each
backward receives.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from videomae_np.ops import (activation_backward, activation_forward, attention_backward, attention_forward,
                             block_backward, block_forward, layernorm_backward, layernorm_forward,
                             linear_backward, linear_forward, mlp_backward, mlp_forward, patch_embed_backward,
                             patch_embed_forward, softmax_backward, softmax_forward)
from videomae_np.ops import losses
from videomae_np.ops.block import block_param_names
from videomae_np.ops.dropout import Drop
from _strategies import arrays, fd_check

SETTINGS = settings(deadline=None, max_examples=12, derandomize=True)
ACTS = ["gelu", "gelu_new", "gelu_pytorch_tanh", "relu", "silu", "quick_gelu"]


def _objective(out, R):
    return float(np.sum(out * R))


@SETTINGS
@given(st.data(), st.integers(1, 3), st.integers(1, 5), st.integers(1, 6), st.integers(1, 6), st.booleans())
def test_linear_backward_matches_finite_differences(data, b, n, i, o, bias):
    x = data.draw(arrays((b, n, i)))
    w = data.draw(arrays((o, i)))
    bb = data.draw(arrays((o,))) if bias else None
    rng = np.random.default_rng(0)
    R = rng.standard_normal((b, n, o))
    y, cache = linear_forward(x, w, bb)
    dx, dw, db = linear_backward(R, cache)
    f = lambda: _objective(linear_forward(x, w, bb)[0], R)
    fd_check(f, x, dx, rng)
    fd_check(f, w, dw, rng)
    if bias:
        fd_check(f, bb, db, rng)


@SETTINGS
@given(st.data(), st.integers(1, 7), st.integers(2, 9), st.sampled_from([1e-12, 1e-5]))
def test_layernorm_backward_matches_finite_differences(data, r, c, eps):
    x = data.draw(arrays((r, c)))
    w = data.draw(arrays((c,)))
    b = data.draw(arrays((c,)))
    rng = np.random.default_rng(1)
    R = rng.standard_normal((r, c))
    _, cache = layernorm_forward(x, w, b, eps)
    dx, dw, db = layernorm_backward(R, cache)
    f = lambda: _objective(layernorm_forward(x, w, b, eps)[0], R)
    fd_check(f, x, dx, rng)
    fd_check(f, w, dw, rng)
    fd_check(f, b, db, rng)


@SETTINGS
@given(st.data(), st.sampled_from(ACTS), st.integers(1, 6), st.integers(1, 8))
def test_activation_backward_matches_finite_differences(data, act, r, c):
    x = data.draw(arrays((r, c), scale=2.0))
    b = data.draw(arrays((c,)))
    if act == "relu":   # keep away from the kink, where the derivative does not exist
        x[np.abs(x + b) < 1e-3] += 0.1
    rng = np.random.default_rng(2)
    R = rng.standard_normal((r, c))
    _, cache = activation_forward(x, act, b)
    dpre = activation_backward(R, cache)
    f = lambda: _objective(activation_forward(x, act, b)[0], R)
    fd_check(f, x, dpre, rng)
    fd_check(f, b, dpre.sum(axis=0), rng)


@SETTINGS
@given(st.data(), st.integers(1, 6), st.integers(1, 9), st.floats(0.1, 2.0))
def test_softmax_backward_matches_finite_differences(data, r, n, scale):
    s = data.draw(arrays((r, n), scale=2.0))
    rng = np.random.default_rng(3)
    R = rng.standard_normal((r, n))
    _, cache = softmax_forward(s, scale)
    ds = softmax_backward(R, cache)
    fd_check(lambda: _objective(softmax_forward(s, scale)[0], R), s, ds, rng)


def _attn_params(data, c, qv_bias):
    p = {k: data.draw(arrays((c, c))) for k in ("q_w", "k_w", "v_w", "o_w")}
    p["o_b"] = data.draw(arrays((c,)))
    p["q_b"] = data.draw(arrays((c,))) if qv_bias else None
    p["v_b"] = data.draw(arrays((c,))) if qv_bias else None
    return p


@SETTINGS
@given(st.data(), st.integers(1, 2), st.integers(1, 5), st.sampled_from([(1, 2), (2, 3), (3, 2)]),
       st.booleans(), st.booleans())
def test_attention_backward_matches_finite_differences(data, b, n, heads_width, qv_bias, use_head_mask):
    h, d = heads_width
    c = h * d
    x = data.draw(arrays((b, n, c)))
    p = _attn_params(data, c, qv_bias)
    hm = data.draw(arrays((h,))) if use_head_mask else None
    rng = np.random.default_rng(4)
    R = rng.standard_normal((b, n, c))
    _, _, cache = attention_forward(x, p, h, hm)
    dx, g, dhm = attention_backward(R, cache)
    f = lambda: _objective(attention_forward(x, p, h, hm)[0], R)
    fd_check(f, x, dx, rng)
    for k, v in p.items():
        if v is not None:
            fd_check(f, v, g[k], rng, n=6)
    if use_head_mask:
        fd_check(f, hm, dhm, rng)


def _block_params(data, c, inner, qv_bias):
    p = {}
    for name in block_param_names(qv_bias):
        if name.startswith("intermediate"):
            shape = (inner, c) if name.endswith("weight") else (inner,)
        elif name.startswith("output.dense"):
            shape = (c, inner) if name.endswith("weight") else (c,)
        elif name.endswith("weight") and name.startswith("attention"):
            shape = (c, c)
        else:
            shape = (c,)
        p[name] = data.draw(arrays(shape, scale=0.5))
    return p


@SETTINGS
@given(st.data(), st.integers(1, 2), st.integers(1, 4), st.sampled_from(ACTS), st.booleans(),
       st.sampled_from([None, (0.3, 0.0, 0.0), (0.0, 0.4, 0.0), (0.0, 0.0, 0.5), (0.2, 0.2, 0.3)]))
def test_block_backward_matches_finite_differences(data, b, n, act, qv_bias, drop):
    h, c, inner = 2, 4, 6
    x = data.draw(arrays((b, n, c)))
    p = _block_params(data, c, inner, qv_bias)
    rng = np.random.default_rng(5)
    R = rng.standard_normal((b, n, c))
    # a fresh generator with the same seed per evaluation: every call draws the same masks
    mk = (lambda: Drop(np.random.default_rng(11), *drop)) if drop else (lambda: None)
    _, _, cache = block_forward(x, p, h, 1e-12, act, None, mk())
    dx, g, _ = block_backward(R, cache)
    f = lambda: _objective(block_forward(x, p, h, 1e-12, act, None, mk())[0], R)
    fd_check(f, x, dx, rng)
    for k in p:
        fd_check(f, p[k], g[k], rng, n=4)


@SETTINGS
@given(st.data(), st.integers(1, 2), st.sampled_from([(2, 1, 2), (4, 2, 2), (2, 2, 1)]), st.integers(1, 3),
       st.integers(1, 5))
def test_patch_embed_backward_matches_finite_differences(data, b, thw, ch, dim):
    t, p, grid = thw
    T, H, W = t * 2, p * grid, p * 2
    video = data.draw(arrays((b, T, ch, H, W)))
    w = data.draw(arrays((dim, ch, t, p, p)))
    bias = data.draw(arrays((dim,)))
    rng = np.random.default_rng(6)
    y, cache = patch_embed_forward(video, w, bias, t, p)
    R = rng.standard_normal(y.shape)
    dvid, dw, db = patch_embed_backward(R, cache, need_dx=True)
    f = lambda: _objective(patch_embed_forward(video, w, bias, t, p)[0], R)
    fd_check(f, video, dvid, rng)
    fd_check(f, w, dw, rng)
    fd_check(f, bias, db, rng)
    # embedding only some tokens (the visible ones) equals embedding all and gathering, and its
    # backward gives the skipped tubelets' pixels no gradient
    N = y.shape[1]
    idx = np.stack([np.sort(rng.permutation(N)[:max(1, N // 2)]) for _ in range(b)])
    ys, cs = patch_embed_forward(video, w, bias, t, p, idx)
    np.testing.assert_allclose(ys, np.take_along_axis(y, idx[:, :, None], axis=1), rtol=1e-12, atol=1e-12)
    Rs = rng.standard_normal(ys.shape)
    dvs, dws, dbs = patch_embed_backward(Rs, cs, need_dx=True)
    fs = lambda: _objective(patch_embed_forward(video, w, bias, t, p, idx)[0], Rs)
    fd_check(fs, video, dvs, rng)
    fd_check(fs, w, dws, rng)
    fd_check(fs, bias, dbs, rng)


@SETTINGS
@given(st.data(), st.integers(1, 4), st.integers(2, 5))
def test_losses_backward_match_finite_differences(data, b, k):
    rng = np.random.default_rng(7)
    z = data.draw(arrays((b, k), scale=3.0))
    target = rng.standard_normal((b, k))
    labels = rng.integers(0, k, b)
    multi = (rng.random((b, k)) > 0.5).astype(np.float64)
    for fwd, bwd, y in [(losses.mse_forward, losses.mse_backward, target),
                        (losses.cross_entropy_forward, losses.cross_entropy_backward, labels),
                        (losses.bce_with_logits_forward, losses.bce_with_logits_backward, multi)]:
        _, cache = fwd(z, y)
        fd_check(lambda: float(fwd(z, y)[0]), z, bwd(1.0, cache), rng)


# ---- the same ops against torch autograd ------------------------------------------------------------
def _t(torch, a):
    return torch.tensor(np.ascontiguousarray(a), requires_grad=True)


@pytest.mark.parametrize("act", ACTS)
def test_activations_and_mlp_match_torch_autograd(hf, act):
    torch, transformers = hf
    from transformers.activations import ACT2FN
    rng = np.random.default_rng(8)
    x, w1, b1, w2, b2 = (rng.standard_normal(s) for s in [(2, 5, 4), (6, 4), (6,), (4, 6), (4,)])
    R = rng.standard_normal((2, 5, 4))
    y, cache = mlp_forward(x, {"fc1_w": w1, "fc1_b": b1, "fc2_w": w2, "fc2_b": b2}, act)
    dx, g = mlp_backward(R, cache)
    tx, tw1, tb1, tw2, tb2 = (_t(torch, a) for a in (x, w1, b1, w2, b2))
    ty = torch.nn.functional.linear(ACT2FN[act](torch.nn.functional.linear(tx, tw1, tb1)), tw2, tb2)
    (ty * torch.tensor(R)).sum().backward()
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=0, atol=1e-12)
    for ours, ref in [(dx, tx), (g["fc1_w"], tw1), (g["fc1_b"], tb1), (g["fc2_w"], tw2), (g["fc2_b"], tb2)]:
        np.testing.assert_allclose(ours, ref.grad.numpy(), rtol=0, atol=1e-11)


def test_layernorm_softmax_patch_embed_and_losses_match_torch_autograd(hf):
    torch, _ = hf
    F = torch.nn.functional
    rng = np.random.default_rng(9)
    # layernorm
    x, w, b = rng.standard_normal((3, 7)), rng.standard_normal(7), rng.standard_normal(7)
    R = rng.standard_normal((3, 7))
    y, c = layernorm_forward(x, w, b, 1e-5)
    dx, dw, db = layernorm_backward(R, c)
    tx, tw, tb = _t(torch, x), _t(torch, w), _t(torch, b)
    ty = F.layer_norm(tx, (7,), tw, tb, 1e-5)
    (ty * torch.tensor(R)).sum().backward()
    for ours, ref in [(y, ty.detach()), (dx, tx.grad), (dw, tw.grad), (db, tb.grad)]:
        np.testing.assert_allclose(ours, ref.numpy(), atol=1e-12)
    # scaled softmax
    s = rng.standard_normal((4, 6))
    p, c = softmax_forward(s, 0.5)
    ds = softmax_backward(R[:, :6].repeat(2, axis=0)[:4], c)
    ts = _t(torch, s)
    tp = torch.softmax(ts * 0.5, dim=-1)
    (tp * torch.tensor(R[:, :6].repeat(2, axis=0)[:4])).sum().backward()
    np.testing.assert_allclose(p, tp.detach().numpy(), atol=1e-15)
    np.testing.assert_allclose(ds, ts.grad.numpy(), atol=1e-14)
    # patch embed == Conv3d over (B, C, T, H, W)
    video = rng.standard_normal((2, 4, 3, 8, 12))
    wc, bc = rng.standard_normal((5, 3, 2, 4, 4)), rng.standard_normal(5)
    y, c = patch_embed_forward(video, wc, bc, 2, 4)
    Ry = rng.standard_normal(y.shape)
    dv, dwc, dbc = patch_embed_backward(Ry, c, need_dx=True)
    tv, twc, tbc = _t(torch, video), _t(torch, wc), _t(torch, bc)
    ty = F.conv3d(tv.permute(0, 2, 1, 3, 4), twc, tbc, stride=(2, 4, 4)).flatten(2).transpose(1, 2)
    (ty * torch.tensor(Ry)).sum().backward()
    for ours, ref in [(y, ty.detach()), (dv, tv.grad), (dwc, twc.grad), (dbc, tbc.grad)]:
        np.testing.assert_allclose(ours, ref.numpy(), atol=1e-12)
    # losses
    z = rng.standard_normal((4, 3))
    labels = np.array([0, 2, -100, 1])
    multi = (rng.random((4, 3)) > 0.5).astype(np.float64)
    for fwd, bwd, y_, tfn in [
        (losses.mse_forward, losses.mse_backward, multi, lambda a: F.mse_loss(a, torch.tensor(multi))),
        (losses.cross_entropy_forward, losses.cross_entropy_backward, labels,
         lambda a: F.cross_entropy(a, torch.tensor(labels))),
        (losses.bce_with_logits_forward, losses.bce_with_logits_backward, multi,
         lambda a: F.binary_cross_entropy_with_logits(a, torch.tensor(multi)))]:
        loss, c = fwd(z, y_)
        tz = _t(torch, z)
        tl = tfn(tz)
        tl.backward()
        assert abs(loss - tl.item()) <= 1e-14
        np.testing.assert_allclose(bwd(1.0, c), tz.grad.numpy(), atol=1e-15)


@pytest.mark.parametrize("qv_bias", [True, False])
def test_attention_with_head_mask_matches_torch_autograd(hf, qv_bias):
    torch, _ = hf
    F = torch.nn.functional
    rng = np.random.default_rng(10)
    B, N, h, d = 2, 5, 3, 4
    C = h * d
    x = rng.standard_normal((B, N, C))
    p = {k: rng.standard_normal((C, C)) for k in ("q_w", "k_w", "v_w", "o_w")}
    p["o_b"] = rng.standard_normal(C)
    p["q_b"], p["v_b"] = (rng.standard_normal(C), rng.standard_normal(C)) if qv_bias else (None, None)
    hm = np.array([1.0, 0.0, 0.5])
    R = rng.standard_normal((B, N, C))
    out, probs, cache = attention_forward(x, p, h, hm)
    dx, g, dhm = attention_backward(R, cache)
    tp = {k: (_t(torch, v) if v is not None else None) for k, v in p.items()}
    tx, thm = _t(torch, x), _t(torch, hm)
    split = lambda a: a.view(B, N, h, d).transpose(1, 2)
    q, k, v = split(F.linear(tx, tp["q_w"], tp["q_b"])), split(F.linear(tx, tp["k_w"])), split(F.linear(tx, tp["v_w"], tp["v_b"]))
    a = torch.softmax(q @ k.transpose(-1, -2) * d ** -0.5, dim=-1) * thm[None, :, None, None]
    tout = F.linear((a @ v).transpose(1, 2).reshape(B, N, C), tp["o_w"], tp["o_b"])
    (tout * torch.tensor(R)).sum().backward()
    np.testing.assert_allclose(out, tout.detach().numpy(), atol=1e-12)
    np.testing.assert_allclose(probs, a.detach().numpy(), atol=1e-14)
    np.testing.assert_allclose(dx, tx.grad.numpy(), atol=1e-11)
    np.testing.assert_allclose(dhm, thm.grad.numpy(), atol=1e-11)
    for k_, v_ in tp.items():
        if v_ is not None:
            np.testing.assert_allclose(g[k_], v_.grad.numpy(), atol=1e-11, err_msg=k_)


# ---- the reconstruction-loss registry (Table 1f): every entry, both directions -----------------
@SETTINGS
@given(st.data(), st.integers(1, 3), st.integers(1, 4), st.integers(1, 6))
@pytest.mark.parametrize("name", sorted(losses.RECONSTRUCTION_LOSSES))
def test_reconstruction_losses_backward_match_finite_differences(name, data, b, n, p):
    fwd, bwd = losses.RECONSTRUCTION_LOSSES[name]
    rng = np.random.default_rng(11)
    pred = data.draw(arrays((b, n, p), scale=2.0))
    target = rng.standard_normal((b, n, p))
    # finite differences need the loss smooth around pred: keep |pred - target| away from the
    # kinks of L1 (0) and smooth L1 (+-beta)
    diff = pred - target
    for kink in (0.0, losses.SMOOTH_L1_BETA, -losses.SMOOTH_L1_BETA):
        near = np.abs(diff - kink) < 1e-3
        target = np.where(near, target + 0.01, target)
        diff = pred - target
    _, cache = fwd(pred, target)
    fd_check(lambda: float(fwd(pred, target)[0]), pred, bwd(1.0, cache), rng)


@pytest.mark.parametrize("name,torch_name", [("mse", "mse_loss"), ("l1", "l1_loss"),
                                             ("smooth_l1", "smooth_l1_loss")])
def test_reconstruction_losses_match_torch_functional(hf, name, torch_name):
    torch, _ = hf
    fwd, bwd = losses.RECONSTRUCTION_LOSSES[name]
    rng = np.random.default_rng(12)
    pred = rng.standard_normal((2, 7, 12)) * 1.5       # both sides of smooth L1's beta
    target = rng.standard_normal((2, 7, 12))
    target[0, 0, :3] = pred[0, 0, :3]                   # exact zeros: sign(0) = 0 in both
    loss, c = fwd(pred, target)
    tz = _t(torch, pred)
    tl = getattr(torch.nn.functional, torch_name)(tz, torch.tensor(target))
    tl.backward()
    assert abs(loss - tl.item()) <= 1e-14, (name, loss, tl.item())
    np.testing.assert_allclose(bwd(1.0, c), tz.grad.numpy(), rtol=0, atol=1e-15)
