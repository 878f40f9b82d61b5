"""Tapes (videomae_np.tape): our intermediates and gradients against transformers' under the same
names, the file format, and compare finding the first module where two tapes part."""

import json

import numpy as np
import pytest

from conftest import TINY, make_hf_model, record
import videomae_np as vm
from videomae_np import tape as T

BLOCK = ("layernorm_before", "attention.attention", "attention.output", "layernorm_after",
         "intermediate", "output")
CASES = {   # id -> (class, config overrides, masked?, labels?)
    "pretraining": ("VideoMAEForPreTraining", {}, True, False),
    "classifier-mean-pooling": ("VideoMAEForVideoClassification", {}, False, True),
    "classifier-token0": ("VideoMAEForVideoClassification", {"use_mean_pooling": False}, False, True),
    "encoder-masked": ("VideoMAEModel", {"use_mean_pooling": False}, True, False),
}


def _inputs(cfg, masked, labels, seed=0):
    rng = np.random.default_rng(seed)
    px = rng.standard_normal((2, cfg.num_frames, cfg.num_channels, *cfg.image_hw))
    mask = vm.tube_mask(2, cfg.grid, 0.5, rng=seed) if masked else None
    return px, mask, (np.array([0, 2]) if labels else None)


@pytest.mark.oracle
@pytest.mark.parametrize("case", list(CASES))
def test_tape_matches_transformers_float64(hf, tmp_path, case):
    cls_name, overrides, masked, labels = CASES[case]
    hf_model, d = make_hf_model(hf, cls_name, tmp_path, **overrides)
    ours = getattr(vm, cls_name).from_pretrained(d, dtype=np.float64)
    px, mask, y = _inputs(ours.config, masked, labels)
    a = T.record(ours, px, mask, y, grad=True)
    b = T.record_transformers(hf_model, px, mask, y, grad=True)

    assert list(a) == list(b)                     # the same names in the same execution order
    pre = "" if cls_name == "VideoMAEModel" else "videomae."
    cfg = ours.config
    expected = {pre + "embeddings", "loss", T.TAPE_GRAD + "pixel_values"}
    expected |= {f"{pre}encoder.layer.{i}.{s}" for i in range(cfg.num_hidden_layers) for s in BLOCK}
    if cls_name == "VideoMAEForPreTraining":
        expected |= {"encoder_to_decoder", "decoder.norm", "decoder.head"}
        expected |= {f"decoder.decoder_layers.{i}.{s}" for i in range(cfg.decoder_num_hidden_layers) for s in BLOCK}
    if cls_name == "VideoMAEForVideoClassification":
        expected |= {"classifier"} | ({"fc_norm"} if cfg.use_mean_pooling else set())
    if not cfg.use_mean_pooling:
        expected.add(pre + "layernorm")
    forward = {n for n in a if not n.startswith(T.TAPE_GRAD) and n not in T.INPUTS}
    assert forward == expected - {T.TAPE_GRAD + "pixel_values"}
    assert {T.TAPE_GRAD + n for n in forward - {"loss"}} | {T.TAPE_GRAD + "pixel_values"} == \
        {n for n in a if n.startswith(T.TAPE_GRAD) and not n.startswith(T.PARAM_GRAD)}
    assert {n[len(T.PARAM_GRAD):] for n in a if n.startswith(T.PARAM_GRAD)} == set(ours.state_dict())

    worst, where = 0.0, None
    for n in a:
        assert a[n].shape == b[n].shape, n
        d_abs = float(np.abs(a[n].astype(np.float64) - b[n].astype(np.float64)).max(initial=0.0))
        if d_abs > worst:
            worst, where = d_abs, n
    record("tape float64 (max abs)", worst)
    assert worst <= 1e-10, (where, worst)


def test_tape_leaves_the_model_outputs_unchanged():
    cfg = vm.VideoMAEConfig(**TINY)
    model = vm.VideoMAEForPreTraining(cfg, seed=1, dtype=np.float64)
    px, mask, _ = _inputs(cfg, True, False)
    tape = T.record(model, px, mask, grad=True)
    out, grads = model.value_and_grad(px, bool_masked_pos=mask)
    np.testing.assert_allclose(tape["decoder.head"], out.logits, rtol=0, atol=1e-13)
    np.testing.assert_allclose(tape["loss"], out.loss, rtol=0, atol=1e-13)
    for k, g in grads.items():
        np.testing.assert_allclose(tape[T.PARAM_GRAD + k], g, rtol=0, atol=1e-13, err_msg=k)


