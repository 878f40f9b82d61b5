"""Video I/O round trips (GIF exact, MP4 close, image folders exact), frame-sampling properties,
and the errors for missing, unreadable or malformed videos."""

import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from videomae_np import video as V
from videomae_np.video import read_video, sample_frame_indices, segment_frame_indices, write_video

PALETTE = np.array([[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 255, 0], [0, 0, 255],
                    [200, 120, 40], [17, 99, 230]], np.uint8)


def palette_clip(t=6, h=21, w=30, seed=0):
    """Frames drawn from a few colours, each frame different (GIF keeps them exactly)."""
    idx = np.random.default_rng(seed).integers(0, len(PALETTE), (t, h, w))
    idx[:, 0, 0] = np.arange(t) % len(PALETTE)     # no two consecutive frames alike
    idx[:, 0, 1] = (np.arange(t) + 1) % len(PALETTE)
    return PALETTE[idx]


def smooth_clip(t=8, h=48, w=64):
    """A moving colour ramp: easy for H.264, so a lossy round trip stays close."""
    y, x = np.mgrid[0:h, 0:w]
    frames = [np.stack([(x * 4 + 8 * i) % 256, (y * 5) % 256, np.full_like(x, 40 + 10 * i)], -1)
              for i in range(t)]
    return np.stack(frames).astype(np.uint8)


# --------------------------------------------------------------------------------------------
# Round trips
# --------------------------------------------------------------------------------------------

def test_gif_round_trip_is_exact_for_palette_content(tmp_path):
    clip = palette_clip()
    write_video(tmp_path / "a.gif", clip, fps=8)
    back = read_video(tmp_path / "a.gif")
    assert back.dtype == np.uint8 and back.shape == clip.shape
    np.testing.assert_array_equal(back, clip)


def test_gif_round_trip_of_greyscale_gives_three_equal_channels(tmp_path):
    grey = np.random.default_rng(1).integers(0, 256, (3, 9, 11), dtype=np.uint8)
    write_video(tmp_path / "g.gif", grey)
    back = read_video(str(tmp_path / "g.gif"))
    assert back.shape == (3, 9, 11, 3)
    for c in range(3):
        np.testing.assert_array_equal(back[..., c], grey)


def test_gif_writer_warns_that_repeated_frames_merge(tmp_path):
    clip = palette_clip(4)
    clip[2] = clip[1]
    with pytest.warns(UserWarning, match=r"frames \[2\] repeat.*gives 3 frames, not 4"):
        write_video(tmp_path / "r.gif", clip)
    assert read_video(tmp_path / "r.gif").shape[0] == 3


def test_mp4_round_trip_is_close(tmp_path):
    pytest.importorskip("imageio_ffmpeg")
    clip = smooth_clip()
    write_video(tmp_path / "a.mp4", clip, fps=12)
    back = read_video(tmp_path / "a.mp4")
    assert back.dtype == np.uint8 and back.shape == clip.shape
    err = np.abs(back.astype(np.int16) - clip)
    assert err.mean() < 4 and np.percentile(err, 99) < 20, (err.mean(), err.max())


def test_mp4_accepts_greyscale_and_lists_of_frames(tmp_path):
    pytest.importorskip("imageio_ffmpeg")
    clip = smooth_clip(4, 32, 32)
    write_video(tmp_path / "g.mp4", list(clip[..., :1]))
    back = read_video(tmp_path / "g.mp4")
    assert back.shape == (4, 32, 32, 3)
    assert np.abs(back.astype(np.int16).mean(-1) - clip[..., 0]).mean() < 4


def test_webm_written_by_imageio_is_read(tmp_path):
    pytest.importorskip("imageio_ffmpeg")
    import imageio.v3 as iio
    clip = smooth_clip(4, 32, 48)
    iio.imwrite(tmp_path / "a.webm", clip, plugin="FFMPEG", fps=10, codec="libvpx",
                macro_block_size=1)
    back = read_video(tmp_path / "a.webm")
    assert back.shape == clip.shape and np.abs(back.astype(np.int16) - clip).mean() < 8


