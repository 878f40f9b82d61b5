"""AdamW, the schedule, clipping and parameter groups against torch.optim and the recipes."""

import math

import numpy as np
import pytest

import videomae_np as vm
from videomae_np import optim
from videomae_np.params import decays

from conftest import TINY


def _params(rng, dtype=np.float64):
    return {"videomae.embeddings.patch_embeddings.projection.weight": rng.standard_normal((4, 3)).astype(dtype),
            "videomae.encoder.layer.0.attention.attention.query.bias": rng.standard_normal(4).astype(dtype),
            "videomae.encoder.layer.1.layernorm_before.weight": rng.standard_normal(4).astype(dtype),
            "classifier.weight": rng.standard_normal((2, 4)).astype(dtype)}


@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-14), (np.float32, 2e-6)])
def test_adamw_schedule_and_clipping_match_torch_over_several_steps(dtype, tol):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    ours = _params(rng, dtype)
    names = list(ours)
    theirs = {n: torch.tensor(v.copy(), requires_grad=True) for n, v in ours.items()}
    groups = optim.param_groups(names, weight_decay=0.1, layer_decay=0.75, num_layers=2)
    opt = optim.AdamW(ours, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1, groups=groups)
    torch_opt = torch.optim.AdamW(
        [{"params": [theirs[n]], "weight_decay": groups[n][1], "scale": groups[n][0]} for n in names],
        lr=1.0, betas=(0.9, 0.95), eps=1e-8, foreach=False)
    schedule = optim.WarmupCosine(3e-2, warmup_steps=3, total_steps=12, min_lr=1e-4)
    worst = 0.0
    for step in range(12):
        grads = {n: (5 * rng.standard_normal(v.shape)).astype(dtype) for n, v in ours.items()}
        for n in names:
            theirs[n].grad = torch.tensor(grads[n].copy())
        norm = optim.clip_grad_norm(grads, max_norm=1.0)
        torch_norm = float(torch.nn.utils.clip_grad_norm_([theirs[n] for n in names], 1.0))
        assert norm == pytest.approx(torch_norm, rel=1e-6)
        lr = schedule(step)
        for g in torch_opt.param_groups:
            g["lr"] = lr * g["scale"]
        opt.step(grads, lr)
        torch_opt.step()
        for n in names:
            ref = theirs[n].detach().numpy()
            worst = max(worst, float(np.abs(ours[n] - ref).max() / np.abs(ref).max()))
    assert worst <= tol, f"max relative difference {worst:.2e}"
    # the moments agree too
    for n in names:
        st = torch_opt.state[theirs[n]]
        np.testing.assert_allclose(opt.exp_avg[n], st["exp_avg"].numpy(), rtol=1e-5, atol=tol)
        assert opt.step_count == int(st["step"])


def test_layer_decay_scales_embeddings_layers_and_heads():
    cfg = vm.VideoMAEConfig(**TINY)            # 2 encoder layers
    names = list(vm.VideoMAEForVideoClassification(cfg).params)
    groups = optim.param_groups(names, 0.05, layer_decay=0.5, num_layers=2)
    L = 2
    for n, (scale, wd) in groups.items():
        if "embeddings" in n:
            expect = 0.5 ** (L + 1)
        elif ".layer.0." in n:
            expect = 0.5 ** (L - 0)
        elif ".layer.1." in n:
            expect = 0.5 ** (L - 1)
        else:                                   # fc_norm, classifier
            expect = 1.0
        assert scale == expect, n
        assert wd == (0.05 if decays(n) else 0.0)
    # without layer decay every scale is 1
    assert {s for s, _ in optim.param_groups(names, 0.05).values()} == {1.0}


