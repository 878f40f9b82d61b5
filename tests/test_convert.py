"""Original VideoMAE / VideoMAEv2 checkpoints into model folders (videomae_np.convert).

The checkpoints are made here: a random transformers model's state dict renamed back to the
original repositories' names (q, k, v fused into qkv; q_bias / v_bias; blocks, norm1, mlp.fc1, ...)
and written with torch.save. The pickle reader is checked against torch.load, and against a
pickle that would run a command.
"""

import re

import numpy as np
import pytest

from conftest import make_hf_model, record, rel_err
from videomae_np import VideoMAEForPreTraining, VideoMAEForVideoClassification
from videomae_np import convert

pytestmark = pytest.mark.oracle

# transformers' name inside one layer -> the original repositories' name inside one block
TO_ORIGINAL_BLOCK = {
    "layernorm_before": "norm1", "layernorm_after": "norm2",
    "attention.output.dense": "attn.proj", "intermediate.dense": "mlp.fc1", "output.dense": "mlp.fc2",
}


def to_original(hf_sd, torch, pretrain):
    """A transformers VideoMAE state dict under the original repositories' names."""
    enc = "encoder." if pretrain else ""
    out = {}
    for k, v in hf_sd.items():
        m = re.fullmatch(r"(videomae\.encoder\.layer|decoder\.decoder_layers)\.(\d+)\.(.+)\.(weight|bias)", k)
        if m:
            block = (enc + "blocks." if m.group(1).startswith("videomae") else "decoder.blocks.") + m.group(2) + "."
            stem, leaf = m.group(3), m.group(4)
            hf_block = k[: -len(f"{stem}.{leaf}")]
            if stem == "attention.attention.query" and leaf == "weight":
                out[block + "attn.qkv.weight"] = torch.cat(
                    [hf_sd[hf_block + f"attention.attention.{n}.weight"] for n in ("query", "key", "value")])
            elif stem.startswith("attention.attention."):
                if leaf == "bias":
                    out[block + ("attn.q_bias" if "query" in stem else "attn.v_bias")] = v
            else:
                out[block + TO_ORIGINAL_BLOCK[stem] + "." + leaf] = v
        elif k.startswith("videomae.embeddings.patch_embeddings.projection."):
            out[enc + "patch_embed.proj." + k.rsplit(".", 1)[1]] = v
        elif k.startswith("videomae.layernorm."):
            out[enc + "norm." + k.rsplit(".", 1)[1]] = v
        elif k.startswith("classifier."):
            out["head." + k.rsplit(".", 1)[1]] = v
        else:                          # encoder_to_decoder, mask_token, decoder.norm/head, fc_norm
            out[k] = v
    return {k: v.detach().float().clone() for k, v in out.items()}


def _source(hf, cls_name, tmp_path, **overrides):
    """A random float32 transformers model (eval) and its state dict in the original naming."""
    torch, _ = hf
    model, _ = make_hf_model(hf, cls_name, tmp_path, **overrides)
    model = model.float().eval()
    return model, to_original(model.state_dict(), torch, pretrain=cls_name == "VideoMAEForPreTraining")


def _args(ckpt, out, *extra):
    return ["--from", "original", str(ckpt), "--out", str(out), "--num-frames", "4", "--image-size", "16",
            "--num-heads", "3", *extra]


def _inputs(seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((2, 4, 3, 16, 16), dtype=np.float32)


def test_restricted_reader_matches_torch_load(hf, tmp_path):
    torch, _ = hf
    g = torch.Generator().manual_seed(0)
    w = torch.randn(6, 4, generator=g)
    obj = {"model": {"f32": torch.randn(3, 4, generator=g), "f64": torch.randn(5, generator=g).double(),
                     "f16": torch.randn(2, 3, generator=g).half(), "bf16": torch.randn(7, generator=g).bfloat16(),
                     "i64": torch.arange(5), "u8": torch.arange(4, dtype=torch.uint8),
                     "b": torch.tensor([True, False]), "scalar": torch.tensor(2.5),
                     "first_rows": w[:2], "last_rows": w[4:], "transposed": w.t(), "strided": w[::2, 1::2],
                     "param": torch.nn.Parameter(torch.ones(3)), "empty": torch.zeros(0, 3)},
           "epoch": 7, "names": ["a", "b"]}
    path = tmp_path / "mixed.pth"
    torch.save(obj, path)
    ours = convert.read_torch_zip(path)
    ref = torch.load(path, weights_only=True)
    assert ours["epoch"] == 7 and ours["names"] == ["a", "b"]
    for k, t in ref["model"].items():
        want = (t.float() if t.dtype == torch.bfloat16 else t).detach().numpy()
        got = ours["model"][k]
        assert got.dtype == want.dtype and got.shape == want.shape, k
        np.testing.assert_array_equal(got, want, err_msg=k)


@pytest.mark.parametrize("torch_load", [False, True], ids=["restricted-unpickler", "torch-load"])
def test_pretraining_checkpoint_converts_to_the_model_it_came_from(hf, tmp_path, torch_load):
    torch, transformers = hf
    src, original = _source(hf, "VideoMAEForPreTraining", tmp_path)
    ckpt = tmp_path / "checkpoint-799.pth"
    torch.save({"model": original, "epoch": 799}, ckpt)
    out = tmp_path / "converted"
    extra = ["--decoder-num-heads", "2"] + (["--torch-load"] if torch_load else [])
    assert convert.main(_args(ckpt, out, *extra)) == 0

    ours = VideoMAEForPreTraining.from_pretrained(out, dtype=np.float32)
    theirs = transformers.VideoMAEForPreTraining.from_pretrained(out, attn_implementation="eager").eval()
    for field in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                  "decoder_hidden_size", "decoder_num_hidden_layers", "decoder_num_attention_heads",
                  "decoder_intermediate_size", "patch_size", "tubelet_size", "qv_bias", "use_mean_pooling"):
        assert getattr(ours.config, field) == getattr(src.config, field), field
    px = _inputs()
    mask = np.zeros((2, ours.config.num_patches), bool)
    mask[:, [1, 2, 5, 6]] = True
    with torch.no_grad():
        ref = src(torch.from_numpy(px), bool_masked_pos=torch.from_numpy(mask))
        hf_out = theirs(torch.from_numpy(px), bool_masked_pos=torch.from_numpy(mask))
    out_np = ours(px, bool_masked_pos=mask)
    err = max(rel_err(out_np.logits, ref.logits.numpy()), rel_err(out_np.loss, ref.loss.numpy()),
              rel_err(hf_out.logits.numpy(), ref.logits.numpy()))
    record("convert float32 (rel)", err)
    assert err <= 1e-5, err


