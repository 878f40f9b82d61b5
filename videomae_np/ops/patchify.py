"""Cutting a video into tubelet tokens and gluing tokens back into a video.

A token covers ``t`` frames (the tubelet) by ``p x p`` pixels. Tokens are ordered time-major, then
rows, then columns -- the order of transformers' Conv3d output -- and inside a token the pixels are
ordered (t, p_row, p_col, channel): channel last, the order of the pretraining target and logits.
"""

import numpy as np


def patchify(video, tubelet, patch):        # video: (B, T, C, H, W) -> (B, N, t*p*p*C)
    B, T, C, H, W = video.shape
    t, p = tubelet, patch
    x = video.reshape(B, T // t, t, C, H // p, p, W // p, p)
    x = x.transpose(0, 1, 4, 6, 2, 5, 7, 3)                 # (B, T/t, H/p, W/p, t, p, p, C)
    return x.reshape(B, (T // t) * (H // p) * (W // p), t * p * p * C)


def unpatchify(tokens, tubelet, patch, frames, height, width, channels):
    """tokens: (B, N, t*p*p*C) -> video (B, T, C, H, W); the inverse of :func:`patchify`."""
    B = tokens.shape[0]
    t, p, C = tubelet, patch, channels
    x = tokens.reshape(B, frames // t, height // p, width // p, t, p, p, C)
    x = x.transpose(0, 1, 4, 7, 2, 5, 3, 6)                 # (B, T/t, t, C, H/p, p, W/p, p)
    return np.ascontiguousarray(x).reshape(B, frames, C, height, width)
