"""Video files in and out, and which frames of a video to feed the model.

    frames = read_video("clip.mp4")                       # (T, H, W, C) uint8, every frame
    n = count_frames("clip.mp4")                          # from the container's metadata
    idx = clip_indices(16, n, stride=4, rng=0)            # which 16 frames a clip takes
    clip = read_frames("clip.mp4", idx)                   # (16, H, W, C): decodes up to idx.max() only
    idx = sample_frame_indices(16, 4, len(frames), rng=0) # a strided clip at a random start
    idx = segment_frame_indices(16, len(frames), rng=0)   # one frame per segment (TSN / SSv2 style)
    batch = processor(frames[idx], return_tensors="np")

Files go through imageio: GIF through Pillow, MP4 / WebM / AVI / MOV / MKV through the
``imageio-ffmpeg`` package (which ships its own ffmpeg binary), and a folder of images is read as
the frames of one video, in name order with digits compared as numbers (frame_2 before frame_10).
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

GIF_EXTENSIONS = (".gif",)
FFMPEG_EXTENSIONS = (".mp4", ".m4v", ".webm", ".avi", ".mov", ".mkv")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
WRITE_EXTENSIONS = (".gif", ".mp4")
DEFAULT_FPS = 10.0
DEFAULT_MP4_QUALITY = 8    # imageio-ffmpeg's 0..10 scale; 8 -> libx264 crf 10, visually lossless
FFMPEG_PACKAGE = "imageio-ffmpeg"


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------

def read_video(path) -> np.ndarray:
    """All frames of a video file or of a folder of images -> (T, H, W, C) uint8.

    Holds the whole video in memory; to feed a model, count_frames + clip_indices + read_frames
    decode only the frames of a clip.

    C is 3 for GIF and MP4 (greyscale GIFs come back as three equal channels); a folder of images
    keeps what the images hold (1 for greyscale, 3 for RGB, 4 with transparency).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no video at {path}")
    if path.is_dir():
        return _read_folder(path)
    ext = path.suffix.lower()
    if ext in GIF_EXTENSIONS:
        frames = _read_with_imageio(path, {"plugin": "pillow"})
    elif ext in FFMPEG_EXTENSIONS:
        _require_ffmpeg(f"reading {ext} files")
        frames = _read_with_imageio(path, {"plugin": "FFMPEG"})
    else:
        raise ValueError(f"cannot read {path.name}: expected a video with one of the extensions "
                         f"{', '.join(GIF_EXTENSIONS + FFMPEG_EXTENSIONS)}, or a folder of images")
    return _as_video(frames, path)


def _read_with_imageio(path: Path, options: dict) -> np.ndarray:
    import imageio.v3 as iio
    try:
        return iio.imread(path, index=None, **options)
    except Exception as e:  # imageio and ffmpeg raise many kinds; all mean "not a readable video"
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"could not read {path} as a video: {reason}") from e


def _natural_key(name: str):
    return [(0, int(part), "") if part.isdigit() else (1, 0, part.lower())
            for part in re.split(r"(\d+)", name) if part]


def _read_folder(folder: Path) -> np.ndarray:
    files = _frame_files(folder)
    frames = []
    for f in files:
        img = _read_image(f, folder)
        if frames and img.shape != frames[0].shape:
            raise ValueError(f"frames in {folder} must share a size: {files[0].name} is "
                             f"{_shape_str(frames[0].shape)}, {f.name} is {_shape_str(img.shape)}")
        frames.append(img)
    return _as_video(np.stack(frames), folder)


def _as_video(frames: np.ndarray, source: Path) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[0] == 0:
        raise ValueError(f"{source} holds no frames (decoded shape {frames.shape})")
    if frames.dtype != np.uint8:
        raise ValueError(f"{source} decodes to {frames.dtype} pixels; expected 8-bit (uint8) frames")
    return frames


def _shape_str(shape):
    return f"{shape[0]}x{shape[1]} with {shape[2]} channel(s)"


def _require_ffmpeg(what: str):
    import importlib
    try:
        importlib.import_module("imageio_ffmpeg")
    except ImportError:
        raise ImportError(f"{what} needs the {FFMPEG_PACKAGE} package, which is not installed: "
                          f"pip install {FFMPEG_PACKAGE}") from None


