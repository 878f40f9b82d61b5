"""Checkpoints: every malformed safetensors header entry and every shard index that points
outside its folder is a CheckpointError naming the file and the tensor; weights and config.json
are saved as one unit (an interrupted or interleaved save is detected, concurrent saves into one
folder serialise); non-finite weights load with a warning."""

import builtins
import json
import threading
import warnings

import numpy as np
import pytest

import videomae_np as vm
from conftest import TINY, make_hf_model
from videomae_np import checkpoint as ck
from videomae_np import fileio
from videomae_np.config import SAVE_ID_KEY


def _one_line(e):
    assert "\n" not in str(e), str(e)
    return str(e)


# ---- malformed headers ------------------------------------------------------------------------
def _file(path, header, data=b"\0" * 32, header_len=None):
    hb = json.dumps(header).encode()
    n = len(hb) if header_len is None else header_len
    path.write_bytes(n.to_bytes(8, "little") + hb + data)
    return path


def _t(dtype="F32", shape=(2, 4), offsets=(0, 32)):
    return {"dtype": dtype, "shape": list(shape) if isinstance(shape, tuple) else shape,
            "data_offsets": list(offsets) if isinstance(offsets, tuple) else offsets}


BAD_HEADERS = {
    "shape_string": ({"w": _t(shape="abc")}, "'w' has shape 'abc'"),
    "shape_float": ({"w": _t(shape=[2.5, 4])}, r"'w' has shape \[2.5, 4\]"),
    "shape_negative": ({"w": _t(shape=[-2, -4])}, r"'w' has shape \[-2, -4\]"),
    "shape_bool": ({"w": _t(shape=[True, 8])}, r"'w' has shape \[true, 8\]|'w' has shape \[True, 8\]"),
    "offsets_strings": ({"w": _t(offsets=["0", "32"])}, r"'w' has data_offsets \['0', '32'\]"),
    "offsets_negative": ({"w": _t(offsets=[-32, 0])}, r"'w' has data_offsets \[-32, 0\]"),
    "offsets_reversed": ({"w": _t(offsets=[32, 0])}, r"'w' has data_offsets \[32, 0\]"),
    "offsets_one": ({"w": _t(offsets=[32])}, r"'w' has data_offsets \[32\]"),
    "offsets_missing": ({"w": {"dtype": "F32", "shape": [8]}}, "'w' has data_offsets None"),
    "offsets_beyond_data": ({"w": _t(shape=[4, 4], offsets=[0, 64])}, "truncated: tensor 'w' ends at byte 64"),
    "size_disagrees": ({"w": _t(shape=[3, 4])}, r"'w' of shape \(3, 4\) F32 needs 48 bytes"),
    "overlap": ({"a": _t(shape=[4], offsets=[0, 16]), "b": _t(shape=[4], offsets=[8, 24]),
                 "c": _t(shape=[2], offsets=[24, 32])}, "tensor 'b' .*overlaps tensor 'a'"),
    "gap": ({"a": _t(shape=[2], offsets=[0, 8]), "b": _t(shape=[4], offsets=[16, 32])},
            "tensor 'b' starts at byte 16.*gap"),
    "unknown_dtype": ({"w": _t(dtype="F8")}, "'w' has unsupported dtype 'F8'"),
    "dtype_not_string": ({"w": _t(dtype=["F32"])}, r"'w' has unsupported dtype \['F32'\]"),
    "entry_not_object": ({"w": [1, 2]}, r"'w': malformed header entry \[1, 2\]"),
    "metadata_not_object": ({"w": _t(), "__metadata__": [1]}, "__metadata__ is a list"),
    "trailing_bytes": ({"w": _t(shape=[4], offsets=[0, 16])}, "tensors end at byte 16 .* holds 32"),
}


@pytest.mark.parametrize("case", list(BAD_HEADERS))
def test_every_malformed_header_entry_is_a_checkpoint_error_naming_file_and_tensor(tmp_path, case):
    header, pattern = BAD_HEADERS[case]
    f = _file(tmp_path / "model.safetensors", header)
    with pytest.raises(ck.CheckpointError, match=pattern) as e:
        ck.read_safetensors(f)
    assert isinstance(e.value, ValueError)
    assert str(f) in _one_line(e.value)


