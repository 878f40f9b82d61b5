"""VideoMAEImageProcessor: videos in, ``pixel_values`` (B, T, C, H, W) out, equal to transformers.

Every frame goes through the same four steps, each one switchable; the defaults are those of
transformers' VideoMAE processor:

    resize      shortest edge -> 224, Pillow's bilinear filter (antialiased when shrinking)
    crop        centre 224 x 224; a frame smaller than the crop is zero-padded first
    rescale     x * 1/255
    normalise   (x - mean) / std per channel, mean = std = 0.5 ("IMAGENET_STANDARD")

The parity target is transformers' PIL backend (``VideoMAEImageProcessorPil``, which is also what
``transformers.VideoMAEImageProcessor`` becomes when torchvision is missing). Its facts we follow:

- The resize is Pillow's, called exactly as transformers calls it: the frame is turned into 8-bit
  pixels first (float frames with values in [0, 1] are multiplied by 255 and truncated, and
  divided by 255 again after resizing), one channel becomes an "L" image, four an "RGBA" one.
  Calling Pillow rather than rewriting its fixed-point filters keeps every filter and image mode
  exact; the price is that the resize, most of our time, is the same work as transformers'.
- Rescaling goes through float64 and is stored as float32; normalising happens in the dtype of
  the frame (float32 after rescaling).
- Channels-first or channels-last is inferred per frame: a leading axis of 1, 3 or 4 means
  channels-first (also when the last axis would fit too), otherwise a trailing one means
  channels-last.

Where we are faster: after Pillow, every step works on the whole video at once, and for 8-bit
pixels the whole chain (divide back, rescale, normalise) is a 256-entry table per channel, built by
running the very arithmetic above on the 256 possible pixel values. One table look-up per output
value (kernels/gather.py: a Numba kernel that also moves channels first, a NumPy ``take`` as its
reference and as the path when Numba's JIT is off) replaces transformers' three passes, two of
them in float64, with bit-identical results.
"""

from __future__ import annotations

import copy
import json
import math
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from . import kernels
from .fileio import atomic_write_text, read_json_object
from .pixels import IMAGENET_STANDARD_MEAN, IMAGENET_STANDARD_STD   # the default pair (pixels.py)

PROCESSOR_CONFIG_NAME = "preprocessor_config.json"
PROCESSOR_TYPE = "VideoMAEImageProcessor"  # what transformers writes as "image_processor_type"

DEFAULT_SIZE = {"shortest_edge": 224}
DEFAULT_CROP_SIZE = {"height": 224, "width": 224}
DEFAULT_RESCALE_FACTOR = 1 / 255
DEFAULT_RESAMPLE = Image.Resampling.BILINEAR

FRAME_CHANNELS = (1, 3, 4)  # channel counts a frame may have (those transformers can infer)
CHANNELS_FIRST, CHANNELS_LAST = "channels_first", "channels_last"
_LEVELS = 256               # 8-bit pixel values, the domain of the look-up tables

# Allowed key sets of a size dict (transformers' list), and the ones resize understands.
_SIZE_KEY_SETS = ({"height", "width"}, {"shortest_edge"}, {"shortest_edge", "longest_edge"},
                  {"longest_edge"}, {"max_height", "max_width"}, {"min_pixels", "max_pixels"})
_RESIZE_KEY_SETS = ({"height", "width"}, {"shortest_edge"}, {"shortest_edge", "longest_edge"},
                    {"max_height", "max_width"})

# Settings, in the order transformers lists them. Saved to preprocessor_config.json when not None.
_SETTINGS = ("do_convert_rgb", "do_resize", "size", "crop_size", "resample", "do_rescale",
             "rescale_factor", "do_normalize", "image_mean", "image_std", "do_center_crop",
             "data_format", "input_data_format", "return_tensors")
_DEFAULTS = dict(do_convert_rgb=None, do_resize=True, size=DEFAULT_SIZE, crop_size=DEFAULT_CROP_SIZE,
                 resample=DEFAULT_RESAMPLE, do_rescale=True, rescale_factor=DEFAULT_RESCALE_FACTOR,
                 do_normalize=True, image_mean=IMAGENET_STANDARD_MEAN,
                 image_std=IMAGENET_STANDARD_STD, do_center_crop=True, data_format=None,
                 input_data_format=None, return_tensors=None)
