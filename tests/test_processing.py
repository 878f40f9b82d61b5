"""VideoMAEImageProcessor: equal to transformers' PIL-backend processor on every argument, config
files that round-trip with transformers both ways, and clear errors for bad input.

Parity is checked as "ours raises exactly when transformers raises, and otherwise gives the same
shape, dtype and values" (max abs diff <= 1e-5; the measured worst is printed in the ledger, and
is 0: the resize is Pillow's in both, the rest is the same arithmetic)."""

import json
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image

import videomae_np as vm
from conftest import max_abs, record
from videomae_np import kernels
from videomae_np.kernels import gather
from videomae_np import pixels
from videomae_np import processing as P

TOL = 1e-5
FILTERS = list(Image.Resampling)


@pytest.fixture(scope="module")
def HFPil():
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("torch")
    return transformers.VideoMAEImageProcessorPil


def _quiet(fn, *a, **k):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*a, **k)


def _compare(ours_proc, ref_proc, videos, ours_videos=None, **call):
    """Run both; assert ours raises iff transformers raises, else equal output. Returns max diff."""
    try:
        ref = _quiet(ref_proc, videos, **call)["pixel_values"]
    except (ValueError, TypeError) as e:
        with pytest.raises((ValueError, TypeError)):
            _quiet(ours_proc, videos if ours_videos is None else ours_videos, **call)
        return repr(e)
    out = _quiet(ours_proc, videos if ours_videos is None else ours_videos, **call)["pixel_values"]
    if call.get("return_tensors") is None:
        assert len(out) == len(ref) and [len(v) for v in out] == [len(v) for v in ref]
        out, ref = np.array(out), np.array(ref)
    assert out.shape == ref.shape, (out.shape, ref.shape)
    assert out.dtype == ref.dtype, (out.dtype, ref.dtype)
    d = max_abs(out, ref) if out.size else 0.0
    record("processor vs transformers PIL (abs)", d)
    assert d <= TOL, d
    return d


def _video(rng, t, h, w, c, kind, layout):
    if kind == "uint8":
        x = rng.integers(0, 256, (t, h, w, c), dtype=np.uint8)
    elif kind == "float01":                                 # already-scaled images
        x = rng.random((t, h, w, c))
    elif kind == "float255":                                # whole numbers stored as float
        x = rng.integers(0, 256, (t, h, w, c)).astype(np.float64)
    else:                                                   # another integer type
        x = rng.integers(0, 256, (t, h, w, c)).astype(np.int16)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2)) if layout == "channels_first" else x


def _structure(x, kind):
    if kind == "array4d":
        return x
    if kind == "frames":
        return list(x)
    if kind == "frame":
        return x[0]
    if kind == "batch_lists":
        return [list(x), list(x[::-1])]
    return [x, x[::-1].copy()]                              # batch of 4-D arrays


# --------------------------------------------------------------------------------------------
# Parity over every argument (hypothesis)
# --------------------------------------------------------------------------------------------

