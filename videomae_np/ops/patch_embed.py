"""Tubelet embedding: transformers' Conv3d with kernel = stride = (t, p, p), written as
patchify + one matmul.

The Conv3d weight is (D, C, t, p, p), so each token's pixels are flattened in (C, t, p, p) order
here (channel first) -- unlike the channel-last order of the pretraining target (ops/patchify.py).
"""

from typing import NamedTuple

import numpy as np

from .linear import LinearCache, linear_backward, linear_forward


class PatchEmbedCache(NamedTuple):
    linear: LinearCache       # the tubelet columns (B M, C*t*p*p) and the flattened weight
    w_shape: tuple            # (D, C, t, p, p), the Conv3d weight's shape
    video_shape: tuple        # (B, T, C, H, W)
    tubelet: int              # t
    patch: int                # p
    token_idx: object         # (B, M) int | None: the embedded token positions (None: all N)


def tubelets(video, t, p):                  # (B, T, C, H, W) -> (B, N, C*t*p*p), conv order
    B, T, C, H, W = video.shape
    x = video.reshape(B, T // t, t, C, H // p, p, W // p, p)
    x = x.transpose(0, 1, 4, 6, 3, 2, 5, 7)                 # (B, T/t, H/p, W/p, C, t, p, p)
    return np.ascontiguousarray(x).reshape(B, -1, C * t * p * p)


def _untubelets(cols, shape, t, p):         # inverse of tubelets
    B, T, C, H, W = shape
    x = cols.reshape(B, T // t, H // p, W // p, C, t, p, p)
    x = x.transpose(0, 1, 5, 4, 2, 6, 3, 7)                 # (B, T/t, t, C, H/p, p, W/p, p)
    return np.ascontiguousarray(x).reshape(shape)


def patch_embed_forward(video, w, b, tubelet, patch, token_idx=None):
    """video: (B, T, C, H, W), w: (D, C, t, p, p), b: (D,) -> tokens (B, N, D).

    token_idx: (B, M) | None -- embed only these token positions (-> (B, M, D)). Each tubelet is
    embedded on its own, so this equals embedding all N and gathering after, as transformers does;
    with 90% masking it skips 90% of the matmul."""
    cols = tubelets(video, tubelet, patch)                 # (B, N, K), K = C*t*p*p
    if token_idx is not None:
        cols = cols[np.arange(cols.shape[0])[:, None], token_idx]
    y, c_lin = linear_forward(cols, w.reshape(w.shape[0], -1), b)
    return y, PatchEmbedCache(c_lin, w.shape, video.shape, tubelet, patch, token_idx)


def patch_embed_backward(dy, cache, *, need_dx=False):
    """dy: (B, N or M, D) -> d(video) (B, T, C, H, W) | None, dw (D, C, t, p, p), db (D,).
    need_dx: whether to compute d(video) (pixels carry no parameter, so by default none)."""
    shape, t, p, token_idx = cache.video_shape, cache.tubelet, cache.patch, cache.token_idx
    dcols, dw, db = linear_backward(dy, cache.linear, need_dx=need_dx)
    dvideo = None
    if need_dx:
        if token_idx is not None:              # tubelets that were not embedded get no gradient
            B, T, C, H, W = shape
            full = np.zeros((B, (T // t) * (H // p) * (W // p), dcols.shape[-1]), dcols.dtype)
            full[np.arange(B)[:, None], token_idx] = dcols
            dcols = full
        dvideo = _untubelets(dcols, shape, t, p)
    return dvideo, dw.reshape(cache.w_shape), db
