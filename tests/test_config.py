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


# ---- field types, on construction and on assignment -------------------------------------------
BAD_FIELDS = [
    (dict(qv_bias="false"), r"qv_bias='false' \(str\) must be a bool"),
    (dict(use_mean_pooling=1), r"use_mean_pooling=1 \(int\) must be a bool"),
    (dict(norm_pix_loss=None), r"norm_pix_loss=None \(NoneType\) must be a bool"),
    (dict(num_labels=2.5), r"num_labels=2.5 \(float\) must be a positive integer"),
    (dict(num_labels=-1), r"num_labels=-1 \(int\) must be a positive integer"),
    (dict(num_labels=True), r"num_labels=True \(bool\) must be a positive integer"),
    (dict(layer_norm_eps=float("inf")), r"layer_norm_eps=inf \(float\) must be a finite number > 0"),
    (dict(layer_norm_eps=float("nan")), r"layer_norm_eps=nan \(float\) must be a finite number > 0"),
    (dict(layer_norm_eps=0.0), r"layer_norm_eps=0.0 \(float\) must be a finite number > 0"),
    (dict(layer_norm_eps=-1e-5), r"layer_norm_eps=-1e-05 \(float\) must be a finite number > 0"),
    (dict(layer_norm_eps="1e-12"), r"layer_norm_eps='1e-12' \(str\)"),
    (dict(initializer_range="x"), r"initializer_range='x' \(str\) must be a finite number >= 0"),
    (dict(initializer_range=float("nan")), r"initializer_range=nan"),
    (dict(image_size=(16, 24, 3)), r"image_size=\(16, 24, 3\) \(tuple\) must be a positive integer or a \(height, width\) pair"),
    (dict(image_size="224"), r"image_size='224' \(str\)"),
    (dict(hidden_act=["gelu"]), r"hidden_act=\['gelu'\] \(list\) must be one of the strings"),
    (dict(hidden_size="x"), r"hidden_size='x' \(str\) must be a positive integer"),
    (dict(hidden_dropout_prob="0.1"), r"hidden_dropout_prob='0.1' \(str\) must be a number in \[0, 1\)"),
    (dict(attention_probs_dropout_prob=float("nan")), r"attention_probs_dropout_prob=nan"),
    (dict(architectures="VideoMAEModel"), r"architectures='VideoMAEModel' \(str\) must be a list"),
    (dict(id2label={"a": "walk"}), r"id2label key 'a' is not an integer index"),
    (dict(id2label=["walk"]), r"id2label=\['walk'\] \(list\) must map integer indices"),
    (dict(label2id=3), r"label2id must be a mapping"),
]


@pytest.mark.parametrize("kwargs, pattern", BAD_FIELDS, ids=[next(iter(k)) + "=" + repr(next(iter(k.values())))
                                                             for k, _ in BAD_FIELDS])
def test_wrong_field_types_are_refused_on_construction_in_one_line(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern) as e:
        vm.VideoMAEConfig(**kwargs)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("kwargs, pattern", [c for c in BAD_FIELDS if "label" not in next(iter(c[0]))
                                             and "architectures" not in c[0]] + [
    (dict(num_labels=2.5), "num_labels=2.5"), (dict(num_labels=0), "num_labels=0")])
def test_wrong_field_types_are_refused_on_assignment_and_leave_the_config_unchanged(kwargs, pattern):
    cfg = vm.VideoMAEConfig()
    before = cfg.to_dict()
    (name, value), = kwargs.items()
    with pytest.raises(ValueError, match=pattern):
        setattr(cfg, name, value)
    assert cfg.to_dict() == before


def test_valid_assignments_are_stored_in_their_canonical_form():
    import numpy as np
    cfg = vm.VideoMAEConfig()
    cfg.hidden_size = 24
    cfg.image_size = [32, 48]
    cfg.patch_size = (8, 8)
    cfg.layer_norm_eps = np.float64(1e-6)
    cfg.num_labels = np.int64(4)
    cfg.qv_bias = False
    assert (cfg.hidden_size, cfg.image_size, cfg.patch_size, cfg.num_labels) == (24, (32, 48), 8, 4)
    assert type(cfg.layer_norm_eps) is float and cfg.to_dict()["image_size"] == [32, 48]
    with pytest.raises(ValueError, match="square pair"):
        cfg.patch_size = (8, 4)
    with pytest.raises(ValueError, match="hidden_size=24 is not divisible by num_attention_heads=5"):
        cfg.copy(num_attention_heads=5)


def test_a_config_json_with_a_bad_field_names_the_file(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "videomae", "qv_bias": "false"}))
    with pytest.raises(ValueError, match=r"config.json: invalid VideoMAEConfig: qv_bias='false'") as e:
        vm.VideoMAEConfig.from_pretrained(tmp_path)
    assert str(tmp_path) in str(e.value) and "\n" not in str(e.value)


def test_config_json_with_invalid_utf8_is_one_line_naming_the_file(tmp_path):
    (tmp_path / "config.json").write_bytes(b'{"model_type": "videomae", "id2label": {"0": "caf\xe9"}}')
    with pytest.raises(ValueError, match=r"config.json is not valid JSON: not UTF-8 text") as e:
        vm.VideoMAEConfig.from_pretrained(tmp_path)
    assert str(tmp_path) in str(e.value) and "\n" not in str(e.value)


def test_to_dict_of_a_loaded_checkpoint_config_carries_no_save_id(tmp_path):
    from videomae_np.config import SAVE_ID_KEY
    vm.VideoMAEModel(vm.VideoMAEConfig(image_size=16, patch_size=8, num_frames=2, hidden_size=12,
                                       num_hidden_layers=1, num_attention_heads=3,
                                       intermediate_size=8)).save_pretrained(tmp_path)
    assert SAVE_ID_KEY in json.loads((tmp_path / "config.json").read_text())
    cfg = vm.VideoMAEConfig.from_pretrained(tmp_path)
    assert SAVE_ID_KEY not in cfg.to_dict() and SAVE_ID_KEY not in cfg.to_json_string()
    cfg.save_pretrained(tmp_path / "again")       # written back: the config still names its save
    assert json.loads((tmp_path / "again" / "config.json").read_text())[SAVE_ID_KEY] == \
        json.loads((tmp_path / "config.json").read_text())[SAVE_ID_KEY]