def test_header_length_beyond_the_file_and_duplicate_names_are_reported(tmp_path):
    f = _file(tmp_path / "a.safetensors", {"w": _t()}, header_len=10**6)
    with pytest.raises(ck.CheckpointError, match="header claims 1000000 bytes"):
        ck.read_safetensors(f)
    f = tmp_path / "b.safetensors"
    hb = b'{"w": {"dtype": "F32", "shape": [8], "data_offsets": [0, 32]}, ' \
         b'"w": {"dtype": "F32", "shape": [8], "data_offsets": [0, 32]}}'
    f.write_bytes(len(hb).to_bytes(8, "little") + hb + b"\0" * 32)
    with pytest.raises(ck.CheckpointError, match=r"corrupt header: the key 'w' appears twice") as e:
        ck.read_safetensors(f)
    assert str(f) in _one_line(e.value)


def test_a_well_formed_hand_made_file_still_reads(tmp_path):
    f = _file(tmp_path / "ok.safetensors", {"a": _t(shape=[4], offsets=[0, 16]),
                                            "z": _t(shape=[0, 3], offsets=[16, 16]),
                                            "b": _t(shape=[2, 2], offsets=[16, 32])})
    out = ck.read_safetensors(f)
    assert out["a"].shape == (4,) and out["z"].shape == (0, 3) and out["b"].shape == (2, 2)


def test_non_finite_weights_load_with_a_warning_naming_the_tensors(tmp_path):
    m = vm.VideoMAEModel(vm.VideoMAEConfig(**TINY))
    m.save_pretrained(tmp_path)
    sd = ck.read_safetensors(tmp_path / "model.safetensors")
    sd["encoder.layer.1.output.dense.bias"][3] = np.nan
    sd["embeddings.patch_embeddings.projection.bias"][0] = np.inf
    ck.write_safetensors(tmp_path / "model.safetensors", sd)
    with pytest.warns(UserWarning, match=r"2 tensor\(s\) hold NaN or infinite.*encoder.layer.1.output.dense.bias"):
        back = vm.VideoMAEModel.from_pretrained(tmp_path)
    assert np.isnan(back.params["encoder.layer.1.output.dense.bias"][3])


# ---- shard indexes ----------------------------------------------------------------------------
@pytest.fixture
def sharded(tmp_path):
    """A folder with a two-shard checkpoint, and a valid safetensors file outside it."""
    m = vm.VideoMAEModel(vm.VideoMAEConfig(**TINY))
    d = tmp_path / "ckpt"
    m.save_pretrained(d)
    sd = ck.read_safetensors(d / "model.safetensors")
    (d / "model.safetensors").unlink()
    keys = sorted(sd)
    half = len(keys) // 2
    ck.write_safetensors(d / "a.safetensors", {k: sd[k] for k in keys[:half]})
    ck.write_safetensors(d / "b.safetensors", {k: sd[k] for k in keys[half:]})
    wm = {k: ("a.safetensors" if i < half else "b.safetensors") for i, k in enumerate(keys)}
    outside = tmp_path / "outside.safetensors"
    ck.write_safetensors(outside, {k: sd[k] for k in keys[half:]})   # would load fine if read
    return m, d, wm, outside


def _write_index(d, weight_map):
    (d / ck.WEIGHTS_INDEX_NAME).write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))


def test_a_valid_shard_index_loads(sharded):
    m, d, wm, _ = sharded
    _write_index(d, wm)
    back = vm.VideoMAEModel.from_pretrained(d)
    assert all(np.array_equal(back.params[k], m.params[k]) for k in m.params)


@pytest.mark.parametrize("weight_map, pattern", [
    (["a.safetensors"], "weight_map is a list, expected an object"),
    (3, "weight_map is a int, expected an object"),
    (None, "weight_map is a NoneType"),
])
def test_shard_index_whose_weight_map_is_not_an_object_is_refused(sharded, weight_map, pattern):
    _, d, _, _ = sharded
    _write_index(d, weight_map)
    with pytest.raises(ck.CheckpointError, match=pattern) as e:
        vm.VideoMAEModel.from_pretrained(d)
    assert ck.WEIGHTS_INDEX_NAME in _one_line(e.value)


