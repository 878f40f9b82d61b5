"""Checkpoints: transformers' directories load here, ours load in transformers, and every kind of
broken or mismatched checkpoint fails with a message that says what was expected and found."""

import json
import warnings

import numpy as np
import pytest

import videomae_np as vm
from videomae_np import checkpoint as ck
from conftest import make_hf_model, max_abs, record

CLASSES = ["VideoMAEModel", "VideoMAEForPreTraining", "VideoMAEForVideoClassification"]


def _clip(cfg, batch=2, seed=0):
    h, w = cfg.image_hw
    return np.random.default_rng(seed).standard_normal((batch, cfg.num_frames, cfg.num_channels, h, w))


def _torch_out(model, torch, x, mask):
    kw = {"bool_masked_pos": torch.tensor(mask)} if mask is not None else {}
    out = model(torch.tensor(x), **kw)
    return (out.last_hidden_state if hasattr(out, "last_hidden_state") else out.logits).detach().numpy()


def _our_out(model, x, mask):
    out = model(x, bool_masked_pos=mask) if mask is not None else model(x)
    return out.last_hidden_state if hasattr(out, "last_hidden_state") else out.logits


@pytest.mark.parametrize("cls_name", CLASSES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_save_pretrained_loads_in_transformers_with_no_missing_keys(hf, tmp_path, cls_name, dtype):
    torch, transformers = hf
    cfg = vm.VideoMAEConfig(**{k: v for k, v in __import__("conftest").TINY.items()}, use_mean_pooling=False)
    ours = getattr(vm, cls_name)(cfg, seed=4, dtype=dtype)
    for a in ours.params.values():     # move off the init values so a silent re-init would show
        a += np.random.default_rng(1).standard_normal(a.shape).astype(dtype) * 0.05
    ours.save_pretrained(tmp_path)
    theirs, info = getattr(transformers, cls_name).from_pretrained(tmp_path, output_loading_info=True,
                                                                   attn_implementation="eager")
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    theirs = theirs.double().eval()
    x = _clip(cfg)
    mask = vm.tube_mask(2, cfg.grid, 0.5, rng=0) if cls_name == "VideoMAEForPreTraining" else None
    ref = _torch_out(theirs, torch, x, mask)
    ours64 = ours.astype(np.float64)
    d = max_abs(_our_out(ours64, x, mask), ref)
    record("float64 round trip via transformers", d)
    assert d <= 1e-10


@pytest.mark.parametrize("source", CLASSES)
@pytest.mark.parametrize("target", CLASSES)
def test_encoder_weights_cross_load_between_classes_like_transformers(hf, tmp_path, source, target):
    torch, transformers = hf
    t_src, d = make_hf_model(hf, source, tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = getattr(vm, target).from_pretrained(d, dtype=np.float64)
    theirs = getattr(transformers, target).from_pretrained(d, attn_implementation="eager").double().eval()
    # the encoders must agree exactly; fresh heads differ by construction
    x = _clip(ours.config)
    enc_ours = ours.params if target == "VideoMAEModel" else {
        k[len("videomae."):]: v for k, v in ours.params.items() if k.startswith("videomae.")}
    base = vm.VideoMAEModel(ours.config, dtype=np.float64)
    base.load_state_dict(enc_ours)
    base_t = theirs if target == "VideoMAEModel" else theirs.videomae
    d_enc = max_abs(base(x).last_hidden_state, base_t(torch.tensor(x)).last_hidden_state.detach().numpy())
    assert d_enc <= 1e-10


def test_loading_a_pretraining_checkpoint_into_a_classifier_warns_about_the_new_head(hf, tmp_path):
    _, d = make_hf_model(hf, "VideoMAEForPreTraining", tmp_path)
    with pytest.warns(UserWarning, match="classifier"):
        m = vm.VideoMAEForVideoClassification.from_pretrained(d)
    assert "classifier.weight" in m.loading_info["missing_keys"]
    assert "decoder.head.weight" in m.loading_info["unexpected_keys"]


def test_legacy_q_bias_v_bias_names_load(hf, tmp_path):
    torch, _ = hf
    t64, d = make_hf_model(hf, "VideoMAEForPreTraining", tmp_path)
    sd = ck.read_safetensors(d / "model.safetensors")
    legacy = {k.replace("attention.attention.query.bias", "attention.attention.q_bias")
               .replace("attention.attention.value.bias", "attention.attention.v_bias"): v for k, v in sd.items()}
    assert any(k.endswith("q_bias") for k in legacy)
    ck.write_safetensors(d / "model.safetensors", legacy)
    cfg = json.loads((d / "config.json").read_text())
    cfg["qkv_bias"] = cfg.pop("qv_bias")
    (d / "config.json").write_text(json.dumps(cfg))
    ours = vm.VideoMAEForPreTraining.from_pretrained(d, dtype=np.float64)
    x = _clip(ours.config)
    mask = vm.tube_mask(2, ours.config.grid, 0.5, rng=0)
    assert max_abs(_our_out(ours, x, mask), _torch_out(t64, torch, x, mask)) <= 1e-10
    m2 = vm.VideoMAEForPreTraining(ours.config, dtype=np.float64)
    m2.load_state_dict(legacy)           # load_state_dict accepts the legacy names too
    assert all(np.array_equal(m2.params[k], ours.params[k]) for k in ours.params)


@pytest.mark.parametrize("torch_dtype", ["float16", "bfloat16", "float64"])
def test_any_stored_float_type_loads(hf, tmp_path, torch_dtype):
    torch, transformers = hf
    t64, d = make_hf_model(hf, "VideoMAEModel", tmp_path)
    stored = t64.to(getattr(torch, torch_dtype))
    stored.save_pretrained(tmp_path / "x")
    ours = vm.VideoMAEModel.from_pretrained(tmp_path / "x", dtype=np.float64)
    for k, p in stored.state_dict().items():
        np.testing.assert_array_equal(ours.params[k], p.double().numpy(), err_msg=k)


def test_sharded_checkpoint_loads(hf, tmp_path):
    torch, _ = hf
    t64, _ = make_hf_model(hf, "VideoMAEForPreTraining", tmp_path)
    t64.float().save_pretrained(tmp_path / "sharded", max_shard_size="20KB")
    assert (tmp_path / "sharded" / "model.safetensors.index.json").exists()
    ours = vm.VideoMAEForPreTraining.from_pretrained(tmp_path / "sharded", dtype=np.float64)
    for k, p in t64.state_dict().items():
        np.testing.assert_array_equal(ours.params[k], p.numpy(), err_msg=k)


def test_our_safetensors_files_agree_with_the_safetensors_library(tmp_path):
    st = pytest.importorskip("safetensors.numpy")
    rng = np.random.default_rng(0)
    tensors = {"a": rng.standard_normal((3, 4)).astype(np.float32), "b.c": rng.standard_normal(5),
               "h": rng.standard_normal((2, 1, 3)).astype(np.float16)}
    ck.write_safetensors(tmp_path / "m.safetensors", tensors)
    theirs = st.load_file(str(tmp_path / "m.safetensors"))
    st.save_file(tensors, str(tmp_path / "n.safetensors"))
    ours = ck.read_safetensors(tmp_path / "n.safetensors")
    for k, v in tensors.items():
        np.testing.assert_array_equal(theirs[k], v)
        np.testing.assert_array_equal(ours[k], v)
        assert ours[k].dtype == v.dtype


# ---- broken checkpoints -------------------------------------------------------------------------
@pytest.fixture
def saved(tmp_path):
    cfg = vm.VideoMAEConfig(**__import__("conftest").TINY)
    m = vm.VideoMAEForPreTraining(cfg, seed=0)
    m.save_pretrained(tmp_path)
    return m, tmp_path


def test_truncated_weights_file_is_reported(saved):
    _, d = saved
    f = d / "model.safetensors"
    f.write_bytes(f.read_bytes()[:-100])
    with pytest.raises(ck.CheckpointError, match="truncated"):
        vm.VideoMAEForPreTraining.from_pretrained(d)
    f.write_bytes(b"\x01\x02")
    with pytest.raises(ck.CheckpointError, match="truncated"):
        vm.VideoMAEForPreTraining.from_pretrained(d)


def test_corrupt_header_is_reported(saved):
    _, d = saved
    f = d / "model.safetensors"
    raw = bytearray(f.read_bytes())
    raw[8:12] = b"@@@@"
    f.write_bytes(bytes(raw))
    with pytest.raises(ck.CheckpointError, match="corrupt header"):
        vm.VideoMAEForPreTraining.from_pretrained(d)


def test_missing_files_are_reported(saved, tmp_path_factory):
    _, d = saved
    (d / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        vm.VideoMAEForPreTraining.from_pretrained(d)
    empty = tmp_path_factory.mktemp("empty")
    with pytest.raises(FileNotFoundError, match="config.json"):
        vm.VideoMAEModel.from_pretrained(empty)
    with pytest.raises(FileNotFoundError, match="not a directory"):
        vm.VideoMAEModel.from_pretrained(empty / "nope")


def test_tensor_shape_disagreeing_with_config_is_reported(saved):
    _, d = saved
    cfg = json.loads((d / "config.json").read_text())
    cfg["intermediate_size"] = 24
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ck.CheckpointError, match=r"intermediate.dense.weight: expected shape \(24, 12\).*\(20, 12\)"):
        vm.VideoMAEForPreTraining.from_pretrained(d)


def test_missing_encoder_tensor_and_stray_tensor_are_errors(saved):
    _, d = saved
    sd = ck.read_safetensors(d / "model.safetensors")
    sd_missing = {k: v for k, v in sd.items() if "layer.1.intermediate.dense.weight" not in k}
    ck.write_safetensors(d / "model.safetensors", sd_missing)
    with pytest.raises(ck.CheckpointError, match="layer.1.intermediate.dense.weight"):
        vm.VideoMAEForPreTraining.from_pretrained(d)
    ck.write_safetensors(d / "model.safetensors", dict(sd, **{"videomae.extra.weight": np.zeros(3, np.float32)}))
    with pytest.raises(ck.CheckpointError, match="videomae.extra.weight"):
        vm.VideoMAEForPreTraining.from_pretrained(d)


def test_same_class_checkpoint_missing_its_head_is_an_error(saved):
    _, d = saved
    sd = ck.read_safetensors(d / "model.safetensors")
    ck.write_safetensors(d / "model.safetensors", {k: v for k, v in sd.items() if k != "decoder.head.bias"})
    with pytest.raises(ck.CheckpointError, match="decoder.head.bias"):
        vm.VideoMAEForPreTraining.from_pretrained(d)


def test_load_state_dict_is_strict_about_keys_and_shapes(saved):
    m, _ = saved
    sd = m.state_dict()
    with pytest.raises(KeyError, match="missing keys.*mask_token"):
        m.load_state_dict({k: v for k, v in sd.items() if k != "mask_token"})
    with pytest.raises(KeyError, match="unexpected keys.*bogus"):
        m.load_state_dict(dict(sd, bogus=np.zeros(1)))
    with pytest.raises(ck.CheckpointError, match="mask_token: expected shape"):
        m.load_state_dict(dict(sd, mask_token=np.zeros((1, 8))))
    missing, unexpected = m.load_state_dict({"mask_token": np.ones((1, 1, 8))}, strict=False)
    assert "decoder.head.bias" in missing and not unexpected
    assert np.all(m.params["mask_token"] == 1)


def _qkv_triples(model):
    for name in model.params:
        if name.endswith("attention.attention.query.weight"):
            stem = name[: -len("query.weight")]
            yield [model.params[stem + leaf] for leaf in ("query.weight", "key.weight", "value.weight")]


def test_qkv_weights_stay_stacked_through_loading_and_training_and_are_used_without_a_copy():
    from videomae_np.ops.attention import _stacked
    from conftest import TINY
    cfg = vm.VideoMAEConfig(**TINY)
    model, donor = vm.VideoMAEForPreTraining(cfg, seed=0), vm.VideoMAEForPreTraining(cfg, seed=1)
    x = _clip(cfg, batch=1)
    mask = np.zeros((1, cfg.num_patches), bool)
    mask[:, ::2] = True

    def check_stacked():
        triples = list(_qkv_triples(model))
        assert len(triples) == cfg.num_hidden_layers + cfg.decoder_num_hidden_layers
        for q, k, v in triples:
            w = _stacked(q, k, v)
            assert w.shape == (3 * q.shape[0], q.shape[1]) and np.shares_memory(w, q)
            np.testing.assert_array_equal(w, np.concatenate([q, k, v]))

    check_stacked()
    model.load_state_dict({k: v.copy() for k, v in donor.state_dict().items()})   # separate arrays in
    check_stacked()
    for a, b in zip(model.params.values(), donor.params.values()):
        np.testing.assert_array_equal(a, b)
    from videomae_np.optim import AdamW
    opt = AdamW(model.params, lr=1e-2)
    loss, grads = model.value_and_grad(x, bool_masked_pos=mask)
    opt.step(grads)
    check_stacked()
    # the same numbers as from separate (unstacked) weights, which take the concatenating path
    stacked_out = model(x, bool_masked_pos=mask).logits
    for name in list(model.params):
        model.params[name] = model.params[name].copy()
    for q, k, v in _qkv_triples(model):
        assert not np.shares_memory(_stacked(q, k, v), q)
    np.testing.assert_array_equal(model(x, bool_masked_pos=mask).logits, stacked_out)