def test_schedule_warms_up_linearly_then_follows_a_cosine_to_min_lr():
    base, warm, total, low = 1e-3, 10, 110, 1e-5
    lrs = [optim.lr_at(s, base, warm, total, low) for s in range(total + 5)]
    assert lrs[0] == pytest.approx(base / warm)
    assert lrs[warm - 1] == pytest.approx(base)
    assert np.allclose(np.diff(lrs[:warm]), base / warm)
    assert lrs[warm] == pytest.approx(base)
    assert lrs[warm + 50] == pytest.approx(low + (base - low) * 0.5)      # half way: cos = 0
    assert all(a >= b for a, b in zip(lrs[warm:], lrs[warm + 1:]))
    assert lrs[total] == pytest.approx(low) and lrs[-1] == pytest.approx(low)


def test_clipping_leaves_small_gradients_alone_and_reports_the_norm():
    g = {"a": np.array([3.0, 4.0]), "b": np.array([0.0])}
    assert optim.clip_grad_norm(g, 10.0) == pytest.approx(5.0)
    np.testing.assert_array_equal(g["a"], [3.0, 4.0])
    assert optim.clip_grad_norm(g, 1.0) == pytest.approx(5.0)
    assert optim.global_norm(g) == pytest.approx(1.0, rel=1e-5)


def test_optimizer_state_round_trips_and_continues_identically():
    rng = np.random.default_rng(1)
    a, b = _params(rng), None
    b = {k: v.copy() for k, v in a.items()}
    grads = [{k: rng.standard_normal(v.shape) for k, v in a.items()} for _ in range(6)]
    opt_a = optim.AdamW(a, lr=1e-2)
    for g in grads[:3]:
        opt_a.step({k: v.copy() for k, v in g.items()})
    opt_b = optim.AdamW(b, lr=1e-2)
    b.update({k: v.copy() for k, v in a.items()})
    opt_b.load_state_dict(opt_a.state_dict())
    assert opt_b.step_count == 3
    for g in grads[3:]:
        opt_a.step({k: v.copy() for k, v in g.items()})
        opt_b.step({k: v.copy() for k, v in g.items()})
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


def test_optimizer_state_with_wrong_keys_or_shapes_is_refused():
    rng = np.random.default_rng(2)
    opt = optim.AdamW(_params(rng))
    sd = opt.state_dict()
    bad = dict(sd)
    bad.pop("step")
    with pytest.raises(KeyError, match="missing"):
        opt.load_state_dict(bad)
    k = next(k for k in sd if k.startswith("exp_avg/"))
    bad = dict(sd)
    bad[k] = np.zeros((7,))
    with pytest.raises(ValueError, match="shape"):
        opt.load_state_dict(bad)


def test_adamw_updates_the_model_arrays_in_place():
    cfg = vm.VideoMAEConfig(**TINY)
    model = vm.VideoMAEForVideoClassification(cfg, seed=0)
    before = {k: v.copy() for k, v in model.params.items()}
    ids = {k: id(v) for k, v in model.params.items()}
    x = np.random.default_rng(0).standard_normal((2, 4, 3, 16, 16)).astype(np.float32)
    _, grads = model.value_and_grad(x, labels=np.array([0, 1]))
    optim.AdamW(model.params, lr=1e-2).step(grads)
    assert {k: id(v) for k, v in model.state_dict().items()} == ids
    assert all(not np.array_equal(before[k], model.params[k]) for k in ("classifier.weight",))
    assert math.isfinite(float(model(x, labels=np.array([0, 1])).loss))


def test_adamw_refuses_missing_or_misshapen_gradients_before_changing_anything():
    rng = np.random.default_rng(3)
    params = _params(rng)
    before = {k: v.copy() for k, v in params.items()}
    opt = optim.AdamW(params, lr=1e-2)
    grads = {k: rng.standard_normal(v.shape) for k, v in params.items()}
    last = list(grads)[-1]
    with pytest.raises(KeyError, match="no gradient for 1 parameter"):
        opt.step({k: v for k, v in grads.items() if k != last})
    with pytest.raises(ValueError, match=r"gradient of classifier.weight has shape \(4, 2\)"):
        opt.step({**grads, "classifier.weight": grads["classifier.weight"].T})
    assert opt.step_count == 0
    for k in params:
        np.testing.assert_array_equal(params[k], before[k])
        assert not opt.exp_avg[k].any() and not opt.exp_avg_sq[k].any()