# --------------------------------------------------------------------------------------------
# Bounded-memory reading: only the frames a clip needs
# --------------------------------------------------------------------------------------------

@dataclass
class ReadStats:
    """What the last bounded read cost: frames decoded (and dropped unless needed), frames kept;
    with clamp=True, how many asked-for indices lay past the real end (`clamped`) and the real
    frame count then found (`frames`, else None)."""
    decoded: int = 0
    kept: int = 0
    clamped: int = 0
    frames: int | None = None


last_read = ReadStats()      # updated by read_frames; tests and progress lines read it


def _frame_files(folder: Path):
    files = sorted((f for f in folder.iterdir()
                    if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS),
                   key=lambda f: _natural_key(f.name))
    if not files:
        raise ValueError(f"no image frames in folder {folder}: expected files ending in "
                         f"{', '.join(IMAGE_EXTENSIONS)}")
    return files


def _video_kind(path: Path) -> str:
    if not path.exists():
        raise FileNotFoundError(f"no video at {path}")
    if path.is_dir():
        return "folder"
    ext = path.suffix.lower()
    if ext in GIF_EXTENSIONS:
        return "gif"
    if ext in FFMPEG_EXTENSIONS:
        _require_ffmpeg(f"reading {ext} files")
        return "ffmpeg"
    raise ValueError(f"cannot read {path.name}: expected a video with one of the extensions "
                     f"{', '.join(GIF_EXTENSIONS + FFMPEG_EXTENSIONS)}, or a folder of images")


def _unreadable(path, e):
    reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return ValueError(f"could not read {path} as a video: {reason}")


def count_frames(path, exact=False) -> int:
    """The number of frames of a video file or folder of images, keeping none of them in memory.

    MP4 & co.: the container's metadata (duration x frame rate, as ffmpeg reports them when it
    opens the file: one short ffmpeg call, nothing decoded) -- an estimate that can be off by a
    frame or two, or more for a variable frame rate or an audio track longer than the video.
    read_frames(..., clamp=True) takes a frame past the real end as the last frame and says so.
    Where the metadata has no duration or rate, and with exact=True, ffmpeg decodes the stream to
    nowhere and counts (exact, but a full decode). GIF: Pillow's frame count; folder: the number of
    image files. 0 frames is an error.
    """
    path = Path(path)
    kind = _video_kind(path)
    if kind == "folder":
        return len(_frame_files(path))
    n = None
    if kind == "ffmpeg" and not exact:
        n = frames_from_metadata(ffmpeg_metadata(path))      # None: no duration or rate to trust
    try:
        if kind == "gif":
            from PIL import Image
            with Image.open(path) as img:
                n = int(getattr(img, "n_frames", 1))
        elif n is None:
            import imageio_ffmpeg
            n = int(imageio_ffmpeg.count_frames_and_secs(str(path))[0])
    except Exception as e:  # ffmpeg and Pillow raise many kinds; all mean "not a readable video"
        raise _unreadable(path, e) from e
    if n < 1:
        raise ValueError(f"{path} holds no frames (decoded 0)")
    return n


def ffmpeg_metadata(path) -> dict:
    """What ffmpeg reports when it opens a video (fps, duration in s, size, codec): the header
    only -- ffmpeg is stopped before it has decoded anything we keep."""
    import imageio_ffmpeg
    gen = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24")
    try:
        return dict(next(gen))
    except Exception as e:
        raise _unreadable(path, e) from e
    finally:
        gen.close()


def frames_from_metadata(meta: dict):
    """round(duration x fps) (imageio's own estimate), or None when either is missing or 0."""
    fps, duration = meta.get("fps") or 0, meta.get("duration") or 0
    try:
        fps, duration = float(fps), float(duration)
    except (TypeError, ValueError):
        return None
    if not (fps > 0 and duration > 0 and np.isfinite(fps * duration)):
        return None
    return max(int(round(duration * fps)), 1)


