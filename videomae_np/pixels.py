"""Pixel statistics and the pixel spaces they connect: what the processor normalises with, what
the pretraining target un-normalises with, and the per-patch (norm-pix) target.

Per channel, three spaces (a display value d in [0, 1] is what a picture shows):
    input    x = (d - mean) / std                 the processor's pixel_values; its default
                                                  mean = std = 0.5 (IMAGENET_STANDARD)
    target   y = x * imagenet_std + imagenet_mean the space of the pretraining loss: transformers
                                                  un-normalises RGB input with the ImageNet
                                                  statistics, whatever the processor used
    norm-pix (y - mean_patch) / (std_patch + eps) each token standardised per channel over its
                                                  t*p*p pixels (norm_pix_loss)

The image processor (processing.py), the models' loss (models.py), the reconstruction pictures
(reconstruction.py) and the toy clips (data/toy.py) all take their statistics from here.
"""

from __future__ import annotations

import numpy as np

from .ops.patch_embed import tubelets

# transformers.image_utils constants. VideoMAE's processor defaults to the "standard" pair; the
# released VideoMAE checkpoints ship preprocessor configs with the "default" (ImageNet) pair, and
# the pretraining target always un-normalises with the default pair (transformers.utils.constants).
IMAGENET_STANDARD_MEAN = (0.5, 0.5, 0.5)
IMAGENET_STANDARD_STD = (0.5, 0.5, 0.5)
IMAGENET_DEFAULT_MEAN = (0.485, 0.456, 0.406)
IMAGENET_DEFAULT_STD = (0.229, 0.224, 0.225)
PROCESSOR_MEAN = PROCESSOR_STD = 0.5   # IMAGENET_STANDARD (one value for every channel), the processor default
NORM_PIX_EPS = 1e-6                    # added to the per-patch std of the norm-pix target


# ------------------------------------------------------------------------------------------------
# display <-> input (the processor's default convention, as the toy clips use it)
# ------------------------------------------------------------------------------------------------
def normalise(frames):
    """[0, 1] frames -> the processor's pixel_values convention (mean = std = 0.5)."""
    return ((frames - PROCESSOR_MEAN) / PROCESSOR_STD).astype(np.float32)


def denormalise(pixel_values):
    """The inverse of :func:`normalise`, clipped to [0, 1] for display."""
    return np.clip(np.asarray(pixel_values, np.float64) * PROCESSOR_STD + PROCESSOR_MEAN, 0.0, 1.0)


# ------------------------------------------------------------------------------------------------
# input -> target
# ------------------------------------------------------------------------------------------------
def target_statistics(num_channels, dtype=np.float64):
    """(mean, std), each (C,) of ``dtype``, that take input pixels to the target space: the
    ImageNet statistics for RGB (rounded to float32 first, as torch.as_tensor of Python floats
    does), else mean 0 and std 1 (the target is the input itself)."""
    if num_channels == 3:
        return (np.asarray(IMAGENET_DEFAULT_MEAN, np.float32).astype(dtype),
                np.asarray(IMAGENET_DEFAULT_STD, np.float32).astype(dtype))
    return np.zeros(num_channels, dtype), np.ones(num_channels, dtype)


def pixel_targets(x, cfg, token_idx=None):
    """(B, T, C, H, W) model-dtype pixels -> (B, N, t*p*p*C) pretraining targets.

    RGB input is first un-normalised with the ImageNet statistics (whatever the processor used,
    as transformers does); with norm_pix_loss each token is standardised per channel over its
    t*p*p pixels with the unbiased std.
    token_idx: (B, M) token positions to return (the masked ones in training), else all N.
    """
    dtype = x.dtype.type
    C = cfg.num_channels
    if C != 3 and not cfg.norm_pix_loss:
        raise ValueError(f"norm_pix_loss=False needs RGB input to un-normalise, but num_channels={C}; "
                         "set config.norm_pix_loss=True")
    t, p = cfg.tubelet_size, cfg.patch_size
    # (B, N, C, t*p*p): each token's pixels per channel (the Conv3d order), contiguous along the
    # axis the statistics reduce over
    tok = tubelets(x, t, p).reshape(x.shape[0], cfg.num_patches, C, t * p * p)
    if token_idx is not None:
        tok = tok[np.arange(tok.shape[0])[:, None], token_idx]
    if C == 3:
        # back to [0, 1] with the ImageNet statistics, in the model's dtype
        mean, std = target_statistics(C, dtype)
        tok = tok * std[:, None] + mean[:, None]
    if cfg.norm_pix_loss:
        n = tok.shape[-1]
        mu = tok.mean(axis=-1, keepdims=True)
        tok = tok - mu
        sd = np.sqrt(np.einsum("...i,...i->...", tok, tok)[..., None] / dtype(n - 1))   # unbiased
        tok /= sd + dtype(NORM_PIX_EPS)
    # channel last inside a token: (B, M, t*p*p, C) flattened
    return np.ascontiguousarray(tok.transpose(0, 1, 3, 2)).reshape(tok.shape[0], tok.shape[1], -1)


def norm_pix_inverse(pred, true):
    """Norm-pix predictions back to the target space with the statistics of the true patches.

    pred, true: (B, M, t*p*p, C) float64, per token and channel; the mean and the unbiased std of
    ``true`` over its t*p*p pixels are put back (information a model that predicted ``pred`` did
    not have: the reconstruction pictures say so)."""
    mu = true.mean(axis=2, keepdims=True)
    sd = np.sqrt(true.var(axis=2, ddof=1, keepdims=True))
    return pred * (sd + NORM_PIX_EPS) + mu