def test_folder_of_frames_is_read_in_natural_name_order(tmp_path):
    import imageio.v3 as iio
    clip = np.random.default_rng(2).integers(0, 256, (12, 7, 9, 3), dtype=np.uint8)
    for i, frame in enumerate(clip):                         # frame_2 must come before frame_10
        iio.imwrite(tmp_path / f"frame_{i}.png", frame)
    (tmp_path / "notes.txt").write_text("not a frame")
    np.testing.assert_array_equal(read_video(tmp_path), clip)


def test_folder_of_greyscale_frames_keeps_one_channel(tmp_path):
    import imageio.v3 as iio
    clip = np.random.default_rng(3).integers(0, 256, (3, 5, 6), dtype=np.uint8)
    for i, frame in enumerate(clip):
        iio.imwrite(tmp_path / f"{i:03d}.png", frame)
    np.testing.assert_array_equal(read_video(tmp_path), clip[..., None])


def test_read_video_feeds_the_processor(tmp_path):
    import videomae_np as vm
    write_video(tmp_path / "a.gif", palette_clip(4, 40, 50))
    frames = read_video(tmp_path / "a.gif")
    idx = sample_frame_indices(2, 2, len(frames), rng=0)
    out = vm.VideoMAEImageProcessor(size=32, crop_size=32)(frames[idx], return_tensors="np")
    assert out["pixel_values"].shape == (1, 2, 3, 32, 32)


# --------------------------------------------------------------------------------------------
# Reading and writing errors
# --------------------------------------------------------------------------------------------

def test_missing_video_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="no video at .*nothing.mp4"):
        read_video(tmp_path / "nothing.mp4")


@pytest.mark.parametrize("name", ["broken.gif", "broken.mp4"])
def test_unreadable_video_raises_value_error(tmp_path, name):
    if name.endswith(".mp4"):
        pytest.importorskip("imageio_ffmpeg")
    (tmp_path / name).write_bytes(b"this is not a video at all" * 10)
    with pytest.raises(ValueError, match=f"could not read .*{name} as a video"):
        read_video(tmp_path / name)


def test_empty_video_file_raises_value_error(tmp_path):
    (tmp_path / "empty.gif").write_bytes(b"")
    with pytest.raises(ValueError, match="could not read .*empty.gif"):
        read_video(tmp_path / "empty.gif")


def test_unsupported_extension_is_rejected(tmp_path):
    (tmp_path / "clip.xyz").write_bytes(b"1234")
    with pytest.raises(ValueError, match=r"cannot read clip.xyz: expected .*\.gif, \.mp4"):
        read_video(tmp_path / "clip.xyz")
    with pytest.raises(ValueError, match=r"cannot write clip.webm: expected .*\.gif, \.mp4"):
        write_video(tmp_path / "clip.webm", palette_clip(2))


def test_folder_without_frames_or_with_mixed_sizes_is_rejected(tmp_path):
    import imageio.v3 as iio
    with pytest.raises(ValueError, match="no image frames in folder.*\\.png"):
        read_video(tmp_path)
    iio.imwrite(tmp_path / "0.png", np.zeros((5, 6, 3), np.uint8))
    iio.imwrite(tmp_path / "1.png", np.zeros((5, 7, 3), np.uint8))
    with pytest.raises(ValueError, match="share a size: 0.png is 5x6.*1.png is 5x7"):
        read_video(tmp_path)


def test_folder_with_16_bit_frames_is_rejected(tmp_path):
    import imageio.v3 as iio
    iio.imwrite(tmp_path / "0.png", np.zeros((5, 6), np.uint16) + 1000)
    with pytest.raises(ValueError, match="uint16 pixels; expected 8-bit"):
        read_video(tmp_path)


