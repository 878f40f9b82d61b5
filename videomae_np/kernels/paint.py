"""The toy clips' renderer (data/toy.py): shapes painted over a canvas, then sensor noise, the
clip to [0, 1] and the processor's normalisation, written into ``out``.

    for each shape k, in painter's order, at every pixel of every frame:
        (dx, dy)  = pixel (sx, sy) minus the shape's centre (cx, cy), wrapped onto the torus
        (ux, uy)  = (dx, dy) turned by -theta and divided by the shape's scale: its own frame
        dist      = |u| (disk), max(|ux|, |uy|) (square), (|ux| + |uy|) / sqrt 2 (diamond)
        cover     = clip((radius - dist) scale zoom + 1/2, 0, 1)     a one-pixel soft edge
        paint_c   = colour_c + contrast tint_c sin(2 pi w.u + phase) + shade shade_tint_c (l.u) / radius
        frame_c  += cover (paint_c - frame_c)
    out = (clip(frame + noise_amp noise, 0, 1) - mean) / std         the processor's normalisation

Arrays (B clips, T frames, K shapes, C channels, S x S pixels; float64 unless said):
    canvas (B, T or 1, C, S, S)   what the shapes are painted over (T = 1: one for every frame)
    sx, sy (B or 1, T or 1, S or 1, S or 1)   each pixel's position in the scene (the camera's
                                  view of it); sx (.., 1, S) and sy (.., S, 1): a fixed camera
    zoom   (B, T)                 screen pixels per scene pixel
    pose   (B, T, K, 5)           cx, cy, cos theta, sin theta, scale
    look   (B, K, 7)              kind (0 disk, 1 square, 2 diamond), radius, wave x, wave y,
                                  phase, light x, light y
    tints  (B, K, 3, C)           colour, grating tint, shading tint
    noise  (B, T, C, S, S)        standard normal
    amps   (5,)                   grating contrast, shading amplitude, noise std, mean, std
    out    (B, T, C, S, S)        float32 or float64, written

The NumPy twin works on whole (B, T, S, S) planes, one shape at a time (the renderer as first
written); the Numba kernel makes one pass per frame on the calling thread (nogil: the prefetch
thread draws the next batch while the training step runs). Both compute every pixel with the same
operations in the same order; only sin may differ in its last bit between NumPy and the C library.
"""

import numpy as np
from numba import njit

SQRT2 = np.sqrt(2.0)
TWO_PI = 2 * np.pi


# ---- NumPy reference --------------------------------------------------------------------------
def paint_shapes_numpy(canvas, sx, sy, zoom, pose, look, tints, noise, amps, out):
    B, T, C, S, _ = out.shape
    contrast, shade, noise_amp, mean, std = (float(a) for a in amps)
    frames = np.broadcast_to(canvas, (B, T, C, S, S)).copy()
    zoom = zoom[:, :, None, None]
    for k in range(pose.shape[2]):
        cx, cy, c, s, z = (pose[:, :, k, i, None, None] for i in range(5))            # (B, T, 1, 1)
        kind, radius, wx, wy, phase, lx, ly = (look[:, k, i, None, None, None] for i in range(7))
        dx = (sx - cx + S / 2) % S - S / 2                                            # (B, T, S, S)
        dy = (sy - cy + S / 2) % S - S / 2
        ux, uy = (c * dx + s * dy) / z, (-s * dx + c * dy) / z
        ax, ay = np.abs(ux), np.abs(uy)
        dist = np.where(kind == 0, np.sqrt(ux * ux + uy * uy),
                        np.where(kind == 1, np.maximum(ax, ay), (ax + ay) / SQRT2))
        cover = np.clip((radius - dist) * z * zoom + 0.5, 0.0, 1.0)
        colour, tint, shade_tint = (tints[:, k, i, None, :, None, None] for i in range(3))  # (B, 1, C, 1, 1)
        paint = colour
        if contrast != 0.0:
            grating = np.sin(TWO_PI * (wx * ux + wy * uy) + phase)
            paint = paint + contrast * tint * grating[:, :, None]
        paint = paint + shade * shade_tint * ((lx * ux + ly * uy) / radius)[:, :, None]
        frames += cover[:, :, None] * (paint - frames)
    frames += noise_amp * noise
    out[...] = (np.clip(frames, 0.0, 1.0) - mean) / std