def test_shard_index_that_is_not_json_or_not_utf8_is_a_checkpoint_error(sharded):
    _, d, _, _ = sharded
    (d / ck.WEIGHTS_INDEX_NAME).write_bytes(b'{"weight_map": {"x": "\xff"}}')
    with pytest.raises(ck.CheckpointError, match="index.json is not valid JSON: not UTF-8"):
        vm.VideoMAEModel.from_pretrained(d)


@pytest.mark.parametrize("how", ["dotdot", "absolute", "nested_dotdot", "backslash_dotdot", "symlink_out"])
def test_shard_outside_the_folder_is_refused_and_never_opened(sharded, monkeypatch, how):
    _, d, wm, outside = sharded
    name = {"dotdot": "../outside.safetensors", "absolute": str(outside),
            "nested_dotdot": "sub/../../outside.safetensors",
            "backslash_dotdot": "..\\outside.safetensors", "symlink_out": "link.safetensors"}[how]
    if how == "symlink_out":
        (d / "link.safetensors").symlink_to(outside)
    _write_index(d, {k: (name if v == "b.safetensors" else v) for k, v in wm.items()})
    opened = []
    real_open = builtins.open
    monkeypatch.setattr(builtins, "open", lambda f, *a, **k: (opened.append(str(f)), real_open(f, *a, **k))[1])
    with pytest.raises(ck.CheckpointError, match="outside") as e:
        vm.VideoMAEModel.from_pretrained(d)
    monkeypatch.undo()
    assert str(d) in _one_line(e.value)
    assert not any("outside" in p or "link" in p or p.endswith("a.safetensors") for p in opened), opened


def test_hugging_face_cache_layout_with_links_into_blobs_loads(sharded):
    """snapshots/<rev>/* are symbolic links to ../../blobs/<hash>: followed, being the index's own home."""
    m, d, wm, _ = sharded
    _write_index(d, wm)
    root = d.parent / "hub"
    blobs, snap = root / "blobs", root / "snapshots" / "rev"
    blobs.mkdir(parents=True)
    snap.mkdir(parents=True)
    for name in ("config.json", ck.WEIGHTS_INDEX_NAME, "a.safetensors", "b.safetensors"):
        (blobs / f"hash_{name}").write_bytes((d / name).read_bytes())
        (snap / name).symlink_to(f"../../blobs/hash_{name}")
    back = vm.VideoMAEModel.from_pretrained(snap)
    assert all(np.array_equal(back.params[k], m.params[k]) for k in m.params)


# ---- weights and config.json as one unit ------------------------------------------------------
def _models(n=2):
    cfg = vm.VideoMAEConfig(**TINY)
    return [vm.VideoMAEForVideoClassification(cfg, seed=s) for s in range(n)]


def test_weights_and_config_carry_the_same_fresh_save_id(tmp_path):
    a, b = _models()
    a.save_pretrained(tmp_path / "a")
    b.save_pretrained(tmp_path / "b")
    ids = []
    for d in (tmp_path / "a", tmp_path / "b"):
        _, meta = ck._read_file(d / ck.WEIGHTS_NAME)
        assert meta[SAVE_ID_KEY] == json.loads((d / "config.json").read_text())[SAVE_ID_KEY]
        ids.append(meta[SAVE_ID_KEY])
    assert ids[0] != ids[1]
    assert SAVE_ID_KEY not in vm.VideoMAEConfig.from_pretrained(tmp_path / "a").to_dict()


