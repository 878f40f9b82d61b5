"""Forward outputs, losses and every parameter gradient of the three models against transformers.

Each test builds a random transformers model, saves it with save_pretrained, loads the directory
here with from_pretrained and runs both on the same clip. float64: outputs within 1e-10 absolute,
gradients within 1e-9 of each tensor's largest gradient; float32: 1e-5 relative on outputs,
1e-4 on gradients.
"""

import copy

import numpy as np
import pytest

import videomae_np as vm
from conftest import make_hf_model, max_abs, record, rel_err

pytestmark = pytest.mark.oracle

VARIANTS = {
    "defaults": {},
    "tubelet1": dict(tubelet_size=1),
    "tubelet4": dict(tubelet_size=4),
    "no_qv_bias": dict(qv_bias=False),
    "token0_pool": dict(use_mean_pooling=False),
    "plain_pixel_target": dict(norm_pix_loss=False),
    "one_channel": dict(num_channels=1),
    "gelu_new": dict(hidden_act="gelu_new"),
    "gelu_pytorch_tanh": dict(hidden_act="gelu_pytorch_tanh"),
    "relu": dict(hidden_act="relu"),
    "silu": dict(hidden_act="silu"),
    "quick_gelu": dict(hidden_act="quick_gelu"),
    "patch4_rectangular": dict(patch_size=4, image_size=[16, 24]),
    "eps_1e-6_wide_decoder": dict(layer_norm_eps=1e-6, decoder_hidden_size=16, decoder_num_attention_heads=4,
                                  decoder_num_hidden_layers=2, decoder_intermediate_size=24),
    "heads1_layers3": dict(num_attention_heads=1, num_hidden_layers=3, hidden_size=8),
}
TOL_OUT = {np.float64: 1e-10, np.float32: 1e-5}
TOL_GRAD = {np.float64: 1e-9, np.float32: 1e-4}
DTYPES = [np.float64, np.float32]


def _torch_model(model64, dtype):
    return model64 if dtype == np.float64 else copy.deepcopy(model64).float()


def _clip(cfg, batch, seed=0):
    h, w = cfg.image_hw
    return np.random.default_rng(seed).standard_normal((batch, cfg.num_frames, cfg.num_channels, h, w))


def check_out(name, ours, ref, dtype):
    ref = ref.detach().numpy()
    assert np.shape(ours) == ref.shape, f"{name}: shape {np.shape(ours)} vs transformers {ref.shape}"
    tag = np.dtype(dtype).name
    if dtype == np.float64:
        d = max_abs(ours, ref)
        record(f"{tag} forward max abs", d)
        assert d <= TOL_OUT[dtype], f"{name}: max abs diff {d:.3e}"
    else:
        d = rel_err(ours, ref)
        record(f"{tag} forward max rel", d)
        assert d <= TOL_OUT[dtype], f"{name}: relative diff {d:.3e}"