def iter_frames(path):
    """Yield the (H, W, C) uint8 frames of a video one at a time; only one is alive at once."""
    path = Path(path)
    kind = _video_kind(path)
    if kind == "folder":
        for f in _frame_files(path):
            yield _read_image(f, path)
        return
    if kind == "gif":
        import imageio.v3 as iio
        try:
            for frame in iio.imiter(path, plugin="pillow"):
                yield _rgb(frame)
        except Exception as e:
            raise _unreadable(path, e) from e
        return
    import imageio_ffmpeg
    gen = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24")
    try:
        try:
            meta = next(gen)
            w, h = meta["size"]
        except Exception as e:
            raise _unreadable(path, e) from e
        while True:
            try:
                data = next(gen)
            except StopIteration:
                return
            except Exception as e:
                raise _unreadable(path, e) from e
            yield np.frombuffer(data, np.uint8).reshape(h, w, 3)
    finally:
        gen.close()                      # stops ffmpeg: nothing after the last needed frame is decoded


def _rgb(frame):
    frame = np.asarray(frame)
    if frame.ndim == 2:
        frame = np.repeat(frame[:, :, None], 3, axis=-1)
    return frame


def _read_image(f: Path, folder: Path):
    import imageio.v3 as iio
    try:
        img = iio.imread(f, plugin="pillow")
    except Exception as e:
        raise ValueError(f"could not read frame {f.name} in {folder}: {e}") from e
    img = img[:, :, None] if img.ndim == 2 else img
    if img.dtype != np.uint8:
        raise ValueError(f"{folder} decodes to {img.dtype} pixels; expected 8-bit (uint8) frames")
    return img


def read_frames(path, indices, clamp=False) -> np.ndarray:
    """Only the frames at ``indices`` (any order, repeats allowed) -> (len(indices), H, W, C) uint8.

    Frames are decoded in stream order and dropped unless an index asks for them; decoding stops
    after the largest index, so memory holds len(indices) frames, never the video. A folder of
    images reads just the files asked for. An index past the end is an error naming the count --
    unless clamp=True (the indices came from a metadata estimate, count_frames): then it takes the
    last frame, and ``last_read.clamped`` / ``last_read.frames`` say how many and what the real
    count is, for the caller to report. A video with no frame at all is an error either way.
    """
    path = Path(path)
    idx = np.asarray(indices)
    if idx.ndim != 1 or idx.size == 0 or not np.issubdtype(idx.dtype, np.integer) or idx.min() < 0:
        raise ValueError(f"indices must be a non-empty 1-D array of frame numbers >= 0, got {indices!r}")
    idx = idx.astype(np.int64)
    wanted = np.unique(idx)
    last = int(wanted[-1])
    kept = {}
    stats = ReadStats()
    if path.is_dir():
        files = _frame_files(path)
        if last >= len(files):
            if not clamp:
                raise ValueError(f"{path} has {len(files)} frames; frame {last} was asked for")
            stats.frames = len(files)
            wanted = np.unique(np.minimum(wanted, len(files) - 1))
        for i in wanted:
            kept[int(i)] = _read_image(files[int(i)], path)
            stats.decoded += 1
    else:
        want = set(int(i) for i in wanted)
        gen = iter_frames(path)
        frame = None
        try:
            for i, frame in enumerate(gen):
                stats.decoded += 1
                if i in want:
                    kept[i] = frame
                if i >= last:
                    break
        finally:
            gen.close()
        if last not in kept:
            if not clamp or frame is None:
                what = "no frame" if frame is None else f"{stats.decoded} frames"
                raise ValueError(f"{path} has {what}; frame {last} was asked for")
            stats.frames = stats.decoded
            kept[stats.decoded - 1] = frame          # the last frame the stream held
    if stats.frames is not None:
        past = idx >= stats.frames
        stats.clamped = int(past.sum())
        idx = np.where(past, stats.frames - 1, idx)
    shapes = {f.shape for f in kept.values()}
    if len(shapes) > 1:
        raise ValueError(f"frames in {path} must share a size, found {sorted(shapes)}")
    stats.kept = len(kept)
    last_read.decoded, last_read.kept = stats.decoded, stats.kept
    last_read.clamped, last_read.frames = stats.clamped, stats.frames
    return np.stack([kept[int(i)] for i in idx])


def clamp_note(path, expected, stats: ReadStats) -> str | None:
    """The line that says a read was clamped (None if it was not)."""
    if not stats.clamped:
        return None
    return (f"note: {path} holds {stats.frames} frames, not the {expected} counted when it was opened; "
            f"frames past the end were taken as its last frame")


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------