@st.composite
def cases(draw):
    seed = draw(st.integers(0, 2**31 - 1))
    t, h, w = draw(st.integers(1, 3)), draw(st.integers(1, 37)), draw(st.integers(1, 37))
    c = draw(st.sampled_from([1, 3, 4]))
    layout = draw(st.sampled_from(["channels_last", "channels_first"]))
    kind = draw(st.sampled_from(["uint8", "uint8", "float01", "float255", "int16"]))
    structure = draw(st.sampled_from(["array4d", "frames", "frame", "batch_lists", "batch_arrays"]))
    explicit = draw(st.booleans())
    s = {}
    s["do_resize"] = draw(st.booleans())
    size_kind = draw(st.sampled_from(["int", "pair", "shortest", "shortest_longest", "max_hw"]))
    a, b = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    s["size"] = {"int": a, "pair": (a, b), "shortest": {"shortest_edge": a},
                 "shortest_longest": {"shortest_edge": min(a, b), "longest_edge": max(a, b) + 1},
                 "max_hw": {"max_height": a, "max_width": b}}[size_kind]
    s["resample"] = draw(st.sampled_from(FILTERS))
    s["do_center_crop"] = draw(st.booleans())
    s["crop_size"] = draw(st.one_of(st.integers(1, 40),
                                    st.fixed_dictionaries({"height": st.integers(1, 40),
                                                           "width": st.integers(1, 40)})))
    s["do_rescale"] = draw(st.booleans())
    s["rescale_factor"] = draw(st.sampled_from([1 / 255, 1 / 127.5, 0.5]))
    s["do_normalize"] = draw(st.booleans())
    s["do_convert_rgb"] = draw(st.sampled_from([None, True]))
    # the channel count both processors will see decides how many means/stds make sense
    shape = (h, w, c) if layout == "channels_last" else (c, h, w)
    seen = c if explicit else shape[0] if shape[0] in P.FRAME_CHANNELS else shape[-1]
    if s["do_convert_rgb"]:
        seen = 3
    per_channel = draw(st.booleans())
    m = draw(st.floats(0, 1)), draw(st.floats(0.1, 2))
    s["image_mean"] = tuple(np.linspace(m[0], 1 - m[0], seen)) if per_channel else m[0]
    s["image_std"] = tuple(np.linspace(m[1], 2.1 - m[1], seen)) if per_channel else m[1]
    where = draw(st.sampled_from(["init", "call"]))
    return seed, (t, h, w, c, kind, layout), structure, explicit, s, where


@settings(max_examples=70, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=cases(), return_np=st.booleans())
def test_matches_transformers_pil_on_every_argument(HFPil, case, return_np):
    seed, (t, h, w, c, kind, layout), structure, explicit, s, where = case
    rng = np.random.default_rng(seed)
    videos = _structure(_video(rng, t, h, w, c, kind, layout), structure)
    call = {"return_tensors": "np" if return_np else None}
    if explicit:
        call["input_data_format"] = layout
    s = {k: v for k, v in s.items() if v is not None}
    if where == "init":
        ours, ref = vm.VideoMAEImageProcessor(**s), HFPil(**s)
    else:
        ours, ref = vm.VideoMAEImageProcessor(), HFPil()
        call.update(s)
    result = _compare(ours, ref, videos, **call)
    event("compared values" if isinstance(result, float) else f"both raised: {result[:60]}")


# --------------------------------------------------------------------------------------------
# Parity on explicit cases
# --------------------------------------------------------------------------------------------

def _rgb_video(t=4, h=240, w=320, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (t, h, w, 3), dtype=np.uint8)


def test_defaults_match_transformers_bit_for_bit(HFPil):
    x = _rgb_video()
    out = vm.VideoMAEImageProcessor()(x, return_tensors="np")["pixel_values"]
    ref = HFPil()(x, return_tensors="np")["pixel_values"]
    assert out.shape == (1, 4, 3, 224, 224) and out.dtype == np.float32
    np.testing.assert_array_equal(out, ref)


@pytest.mark.parametrize("resample", FILTERS, ids=[r.name.lower() for r in FILTERS])
@pytest.mark.parametrize("hw", [(240, 320), (97, 61), (13, 300)], ids=["240x320", "97x61", "13x300"])
def test_every_pillow_filter_matches_transformers(HFPil, resample, hw):
    x = _rgb_video(2, *hw, seed=1)
    _compare(vm.VideoMAEImageProcessor(resample=resample), HFPil(resample=resample), x,
             return_tensors="np")


