"""Data for training: synthetic toy clips (``toy``) and folders of real videos (``folder``)."""

from .toy import LABELS, ToySpec, batch_at, make_dataset, stream
from .folder import load_video_folder

__all__ = ["LABELS", "ToySpec", "batch_at", "make_dataset", "stream", "load_video_folder"]