def write_video(path, frames, fps=DEFAULT_FPS, quality=DEFAULT_MP4_QUALITY):
    """Write (T, H, W, C) uint8 frames (C = 1 or 3; or (T, H, W) greyscale) as .gif or .mp4.

    GIF keeps exact colours when the video has at most 256 of them, but its writer (Pillow) merges
    identical consecutive frames into one longer frame, so such a video reads back shorter; a
    warning says so. MP4 is H.264 (yuv420p), lossy, and needs even height and width. ``quality``
    (0..10) applies to MP4 only.
    """
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in WRITE_EXTENSIONS:
        raise ValueError(f"cannot write {path.name}: expected one of the extensions "
                         f"{', '.join(WRITE_EXTENSIONS)}")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"cannot write {path}: folder {path.parent} does not exist")
    frames = _frames_to_write(frames)
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not fps > 0:
        raise ValueError(f"fps must be a positive number, got {fps!r}")
    import imageio.v3 as iio
    t, h, w, c = frames.shape
    if ext == ".gif":
        same = [i for i in range(1, t) if np.array_equal(frames[i], frames[i - 1])]
        if same:
            warnings.warn(f"frames {same[:5]} repeat the frame before them; the GIF writer merges "
                          f"them, so reading {path.name} back gives {t - len(same)} frames, not {t}",
                          stacklevel=2)
        data = frames[..., 0] if c == 1 else frames
        iio.imwrite(path, data, plugin="pillow", extension=".gif", duration=1000.0 / fps, loop=0)
        return
    _require_ffmpeg("writing .mp4 files")
    if h % 2 or w % 2:
        raise ValueError(f"MP4 (H.264, yuv420p) needs an even height and width, got {h}x{w}; "
                         f"crop or pad the frames first")
    if isinstance(quality, bool) or not isinstance(quality, (int, float)) or not 0 <= quality <= 10:
        raise ValueError(f"quality must be a number in [0, 10], got {quality!r}")
    data = np.repeat(frames, 3, axis=-1) if c == 1 else frames
    iio.imwrite(path, data, plugin="FFMPEG", fps=fps, quality=quality, macro_block_size=1,
                codec="libx264")


def _frames_to_write(frames) -> np.ndarray:
    if not isinstance(frames, np.ndarray):
        if isinstance(frames, (list, tuple)) and frames and all(isinstance(f, np.ndarray) for f in frames):
            shapes = {f.shape for f in frames}
            if len(shapes) > 1:
                raise ValueError(f"frames must share a shape, got {sorted(shapes)}")
            frames = np.stack(frames)
        else:
            raise TypeError(f"frames must be a (T, H, W, C) uint8 array or a list of (H, W, C) "
                            f"arrays, got {type(frames).__name__}")
    if frames.dtype != np.uint8:
        raise TypeError(f"frames must be uint8, got {frames.dtype} (scale floats to 0..255 and "
                        f"cast first)")
    if frames.ndim == 3:
        frames = frames[..., None]
    if frames.ndim != 4:
        raise ValueError(f"frames must be (T, H, W, C) or (T, H, W), got shape {frames.shape}")
    if frames.shape[0] == 0:
        raise ValueError("no frames to write (T = 0)")
    if frames.shape[-1] not in (1, 3):
        raise ValueError(f"frames must have 1 or 3 channels (channels last), got shape {frames.shape}")
    return np.ascontiguousarray(frames)


# --------------------------------------------------------------------------------------------
# Which frames
# --------------------------------------------------------------------------------------------

def _generator(rng) -> np.random.Generator:
    if rng is None:
        return np.random.default_rng()
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    raise TypeError(f"rng must be a numpy Generator, an int seed or None, got {type(rng).__name__}")