@pytest.mark.parametrize("name, make, kwargs", [
    ("channels_first", lambda x: x.transpose(0, 3, 1, 2), {}),
    ("channels_first_explicit", lambda x: x.transpose(0, 3, 1, 2), {"input_data_format": "channels_first"}),
    ("float01_no_rescale", lambda x: x / 255.0, {"do_rescale": False}),
    ("float32_01", lambda x: (x / 255.0).astype(np.float32), {"do_rescale": False}),
    ("grey_scalar_mean", lambda x: x[..., :1], {"image_mean": 0.45, "image_std": 0.225}),
    ("rgba_convert_rgb", lambda x: np.concatenate([x, x[..., :1]], -1), {"do_convert_rgb": True}),
    ("grey_convert_rgb", lambda x: x[..., 1:2], {"do_convert_rgb": True}),
    ("crop_larger_than_frame", lambda x: x, {"crop_size": {"height": 300, "width": 250},
                                             "size": {"shortest_edge": 64}}),
    ("upscale_height_width", lambda x: x[:, :20, :30], {"size": {"height": 111, "width": 57}}),
    ("shortest_and_longest_edge", lambda x: x, {"size": {"shortest_edge": 224, "longest_edge": 256}}),
    ("max_height_width", lambda x: x, {"size": {"max_height": 100, "max_width": 90}}),
    ("imagenet_default_mean_std", lambda x: x, {"image_mean": pixels.IMAGENET_DEFAULT_MEAN,
                                                "image_std": pixels.IMAGENET_DEFAULT_STD}),
    ("no_resize_no_crop", lambda x: x[:, :50, :70], {"do_resize": False, "do_center_crop": False}),
    ("uint8_passthrough", lambda x: x[:, :50, :70], {"do_resize": False, "do_center_crop": False,
                                                     "do_rescale": False, "do_normalize": False}),
    ("float64_no_resize", lambda x: x[:, :40, :60] / 255.0, {"do_resize": False, "do_rescale": False}),
    ("float16_no_resize", lambda x: (x[:, :40, :60] / 255.0).astype(np.float16),
     {"do_resize": False, "do_rescale": False}),
    ("int_size_and_crop", lambda x: x, {"size": 100, "crop_size": 90}),
])
def test_explicit_cases_match_transformers(HFPil, name, make, kwargs):
    x = make(_rgb_video(3, 60, 80, seed=2))
    ours, ref = vm.VideoMAEImageProcessor(), HFPil()
    _compare(ours, ref, x, return_tensors="np", **kwargs)
    _compare(vm.VideoMAEImageProcessor(**kwargs), HFPil(**kwargs), list(x), return_tensors="np")


def test_pil_images_and_torch_tensors_match_transformers(HFPil):
    torch = pytest.importorskip("torch")
    x = _rgb_video(3, 45, 67, seed=3)
    pil = [Image.fromarray(f) for f in x]
    _compare(vm.VideoMAEImageProcessor(), HFPil(), pil, return_tensors="np")
    grey = [Image.fromarray(f[..., 0]) for f in x]
    _compare(vm.VideoMAEImageProcessor(image_mean=0.5, image_std=0.5),
             HFPil(image_mean=0.5, image_std=0.5), grey, return_tensors="np")
    rgba = [Image.fromarray(np.concatenate([f, f[..., :1]], -1)) for f in x]
    _compare(vm.VideoMAEImageProcessor(do_convert_rgb=True), HFPil(do_convert_rgb=True), rgba,
             return_tensors="np")
    tensors = [torch.from_numpy(f.transpose(2, 0, 1).copy()) for f in x]
    _compare(vm.VideoMAEImageProcessor(), HFPil(), tensors, return_tensors="np")


def test_batch_forms_agree_with_each_other_and_transformers(HFPil):
    a, b = _rgb_video(4, 50, 70, seed=4), _rgb_video(4, 90, 40, seed=5)
    ref = HFPil()([a, b], return_tensors="np")["pixel_values"]
    proc = vm.VideoMAEImageProcessor()
    for form in ([a, b], [list(a), list(b)], (a, b)):
        np.testing.assert_array_equal(proc(form, return_tensors="np")["pixel_values"], ref)
    same = np.stack([a, a])                       # a 5-D array is read as a batch (our extension)
    np.testing.assert_array_equal(proc(same, return_tensors="np")["pixel_values"],
                                  HFPil()([a, a], return_tensors="np")["pixel_values"])


