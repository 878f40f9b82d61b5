"""Tubelet embedding: transformers' Conv3d with kernel = stride = (t, p, p), written as
patchify + one matmul.

The Conv3d weight is (D, C, t, p, p), so each token's pixels are flattened in (C, t, p, p) order
here (channel first) -- unlike the channel-last order of the pretraining target (ops/patchify.py).
"""

import numpy as np


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


def patch_embed_forward(video, w, b, tubelet, patch):
    """video: (B, T, C, H, W), w: (D, C, t, p, p), b: (D,) -> tokens (B, N, D)."""
    cols = tubelets(video, tubelet, patch)                 # (B, N, K), K = C*t*p*p
    wf = w.reshape(w.shape[0], -1)                           # (D, K)
    y = cols @ wf.T
    y += b
    return y, (cols, w, video.shape, tubelet, patch)


def patch_embed_backward(dy, cache, need_input_grad=False):
    """dy: (B, N, D) -> d(video) (B, T, C, H, W) | None, dw (D, C, t, p, p), db (D,)."""
    cols, w, shape, t, p = cache
    D = w.shape[0]
    dy2 = dy.reshape(-1, D)
    dw = (dy2.T @ cols.reshape(dy2.shape[0], -1)).reshape(w.shape)
    db = dy2.sum(axis=0)
    dvideo = _untubelets(dy @ w.reshape(D, -1), shape, t, p) if need_input_grad else None
    return dvideo, dw, db