def _positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def sample_frame_indices(clip_len, frame_sample_rate, seg_len, rng=None) -> np.ndarray:
    """A clip of ``clip_len`` frames taken every ``frame_sample_rate`` frames from a video of
    ``seg_len`` frames, starting at a uniformly random frame -> (clip_len,) int64, non-decreasing.

    The clip covers (clip_len - 1) * rate + 1 frames; a video shorter than that is covered
    evenly from its first to its last frame instead (indices repeat if it has fewer than clip_len
    frames). A fractional rate is allowed (offsets are floored). rng: Generator, int seed or None.
    """
    clip_len = _positive_int(clip_len, "clip_len")
    seg_len = _positive_int(seg_len, "seg_len")
    if isinstance(frame_sample_rate, bool) or not isinstance(frame_sample_rate, (int, float, np.number)) \
            or not frame_sample_rate > 0:
        raise ValueError(f"frame_sample_rate must be a positive number, got {frame_sample_rate!r}")
    gen = _generator(rng)
    offsets = np.floor(np.arange(clip_len) * float(frame_sample_rate)).astype(np.int64)
    span = int(offsets[-1]) + 1
    if span > seg_len:
        return np.floor(np.linspace(0, seg_len - 1, clip_len)).astype(np.int64)
    start = int(gen.integers(0, seg_len - span + 1))
    return start + offsets


def segment_frame_indices(num_segments, seg_len, rng=None, train=True) -> np.ndarray:
    """One frame from each of ``num_segments`` equal segments of a ``seg_len``-frame video
    (TSN / Something-Something style) -> (num_segments,) int64, non-decreasing.

    Segment i spans frames [i * seg_len // n, (i + 1) * seg_len // n). Training picks a uniformly
    random frame in each segment; evaluation (train=False) picks the middle one and needs no rng.
    With fewer frames than segments, some segments are empty and reuse their start frame.
    """
    n = _positive_int(num_segments, "num_segments")
    seg_len = _positive_int(seg_len, "seg_len")
    bounds = np.arange(n + 1, dtype=np.int64) * seg_len // n
    starts, lengths = bounds[:-1], np.diff(bounds)
    if train:
        offsets = _generator(rng).integers(0, np.maximum(lengths, 1))
    else:
        offsets = lengths // 2
    return starts + offsets.astype(np.int64)


def clip_span(clip_len, frame_sample_rate) -> int:
    """Frames a strided clip covers from its first to its last frame: (clip_len - 1) * rate + 1.

    (Not clip_len * rate: the original VideoMAE loader asked for that many, one stride more than
    the clip needs, and so skipped videos that were long enough -- MCG-NJU/VideoMAE issue 97.)
    """
    offsets = np.floor(np.arange(_positive_int(clip_len, "clip_len")) * float(frame_sample_rate))
    return int(offsets[-1]) + 1


def clip_indices(clip_len, seg_len, stride=4, rng=None, train=True, view=0, views=1) -> np.ndarray:
    """The frames of one clip -> (clip_len,) int64, non-decreasing, all in [0, seg_len).

    stride: an integer -> dense sampling, clip_len consecutive frames every `stride` frames (the
    original's frame_sample_rate; appearance datasets such as Kinetics). None -> segment sampling,
    one frame per equal segment (TSN; motion datasets such as Something-Something).
    train=True draws the start (or the frame of each segment) from rng. train=False is the
    deterministic view `view` of `views` temporal views: dense starts spread evenly from the
    first possible start to the last (one view: the middle), segment frames at
    (view + 1/2) / views of each segment.
    """
    clip_len = _positive_int(clip_len, "clip_len")
    seg_len = _positive_int(seg_len, "seg_len")
    views = _positive_int(views, "views")
    if isinstance(view, bool) or not isinstance(view, (int, np.integer)) or not 0 <= view < views:
        raise ValueError(f"view must be an integer in [0, {views}), got {view!r}")
    if stride is None:
        if train:
            return segment_frame_indices(clip_len, seg_len, rng=rng, train=True)
        bounds = np.arange(clip_len + 1, dtype=np.int64) * seg_len // clip_len
        lengths = np.diff(bounds)
        offsets = np.floor((view + 0.5) / views * lengths).astype(np.int64)
        return bounds[:-1] + np.minimum(offsets, np.maximum(lengths - 1, 0))
    stride = _positive_int(stride, "stride")
    if train:
        return sample_frame_indices(clip_len, stride, seg_len, rng=rng)
    span = clip_span(clip_len, stride)
    if span > seg_len:      # too short: cover it evenly, as sample_frame_indices does
        return np.floor(np.linspace(0, seg_len - 1, clip_len)).astype(np.int64)
    room = seg_len - span
    start = room // 2 if views == 1 else int(round(view * room / (views - 1)))
    return start + np.arange(clip_len, dtype=np.int64) * stride
