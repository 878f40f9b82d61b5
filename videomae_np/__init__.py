"""videomae_np: VideoMAE (Tong et al., 2022) in NumPy and Numba, equal to Hugging Face transformers.

    import videomae_np as vm
    cfg = vm.VideoMAEConfig(image_size=32, patch_size=8, num_frames=4, hidden_size=64, ...)
    model = vm.VideoMAEForPreTraining(cfg, seed=0)
    mask = vm.tube_mask(batch_size, cfg.grid, mask_ratio=0.9, rng=0)
    out, grads = model.value_and_grad(pixel_values, bool_masked_pos=mask)
"""

import os as _os

# OpenBLAS (NumPy's own matmuls) and Numba's OpenMP pool (the parallel softmax kernels; the main
# kernels run on threads of our own, kernels/threads.py) take turns on the same cores. Idle
# threads of either that keep spinning steal the core the other one needs: with OpenMP's default
# active waiting the next matmul ran several-fold slower, and with OpenBLAS's default spin time
# the kernels after a matmul did not speed up from a second thread at all. Both settings
# are read when the libraries load, so they only take effect when videomae_np is imported before
# NumPy (the `videomae-np` command always is); a value you set yourself is left alone.
_ENV_DEFAULTS = {"OMP_WAIT_POLICY": "PASSIVE", "OPENBLAS_THREAD_TIMEOUT": "4"}
ENV_SET_HERE = tuple(k for k in _ENV_DEFAULTS if k not in _os.environ)
for _k in ENV_SET_HERE:
    _os.environ[_k] = _ENV_DEFAULTS[_k]

from . import _openblas_core  # noqa: E402  (before NumPy loads OpenBLAS: its AVX-512 kernels on AMD)
OPENBLAS_CORE_SET_HERE = _openblas_core.apply() if "numpy" not in __import__("sys").modules else None

from ._malloc import MALLOC_TUNED  # noqa: E402,F401  (glibc keeps freed arrays for reuse)

from .config import VideoMAEConfig  # noqa: E402
from .masking import MASKS, frame_mask, make_mask, random_mask, running_cell_mask, tube_mask
from .models import (VideoMAEForPreTraining, VideoMAEForVideoClassification, VideoMAEModel,
                     VideoMAEPreTrainedModel)
from .positions import sinusoid_table

__version__ = "0.1.0"

__all__ = [
    "VideoMAEConfig", "VideoMAEModel", "VideoMAEForPreTraining", "VideoMAEForVideoClassification",
    "VideoMAEPreTrainedModel", "tube_mask", "random_mask", "running_cell_mask", "frame_mask",
    "make_mask", "MASKS", "sinusoid_table",
]


def __getattr__(name):  # the processor pulls in Pillow; load it only when asked for
    if name in ("VideoMAEImageProcessor", "VideoMAEFeatureExtractor"):
        from . import processing
        return getattr(processing, name)
    raise AttributeError(f"module 'videomae_np' has no attribute {name!r}")