def test_tape_file_round_trip_keeps_order_dtypes_and_metadata(tmp_path):
    tape = {"z_first": np.arange(6, dtype=np.float32).reshape(2, 3), "mask": np.array([[1, 0]], np.uint8),
            "labels": np.array([3, 1], np.int64), "loss": np.float64(0.25) * np.ones(()),
            "a_last": np.arange(4.0)[::2]}
    T.save_tape(tmp_path / "t.safetensors", tape, {"producer": "test", "config": {"hidden_size": 4}})
    back, meta = T.load_tape(tmp_path / "t.safetensors")
    assert list(back) == list(tape)
    for k in tape:
        assert back[k].dtype == tape[k].dtype and back[k].shape == tape[k].shape
        np.testing.assert_array_equal(back[k], tape[k])
    assert meta["producer"] == "test" and json.loads(meta["config"]) == {"hidden_size": 4}
    assert json.loads(meta["order"]) == list(tape) and meta["format_version"] == T.TAPE_FORMAT


def _tiny_dir(tmp_path, name, perturb=None):
    model = vm.VideoMAEForPreTraining(vm.VideoMAEConfig(**TINY), seed=0)
    if perturb:
        model.params[perturb] = model.params[perturb] + 1e-3
    d = tmp_path / name
    model.save_pretrained(d)
    return d


def test_compare_names_the_first_layer_a_perturbed_weight_changes(tmp_path, capsys):
    good = _tiny_dir(tmp_path, "good")
    bad = _tiny_dir(tmp_path, "bad", perturb="videomae.encoder.layer.1.intermediate.dense.weight")
    ta, tb = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    for d, t in ((good, ta), (bad, tb)):
        assert T.main(["trace", "--model", str(d), "--random", "5", "--grad", "--out", str(t)]) == 0
    capsys.readouterr()
    assert T.main(["compare", str(ta), str(tb), "--rtol", "0", "--atol", "1e-12"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert "first: videomae.encoder.layer.1.intermediate" in lines
    rows = {ln.split()[0]: ln for ln in lines if ln.startswith(("videomae.", "grad:"))}
    assert "beyond" not in rows["videomae.encoder.layer.1.layernorm_after"]
    assert "beyond" in rows["videomae.encoder.layer.1.intermediate"]
    # the same tape against itself: everything within tolerance
    assert T.main(["compare", str(ta), str(ta), "--rtol", "0", "--atol", "0"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "first: none"


def test_compare_lists_tensors_in_one_tape_only_and_shape_changes(tmp_path, capsys):
    a = {"x": np.zeros(3), "y": np.ones((2, 2)), "only_a": np.zeros(1)}
    b = {"y": np.ones((4,)), "x": np.zeros(3), "only_b": np.zeros(1)}
    T.save_tape(tmp_path / "a.safetensors", a)
    T.save_tape(tmp_path / "b.safetensors", b)
    assert T.main(["compare", str(tmp_path / "a.safetensors"), str(tmp_path / "b.safetensors")]) == 1
    out = capsys.readouterr().out
    assert "only in A (1): only_a" in out and "only in B (1): only_b" in out
    assert "first: y" in out


@pytest.mark.oracle
def test_trace_both_backends_from_one_folder_agree(hf, tmp_path, capsys):
    _, d = make_hf_model(hf, "VideoMAEForVideoClassification", tmp_path)
    ta, tb = tmp_path / "ours.safetensors", tmp_path / "theirs.safetensors"
    assert T.main(["trace", "--model", str(d), "--random", "2", "--batch-size", "2", "--grad",
                   "--out", str(ta)]) == 0
    assert T.main(["trace", "--model", str(d), "--inputs", str(ta), "--grad", "--backend", "transformers",
                   "--out", str(tb)]) == 0
    capsys.readouterr()
    assert T.main(["compare", str(ta), str(tb), "--rtol", "0", "--atol", "1e-10"]) == 0
    out = capsys.readouterr().out
    assert "only in" not in out and out.splitlines()[-1] == "first: none"
    tape, meta = T.load_tape(ta)
    assert meta["model_class"] == "VideoMAEForVideoClassification"
    assert json.loads(meta["config"])["hidden_size"] == TINY["hidden_size"]
    assert tape["labels"].dtype == np.int64 and "bool_masked_pos" not in tape


def test_trace_reports_bad_requests_in_one_line(tmp_path, capsys):
    d = _tiny_dir(tmp_path, "m")
    cases = [(["--model", str(tmp_path / "missing"), "--random", "0"], "config.json"),
             (["--model", str(d), "--random", "0", "--model-class", "VideoMAEForVideoClassification",
               "--mask-ratio", "0.5"], "sees every token")]
    for argv, needle in cases:
        assert T.main(["trace", *argv, "--out", str(tmp_path / "t.safetensors")]) == 1
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and needle in err, err