def _interrupt_after_weights(monkeypatch):
    def killed(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(ck, "atomic_write_text", killed)


def test_a_save_killed_between_weights_and_config_is_detected(tmp_path, monkeypatch):
    a, b = _models()
    a.save_pretrained(tmp_path)
    _interrupt_after_weights(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        b.save_pretrained(tmp_path)
    monkeypatch.undo()
    with pytest.raises(ck.CheckpointError, match="model.safetensors .*and config.json .*different saves") as e:
        vm.VideoMAEForVideoClassification.from_pretrained(tmp_path)
    _one_line(e.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]


def test_a_save_killed_over_a_transformers_checkpoint_is_detected(hf, tmp_path, monkeypatch):
    _, d = make_hf_model(hf, "VideoMAEForVideoClassification", tmp_path)
    _interrupt_after_weights(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        _models(1)[0].save_pretrained(d)
    monkeypatch.undo()
    with pytest.raises(ck.CheckpointError, match=r"config.json \(no save id\) come from different saves"):
        vm.VideoMAEForVideoClassification.from_pretrained(d)


def test_transformers_checkpoint_without_save_id_loads(hf, tmp_path):
    torch, transformers = hf
    cfg = transformers.VideoMAEConfig(**TINY)
    torch.manual_seed(0)
    theirs = transformers.VideoMAEModel(cfg).eval()
    theirs.save_pretrained(tmp_path)
    assert SAVE_ID_KEY not in json.loads((tmp_path / "config.json").read_text())
    ours = vm.VideoMAEModel.from_pretrained(tmp_path, dtype=np.float64)
    for k, p in theirs.state_dict().items():
        np.testing.assert_array_equal(ours.params[k], p.double().numpy(), err_msg=k)


def test_our_checkpoint_resaved_by_transformers_loads(hf, tmp_path):
    _, transformers = hf
    _models(1)[0].save_pretrained(tmp_path / "ours")
    theirs = transformers.VideoMAEForVideoClassification.from_pretrained(tmp_path / "ours")
    theirs.save_pretrained(tmp_path / "theirs")     # its config.json keeps our key, weights do not
    vm.VideoMAEForVideoClassification.from_pretrained(tmp_path / "theirs")


def test_config_edited_by_hand_or_by_VideoMAEConfig_still_pairs_with_its_weights(tmp_path):
    (a,) = _models(1)
    a.save_pretrained(tmp_path)
    d = json.loads((tmp_path / "config.json").read_text())
    d["id2label"] = {"0": "walk", "1": "run", "2": "jump"}
    d["label2id"] = {"walk": 0, "run": 1, "jump": 2}
    (tmp_path / "config.json").write_text(json.dumps(d))
    assert vm.VideoMAEForVideoClassification.from_pretrained(tmp_path).config.id2label[1] == "run"
    cfg = vm.VideoMAEConfig.from_pretrained(tmp_path)
    cfg.problem_type = "single_label_classification"
    cfg.save_pretrained(tmp_path)
    assert vm.VideoMAEForVideoClassification.from_pretrained(tmp_path).config.problem_type == \
        "single_label_classification"


def test_concurrent_saves_into_one_folder_serialise_and_the_result_loads(tmp_path, monkeypatch):
    """Two threads save different models into one folder at once. The first save to reach its
    config.json is held there while the other runs: unserialised, the folder would end with the
    second save's weights beside the first one's config (and both would share one temp name)."""
    models = _models()
    real_write, real_temp = ck.atomic_write_text, fileio.temp_name
    temps, errors, calls = [], [], []

    def slow_first_config_write(path, text):
        calls.append(path)
        if len(calls) == 1:
            threading.Event().wait(0.3)
        return real_write(path, text)
    monkeypatch.setattr(ck, "atomic_write_text", slow_first_config_write)
    monkeypatch.setattr(fileio, "temp_name", lambda p: temps.append(real_temp(p)) or temps[-1])
    start = threading.Barrier(2)

    def save(m):
        try:
            start.wait()
            m.save_pretrained(tmp_path)
        except Exception as e:  # pragma: no cover - the failure being tested for
            errors.append(e)
    threads = [threading.Thread(target=save, args=(m,)) for m in models]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len({str(t) for t in temps}) == len(temps) == 4
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        back = vm.VideoMAEForVideoClassification.from_pretrained(tmp_path)
    winners = [m for m in models if all(np.array_equal(back.params[k], m.params[k]) for k in m.params)]
    assert len(winners) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