def test_batch_of_videos_with_different_dtypes_matches_transformers(HFPil):
    a = _rgb_video(2, 20, 30, seed=13)
    plain = dict(do_resize=False, do_center_crop=False, do_rescale=False, do_normalize=False)
    for kwargs in ({}, plain):
        _compare(vm.VideoMAEImageProcessor(), HFPil(), [a, a / 255.0], return_tensors="np", **kwargs)
        _compare(vm.VideoMAEImageProcessor(), HFPil(), [a / 255.0, a], return_tensors="np", **kwargs)


def test_return_tensors_none_gives_transformers_nested_lists(HFPil):
    a, b = _rgb_video(2, 30, 40, seed=6), _rgb_video(3, 30, 40, seed=7)
    out = vm.VideoMAEImageProcessor()([a, b])["pixel_values"]
    ref = HFPil()([a, b])["pixel_values"]
    assert isinstance(out, list) and [len(v) for v in out] == [2, 3] == [len(v) for v in ref]
    for vo, vr in zip(out, ref):
        for fo, fr in zip(vo, vr):
            assert fo.shape == fr.shape == (3, 224, 224)
            np.testing.assert_array_equal(fo, fr)


def test_output_is_attribute_readable_dict_of_float32():
    batch = vm.VideoMAEImageProcessor(size=32, crop_size=32)(_rgb_video(2, 40, 50), return_tensors="np")
    assert set(batch) == {"pixel_values"} and batch.pixel_values is batch["pixel_values"]
    assert batch.pixel_values.shape == (1, 2, 3, 32, 32) and batch.pixel_values.dtype == np.float32
    assert batch.pixel_values.flags.c_contiguous


def test_lookup_tables_equal_direct_arithmetic_bit_for_bit():
    """The 256-entry tables give exactly what the step-by-step arithmetic gives."""
    rng = np.random.default_rng(8)
    x = rng.integers(0, 256, (2, 5, 7, 3), dtype=np.uint8)
    for o in ({"do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
               "image_mean": (0.485, 0.456, 0.406), "image_std": (0.229, 0.224, 0.225)},
              {"do_rescale": False, "rescale_factor": None, "do_normalize": True,
               "image_mean": 0.3, "image_std": 0.7},
              {"do_rescale": True, "rescale_factor": 0.5, "do_normalize": False,
               "image_mean": None, "image_std": None}):
        direct = P.value_chain(x, o).transpose(0, 3, 1, 2)
        np.testing.assert_array_equal(P._apply_tables(x, np.zeros(2, bool), o), direct)
        back = (x.astype(np.float64) * (1 / 255)).astype(np.float32)
        np.testing.assert_array_equal(P._apply_tables(x, np.ones(2, bool), o),
                                      P.value_chain(back, o).transpose(0, 3, 1, 2))


@pytest.mark.parametrize("layout", ["contiguous", "cropped_view"])
def test_gather_kernel_numba_equals_numpy_reference(layout):
    rng = np.random.default_rng(9)
    x = rng.integers(0, 256, (3, 11, 13, 4), dtype=np.uint8)
    if layout == "cropped_view":
        x = x[:, 2:9, 1:12]
    tables = rng.standard_normal((256, 4)).astype(np.float32)
    a = np.empty((x.shape[0], 4, *x.shape[1:3]), np.float32)
    b = np.empty_like(a)
    gather.gather_tables_numpy(x, tables, a)
    gather.gather_tables_numba(x, tables, b)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a[1, 2], tables[x[1, :, :, 2], 2])


def test_numpy_backend_gives_the_same_pixels():
    x = _rgb_video(2, 50, 60)
    proc = vm.VideoMAEImageProcessor(size=40, crop_size=32)
    fast = proc(x, return_tensors="np")["pixel_values"]
    prev = kernels.set_backend("numpy")
    try:
        slow = proc(x, return_tensors="np")["pixel_values"]
    finally:
        kernels.set_backend(prev)
    np.testing.assert_array_equal(fast, slow)


def test_per_call_overrides_do_not_change_the_processor():
    proc = vm.VideoMAEImageProcessor()
    before = proc.to_dict()
    out = proc(_rgb_video(1, 40, 50), do_center_crop=False, size=30, return_tensors="np")
    assert out["pixel_values"].shape == (1, 1, 3, 30, 37)
    assert proc.to_dict() == before


