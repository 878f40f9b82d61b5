"""A folder of real videos as training clips, through the image processor.

    clips, labels, classes = load_video_folder("videos/", num_frames=8, image_size=32)

Layout: either videos directly in the folder (no labels), or one sub-folder per class whose
videos carry that label (the ImageFolder convention; classes sorted by name). Each video gives one
clip of ``num_frames`` frames spread evenly over it (first to last), resized on its shortest edge
and centre-cropped to ``image_size`` by ``VideoMAEImageProcessor``, which also normalises.
Video reading and the processor are imported only here, when a folder is actually read.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

VIDEO_EXTENSIONS = (".mp4", ".m4v", ".webm", ".avi", ".mov", ".mkv", ".gif")


def _video_files(folder: Path):
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)


def load_video_folder(directory, num_frames=8, image_size=32, processor=None):
    """-> (pixel_values (n, num_frames, C, H, W) float32, labels (n,) int64 or None, class names).

    image_size: an int (square) or (height, width). processor: a VideoMAEImageProcessor to use
    instead of the default one sized to image_size.
    """
    try:
        from ..processing import VideoMAEImageProcessor
        from ..video import read_video
    except ImportError as e:
        raise ImportError("load_video_folder needs videomae_np.processing and videomae_np.video "
                          f"(the image processor and video reader), which could not be imported: {e}") from e
    folder = Path(directory)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a directory of videos")
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and _video_files(p))
    if classes:
        items = [(f, i) for i, c in enumerate(classes) for f in _video_files(folder / c)]
    else:
        items = [(f, -1) for f in _video_files(folder)]
    if not items:
        raise FileNotFoundError(f"no videos ({', '.join(VIDEO_EXTENSIONS)}) in {folder} or its "
                                "sub-folders")
    h, w = (image_size, image_size) if np.ndim(image_size) == 0 else tuple(image_size)
    proc = processor or VideoMAEImageProcessor(size={"shortest_edge": min(h, w)},
                                               crop_size={"height": h, "width": w})
    clips = []
    for path, _ in items:
        frames = read_video(path)                                   # (T, H, W, C) uint8
        idx = np.floor(np.linspace(0, len(frames) - 1, num_frames)).astype(np.int64)
        clips.append(proc(frames[idx], return_tensors="np")["pixel_values"][0])
    labels = np.array([i for _, i in items], np.int64) if classes else None
    return np.stack(clips).astype(np.float32), labels, classes