@pytest.mark.parametrize("mean_pooling,qv_bias", [(True, True), (False, False)],
                         ids=["fc_norm", "norm-token0-no-qv-bias"])
def test_finetuned_checkpoint_converts_to_the_model_it_came_from(hf, tmp_path, mean_pooling, qv_bias):
    torch, transformers = hf
    src, original = _source(hf, "VideoMAEForVideoClassification", tmp_path,
                            use_mean_pooling=mean_pooling, qv_bias=qv_bias)
    ckpt = tmp_path / "finetuned.pth"
    torch.save({"module": {"module." + k: v for k, v in original.items()}}, ckpt)   # DeepSpeed-style
    out = tmp_path / "converted"
    assert convert.main(_args(ckpt, out, "--num-labels", "3")) == 0

    ours = VideoMAEForVideoClassification.from_pretrained(out, dtype=np.float32)
    assert ours.config.use_mean_pooling == mean_pooling and ours.config.qv_bias == qv_bias
    theirs = transformers.VideoMAEForVideoClassification.from_pretrained(out, attn_implementation="eager").eval()
    px = _inputs(1)
    with torch.no_grad():
        ref = src(torch.from_numpy(px)).logits.numpy()
        hf_logits = theirs(torch.from_numpy(px)).logits.numpy()
    err = max(rel_err(ours(px).logits, ref), rel_err(hf_logits, ref))
    record("convert float32 (rel)", err)
    assert err <= 1e-5, err


def test_pickle_that_would_run_code_is_refused(hf, tmp_path, capsys):
    torch, _ = hf
    marker = tmp_path / "pwned"

    class RunsCode:
        def __reduce__(self):
            import os
            return os.system, (f"touch {marker}",)

    ckpt = tmp_path / "evil.pth"
    torch.save({"model": {"x": torch.zeros(2)}, "extra": RunsCode()}, ckpt)
    with pytest.raises(convert.UnsafePickleError, match=r"refused to unpickle the global (posix|nt|os)\.system"):
        convert.read_torch_zip(ckpt)
    assert convert.main(_args(ckpt, tmp_path / "out")) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "system" in err
    assert convert.main(_args(ckpt, tmp_path / "out2", "--torch-load")) == 1
    assert not marker.exists()
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_bad_checkpoints_get_one_line_errors(hf, tmp_path, capsys):
    torch, _ = hf
    _, original = _source(hf, "VideoMAEForVideoClassification", tmp_path)
    plain = tmp_path / "plain.pkl"
    plain.write_bytes(b"\x80\x02}q\x00.")                   # a bare pickle, not torch's zip
    ckpt = tmp_path / "ok.pth"
    torch.save({"model": original}, ckpt)
    learned = tmp_path / "learned.pth"
    torch.save({"model": {**original, "pos_embed": torch.randn(1, 8, 12)}}, learned)
    cases = [
        (_args(plain, tmp_path / "a"), "not a zip archive"),
        (["--from", "original", str(ckpt), "--out", str(tmp_path / "b"), "--num-frames", "4",
          "--image-size", "16"], "--num-heads"),                              # width 12: no default
        (_args(ckpt, tmp_path / "c", "--num-labels", "5"), "disagrees with head.weight"),
        (_args(ckpt, tmp_path / "d", "--tubelet-size", "4"), "tubelet"),
        (_args(learned, tmp_path / "e"), "learned position embeddings"),
    ]
    capsys.readouterr()                      # the set-up's own output
    for argv, needle in cases:
        assert convert.main(argv) == 1, needle
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and needle in err, err