# transformers options that do not change what its VideoMAE PIL processor computes: accepted, unused.
_INERT = ("device", "disable_grouping", "image_seq_length", "do_pad", "pad_size")
# Keys of older configs that name a class rather than a setting; dropped on read.
_CLASS_KEYS = ("image_processor_type", "feature_extractor_type", "processor_class")


class BatchFeature(dict):
    """The processor's output: a dict whose keys also read as attributes (``batch.pixel_values``)."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


# --------------------------------------------------------------------------------------------
# Settings: parsing and checking
# --------------------------------------------------------------------------------------------

def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def size_dict(size, default_to_square=True, name="size") -> dict:
    """An int, a (height, width) pair or a dict -> a size dict, as transformers reads them.

    An int means a square when ``default_to_square`` (crop sizes) and a shortest edge otherwise
    (VideoMAE's resize size).
    """
    if isinstance(size, dict):
        d = dict(size)
    elif _is_int(size):
        d = {"height": size, "width": size} if default_to_square else {"shortest_edge": size}
    elif isinstance(size, (tuple, list)) and len(size) == 2:
        d = {"height": size[0], "width": size[1]}
    else:
        try:   # transformers' SizeDict iterates over its (key, value) pairs that are set
            d = dict(size)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be an int, a (height, width) pair or a dict, "
                             f"got {size!r}") from None
    if set(d) not in _SIZE_KEY_SETS:
        raise ValueError(f"{name} must have one of the key sets "
                         f"{[sorted(s) for s in _SIZE_KEY_SETS]}, got {sorted(d)}")
    for k, v in d.items():
        if not _is_int(v) or v < 1:
            raise ValueError(f"{name}[{k!r}] must be a positive integer, got {v!r}")
    return {k: int(v) for k, v in d.items()}


def _resample(value) -> Image.Resampling:
    if isinstance(value, str):
        try:
            return Image.Resampling[value.upper()]
        except KeyError:
            pass
    elif _is_int(value):
        try:
            return Image.Resampling(int(value))
        except ValueError:
            pass
    names = ", ".join(f"{r.name.lower()} ({int(r)})" for r in Image.Resampling)
    raise ValueError(f"resample must be one of Pillow's filters: {names}; got {value!r}")


def _mean_or_std(value, name):
    """A number or a sequence of numbers (one per channel); kept as float or tuple of floats."""
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        seq = (float(value),)
    else:
        try:
            seq = tuple(float(v) for v in np.asarray(value, dtype=np.float64).reshape(-1))
        except (TypeError, ValueError):
            seq = None
        if seq is None or np.ndim(value) != 1 or len(seq) == 0:
            raise ValueError(f"{name} must be a number or a sequence of numbers (one per channel), "
                             f"got {value!r}")
    if not all(math.isfinite(s) for s in seq):
        raise ValueError(f"{name} must hold finite numbers, got {value!r}")
    if name == "image_std" and any(s == 0 for s in seq):
        raise ValueError(f"image_std must not contain 0 (normalising divides by it), got {value!r}")
    return seq[0] if np.ndim(value) == 0 else seq


def _data_format(value, name):
    value = getattr(value, "value", value)          # transformers' ChannelDimension enum
    if value is None or value in (CHANNELS_FIRST, CHANNELS_LAST):
        return value
    raise ValueError(f"{name} must be {CHANNELS_FIRST!r}, {CHANNELS_LAST!r} or None, got {value!r}")


def _return_tensors(value):
    value = getattr(value, "value", value)          # transformers' TensorType enum
    if value is None or value == "np":
        return value
    raise ValueError(f"return_tensors must be 'np' or None (this package returns NumPy arrays), "
                     f"got {value!r}")


def _parse(settings: dict, default_to_square: bool) -> dict:
    """Bring user-given settings to canonical form (None values are left for the caller)."""
    out = {}
    for k, v in settings.items():
        if v is None:
            out[k] = None
        elif k == "size":
            out[k] = size_dict(v, default_to_square, "size")
        elif k == "crop_size":
            out[k] = size_dict(v, True, "crop_size")
        elif k == "resample":
            out[k] = _resample(v)
        elif k in ("image_mean", "image_std"):
            out[k] = _mean_or_std(v, k)
        elif k == "rescale_factor":
            if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
                raise ValueError(f"rescale_factor must be a number, got {v!r}")
            out[k] = float(v)
        elif k in ("data_format", "input_data_format"):
            out[k] = _data_format(v, k)
        elif k == "return_tensors":
            out[k] = _return_tensors(v)
        else:  # the do_* switches
            out[k] = bool(v)
    if out.get("data_format") == CHANNELS_LAST:
        raise ValueError("data_format='channels_last' is not supported: pixel_values are always "
                         "(B, T, C, H, W), as the model expects")
    return out


def _check_consistent(o: dict):
    """Each switched-on step needs its parameters (transformers' checks, same order)."""
    if o["do_rescale"] and o["rescale_factor"] is None:
        raise ValueError("rescale_factor must be given when do_rescale is True")
    if o["do_normalize"] and (o["image_mean"] is None or o["image_std"] is None):
        raise ValueError("image_mean and image_std must both be given when do_normalize is True")
    if o["do_center_crop"]:
        if o["crop_size"] is None or set(o["crop_size"]) != {"height", "width"}:
            raise ValueError(f"crop_size must have keys 'height' and 'width' when do_center_crop is "
                             f"True, got {o['crop_size']!r}")
    if o["do_resize"]:
        if o["size"] is None or o["resample"] is None:
            raise ValueError("size and resample must be given when do_resize is True")
        if set(o["size"]) not in _RESIZE_KEY_SETS:
            raise ValueError(f"size for resizing must have keys {[sorted(s) for s in _RESIZE_KEY_SETS]}, "
                             f"got {sorted(o['size'])}")


# --------------------------------------------------------------------------------------------
# Output sizes (transformers' arithmetic, integer truncation included)
# --------------------------------------------------------------------------------------------

def resize_output_size(hw, size: dict) -> tuple[int, int]:
    """(height, width) of a frame of size hw after resizing with the size dict ``size``."""
    h, w = hw
    if "shortest_edge" in size and "longest_edge" in size:
        return _fit_shortest_and_longest(h, w, size["shortest_edge"], size["longest_edge"])
    if "shortest_edge" in size:
        s = size["shortest_edge"]
        short, long = (w, h) if w <= h else (h, w)
        new_long = int(s * long / short)
        return (new_long, s) if w <= h else (s, new_long)
    if "max_height" in size:
        scale = min(size["max_height"] / h, size["max_width"] / w)
        return int(h * scale), int(w * scale)
    return size["height"], size["width"]


def _fit_shortest_and_longest(h, w, shortest, longest):
    """Shortest edge -> ``shortest`` unless that makes the longest edge exceed ``longest``."""
    lo, hi = float(min(h, w)), float(max(h, w))
    raw = None
    if hi / lo * shortest > longest:
        raw = longest * lo / hi
        shortest = int(round(raw))
    if (h <= w and h == shortest) or (w <= h and w == shortest):
        return h, w
    if w < h:
        return (int(raw * h / w) if raw is not None else int(shortest * h / w)), shortest
    return shortest, (int(raw * w / h) if raw is not None else int(shortest * w / h))


# --------------------------------------------------------------------------------------------
# Inputs: structure, frames, layout
# --------------------------------------------------------------------------------------------

def _is_pil(x) -> bool:
    return isinstance(x, Image.Image)


def _is_torch(x) -> bool:
    return type(x).__module__.split(".")[0] == "torch" and hasattr(x, "numpy")


def _is_frame_like(x) -> bool:
    return isinstance(x, np.ndarray) or _is_pil(x) or _is_torch(x)


def _ndim(x) -> int | None:
    return None if _is_pil(x) else x.ndim


def _as_videos(videos) -> list[list]:
    """Any accepted input -> a list of videos, each a list of frames (arrays, PIL or torch).

    Accepted: a frame (3-D array or a PIL image), a video (4-D array or a list of frames), a batch
    (a list of videos given as lists or 4-D arrays, or a 5-D array).
    """
    if _is_frame_like(videos):
        nd = _ndim(videos)
        if nd is None or nd == 3:
            return [[videos]]
        if nd == 4:
            return [list(videos)]
        if nd == 5:
            return [list(v) for v in videos]
        raise ValueError(f"expected a frame (3-D array), a video (4-D) or a batch of videos (5-D), "
                         f"got an array of shape {tuple(videos.shape)}")
    if not isinstance(videos, (list, tuple)):
        raise TypeError(f"expected a video (array or list of frames) or a batch of videos, got "
                        f"{type(videos).__name__}")
    if len(videos) == 0:
        raise ValueError("expected at least one video, got an empty list")
    if all(isinstance(v, (list, tuple)) for v in videos):
        return [list(v) for v in videos]
    if all(_is_frame_like(v) for v in videos):
        nd = _ndim(videos[0])
        if nd is None or nd == 3:
            return [list(videos)]
        if nd == 4:
            return [list(v) for v in videos]
        raise ValueError(f"expected a list of frames (3-D arrays) or of videos (4-D arrays), got "
                         f"an array of shape {tuple(videos[0].shape)} first")
    kinds = sorted({type(v).__name__ for v in videos})
    raise TypeError(f"expected a list of frames (arrays or PIL images) or of videos (lists or "
                    f"4-D arrays), got a list holding {', '.join(kinds)}")


def _check_dtype(a: np.ndarray, where: str):
    if a.dtype.kind not in "uif":
        raise TypeError(f"{where} has dtype {a.dtype}; expected uint8, another integer type or a "
                        f"float type")
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        raise ValueError(f"{where} contains NaN or infinite values")


def infer_layout(shape) -> str:
    """channels_first / channels_last of a frame of this shape, as transformers infers it."""
    first, last = shape[0] in FRAME_CHANNELS, shape[-1] in FRAME_CHANNELS
    if first:
        return CHANNELS_FIRST
    if last:
        return CHANNELS_LAST
    raise ValueError(f"cannot find the channel axis of a frame of shape {tuple(shape)}: expected "
                     f"{' or '.join(map(str, FRAME_CHANNELS))} channels in the first or last axis "
                     f"(pass input_data_format if the layout is known)")


def _pil_to_rgb(img: Image.Image) -> np.ndarray:
    """A PIL image as RGB (H, W, 3), transparency composited onto white (transformers' way)."""
    if "A" in img.getbands() or img.info.get("transparency") is not None:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"))
    return np.asarray(img.convert("RGB"))


def _array_to_rgb(hwc: np.ndarray, where: str) -> np.ndarray:
    """(H, W, 1|3|4) -> (H, W, 3): grey repeated, RGBA composited onto white (transformers' way)."""
    c = hwc.shape[-1]
    if c == 1:
        return np.repeat(hwc, 3, axis=-1)
    if c != 4:
        return hwc
    integer = hwc.dtype.kind in "ui"
    if not integer and (hwc.min() < 0.0 or hwc.max() > 1.0):
        raise ValueError(f"{where}: an RGBA float frame must hold values in [0, 1] to be "
                         f"converted to RGB, found [{hwc.min()}, {hwc.max()}]")
    white = 255 if integer else 1.0
    alpha = hwc[..., 3:4] / white
    blended = alpha * hwc[..., :3] + (1 - alpha) * white
    return (np.round(blended) if integer else blended).astype(hwc.dtype)


def _frame_hwc(frame, fmt, to_rgb, where, ambiguous: set) -> np.ndarray:
    """One input frame -> an (H, W, C) NumPy array, C in FRAME_CHANNELS (3 when to_rgb).
    Shapes whose layout had to be guessed are added to ``ambiguous``."""
    if _is_pil(frame):
        a = _pil_to_rgb(frame) if to_rgb else np.asarray(frame)
        if a.ndim == 2:
            a = a[:, :, None]
        _check_dtype(a, where)
        if a.shape[-1] not in FRAME_CHANNELS:
            raise ValueError(f"{where} is a PIL image of mode {frame.mode} with {a.shape[-1]} "
                             f"channels; expected {', '.join(map(str, FRAME_CHANNELS))}")
        return a
    if _is_torch(frame):
        frame = frame.detach().cpu().numpy()
    elif not isinstance(frame, np.ndarray):
        raise TypeError(f"{where} is a {type(frame).__name__}; expected a NumPy array, a PIL image "
                        f"or a torch tensor")
    if frame.ndim != 3:
        raise ValueError(f"{where} has shape {frame.shape}; expected a 3-D frame (C, H, W) or "
                         f"(H, W, C)")
    _check_dtype(frame, where)
    layout = fmt or infer_layout(frame.shape)
    if fmt is None and frame.shape[0] in FRAME_CHANNELS and frame.shape[-1] in FRAME_CHANNELS:
        ambiguous.add(frame.shape)
    a = np.moveaxis(frame, 0, -1) if layout == CHANNELS_FIRST else frame
    if a.shape[-1] not in FRAME_CHANNELS:
        raise ValueError(f"{where} has {a.shape[-1]} channels ({layout}, shape {frame.shape}); "
                         f"expected {', '.join(map(str, FRAME_CHANNELS))}")
    return _array_to_rgb(a, where) if to_rgb else a


def _video_frames(frames, fmt, to_rgb, v, ambiguous) -> list[np.ndarray]:
    """The frames of video number v as (H, W, C) arrays of one shape and one dtype."""
    if len(frames) == 0:
        raise ValueError(f"video {v} has no frames")
    out = [_frame_hwc(f, fmt, to_rgb, f"video {v}, frame {t}", ambiguous)
           for t, f in enumerate(frames)]
    if 0 in out[0].shape[:2]:
        raise ValueError(f"video {v}, frame 0 is empty ({_hwc_str(out[0])}); expected a frame "
                         f"of at least 1x1 pixels")
    for t, a in enumerate(out[1:], 1):
        if a.shape != out[0].shape:
            raise ValueError(f"frames of one video must share a size: video {v} frame 0 is "
                             f"{_hwc_str(out[0])}, frame {t} is {_hwc_str(a)}")
        if a.dtype != out[0].dtype:
            raise ValueError(f"frames of one video must share a dtype: video {v} frame 0 is "
                             f"{out[0].dtype}, frame {t} is {a.dtype}")
    return out


def _looks_rescaled(frames: list[np.ndarray]) -> bool:
    """Float frames all within [0, 1]: transformers' "already rescaled" test (is_scaled_image)."""
    return (frames[0].dtype.kind == "f" and min(f.min() for f in frames) >= 0
            and max(f.max() for f in frames) <= 1)


def _hwc_str(a):
    h, w, c = a.shape
    return f"{h}x{w} with {c} channel(s)"


# --------------------------------------------------------------------------------------------
# The steps
# --------------------------------------------------------------------------------------------

def _to_pillow_pixels(frame: np.ndarray, where: str) -> tuple[np.ndarray, bool]:
    """(H, W, C) frame -> (uint8 pixels for Pillow, whether they were scaled up by 255).

    transformers' rule: uint8 passes; whole-number values in [0, 255] are cast; otherwise values
    in [0, 1] are taken as scaled images, multiplied by 255 (float64, stored as float32) and cast.
    """
    if frame.dtype == np.uint8:
        return frame, False
    if np.allclose(frame, frame.astype(int)):
        if frame.min() >= 0 and frame.max() <= 255:
            return frame.astype(np.uint8), False
        raise ValueError(f"{where} holds whole numbers outside [0, 255] (found "
                         f"[{frame.min()}, {frame.max()}]); expected 8-bit pixel values")
    if frame.min() >= 0 and frame.max() <= 1:
        return (frame.astype(np.float64) * 255).astype(np.float32).astype(np.uint8), True
    raise ValueError(f"{where} holds fractional values outside [0, 1] (found "
                     f"[{frame.min()}, {frame.max()}]); expected pixels in [0, 255] or in [0, 1]")


def _resize_video(frames, out_hw, resample, v) -> tuple[np.ndarray, np.ndarray]:
    """Resize each (H, W, C) frame with Pillow -> (T, h, w, C) uint8 and (T,) bool "was scaled"."""
    h, w = out_hw
    if h < 1 or w < 1:
        raise ValueError(f"video {v}: resizing {frames[0].shape[0]}x{frames[0].shape[1]} frames "
                         f"gives an empty {h}x{w} frame; choose a larger size")
    c = frames[0].shape[-1]
    out = np.empty((len(frames), h, w, c), np.uint8)
    scaled = np.zeros(len(frames), bool)
    for t, f in enumerate(frames):
        pixels, scaled[t] = _to_pillow_pixels(f, f"video {v}, frame {t}")
        if pixels.shape[:2] == (h, w):          # Pillow returns a copy for an unchanged size
            out[t] = pixels
            continue
        img = _pillow_image(pixels)
        out[t] = np.asarray(img.resize((w, h), resample=resample)).reshape(h, w, c)
    return out, scaled


def _pillow_image(pixels: np.ndarray) -> Image.Image:
    """(H, W, C) uint8 of any strides -> the PIL image transformers makes ("L", "RGB", "RGBA")."""
    c = pixels.shape[-1]
    if c == 1:
        return Image.fromarray(np.ascontiguousarray(pixels[:, :, 0]))
    if pixels.flags.c_contiguous:
        return Image.fromarray(pixels)
    # channels-first data: Pillow interleaves the planes ten times faster than a NumPy transpose
    planes = [Image.fromarray(np.ascontiguousarray(pixels[:, :, k])) for k in range(c)]
    return Image.merge("RGB" if c == 3 else "RGBA", planes)


def center_crop(x: np.ndarray, crop_hw) -> np.ndarray:
    """(T, H, W, C) -> (T, ch, cw, C): the centre window, zero-padded where the frame is smaller.

    The window starts at (H - ch) // 2; a frame smaller than the crop is first centred on a zero
    canvas, with the odd padding pixel after it. (transformers' numpy center_crop.)
    """
    ch, cw = crop_hw
    h, w = x.shape[1:3]
    top, left = (h - ch) // 2, (w - cw) // 2
    if top >= 0 and left >= 0:
        return x[:, top:top + ch, left:left + cw]
    nh, nw = max(ch, h), max(cw, w)
    pad_top, pad_left = math.ceil((nh - h) / 2), math.ceil((nw - w) / 2)
    canvas = np.zeros((x.shape[0], nh, nw, x.shape[3]), x.dtype)
    canvas[:, pad_top:pad_top + h, pad_left:pad_left + w] = x
    top, left = top + pad_top, left + pad_left
    return canvas[:, max(0, top):min(nh, top + ch), max(0, left):min(nw, left + cw)]


def _per_channel(value, c, name):
    if isinstance(value, tuple):
        if len(value) != c:
            raise ValueError(f"{name} has {len(value)} values but the frames have {c} channel(s)")
        return value
    return (value,) * c


def value_chain(x: np.ndarray, o: dict) -> np.ndarray:
    """Rescale and normalise x (..., C) elementwise, with transformers' dtypes and operation order.

    rescale:   float32(float64(x) * factor)
    normalise: (x - mean) / std in x's float dtype (float32 if x is not a float array)
    """
    if o["do_rescale"]:
        x = (x.astype(np.float64) * o["rescale_factor"]).astype(np.float32)
    if o["do_normalize"]:
        if x.dtype.kind != "f":
            x = x.astype(np.float32)
        c = x.shape[-1]
        mean = np.array(_per_channel(o["image_mean"], c, "image_mean"), dtype=x.dtype)
        std = np.array(_per_channel(o["image_std"], c, "image_std"), dtype=x.dtype)
        x = (x - mean) / std
    return x


def _lookup_tables(c, scaled_back, o) -> np.ndarray:
    """(256, C) table: pixel value -> output value of the chain after the resize, per channel."""
    levels = np.repeat(np.arange(_LEVELS, dtype=np.uint8)[:, None], c, axis=1)
    if scaled_back:   # frames that were multiplied by 255 for Pillow come back divided by 255
        levels = (levels.astype(np.float64) * (1 / 255)).astype(np.float32)
    return value_chain(levels, o)


def _apply_tables(x: np.ndarray, scaled: np.ndarray, o: dict, out=None) -> np.ndarray:
    """(T, h, w, C) uint8 -> (T, C, h, w) through the per-channel tables, one gather per value.
    Written into ``out`` when it has the right shape and dtype, else into a new array."""
    t, h, w, c = x.shape
    tables = {flag: _lookup_tables(c, flag, o) for flag in np.unique(scaled).tolist()}
    dtype = np.result_type(*tables.values())
    tables = {flag: table.astype(dtype) for flag, table in tables.items()}
    if out is None or out.shape != (t, c, h, w) or out.dtype != dtype:
        out = np.empty((t, c, h, w), dtype)
    if len(tables) == 1:
        kernels.gather_tables(x, tables[bool(scaled[0])], out)
    else:  # frames that were and were not scaled for Pillow, in one video: one frame at a time
        for i in range(t):
            kernels.gather_tables(x[i:i + 1], tables[bool(scaled[i])], out[i:i + 1])
    return out


# --------------------------------------------------------------------------------------------
# The processor
# --------------------------------------------------------------------------------------------

class VideoMAEImageProcessor:
    """Turns videos into ``pixel_values`` (B, T, C, H, W), exactly like transformers' processor.

    Constructor arguments are transformers' (same names, defaults and None-means-default rule):
    do_resize, size ({"shortest_edge": 224}; an int is a shortest edge, a pair is (height, width)),
    resample (Pillow filter, bilinear), do_center_crop, crop_size ({"height": 224, "width": 224};
    an int is a square), do_rescale, rescale_factor (1/255), do_normalize, image_mean, image_std
    ((0.5, 0.5, 0.5) each), do_convert_rgb (None: frames keep their channels). Every one of them
    can also be overridden per call: ``proc(videos, do_center_crop=False, return_tensors="np")``.
    Other keys (from a config file, say) are kept and written back by ``save_pretrained``.
    """

    model_input_names = ["pixel_values"]

    def __init__(self, do_resize=None, size=None, resample=None, do_center_crop=None,
                 crop_size=None, do_rescale=None, rescale_factor=None, do_normalize=None,
                 image_mean=None, image_std=None, do_convert_rgb=None, default_to_square=None,
                 **kwargs):
        given = dict(do_resize=do_resize, size=size, resample=resample,
                     do_center_crop=do_center_crop, crop_size=crop_size, do_rescale=do_rescale,
                     rescale_factor=rescale_factor, do_normalize=do_normalize,
                     image_mean=image_mean, image_std=image_std, do_convert_rgb=do_convert_rgb)
        for k in _CLASS_KEYS:
            kwargs.pop(k, None)
        for k in ("data_format", "input_data_format", "return_tensors"):
            given[k] = kwargs.pop(k, None)
        # Other keys are kept and written back, like transformers does, unless they are None.
        self.extra = copy.deepcopy({k: v for k, v in kwargs.items() if v is not None})
        self.default_to_square = bool(default_to_square) if default_to_square is not None else False
        self._explicit_square = default_to_square is not None
        parsed = _parse(given, self.default_to_square)
        for k in _SETTINGS:
            v = parsed[k]
            setattr(self, k, copy.deepcopy(_DEFAULTS[k]) if v is None else v)

    # --- the work ------------------------------------------------------------------------------
    def preprocess(self, videos, **overrides) -> BatchFeature:
        """videos -> BatchFeature with "pixel_values".

        videos: a frame, a video (4-D array or list of frames) or a batch (list of videos, or a
        5-D array); frames are (H, W, C) or (C, H, W) arrays (uint8, integers or floats), PIL
        images or torch tensors. Overrides: any constructor argument, plus input_data_format
        ("channels_first" / "channels_last"; inferred per frame when None) and return_tensors
        ("np": one (B, T, C, H, W) array; None: a list of videos, each a list of (C, H, W) frames,
        as transformers returns them).
        """
        o = self._resolve(overrides)
        batch = _as_videos(videos)
        fmt = o["input_data_format"]
        to_rgb = bool(o["do_convert_rgb"])
        ambiguous, scaled_already = set(), []
        stacked = None   # (B, T, C, H, W), allocated after the first video when returning "np"
        results = []
        for v, frames in enumerate(batch):
            slot = stacked[v] if stacked is not None else None
            frames = _video_frames(frames, fmt, to_rgb, v, ambiguous)
            if o["do_rescale"] and _looks_rescaled(frames):
                scaled_already.append(v)
            results.append(self._process_video(frames, o, v, out=slot))
            if v == 0 and o["return_tensors"] is not None and len(batch) > 1:
                stacked = np.empty((len(batch),) + results[0].shape, results[0].dtype)
                stacked[0] = results[0]
        if scaled_already:
            warnings.warn(f"video(s) {scaled_already[:10]}{'...' if len(scaled_already) > 10 else ''}: "
                          f"float frames with every value in [0, 1] look already rescaled, and "
                          f"do_rescale=True multiplies them by rescale_factor={o['rescale_factor']:.6g} "
                          f"again (as transformers does); pass do_rescale=False if they are",
                          stacklevel=2)
        if ambiguous:
            warnings.warn(f"frame shape(s) {sorted(ambiguous)} fit both channels-first and "
                          f"channels-last; assumed channels-first like transformers (pass "
                          f"input_data_format to choose)", stacklevel=2)
        if o["return_tensors"] is None:
            return BatchFeature(pixel_values=[list(r) for r in results])
        if len({r.shape for r in results}) > 1:
            raise ValueError(f"videos have different shapes (T, C, H, W) after preprocessing: "
                             f"{[r.shape for r in results]}; one array needs equal frame counts "
                             f"and sizes (keep do_center_crop=True), or pass return_tensors=None")
        if len(results) == 1:
            return BatchFeature(pixel_values=results[0][None])
        if all(r.base is stacked for r in results[1:]):
            return BatchFeature(pixel_values=stacked)
        return BatchFeature(pixel_values=np.stack(results))   # videos of differing dtypes

    __call__ = preprocess

    def _resolve(self, overrides: dict) -> dict:
        unknown = set(overrides) - set(_SETTINGS) - set(_INERT) - {"default_to_square"}
        if unknown:
            raise TypeError(f"unexpected argument(s) {sorted(unknown)}; the processor takes "
                            f"{', '.join(_SETTINGS + ('default_to_square',))}")
        square = overrides.get("default_to_square")
        square = self.default_to_square if square is None else bool(square)
        given = {k: overrides[k] for k in _SETTINGS if overrides.get(k) is not None}
        o = {k: getattr(self, k) for k in _SETTINGS}
        o.update(_parse(given, square))
        _check_consistent(o)
        return o

    def _process_video(self, frames: list[np.ndarray], o: dict, v: int, out=None) -> np.ndarray:
        """(H, W, C) frames of one video -> (T, C, h, w), in ``out`` if it fits."""
        scaled = np.zeros(len(frames), bool)
        if o["do_resize"]:
            out_hw = resize_output_size(frames[0].shape[:2], o["size"])
            x, scaled = _resize_video(frames, out_hw, o["resample"], v)
        else:
            x = np.stack(frames)
        if o["do_center_crop"]:
            x = center_crop(x, (o["crop_size"]["height"], o["crop_size"]["width"]))
        if x.dtype == np.uint8:
            return _apply_tables(x, scaled, o, out)
        y = value_chain(x, o).transpose(0, 3, 1, 2)
        if out is not None and out.shape == y.shape and out.dtype == y.dtype:
            out[...] = y
            return out
        return np.ascontiguousarray(y)

    # --- configuration files -------------------------------------------------------------------
    def to_dict(self) -> dict:
        """The settings as transformers writes them to preprocessor_config.json."""
        d = {}
        for k in _SETTINGS:
            v = getattr(self, k)
            if v is None:
                continue
            if isinstance(v, tuple):
                v = list(v)
            elif isinstance(v, Image.Resampling):
                v = int(v)
            d[k] = copy.deepcopy(v)
        if self._explicit_square:
            d["default_to_square"] = self.default_to_square
        d.update(copy.deepcopy(self.extra))
        d["image_processor_type"] = PROCESSOR_TYPE
        return d

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, d: dict, **overrides):
        d = dict(d)
        d.update(overrides)
        return cls(**d)

    def save_pretrained(self, save_directory) -> list[str]:
        """Write ``preprocessor_config.json`` into save_directory (created if missing)."""
        path = Path(save_directory)
        if path.exists() and not path.is_dir():
            raise ValueError(f"save_pretrained needs a directory, {path} is a file")
        path.mkdir(parents=True, exist_ok=True)
        file = path / PROCESSOR_CONFIG_NAME
        atomic_write_text(file, self.to_json_string())
        return [str(file)]

    @classmethod
    def from_pretrained(cls, path, **overrides):
        """Read ``preprocessor_config.json`` from a directory (or the file itself); keyword
        arguments override what the file says."""
        path = Path(path)
        file = path / PROCESSOR_CONFIG_NAME if path.is_dir() else path
        if not file.is_file():
            raise FileNotFoundError(f"no {PROCESSOR_CONFIG_NAME} at {file} (expected a directory "
                                    f"written by save_pretrained)")
        d = read_json_object(file)
        try:
            return cls.from_dict(d, **overrides)
        except ValueError as e:
            raise ValueError(f"{file}: {e}") from None

    def __eq__(self, other):
        return isinstance(other, VideoMAEImageProcessor) and self.to_dict() == other.to_dict()

    def __repr__(self):
        return f"{type(self).__name__} {self.to_json_string()}"


class VideoMAEFeatureExtractor(VideoMAEImageProcessor):
    """Deprecated name of VideoMAEImageProcessor (transformers' old class name)."""

    def __init__(self, *args, **kwargs):
        warnings.warn("VideoMAEFeatureExtractor is deprecated; use VideoMAEImageProcessor, which "
                      "takes the same arguments", FutureWarning, stacklevel=2)
        super().__init__(*args, **kwargs)