# ---- Numba ------------------------------------------------------------------------------------
@njit(cache=True, nogil=True)
def _wrap(x, centre, half, S):
    """x - centre on the torus of size S, in [-S/2, S/2): Python's float %, as NumPy's twin takes it."""
    return (x - centre + half) % S - half


@njit(cache=True, nogil=True)
def paint_shapes_numba(canvas, sx, sy, zoom, pose, look, tints, noise, amps, out):
    B, T, C, S, _ = out.shape
    K = pose.shape[2]
    contrast, shade, noise_amp, mean, std = amps[0], amps[1], amps[2], amps[3], amps[4]
    half = S / 2
    frame = np.empty((C, S, S))
    dxs, dys = np.empty(S), np.empty(S)
    for b in range(B):
        for t in range(T):
            frame[:] = canvas[b, min(t, canvas.shape[1] - 1)]
            px, py = sx[min(b, sx.shape[0] - 1), min(t, sx.shape[1] - 1)], \
                sy[min(b, sy.shape[0] - 1), min(t, sy.shape[1] - 1)]
            # a fixed camera: x depends on the column only, y on the row only -- wrap S values
            # of each instead of S^2 (the same numbers: the same operations on the same inputs)
            grid = px.shape[0] == 1 and py.shape[1] == 1
            zm = zoom[b, t]
            for k in range(K):
                cx, cy, c, s, z = pose[b, t, k, 0], pose[b, t, k, 1], pose[b, t, k, 2], \
                    pose[b, t, k, 3], pose[b, t, k, 4]
                kind, radius, wx, wy = look[b, k, 0], look[b, k, 1], look[b, k, 2], look[b, k, 3]
                phase, lx, ly = look[b, k, 4], look[b, k, 5], look[b, k, 6]
                if grid:
                    for j in range(S):
                        dxs[j] = _wrap(px[0, j], cx, half, S)
                        dys[j] = _wrap(py[j, 0], cy, half, S)
                for i in range(S):
                    for j in range(S):
                        if grid:
                            dx, dy = dxs[j], dys[i]
                        else:
                            dx = _wrap(px[min(i, px.shape[0] - 1), min(j, px.shape[1] - 1)], cx, half, S)
                            dy = _wrap(py[min(i, py.shape[0] - 1), min(j, py.shape[1] - 1)], cy, half, S)
                        ux, uy = (c * dx + s * dy) / z, (-s * dx + c * dy) / z
                        ax, ay = abs(ux), abs(uy)
                        if kind == 0:
                            dist = np.sqrt(ux * ux + uy * uy)
                        elif kind == 1:
                            dist = max(ax, ay)
                        else:
                            dist = (ax + ay) / SQRT2
                        cover = min(max((radius - dist) * z * zm + 0.5, 0.0), 1.0)
                        if cover == 0.0:
                            continue            # frame += 0 * (paint - frame) leaves it as it is
                        grating = np.sin(TWO_PI * (wx * ux + wy * uy) + phase) if contrast != 0.0 else 0.0
                        ramp = (lx * ux + ly * uy) / radius
                        for ch in range(C):
                            paint = tints[b, k, 0, ch]
                            if contrast != 0.0:
                                paint = paint + contrast * tints[b, k, 1, ch] * grating
                            paint = paint + shade * tints[b, k, 2, ch] * ramp
                            frame[ch, i, j] += cover * (paint - frame[ch, i, j])
            for ch in range(C):
                for i in range(S):
                    for j in range(S):
                        v = min(max(frame[ch, i, j] + noise_amp * noise[b, t, ch, i, j], 0.0), 1.0)
                        out[b, t, ch, i, j] = (v - mean) / std