def check_grads(ours_model, grads, torch_model, dtype):
    tag = np.dtype(dtype).name
    names = dict(torch_model.named_parameters())
    assert set(grads) == set(ours_model.state_dict()) == set(names), "gradient keys differ"
    for k, p in names.items():
        ref = p.grad.detach().numpy() if p.grad is not None else np.zeros(p.shape)
        assert grads[k].shape == ref.shape and grads[k].dtype == dtype, k
        scale = np.abs(ref).max()
        d = max_abs(grads[k], ref)
        if scale < 1e-12:
            assert d <= 1e-12, f"{k}: transformers' gradient is zero, ours has {d:.3e}"
            continue
        record(f"{tag} gradient max rel", d / scale)
        assert d <= TOL_GRAD[dtype] * scale, f"{k}: gradient diff {d:.3e} vs largest {scale:.3e}"


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_pretraining_loss_logits_and_grads_match_transformers(hf, tmp_path, variant, dtype):
    torch, _ = hf
    overrides = VARIANTS[variant]
    t64, d = make_hf_model(hf, "VideoMAEForPreTraining", tmp_path, **overrides)
    tm = _torch_model(t64, dtype)
    ours = vm.VideoMAEForPreTraining.from_pretrained(d, dtype=dtype)
    cfg = ours.config
    x = _clip(cfg, 2).astype(dtype)
    mask = vm.tube_mask(2, cfg.grid, 0.5, rng=3)
    if cfg.num_channels != 3 and not cfg.norm_pix_loss:
        pytest.skip("not a valid combination (covered by test_gray_plain_target_raises_like_transformers)")
    xt = torch.tensor(x, requires_grad=True)
    ref = tm(xt, bool_masked_pos=torch.tensor(mask), output_hidden_states=True, output_attentions=True)
    out = ours(x, bool_masked_pos=mask, output_hidden_states=True, output_attentions=True)
    check_out("loss", out.loss, ref.loss, dtype)
    check_out("logits", out.logits, ref.logits, dtype)
    assert len(out.hidden_states) == len(ref.hidden_states) == cfg.num_hidden_layers + 1
    for i, (a, b) in enumerate(zip(out.hidden_states, ref.hidden_states)):
        check_out(f"hidden_states[{i}]", a, b, dtype)
    assert len(out.attentions) == len(ref.attentions) == cfg.num_hidden_layers
    for i, (a, b) in enumerate(zip(out.attentions, ref.attentions)):
        check_out(f"attentions[{i}]", a, b, dtype)

    ref.loss.backward()
    out2, grads = ours.value_and_grad(x, bool_masked_pos=mask, input_grad=True)
    check_out("value_and_grad loss", out2.loss, ref.loss, dtype)
    pix = grads.pop("pixel_values")
    check_grads(ours, grads, tm, dtype)
    # the target is built under no_grad: the input gradient flows through the encoder only
    scale = np.abs(xt.grad.numpy()).max()
    assert max_abs(pix, xt.grad.numpy()) <= TOL_GRAD[dtype] * scale


@pytest.mark.parametrize("ratio,kind,batch", [(0.25, "tube", 1), (0.75, "tube", 3), (0.9, "random", 2),
                                              (0.5, "random", 4)])
def test_pretraining_matches_over_mask_ratios_and_batches(hf, tmp_path, ratio, kind, batch):
    torch, _ = hf
    t64, d = make_hf_model(hf, "VideoMAEForPreTraining", tmp_path, image_size=32)
    ours = vm.VideoMAEForPreTraining.from_pretrained(d, dtype=np.float64)
    cfg = ours.config
    x = _clip(cfg, batch, seed=batch)
    mask = (vm.tube_mask(batch, cfg.grid, ratio, rng=7) if kind == "tube"
            else vm.random_mask(batch, cfg.num_patches, ratio, rng=7))
    xt = torch.tensor(x)
    ref = t64(xt, bool_masked_pos=torch.tensor(mask))
    ref.loss.backward()
    out, grads = ours.value_and_grad(x, bool_masked_pos=mask)
    check_out("loss", out.loss, ref.loss, np.float64)
    check_out("logits", out.logits, ref.logits, np.float64)
    check_grads(ours, grads, t64, np.float64)


def test_gray_plain_target_raises_like_transformers(hf, tmp_path):
    torch, _ = hf
    t64, d = make_hf_model(hf, "VideoMAEForPreTraining", tmp_path, num_channels=1, norm_pix_loss=False)
    ours = vm.VideoMAEForPreTraining.from_pretrained(d, dtype=np.float64)
    x = _clip(ours.config, 1)
    mask = vm.tube_mask(1, ours.config.grid, 0.5, rng=0)
    with pytest.raises(ValueError, match="(?i)non-RGB"):
        t64(torch.tensor(x), bool_masked_pos=torch.tensor(mask))
    with pytest.raises(ValueError, match="num_channels=1"):
        ours(x, bool_masked_pos=mask)


def _labels(kind, batch, num_labels, rng):
    if kind == "single":
        return rng.integers(0, num_labels, batch)
    if kind == "regression":
        return rng.standard_normal(batch if num_labels == 1 else (batch, num_labels))
    return (rng.random((batch, num_labels)) > 0.5).astype(np.float64)   # multi-label


CLASSIFY_CASES = [(v, "single", {}) for v in VARIANTS if v not in ("plain_pixel_target",)] + [
    ("defaults", "regression", dict(num_labels=1)),
    ("token0_pool", "regression", dict(num_labels=1)),
    ("defaults", "multi", {}),
    ("defaults", "regression", dict(problem_type="regression")),
    ("token0_pool", "multi", dict(problem_type="multi_label_classification", num_labels=5)),
]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("variant,kind,extra", CLASSIFY_CASES,
                         ids=[f"{v}-{k}-{'-'.join(f'{a}={b}' for a, b in e.items())}" for v, k, e in CLASSIFY_CASES])
