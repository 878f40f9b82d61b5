"""Mask generators for pretraining: which tokens the encoder never sees.

``bool_masked_pos`` is (B, N) bool, True = masked. VideoMAE's tube masking hides the same spatial
patches in every temporal slot, so a masked patch cannot be copied from its neighbour in time (the
paper's "information leakage"). Every sample masks the same number of tokens, since the encoder
stacks the visible tokens of the batch into one (B, Nv, D) array.

The randomness comes from a NumPy ``Generator`` (or an int seed), so a mask is reproducible.

``MASKS`` is the registry that training and the command line read: each kind is one entry
``name -> MaskKind(make, doc)`` with ``make(batch_size, grid, mask_ratio, rng) -> (B, N) bool``.
Adding a kind is one function, one entry and its tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np


def _rng(rng):
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def _check(batch_size, mask_ratio):
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if not 0.0 <= float(mask_ratio) < 1.0:
        raise ValueError(f"mask_ratio must lie in [0, 1), got {mask_ratio!r}")


def _random_rows(rng, rows, width, count):       # -> (rows, width) bool with `count` True per row
    order = np.argsort(rng.random((rows, width)), axis=1)
    mask = np.zeros((rows, width), dtype=bool)
    np.put_along_axis(mask, order[:, :count], True, axis=1)
    return mask


def tube_mask(batch_size, grid, mask_ratio=0.9, rng=None):
    """Tube masking. grid = (T/t, H/p, W/p) (``config.grid``) -> (B, N) bool.

    Each sample draws int(mask_ratio * patches_per_frame) patches of one frame and masks them in
    every temporal slot.
    """
    _check(batch_size, mask_ratio)
    t, gh, gw = (int(g) for g in grid)
    per_frame = gh * gw
    frame = _random_rows(_rng(rng), batch_size, per_frame, int(mask_ratio * per_frame))
    return np.tile(frame, (1, t))                  # time-major token order: repeat each slot


def random_mask(batch_size, num_patches, mask_ratio=0.9, rng=None):
    """Independent random masking over all N tokens (the image-MAE way) -> (B, N) bool."""
    _check(batch_size, mask_ratio)
    return _random_rows(_rng(rng), batch_size, int(num_patches), int(mask_ratio * num_patches))


def running_cell_mask(batch_size, grid, mask_ratio=0.5, cell=(2, 2), rng=None):
    """Running-cell masking (VideoMAE V2's decoder masking) -> (B, N) bool.

    The frame is tiled with cells of cell = (ch, cw) patches; in every cell the same
    int(mask_ratio * ch * cw) positions (in the cell's row-major order) are masked, and the pattern
    moves by one position per temporal slot, so over ch * cw slots every patch is seen. Each sample
    starts the cycle at a random offset. grid = (T/t, H/p, W/p) must be divisible by the cell.
    """
    _check(batch_size, mask_ratio)
    t, gh, gw = (int(g) for g in grid)
    ch, cw = cell
    if gh % ch or gw % cw:
        raise ValueError(f"grid {gh}x{gw} patches is not divisible by the cell {ch}x{cw}")
    size = ch * cw
    masked = int(mask_ratio * size)
    base = np.arange(size) < masked                          # positions masked in slot 0
    start = _rng(rng).integers(0, size, batch_size)
    out = np.empty((batch_size, t, gh, gw), dtype=bool)
    for b in range(batch_size):
        for s in range(t):
            pattern = np.roll(base, start[b] + s).reshape(ch, cw)
            out[b, s] = np.tile(pattern, (gh // ch, gw // cw))
    return out.reshape(batch_size, -1)


def frame_mask(batch_size, grid, mask_ratio=0.875, rng=None):
    """Frame masking (the baseline of VideoMAE's Table 1b): whole temporal slots are hidden.

    Each sample hides int(mask_ratio * t) of its t = T/tubelet slots, every patch of them; at least
    one slot stays visible. The model can only reconstruct by carrying the visible slots over in
    time. grid = (T/t, H/p, W/p) -> (B, N) bool.
    """
    _check(batch_size, mask_ratio)
    t, gh, gw = (int(g) for g in grid)
    slots = _random_rows(_rng(rng), batch_size, t, int(mask_ratio * t))       # (B, t)
    return np.repeat(slots, gh * gw, axis=1)       # time-major order: a slot is gh*gw tokens


@dataclass(frozen=True)
class MaskKind:
    make: Callable        # make(batch_size, grid, mask_ratio, rng) -> (B, N) bool
    doc: str              # one line for --help


MASKS = {
    "tube": MaskKind(tube_mask, "the same patches hidden in every frame (VideoMAE)"),
    "random": MaskKind(lambda b, grid, r, rng=None: random_mask(b, int(np.prod(grid)), r, rng),
                       "tokens hidden independently (image MAE)"),
    "frame": MaskKind(frame_mask, "whole frames hidden (Table 1b's frame baseline)"),
    "running_cell": MaskKind(running_cell_mask,
                             "a 2x2-cell pattern that moves every slot (VideoMAE V2)"),
}


def make_mask(kind, batch_size, grid, mask_ratio, rng=None):
    """A mask of the registered `kind` (a key of MASKS) -> (B, N) bool."""
    if kind not in MASKS:
        raise ValueError(f"mask type must be one of {', '.join(MASKS)}; got {kind!r}")
    return MASKS[kind].make(batch_size, grid, mask_ratio, rng=rng)


def masked_fraction(kind, grid, mask_ratio):
    """The fraction of tokens a `kind` mask actually hides at `mask_ratio` on `grid` (the counts
    are rounded down per frame, per slot or per cell)."""
    return float(make_mask(kind, 1, grid, mask_ratio, rng=0).mean())


def visible_and_masked_indices(bool_masked_pos):
    """(B, N) bool -> visible positions (B, Nv) and masked positions (B, Nm), each ascending.

    Ascending order is the order of transformers' boolean indexing ``x[~mask]`` / ``x[mask]``.
    """
    order = np.argsort(bool_masked_pos, axis=1, kind="stable")  # False (visible) sorts first
    nv = int((~bool_masked_pos[0]).sum())
    return order[:, :nv], order[:, nv:]