# --------------------------------------------------------------------------------------------
# preprocessor_config.json, both ways
# --------------------------------------------------------------------------------------------

CUSTOM = dict(size={"shortest_edge": 160}, crop_size={"height": 144, "width": 128}, resample=3,
              image_mean=list(pixels.IMAGENET_DEFAULT_MEAN), image_std=list(pixels.IMAGENET_DEFAULT_STD),
              do_rescale=True, rescale_factor=1 / 255, do_convert_rgb=True)


def _json(path):
    return json.loads((path / P.PROCESSOR_CONFIG_NAME).read_text())


def test_default_config_is_what_transformers_writes(HFPil, tmp_path):
    HFPil().save_pretrained(tmp_path / "hf")
    vm.VideoMAEImageProcessor().save_pretrained(tmp_path / "ours")
    assert _json(tmp_path / "ours") == _json(tmp_path / "hf")
    assert _json(tmp_path / "ours")["image_processor_type"] == "VideoMAEImageProcessor"


@pytest.mark.parametrize("kwargs", [{}, CUSTOM, {"size": 100, "crop_size": 80, "do_normalize": False}],
                         ids=["defaults", "custom", "ints"])
def test_config_written_by_transformers_loads_here_unchanged(HFPil, tmp_path, kwargs):
    HFPil(**kwargs).save_pretrained(tmp_path)
    ours = vm.VideoMAEImageProcessor.from_pretrained(tmp_path)
    assert ours.to_dict() == _json(tmp_path)
    x = _rgb_video(2, 70, 90, seed=10)
    _compare(ours, HFPil.from_pretrained(tmp_path), x, return_tensors="np")


@pytest.mark.parametrize("kwargs", [{}, CUSTOM, {"size": (96, 112), "do_center_crop": False}],
                         ids=["defaults", "custom", "pair"])
def test_config_written_here_loads_in_transformers_unchanged(HFPil, tmp_path, kwargs):
    ours = vm.VideoMAEImageProcessor(**kwargs)
    ours.save_pretrained(tmp_path)
    ref = HFPil.from_pretrained(tmp_path)
    assert json.loads(ref.to_json_string()) == _json(tmp_path) == ours.to_dict()
    _compare(ours, ref, _rgb_video(2, 70, 90, seed=11), return_tensors="np")
    assert vm.VideoMAEImageProcessor.from_pretrained(tmp_path) == ours


def test_legacy_feature_extractor_config_loads_like_transformers(HFPil, tmp_path):
    legacy = {"feature_extractor_type": "VideoMAEFeatureExtractor", "processor_class": "X",
              "do_resize": True, "size": 128, "resample": 2, "do_center_crop": True,
              "crop_size": 112, "do_normalize": True, "image_mean": list(pixels.IMAGENET_DEFAULT_MEAN),
              "image_std": list(pixels.IMAGENET_DEFAULT_STD), "some_unknown_key": 7}
    (tmp_path / P.PROCESSOR_CONFIG_NAME).write_text(json.dumps(legacy))
    ours = vm.VideoMAEImageProcessor.from_pretrained(tmp_path)
    ref = _quiet(HFPil.from_pretrained, tmp_path)
    assert ours.to_dict() == json.loads(ref.to_json_string())
    assert ours.size == {"shortest_edge": 128} and ours.crop_size == {"height": 112, "width": 112}
    assert ours.to_dict()["some_unknown_key"] == 7          # unknown keys survive, as in transformers
    _compare(ours, ref, _rgb_video(2, 70, 90, seed=12), return_tensors="np")


def test_from_pretrained_keyword_overrides_the_file(tmp_path):
    vm.VideoMAEImageProcessor().save_pretrained(tmp_path)
    proc = vm.VideoMAEImageProcessor.from_pretrained(tmp_path, crop_size=64, do_normalize=False)
    assert proc.crop_size == {"height": 64, "width": 64} and proc.do_normalize is False
    proc2 = vm.VideoMAEImageProcessor.from_pretrained(tmp_path / P.PROCESSOR_CONFIG_NAME)
    assert proc2 == vm.VideoMAEImageProcessor()


