"""A labelled folder of real videos, read a clip at a time (``finetune --data``, ``evaluate``).

    DATA/train/<class>/<video>      required
    DATA/val/<class>/<video>        held out (evaluated at the end of fine-tuning)
    DATA/test/<class>/<video>       optional

    split = VideoSplit("DATA/train")                   # lists videos; frame counts from metadata
    frames = split.clip(i, num_frames=16, stride=4, rng=rng, train=True)   # (16, H, W, C) uint8

A video is a file imageio-ffmpeg reads (or a GIF) or a folder of image frames. Class names are the
sub-folder names, sorted: index i of the sorted list is label i (``id2label``). Only the frames a
clip needs are decoded (videomae_np.video.read_frames), so memory holds a batch of clips, never a
whole video.

Bad input. ``train/`` missing, a class folder of train with no readable video, a val class that
train lacks: one error naming the folder. A file that cannot be read or holds no frame: skipped,
with a warning line naming it (a dataset of thousands of downloads usually has a few broken files;
stopping for each would make the folder unusable). A train class absent from val: a warning
(its per-class accuracy is then undefined).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import video as V
from .folder import VIDEO_EXTENSIONS

SPLITS = ("train", "val", "test")
# light augmentation for fine-tuning on small sets (the original uses RandAugment + random
# resized crop with scale (0.08, 1); a smaller range keeps most of a small clip in view)
CROP_AREA = (0.25, 1.0)            # fraction of the frame area a random resized crop keeps
CROP_ASPECT = (3 / 4, 4 / 3)       # its aspect ratio range (torchvision's RandomResizedCrop)
FLIP_PROBABILITY = 0.5


def _is_video(p: Path) -> bool:
    if p.is_file():
        return p.suffix.lower() in VIDEO_EXTENSIONS
    return p.is_dir() and any(f.is_file() and f.suffix.lower() in V.IMAGE_EXTENSIONS for f in p.iterdir())


@dataclass
class Video:
    path: Path
    label: int
    frames: int


class VideoSplit:
    """The videos of one split folder (``<split>/<class>/<video>``), with their frame counts.

    classes: the class names to use (from train) -- a class folder not among them is an error;
    None: this folder's own (sorted). warn(msg): where skipped videos and missing classes are
    reported (default: print).
    """

    def __init__(self, folder, classes=None, warn=print, require_every_class=True):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise FileNotFoundError(f"{self.folder}: expected a folder of class folders "
                                    f"(<class>/<video>), found {'a file' if self.folder.exists() else 'nothing'}")
        found = sorted(p.name for p in self.folder.iterdir() if p.is_dir())
        if not found:
            raise ValueError(f"{self.folder}: expected one sub-folder per class holding its videos, "
                             f"found no sub-folder")
        if classes is None:
            classes = found
        else:
            extra = [c for c in found if c not in classes]
            if extra:
                raise ValueError(f"{self.folder}: class folder(s) {extra} are not classes of the "
                                 f"training set ({', '.join(classes)})")
        self.classes = list(classes)
        self.skipped = []
        self.videos = []
        listed = {name: (sorted(p for p in (self.folder / name).iterdir() if _is_video(p))
                         if (self.folder / name).is_dir() else []) for name in self.classes}
        counts = count_all([p for name in self.classes for p in listed[name]], f"opening {self.folder}",
                           warn)
        for label, name in enumerate(self.classes):
            cdir = self.folder / name
            entries = listed[name]
            kept = 0
            for p in entries:
                n = counts[p]
                if isinstance(n, str):
                    self.skipped.append(p)
                    warn(f"warning: skipped {p}: {n}")
                    continue
                self.videos.append(Video(p, label, n))
                kept += 1
            if kept == 0:
                if require_every_class:
                    what = "no readable video" if entries else "no video"
                    raise ValueError(f"{cdir}: class {name!r} has {what}; expected files "
                                     f"({', '.join(VIDEO_EXTENSIONS)}) or folders of frames")
                warn(f"warning: {self.folder} has no video of class {name!r}; its accuracy is not measured")
        if not self.videos:
            raise ValueError(f"{self.folder}: no readable video in any class folder")

    def __len__(self):
        return len(self.videos)

    @property
    def labels(self) -> np.ndarray:
        return np.array([v.label for v in self.videos], np.int64)

    def clip(self, i, num_frames, stride, rng=None, train=True, view=0, views=1, notes=None) -> np.ndarray:
        """Frames of one clip of video i -> (num_frames, H, W, C) uint8 (see video.clip_indices).

        The frame count is the container's estimate: a frame past the real end is read as the
        last frame, and a line saying so is appended to `notes` (a list) or printed."""
        v = self.videos[i]
        return read_clip(v.path, v.frames, num_frames, stride, rng=rng, train=train, view=view,
                         views=views, notes=notes)


def read_clip(path, frames, num_frames, stride, rng=None, train=True, view=0, views=1, notes=None):
    """The frames of one clip of a video of `frames` frames (an estimate; see VideoSplit.clip)."""
    idx = V.clip_indices(num_frames, frames, stride, rng=rng, train=train, view=view, views=views)
    out = V.read_frames(path, idx, clamp=True)
    note = V.clamp_note(path, frames, V.last_read)
    if note is not None:
        (print if notes is None else notes.append)(note)
    return out


SCAN_THREADS = 4      # ffmpeg probes run in subprocesses: threads overlap their start-up and I/O


def count_all(paths, what="counting frames", warn=print):
    """{path: frame count, or the one-line reason it cannot be read} of many videos.

    Files are counted from their metadata (video.count_frames), a few ffmpeg probes at a time;
    the progress is a bar at a terminal, else a line every few seconds (data/progress.py)."""
    from concurrent.futures import ThreadPoolExecutor

    from .progress import progress

    def one(p):
        try:
            return V.count_frames(p)
        except (ValueError, OSError) as e:
            return " ".join(str(e).split())

    out = {}
    with progress(what, len(paths), unit="video", log=warn) as bar:
        if len(paths) <= 1:
            for p in paths:
                out[p] = one(p)
                bar.update()
            return out
        with ThreadPoolExecutor(min(SCAN_THREADS, len(paths))) as pool:
            for p, n in zip(paths, pool.map(one, paths)):
                out[p] = n
                bar.update()
    return out


def open_splits(data, warn=print):
    """{"train": VideoSplit, "val": VideoSplit or None, "test": ...} of a --data folder."""
    data = Path(data)
    if not data.is_dir():
        raise FileNotFoundError(f"--data {data}: expected a folder holding train/<class>/<video> "
                                f"and val/<class>/<video>, found {'a file' if data.exists() else 'nothing'}")
    if not (data / "train").is_dir():
        raise ValueError(f"--data {data}: expected a train/ folder (train/<class>/<video>, and "
                         f"val/<class>/<video> to evaluate), found "
                         f"{sorted(p.name for p in data.iterdir())[:8] or 'an empty folder'}")
    train = VideoSplit(data / "train", warn=warn)
    out = {"train": train}
    for name in SPLITS[1:]:
        out[name] = (VideoSplit(data / name, classes=train.classes, warn=warn, require_every_class=False)
                     if (data / name).is_dir() else None)
    if out["val"] is None:
        warn(f"warning: --data {data} has no val/ folder; fine-tuning reports no held-out accuracy")
    return out


# ------------------------------------------------------------------------------------------------
# augmentation and spatial views on uint8 frames (T, H, W, C); the processor resizes afterwards
# ------------------------------------------------------------------------------------------------
def random_resized_crop(frames, rng, area=CROP_AREA, aspect=CROP_ASPECT) -> np.ndarray:
    """One crop box for all frames: a random fraction `area` of the frame at a random aspect ratio
    (torchvision's RandomResizedCrop rule, 10 tries, then the whole frame)."""
    _, H, W, _ = frames.shape
    for _ in range(10):
        target = H * W * rng.uniform(*area)
        ratio = np.exp(rng.uniform(np.log(aspect[0]), np.log(aspect[1])))
        w = int(round(np.sqrt(target * ratio)))
        h = int(round(np.sqrt(target / ratio)))
        if 0 < w <= W and 0 < h <= H:
            y = int(rng.integers(0, H - h + 1))
            x = int(rng.integers(0, W - w + 1))
            return frames[:, y:y + h, x:x + w]
    return frames


def augment(frames, rng, flip=True) -> np.ndarray:
    """Random resized crop, then a horizontal flip with probability 1/2 (unless flip=False)."""
    frames = random_resized_crop(frames, rng)
    if flip and rng.random() < FLIP_PROBABILITY:
        frames = frames[:, :, ::-1]
    return np.ascontiguousarray(frames)


def spatial_crop(frames, crop, crops) -> np.ndarray:
    """Crop `crop` of `crops` square views along the longer side (the original's 3-crop test:
    left/top, centre, right/bottom); crops=1 returns the frames unchanged (the processor's
    centre crop then applies)."""
    if crops == 1:
        return frames
    _, H, W, _ = frames.shape
    s = min(H, W)
    pos = int(round(crop * (max(H, W) - s) / (crops - 1)))
    return frames[:, pos:pos + s] if H > W else frames[:, :, pos:pos + s]


def processor_for(cfg, directory=None):
    """The image processor of a model: the one saved in `directory` (preprocessor_config.json)
    when there is one, else resize-shortest-edge + centre crop to the model's input size with
    transformers' defaults otherwise. A saved processor whose crop is not the model's input size
    is refused (the model could not take its output)."""
    from ..processing import PROCESSOR_CONFIG_NAME, VideoMAEImageProcessor
    h, w = cfg.image_hw
    if directory is not None and (Path(directory) / PROCESSOR_CONFIG_NAME).is_file():
        proc = VideoMAEImageProcessor.from_pretrained(directory)
        crop = (proc.crop_size["height"], proc.crop_size["width"]) if proc.do_center_crop else None
        if crop != (h, w):
            raise ValueError(f"{Path(directory) / PROCESSOR_CONFIG_NAME}: its frames are "
                             f"{'not centre-cropped' if crop is None else f'{crop[0]}x{crop[1]}'}, "
                             f"the model takes {h}x{w}")
        return proc
    return VideoMAEImageProcessor(size={"shortest_edge": min(h, w)}, crop_size={"height": h, "width": w})
