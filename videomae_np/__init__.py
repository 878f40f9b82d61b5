"""videomae_np: VideoMAE (Tong et al., 2022) in NumPy and Numba, equal to Hugging Face transformers.

    import videomae_np as vm
    cfg = vm.VideoMAEConfig(image_size=32, patch_size=8, num_frames=4, hidden_size=64, ...)
    model = vm.VideoMAEForPreTraining(cfg, seed=0)
    mask = vm.tube_mask(batch_size, cfg.grid, mask_ratio=0.9, rng=0)
    out, grads = model.value_and_grad(pixel_values, bool_masked_pos=mask)
"""

import os as _os

# OpenBLAS (the matmuls) and Numba's OpenMP pool (the kernels) take turns on the same cores; with
# OpenMP's default active waiting, idle Numba threads spin and slow the next matmul several-fold.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .config import VideoMAEConfig  # noqa: E402
from .masking import random_mask, running_cell_mask, tube_mask
from .models import (VideoMAEForPreTraining, VideoMAEForVideoClassification, VideoMAEModel,
                     VideoMAEPreTrainedModel)
from .positions import sinusoid_table

__version__ = "0.1.0"

__all__ = [
    "VideoMAEConfig", "VideoMAEModel", "VideoMAEForPreTraining", "VideoMAEForVideoClassification",
    "VideoMAEPreTrainedModel", "tube_mask", "random_mask", "running_cell_mask", "sinusoid_table",
]


def __getattr__(name):  # the processor pulls in Pillow; load it only when asked for
    if name in ("VideoMAEImageProcessor", "VideoMAEFeatureExtractor"):
        from . import processing
        return getattr(processing, name)
    raise AttributeError(f"module 'videomae_np' has no attribute {name!r}")