def test_transformers_size_objects_are_accepted(HFPil):
    ref = HFPil(size=(96, 112), crop_size=64)
    ours = vm.VideoMAEImageProcessor(size=ref.size, crop_size=ref.crop_size)
    assert ours.size == {"height": 96, "width": 112} and ours.crop_size == {"height": 64, "width": 64}


def test_feature_extractor_alias_warns_and_behaves_the_same(tmp_path):
    with pytest.warns(FutureWarning, match="VideoMAEImageProcessor"):
        fe = vm.VideoMAEFeatureExtractor(size=48, crop_size=40)
    x = _rgb_video(2, 50, 60)
    np.testing.assert_array_equal(
        fe(x, return_tensors="np")["pixel_values"],
        vm.VideoMAEImageProcessor(size=48, crop_size=40)(x, return_tensors="np")["pixel_values"])
    fe.save_pretrained(tmp_path)
    assert _json(tmp_path)["image_processor_type"] == "VideoMAEImageProcessor"
    assert isinstance(fe, vm.VideoMAEImageProcessor)


# --------------------------------------------------------------------------------------------
# Bad input: each error names what was expected and what was found
# --------------------------------------------------------------------------------------------

@pytest.fixture
def proc():
    return vm.VideoMAEImageProcessor(size=32, crop_size=32)


def test_empty_input_and_empty_video_are_rejected(proc):
    with pytest.raises(ValueError, match="at least one video.*empty list"):
        proc([])
    with pytest.raises(ValueError, match="video 1 has no frames"):
        proc([list(_rgb_video(2, 20, 20)), []])
    with pytest.raises(ValueError, match="video 0 has no frames"):
        proc(np.zeros((0, 20, 20, 3), np.uint8))


def test_frames_of_different_sizes_in_one_video_are_rejected(proc):
    frames = [np.zeros((20, 30, 3), np.uint8), np.zeros((20, 31, 3), np.uint8)]
    with pytest.raises(ValueError, match="share a size.*frame 0 is 20x30.*frame 1 is 20x31"):
        proc(frames)
    with pytest.raises(ValueError, match="share a dtype.*uint8.*float64"):
        proc([np.zeros((20, 30, 3), np.uint8), np.zeros((20, 30, 3))])


@pytest.mark.parametrize("shape, fmt, pattern", [
    ((20, 30, 2), None, r"cannot find the channel axis.*\(20, 30, 2\).*1 or 3 or 4"),
    ((5, 20, 30), None, r"cannot find the channel axis.*\(5, 20, 30\)"),
    ((20, 30, 2), "channels_last", "has 2 channels.*expected 1, 3, 4"),
    ((6, 20, 30), "channels_first", "has 6 channels.*expected 1, 3, 4"),
])
def test_wrong_channel_count_is_rejected(proc, shape, fmt, pattern):
    with pytest.raises(ValueError, match=pattern):
        proc(np.zeros(shape, np.uint8), input_data_format=fmt)


def test_pil_image_with_two_channels_is_rejected(proc):
    with pytest.raises(ValueError, match="mode LA with 2 channels"):
        proc(Image.new("LA", (20, 10)))


@pytest.mark.parametrize("dtype", [bool, np.complex64, object, "U1"])
def test_unsupported_dtypes_are_rejected(proc, dtype):
    with pytest.raises(TypeError, match=f"dtype {np.dtype(dtype)}.*expected uint8"):
        proc(np.zeros((2, 20, 20, 3), dtype=dtype))


def test_wrong_array_rank_and_type_are_rejected(proc):
    with pytest.raises(ValueError, match=r"frame \(3-D.*video \(4-D\).*\(5-D\).*\(20, 20\)"):
        proc(np.zeros((20, 20), np.uint8))
    with pytest.raises(ValueError, match=r"\(1, 1, 2, 20, 20, 3\)"):
        proc(np.zeros((1, 1, 2, 20, 20, 3), np.uint8))
    with pytest.raises(ValueError, match=r"shape \(20, 20\); expected a 3-D frame"):
        proc([[np.zeros((20, 20), np.uint8)]])
    with pytest.raises(TypeError, match="got str"):
        proc("video.mp4")
    with pytest.raises(TypeError, match="list holding int"):
        proc([1, 2, 3])
    with pytest.raises(TypeError, match="frame 0 is a int.*NumPy array"):
        proc([[1, 2]])