def test_missing_imageio_ffmpeg_is_named(tmp_path, monkeypatch):
    (tmp_path / "a.mp4").write_bytes(b"x")
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)     # import now fails
    with pytest.raises(ImportError, match="reading .mp4 files needs the imageio-ffmpeg package.*pip install imageio-ffmpeg"):
        read_video(tmp_path / "a.mp4")
    with pytest.raises(ImportError, match="writing .mp4 files needs the imageio-ffmpeg package"):
        write_video(tmp_path / "b.mp4", smooth_clip(2, 8, 8))


def test_bad_frames_to_write_are_rejected(tmp_path):
    out = tmp_path / "a.gif"
    with pytest.raises(TypeError, match="must be uint8, got float64"):
        write_video(out, np.zeros((2, 8, 8, 3)))
    with pytest.raises(TypeError, match="got str"):
        write_video(out, "frames")
    with pytest.raises(ValueError, match=r"\(T, H, W, C\) or \(T, H, W\), got shape \(8, 8\)"):
        write_video(out, np.zeros((8, 8), np.uint8))
    with pytest.raises(ValueError, match=r"1 or 3 channels.*\(2, 8, 8, 4\)"):
        write_video(out, np.zeros((2, 8, 8, 4), np.uint8))
    with pytest.raises(ValueError, match="no frames to write"):
        write_video(out, np.zeros((0, 8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="share a shape"):
        write_video(out, [np.zeros((8, 8, 3), np.uint8), np.zeros((8, 9, 3), np.uint8)])
    with pytest.raises(ValueError, match="fps must be a positive number, got 0"):
        write_video(out, palette_clip(2), fps=0)
    with pytest.raises(FileNotFoundError, match="folder .*missing does not exist"):
        write_video(tmp_path / "missing" / "a.gif", palette_clip(2))


def test_mp4_needs_even_sizes_and_a_valid_quality(tmp_path):
    pytest.importorskip("imageio_ffmpeg")
    with pytest.raises(ValueError, match="even height and width, got 21x30"):
        write_video(tmp_path / "a.mp4", palette_clip(2, 21, 30))
    with pytest.raises(ValueError, match=r"quality must be a number in \[0, 10\], got 11"):
        write_video(tmp_path / "a.mp4", smooth_clip(2, 8, 8), quality=11)


# --------------------------------------------------------------------------------------------
# Frame sampling
# --------------------------------------------------------------------------------------------

@settings(max_examples=200, deadline=None)
@given(clip_len=st.integers(1, 40), rate=st.one_of(st.integers(1, 8), st.floats(0.25, 6.0)),
       seg_len=st.integers(1, 400), seed=st.integers(0, 2**32 - 1))
def test_strided_clip_has_length_bounds_order_and_seed_determinism(clip_len, rate, seg_len, seed):
    idx = sample_frame_indices(clip_len, rate, seg_len, rng=seed)
    assert idx.shape == (clip_len,) and idx.dtype == np.int64
    assert idx.min() >= 0 and idx.max() < seg_len
    assert np.all(np.diff(idx) >= 0)
    np.testing.assert_array_equal(idx, sample_frame_indices(clip_len, rate, seg_len, rng=seed))
    np.testing.assert_array_equal(
        idx, sample_frame_indices(clip_len, rate, seg_len, rng=np.random.default_rng(seed)))
    span = int(np.floor((clip_len - 1) * float(rate))) + 1
    if span <= seg_len:        # fits: exactly the requested stride from the start
        np.testing.assert_array_equal(idx - idx[0],
                                      np.floor(np.arange(clip_len) * float(rate)).astype(np.int64))
    else:                      # too short: spread over the whole video
        assert idx[0] == 0 and idx[-1] == seg_len - 1


def test_strided_clip_start_is_spread_over_the_video():
    starts = {int(sample_frame_indices(4, 2, 30, rng=s)[0]) for s in range(400)}
    assert starts == set(range(0, 30 - 7 + 1))       # every feasible start, and none other


@settings(max_examples=200, deadline=None)
@given(n=st.integers(1, 40), seg_len=st.integers(1, 400), seed=st.integers(0, 2**32 - 1))
def test_segments_have_length_bounds_order_and_one_frame_per_segment(n, seg_len, seed):
    for train in (True, False):
        idx = segment_frame_indices(n, seg_len, rng=seed, train=train)
        assert idx.shape == (n,) and idx.dtype == np.int64
        assert idx.min() >= 0 and idx.max() < seg_len
        assert np.all(np.diff(idx) >= 0)
        if seg_len >= n:
            assert np.all(np.diff(idx) > 0)               # distinct frames when there are enough
            lo = np.arange(n) * seg_len // n
            hi = np.arange(1, n + 1) * seg_len // n
            assert np.all((lo <= idx) & (idx < hi))       # frame i comes from segment i
        np.testing.assert_array_equal(idx, segment_frame_indices(n, seg_len, rng=seed, train=train))


def test_segment_evaluation_takes_middles_without_randomness():
    np.testing.assert_array_equal(segment_frame_indices(4, 40, train=False), [5, 15, 25, 35])
    np.testing.assert_array_equal(segment_frame_indices(3, 2, train=False), [0, 0, 1])
    draws = {tuple(segment_frame_indices(4, 40, rng=s)) for s in range(50)}
    assert len(draws) > 40                                   # training draws do vary


def test_generator_state_advances_between_calls():
    gen = np.random.default_rng(5)
    a = [tuple(sample_frame_indices(4, 3, 200, rng=gen)) for _ in range(10)]
    assert len(set(a)) > 1


@pytest.mark.parametrize("call, err, pattern", [
    (lambda: sample_frame_indices(0, 2, 10), ValueError, "clip_len must be a positive integer, got 0"),
    (lambda: sample_frame_indices(4, 0, 10), ValueError, "frame_sample_rate must be a positive number, got 0"),
    (lambda: sample_frame_indices(4, 2, 0), ValueError, "seg_len must be a positive integer, got 0"),
    (lambda: sample_frame_indices(4, 2, 10, rng="seed"), TypeError, "rng must be a numpy Generator.*got str"),
    (lambda: sample_frame_indices(4, 2, 10, rng=True), TypeError, "got bool"),
    (lambda: segment_frame_indices(0, 10), ValueError, "num_segments must be a positive integer, got 0"),
    (lambda: segment_frame_indices(4, 2.5), ValueError, "seg_len must be a positive integer, got 2.5"),
    (lambda: segment_frame_indices(4, 10, rng=1.5), TypeError, "got float"),
])
def test_bad_sampling_arguments_are_rejected(call, err, pattern):
    with pytest.raises(err, match=pattern):
        call()


# --------------------------------------------------------------------------------------------
# Bounded-memory reading and clip sampling
# --------------------------------------------------------------------------------------------

def noise_clip(t, h=48, w=64, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (t, h, w, 3), dtype=np.uint8)


def test_clip_span_is_clip_len_minus_one_strides_plus_one():
    # MCG-NJU/VideoMAE issue 97: the original loader required clip_len * stride frames
    assert V.clip_span(16, 4) == 61 and V.clip_span(1, 4) == 1 and V.clip_span(4, 2) == 7
    # a video of exactly 61 frames takes a true stride-4 clip (first to last frame) ...
    for train in (True, False):
        np.testing.assert_array_equal(V.clip_indices(16, 61, 4, rng=0, train=train), np.arange(0, 61, 4))
    # ... one frame shorter cannot, and is covered evenly instead
    short = V.clip_indices(16, 60, 4, rng=0)
    assert short[0] == 0 and short[-1] == 59 and not np.all(np.diff(short) == 4)


def test_clip_indices_views_are_deterministic_in_bounds_and_spread():
    for stride in (1, 3, None):
        for views in (1, 2, 5):
            clips = [V.clip_indices(8, 100, stride, train=False, view=v, views=views) for v in range(views)]
            for c in clips:
                assert c.shape == (8,) and c.min() >= 0 and c.max() < 100 and np.all(np.diff(c) >= 0)
            starts = [int(c[0]) for c in clips]
            assert starts == sorted(starts) and len(set(starts)) == views
    dense = [V.clip_indices(4, 40, 3, train=False, view=v, views=3) for v in range(3)]
    assert dense[0][0] == 0 and dense[-1][-1] == 39                 # first to last possible start
    np.testing.assert_array_equal(V.clip_indices(4, 40, 3, train=False), 15 + np.arange(0, 12, 3))
    np.testing.assert_array_equal(V.clip_indices(4, 40, None, train=False), [5, 15, 25, 35])
    with pytest.raises(ValueError, match=r"view must be an integer in \[0, 2\), got 2"):
        V.clip_indices(4, 40, 2, train=False, view=2, views=2)


@pytest.mark.parametrize("kind", ["mp4", "gif", "folder"])
def test_read_frames_equals_read_video_at_the_indices(tmp_path, kind):
    if kind == "mp4":
        pytest.importorskip("imageio_ffmpeg")
        path = tmp_path / "v.mp4"
        write_video(path, smooth_clip(12, 32, 48))
    elif kind == "gif":
        path = tmp_path / "v.gif"
        write_video(path, palette_clip(12))
    else:
        import imageio.v3 as iio
        path = tmp_path / "frames"
        path.mkdir()
        for i, f in enumerate(palette_clip(12)):
            iio.imwrite(path / f"f{i}.png", f)
    full = read_video(path)
    assert V.count_frames(path) == len(full) == 12
    idx = np.array([7, 2, 2, 9, 0])                     # any order, repeats allowed
    np.testing.assert_array_equal(V.read_frames(path, idx), full[idx])
    assert V.last_read.decoded == (3 + 1 if kind == "folder" else 9 + 1) and V.last_read.kept == 4
    with pytest.raises(ValueError, match="has 12 frames; frame 12 was asked for"):
        V.read_frames(path, [3, 12])


def test_read_frames_stops_decoding_after_the_last_needed_frame(tmp_path):
    pytest.importorskip("imageio_ffmpeg")
    path = tmp_path / "long.mp4"
    write_video(path, noise_clip(120, 32, 32))
    V.read_frames(path, np.arange(0, 16))
    assert V.last_read.decoded == 16 and V.last_read.kept == 16


def test_reading_16_frames_of_a_long_clip_needs_a_fraction_of_the_memory(tmp_path):
    pytest.importorskip("imageio_ffmpeg")
    import tracemalloc
    path = tmp_path / "long.mp4"
    write_video(path, noise_clip(240, 64, 96), quality=5)
    n = V.count_frames(path)
    idx = V.clip_indices(16, n, 4, train=False)            # the middle clip: frames 87..147

    def peak(fn):
        tracemalloc.start()
        try:
            fn()
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    whole = peak(lambda: read_video(path))
    bounded = peak(lambda: V.read_frames(path, idx))
    frame = 64 * 96 * 3
    assert whole >= 240 * frame                             # every frame held at once
    assert bounded < 40 * frame and bounded < whole / 6, (bounded, whole)


def test_count_frames_errors_name_the_file(tmp_path):
    pytest.importorskip("imageio_ffmpeg")
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "junk.mp4").write_bytes(b"junk" * 10)
    for name in ("empty.mp4", "junk.mp4"):
        with pytest.raises(ValueError, match=f"could not read .*{name} as a video|{name} holds no frames"):
            V.count_frames(tmp_path / name)
    with pytest.raises(FileNotFoundError, match="no video at"):
        V.count_frames(tmp_path / "missing.mp4")
    with pytest.raises(ValueError, match="indices must be a non-empty 1-D array"):
        V.read_frames(tmp_path / "junk.mp4", [])
