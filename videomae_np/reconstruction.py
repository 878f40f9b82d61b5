"""The reconstruction picture: original | masked input | reconstruction, one row each, frames across.

Turning the decoder's output back into pixels needs care. With ``norm_pix_loss`` the decoder
predicts each masked tubelet standardised by its own mean and std (per channel), which it never
saw; to draw it we put back the *true* mean and std of that patch, taken from the original video.
That borrows information the model did not have (the brightness and contrast of every hidden
patch), so the picture says so in its title, and ``describe`` returns the same sentence for the
console. Without norm_pix_loss the prediction is already in pixel space and nothing is borrowed.
``reconstruct_video`` draws the picture of any video file by a pretrained run's model
(``videomae-np reconstruct``).

Pixel spaces involved, per channel (pixels.py holds their statistics and conversions):
    display  d in [0, 1]                         what the picture shows
    input    x = (d - proc_mean) / proc_std       the processor's pixel_values (mean = std = 0.5)
    target   y = x * imagenet_std + imagenet_mean the space of the loss (transformers' choice)
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import numpy as np

from . import runs
from .fileio import atomic_write
from .masking import visible_and_masked_indices
from .models import VideoMAEForPreTraining
from .ops.patchify import patchify, unpatchify
from .pixels import PROCESSOR_MEAN, PROCESSOR_STD, denormalise, norm_pix_inverse, target_statistics
from .randomness import MASK_STREAM, step_rng
from .settings import PretrainSettings, check_mask_ratio

MASK_GREY = 0.5                        # colour of the hidden patches in the "masked input" row
FRAME_PIXELS = 96                      # small frames are enlarged to about this width on screen
GAP = 2                                # screen pixels between frames and between rows
TITLE_LINE = 12                        # height of one title line (Pillow's default bitmap font)
# picture file extension -> the Pillow format written (the bytes match the name)
PICTURE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".bmp": "BMP",
                   ".tif": "TIFF", ".tiff": "TIFF"}
JPEG_QUALITY = 95                      # Pillow's default 75 blurs the patch edges visibly


def reconstruct(model, pixel_values, bool_masked_pos):
    """Pixels the model puts in the hidden tubelets, the rest copied from the input.

    pixel_values: (B, T, C, H, W) processor-normalised; bool_masked_pos: (B, N).
    Returns (reconstruction, masked_input), both (B, T, C, H, W) in display space [0, 1].
    """
    cfg = model.config
    t, p, C = cfg.tubelet_size, cfg.patch_size, cfg.num_channels
    x = np.asarray(pixel_values, np.float64)
    B, T, _, H, W = x.shape
    was_training = model.training
    model.eval()
    try:
        logits = np.asarray(model(pixel_values, bool_masked_pos=bool_masked_pos).logits, np.float64)
    finally:
        model.train(was_training)
    mean_t, std_t = target_statistics(C)
    y = x * std_t[None, None, :, None, None] + mean_t[None, None, :, None, None]   # target space
    patches = patchify(y, t, p).reshape(B, cfg.num_patches, t * p * p, C)          # (B, N, tpp, C)
    _, msk_idx = visible_and_masked_indices(bool_masked_pos)
    pred = logits.reshape(B, -1, t * p * p, C)                                     # (B, Nm, tpp, C)
    if cfg.norm_pix_loss:
        # the true statistics of each hidden patch: information the model did not see
        true = np.take_along_axis(patches, msk_idx[:, :, None, None], axis=1)
        pred = norm_pix_inverse(pred, true)
    hidden = np.asarray(bool_masked_pos, bool)
    filled = patches.copy()
    filled[hidden] = pred.reshape(-1, t * p * p, C)      # boolean order = ascending positions
    recon_y = unpatchify(filled.reshape(B, cfg.num_patches, -1), t, p, T, H, W, C)
    recon_x = (recon_y - mean_t[None, None, :, None, None]) / std_t[None, None, :, None, None]
    masked = patchify(x, t, p).reshape(B, cfg.num_patches, t * p * p, C)
    masked[hidden] = (MASK_GREY - PROCESSOR_MEAN) / PROCESSOR_STD
    masked_x = unpatchify(masked.reshape(B, cfg.num_patches, -1), t, p, T, H, W, C)
    return denormalise(recon_x), denormalise(masked_x)


def describe(config, mask_ratio=None) -> str:
    """One sentence on how the reconstruction row was made (title of the picture, console line)."""
    hidden = f"{mask_ratio:.0%} of the tubelets hidden; " if mask_ratio is not None else ""
    if config.norm_pix_loss:
        how = ("hidden patches = the model's norm-pix prediction de-normalised with the TRUE "
               "per-patch mean/std of the original (not known to the model)")
    else:
        how = "hidden patches = the model's pixel prediction as is (no true statistics used)"
    return f"rows: original | masked input | reconstruction; {hidden}{how}; visible patches copied"


def picture(originals, masked, recons, title: str) -> np.ndarray:
    """Stack clips into one RGB uint8 image: for each clip three rows of T frames, a title above.

    originals, masked, recons: (B, T, C, H, W) display-space arrays in [0, 1].
    """
    B, T, C, H, W = originals.shape
    scale = scale_for(W)
    h, w = H * scale, W * scale
    rows = []
    for b in range(B):
        for video in (originals[b], masked[b], recons[b]):
            frames = [_to_rgb(f).repeat(scale, 0).repeat(scale, 1) for f in video]   # (h, w, 3)
            row = np.ones((h, T * (w + GAP) - GAP, 3))
            for i, f in enumerate(frames):
                row[:, i * (w + GAP): i * (w + GAP) + w] = f
            rows.append(row)
        rows.append(np.ones((3 * GAP, rows[-1].shape[1], 3)))            # space between clips
    grid = np.concatenate(rows[:-1], axis=0)
    grid = (np.clip(grid, 0, 1) * 255 + 0.5).astype(np.uint8)
    return _with_title(grid, title)


def scale_for(width):
    """Screen pixels per video pixel: whole numbers, so the patches stay crisp."""
    return max(1, FRAME_PIXELS // width)


def _to_rgb(frame):                       # (C, H, W) -> (H, W, 3)
    f = np.moveaxis(frame, 0, -1)
    if f.shape[-1] == 1:
        f = np.repeat(f, 3, axis=-1)
    return f[..., :3]


def _with_title(grid, title):
    """Write the title above the grid (wrapped to its width) with Pillow's built-in font."""
    from PIL import Image, ImageDraw

    chars_per_line = max(20, grid.shape[1] // 6)       # the default bitmap font is ~6 px wide
    lines, line = [], ""
    for word in title.split(" "):
        if line and len(line) + 1 + len(word) > chars_per_line:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    lines.append(line)
    banner = Image.new("RGB", (grid.shape[1], TITLE_LINE * len(lines) + 6), "white")
    draw = ImageDraw.Draw(banner)
    for i, text in enumerate(lines):
        draw.text((3, 3 + TITLE_LINE * i), text, fill="black")
    return np.concatenate([np.asarray(banner), grid], axis=0)


def picture_format(path, option: str = "") -> str:
    """The Pillow format a picture path's extension names; any other extension is refused."""
    ext = Path(path).suffix.lower()
    if ext not in PICTURE_FORMATS:
        found = repr(ext) if ext else "no extension"
        raise ValueError(f"{option + ' ' if option else ''}{path}: expected a picture name ending in "
                         f"{', '.join(PICTURE_FORMATS)}; found {found}")
    return PICTURE_FORMATS[ext]


def save_picture(path, model, pixel_values, bool_masked_pos, mask_ratio=None, note: str = "") -> str:
    """Write the reconstruction picture of these clips in the format its extension names (PNG,
    JPEG, ...), whole or not at all; returns its one-line description."""
    from PIL import Image

    path = Path(path)
    fmt = picture_format(path)
    recon, masked = reconstruct(model, pixel_values, bool_masked_pos)
    text = describe(model.config, mask_ratio)
    image = picture(denormalise(pixel_values), masked, recon,
                    f"{note}{' | ' if note else ''}{text}")
    path.parent.mkdir(parents=True, exist_ok=True)
    options = {"quality": JPEG_QUALITY} if fmt == "JPEG" else {}
    atomic_write(path, lambda f: Image.fromarray(image).save(f, format=fmt, **options))
    return text


# ------------------------------------------------------------------------------------------------
# the reconstruction picture of any video by a pretrained model (``videomae-np reconstruct``)
# ------------------------------------------------------------------------------------------------
def reconstruct_video(model_dir, video, out_png=None, mask_ratio=None, mask_type=None, seed=0,
                      log=print):
    """The reconstruction picture of a video file (or a folder of frames) by a pretrained model.

    mask_ratio / mask_type default to those the model was pretrained with (its trainer_state.json),
    else to the pretraining defaults."""
    try:
        from .processing import VideoMAEImageProcessor
        from .video import read_video
    except ImportError as e:  # pragma: no cover - the modules ship with the package
        raise ImportError(f"reading videos needs videomae_np.video and videomae_np.processing: {e}") from e
    out_png = Path(out_png) if out_png else Path(video).with_suffix(".reconstruction.png")
    picture_format(out_png, "--out")               # refused before anything is computed
    model_dir = Path(model_dir)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")             # a missing decoder is refused below, in one line
        model = VideoMAEForPreTraining.from_pretrained(model_dir)
    missing = model.loading_info["missing_keys"]
    if missing:
        kind = (model.config.architectures or ["model"])[0]
        raise ValueError(f"--model {model_dir}: expected a pretraining run's model, found a {kind} "
                         f"checkpoint without the decoder ({len(missing)} tensors missing, e.g. "
                         f"{missing[0]}); a random decoder would draw noise")
    cfg = model.config
    frames = read_video(video)                                        # (T, H, W, C) uint8
    idx = np.floor(np.linspace(0, len(frames) - 1, cfg.num_frames)).astype(np.int64)
    h, w = cfg.image_hw
    proc = VideoMAEImageProcessor(size={"shortest_edge": min(h, w)}, crop_size={"height": h, "width": w})
    px = proc(frames[idx], return_tensors="np")["pixel_values"]         # (1, T, C, h, w)
    state = runs.read_state(model_dir)
    settings = (runs.saved_settings(model_dir, PretrainSettings, state)
                if state and state["kind"] == "pretrain" else PretrainSettings())
    if mask_ratio is not None:
        settings = dataclasses.replace(settings, mask_ratio=mask_ratio)
    if mask_type is not None:
        settings = dataclasses.replace(settings, mask_type=mask_type)
    check_mask_ratio(settings.mask_type, cfg, settings.mask_ratio)
    mask = settings.mask(cfg, 1, step_rng(seed, 0, MASK_STREAM))
    text = save_picture(out_png, model, px, mask, settings.mask_ratio, note=f"{Path(video).name}")
    log(f"{out_png}: {text}")
    return out_png