def test_bad_pixel_values_are_rejected(proc):
    x = np.full((1, 20, 20, 3), 0.5)
    x[0, 1, 2, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        proc(x)
    with pytest.raises(ValueError, match=r"fractional values outside \[0, 1\].*\[0, 255\] or in \[0, 1\]"):
        proc(np.full((1, 20, 20, 3), 2.5))
    with pytest.raises(ValueError, match=r"whole numbers outside \[0, 255\]"):
        proc(np.full((1, 20, 20, 3), 300, np.int32))


def test_bad_settings_are_rejected(proc):
    x = _rgb_video(1, 20, 20)
    with pytest.raises(TypeError, match=r"unexpected argument\(s\) \['do_magic'\]"):
        proc(x, do_magic=True)
    with pytest.raises(ValueError, match="return_tensors must be 'np' or None.*'pt'"):
        proc(x, return_tensors="pt")
    with pytest.raises(ValueError, match="size must have one of the key sets.*'depth'"):
        vm.VideoMAEImageProcessor(size={"depth": 3})
    with pytest.raises(ValueError, match="size for resizing.*'longest_edge'"):
        proc(x, size={"longest_edge": 30})
    with pytest.raises(ValueError, match=r"size\['shortest_edge'\] must be a positive integer, got 0"):
        vm.VideoMAEImageProcessor(size=0)
    with pytest.raises(ValueError, match="resample must be one of Pillow's filters.*bilinear.*got 42"):
        vm.VideoMAEImageProcessor(resample=42)
    with pytest.raises(ValueError, match="image_mean has 2 values but the frames have 3 channel"):
        proc(x, image_mean=(0.5, 0.5))
    with pytest.raises(ValueError, match="image_std must not contain 0"):
        proc(x, image_std=(0.5, 0.0, 0.5))
    with pytest.raises(ValueError, match="input_data_format must be.*got 'NHWC'"):
        proc(x, input_data_format="NHWC")
    with pytest.raises(ValueError, match="data_format='channels_last' is not supported"):
        proc(x, data_format="channels_last")
    with pytest.raises(ValueError, match="crop_size must have keys 'height' and 'width'"):
        proc(x, crop_size={"shortest_edge": 3})
    with pytest.raises(ValueError, match="resizing 1x40 frames gives an empty 0x5 frame"):
        proc(np.zeros((1, 1, 40, 3), np.uint8), size={"max_height": 5, "max_width": 5},
             input_data_format="channels_last")


def test_ragged_batch_needs_return_tensors_none(proc):
    a, b = _rgb_video(2, 20, 20), _rgb_video(3, 20, 20)
    with pytest.raises(ValueError, match=r"different shapes.*\(2, 3, 32, 32\).*\(3, 3, 32, 32\).*return_tensors=None"):
        proc([a, b], return_tensors="np")
    assert [len(v) for v in proc([a, b])["pixel_values"]] == [2, 3]


def test_missing_or_broken_config_file_is_reported(tmp_path):
    with pytest.raises(FileNotFoundError, match="no preprocessor_config.json at"):
        vm.VideoMAEImageProcessor.from_pretrained(tmp_path / "nowhere")
    (tmp_path / P.PROCESSOR_CONFIG_NAME).write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        vm.VideoMAEImageProcessor.from_pretrained(tmp_path)
    (tmp_path / P.PROCESSOR_CONFIG_NAME).write_text("[1, 2]")
    with pytest.raises(ValueError, match="JSON object, found list"):
        vm.VideoMAEImageProcessor.from_pretrained(tmp_path)


def test_ambiguous_layout_warns_and_assumes_channels_first(proc):
    with pytest.warns(UserWarning, match=r"\[\(3, 10, 3\)\] fit both.*assumed channels-first"):
        out = proc(np.zeros((3, 10, 3), np.uint8), do_resize=False, do_center_crop=False,
                   return_tensors="np")
    assert out["pixel_values"].shape == (1, 1, 3, 10, 3)


def test_benchmark_runs_and_leaves_transformers_columns_empty_without_it(monkeypatch):
    """No timing is checked: only that the table is produced, also when transformers is absent."""
    from videomae_np import bench_processing as B
    monkeypatch.setattr(B, "_reference_processor", lambda: None)
    monkeypatch.setattr(B, "_cases", lambda rng: [("tiny", _rgb_video(2, 30, 40))])
    rows = B.bench_processing(repeats=1)
    assert [r["case"] for r in rows] == ["tiny"] and rows[0]["ours_ms"] > 0
    assert rows[0]["transformers_ms"] is None and rows[0]["ratio"] is None
    table = B.format_table(rows)
    assert "tiny" in table and " - " in table


# --------------------------------------------------------------------------------------------
# Reliability: empty frames, zero std, already-rescaled floats
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(0, 0, 3), (3, 0, 0), (0, 5, 3), (5, 0, 3)])
@pytest.mark.parametrize("kwargs", [{}, {"do_resize": False}, {"do_resize": False, "do_center_crop": False}])
def test_an_empty_frame_is_a_clear_value_error(proc, shape, kwargs):
    with pytest.raises(ValueError, match=r"video 0, frame 0 is empty \(\d+x\d+ with 3 channel\(s\)\); "
                                         r"expected a frame of at least 1x1"):
        proc(np.zeros(shape, np.uint8), **kwargs)


