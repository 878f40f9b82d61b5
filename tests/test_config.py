"""VideoMAEConfig: transformers' fields and defaults, config.json round trips, clear validation."""

import json

import pytest

import videomae_np as vm
from videomae_np.config import DEFAULTS


def test_defaults_equal_transformers_defaults(hf):
    _, transformers = hf
    theirs = transformers.VideoMAEConfig().to_dict()
    ours = vm.VideoMAEConfig().to_dict()
    for k in DEFAULTS:
        assert ours[k] == theirs[k], k
    assert vm.VideoMAEConfig().num_labels == transformers.VideoMAEConfig().num_labels == 2


def test_reads_config_json_written_by_transformers(hf, tmp_path):
    _, transformers = hf
    cfg = transformers.VideoMAEConfig(hidden_size=48, num_attention_heads=4, qv_bias=False, num_frames=8,
                                      id2label={0: "walk", 1: "run", 2: "jump"}, problem_type="single_label_classification")
    cfg.save_pretrained(tmp_path)
    ours = vm.VideoMAEConfig.from_pretrained(tmp_path)
    assert (ours.hidden_size, ours.num_attention_heads, ours.qv_bias, ours.num_frames) == (48, 4, False, 8)
    assert ours.id2label == {0: "walk", 1: "run", 2: "jump"} and ours.num_labels == 3
    assert ours.label2id == {"walk": 0, "run": 1, "jump": 2}
    assert ours.problem_type == "single_label_classification"


def test_config_json_written_here_reads_back_in_transformers(hf, tmp_path):
    _, transformers = hf
    ours = vm.VideoMAEConfig(image_size=32, patch_size=8, num_frames=4, use_mean_pooling=False,
                             hidden_act="gelu_new", num_labels=5, norm_pix_loss=False)
    ours.save_pretrained(tmp_path)
    theirs = transformers.VideoMAEConfig.from_pretrained(tmp_path)
    for k in DEFAULTS:
        assert getattr(theirs, k) == getattr(ours, k), k
    assert theirs.num_labels == 5
    assert vm.VideoMAEConfig.from_pretrained(tmp_path) == ours


def test_legacy_qkv_bias_key_sets_qv_bias(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "videomae", "qkv_bias": False}))
    assert vm.VideoMAEConfig.from_pretrained(tmp_path).qv_bias is False
    assert vm.VideoMAEConfig(qkv_bias=False).qv_bias is False


def test_unknown_keys_survive_a_round_trip(tmp_path):
    cfg = vm.VideoMAEConfig(my_note="kept", use_mean_pooling=False)
    cfg.save_pretrained(tmp_path)
    back = json.loads((tmp_path / "config.json").read_text())
    assert back["my_note"] == "kept" and back["model_type"] == "videomae"


@pytest.mark.parametrize("kwargs,names", [
    (dict(hidden_size=100, num_attention_heads=12), ["hidden_size", "num_attention_heads"]),
    (dict(decoder_hidden_size=10, decoder_num_attention_heads=3), ["decoder_hidden_size"]),
    (dict(image_size=30, patch_size=16), ["image_size", "patch_size"]),
    (dict(num_frames=5, tubelet_size=2), ["num_frames", "tubelet_size"]),
    (dict(hidden_act="mish"), ["hidden_act"]),
    (dict(hidden_size=0), ["hidden_size"]),
    (dict(patch_size=2.5), ["patch_size"]),
    (dict(hidden_dropout_prob=1.5), ["hidden_dropout_prob"]),
    (dict(problem_type="ranking"), ["problem_type"]),
])
def test_invalid_combinations_raise_naming_the_fields(kwargs, names):
    with pytest.raises(ValueError) as e:
        vm.VideoMAEConfig(**kwargs)
    for n in names:
        assert n in str(e.value)


def test_missing_or_broken_config_json_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        vm.VideoMAEConfig.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        vm.VideoMAEConfig.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "vit"}))
    with pytest.raises(ValueError, match="model_type"):
        vm.VideoMAEConfig.from_pretrained(tmp_path)


def test_derived_sizes():
    cfg = vm.VideoMAEConfig()
    assert cfg.grid == (8, 14, 14) and cfg.num_patches == 1568 and cfg.pixels_per_token == 1536
    rect = vm.VideoMAEConfig(image_size=[32, 48], patch_size=16, num_frames=4)
    assert rect.image_hw == (32, 48) and rect.grid == (2, 2, 3)