def test_classification_loss_logits_and_grads_match_transformers(hf, tmp_path, variant, kind, extra, dtype):
    torch, _ = hf
    overrides = dict(VARIANTS[variant], **extra)
    t64, d = make_hf_model(hf, "VideoMAEForVideoClassification", tmp_path, **overrides)
    tm = _torch_model(t64, dtype)
    ours = vm.VideoMAEForVideoClassification.from_pretrained(d, dtype=dtype)
    cfg = ours.config
    x = _clip(cfg, 3).astype(dtype)
    labels = _labels(kind, 3, cfg.num_labels, np.random.default_rng(1))
    tl = torch.tensor(labels) if kind == "single" else torch.tensor(labels.astype(dtype))
    xt = torch.tensor(x)
    ref = tm(xt, labels=tl, output_hidden_states=True, output_attentions=True)
    out = ours(x, labels=labels, output_hidden_states=True, output_attentions=True)
    check_out("loss", out.loss, ref.loss, dtype)
    check_out("logits", out.logits, ref.logits, dtype)
    for i, (a, b) in enumerate(zip(out.hidden_states, ref.hidden_states)):
        check_out(f"hidden_states[{i}]", a, b, dtype)
    for i, (a, b) in enumerate(zip(out.attentions, ref.attentions)):
        check_out(f"attentions[{i}]", a, b, dtype)
    ref.loss.backward()
    _, grads = ours.value_and_grad(x, labels=labels)
    check_grads(ours, grads, tm, dtype)


def test_cross_entropy_ignores_label_minus_100_like_torch(hf, tmp_path):
    torch, _ = hf
    t64, d = make_hf_model(hf, "VideoMAEForVideoClassification", tmp_path)
    ours = vm.VideoMAEForVideoClassification.from_pretrained(d, dtype=np.float64)
    x = _clip(ours.config, 3)
    labels = np.array([2, -100, 0])
    ref = t64(torch.tensor(x), labels=torch.tensor(labels))
    ref.loss.backward()
    out, grads = ours.value_and_grad(x, labels=labels)
    check_out("loss", out.loss, ref.loss, np.float64)
    check_grads(ours, grads, t64, np.float64)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("variant,masked", [("defaults", False), ("defaults", True), ("token0_pool", True),
                                            ("no_qv_bias", False), ("tubelet1", True)])
def test_base_model_hidden_states_attentions_and_grads_match_transformers(hf, tmp_path, variant, masked, dtype):
    torch, _ = hf
    t64, d = make_hf_model(hf, "VideoMAEModel", tmp_path, **VARIANTS[variant])
    tm = _torch_model(t64, dtype)
    ours = vm.VideoMAEModel.from_pretrained(d, dtype=dtype)
    cfg = ours.config
    x = _clip(cfg, 2).astype(dtype)
    mask = vm.tube_mask(2, cfg.grid, 0.5, rng=5) if masked else None
    xt = torch.tensor(x, requires_grad=True)
    ref = tm(xt, bool_masked_pos=None if mask is None else torch.tensor(mask),
             output_hidden_states=True, output_attentions=True)
    out = ours(x, bool_masked_pos=mask, output_hidden_states=True, output_attentions=True)
    check_out("last_hidden_state", out.last_hidden_state, ref.last_hidden_state, dtype)
    for i, (a, b) in enumerate(zip(out.hidden_states, ref.hidden_states)):
        check_out(f"hidden_states[{i}]", a, b, dtype)
    for i, (a, b) in enumerate(zip(out.attentions, ref.attentions)):
        check_out(f"attentions[{i}]", a, b, dtype)
    # an arbitrary upstream gradient, the same on both sides
    go = np.random.default_rng(9).standard_normal(out.last_hidden_state.shape).astype(dtype)
    (ref.last_hidden_state * torch.tensor(go)).sum().backward()
    _, grads = ours.value_and_grad(x, bool_masked_pos=mask, grad_output=go, input_grad=True)
    pix = grads.pop("pixel_values")
    check_grads(ours, grads, tm, dtype)
    assert max_abs(pix, xt.grad.numpy()) <= TOL_GRAD[dtype] * np.abs(xt.grad.numpy()).max()