@pytest.mark.parametrize("std", [0, 0.0, np.float32(0), (0.5, 0.0, 0.5), [0, 0, 0]])
def test_a_zero_image_std_is_refused_as_scalar_or_per_channel(proc, std):
    with pytest.raises(ValueError, match="image_std must not contain 0"):
        vm.VideoMAEImageProcessor(image_std=std)
    with pytest.raises(ValueError, match="image_std must not contain 0"):
        proc(_rgb_video(1, 20, 20), image_std=std)


@pytest.mark.parametrize("name", ["image_mean", "image_std"])
def test_non_finite_mean_or_std_is_refused(name):
    with pytest.raises(ValueError, match=f"{name} must hold finite numbers"):
        vm.VideoMAEImageProcessor(**{name: float("nan")})
    with pytest.raises(ValueError, match=f"{name} must hold finite numbers"):
        vm.VideoMAEImageProcessor(**{name: (0.5, float("inf"), 0.5)})


@pytest.mark.parametrize("kwargs", [{}, {"do_resize": False}])
def test_float_frames_already_in_0_1_warn_but_match_transformers(HFPil, kwargs):
    x = _rgb_video(2, 30, 40, seed=5) / 255.0
    with pytest.warns(UserWarning, match=r"video\(s\) \[0\]: float frames with every value in \[0, 1\] "
                                         r"look already rescaled.*pass do_rescale=False"):
        ours = vm.VideoMAEImageProcessor(**kwargs)(x, return_tensors="np")["pixel_values"]
    ref = _quiet(HFPil(**kwargs), x, return_tensors="np")["pixel_values"]
    assert ours.dtype == ref.dtype and np.array_equal(ours, ref)


def test_no_rescale_warning_for_uint8_whole_floats_or_do_rescale_false(proc):
    x = _rgb_video(1, 20, 20)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        proc(x)
        proc(x.astype(np.float64))                      # whole numbers in [0, 255]
        proc(x / 255.0, do_rescale=False)


def test_a_config_file_with_a_bad_setting_names_the_file(tmp_path):
    (tmp_path / P.PROCESSOR_CONFIG_NAME).write_text(json.dumps({"image_std": [0.5, 0, 0.5]}))
    with pytest.raises(ValueError, match=r"preprocessor_config.json: image_std must not contain 0"):
        vm.VideoMAEImageProcessor.from_pretrained(tmp_path)
