"""Dropout and drop path (stochastic depth) as explicit, seeded masks.

A mask is drawn in the forward pass, stored in the cache, and the backward multiplies the
upstream gradient by the same mask. Masks are pre-scaled (inverted dropout): kept entries carry
1 / (1 - p), so the expected activation is unchanged and evaluation needs no rescaling.

  dropout    one Bernoulli draw per element
  drop path  one Bernoulli draw per sample: a residual branch is dropped for the whole clip
             (Huang et al., "Deep Networks with Stochastic Depth", 2016)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Drop:
    """The randomness one block may apply: probabilities and the generator that draws the masks."""
    rng: np.random.Generator
    attn: float = 0.0      # on attention probabilities (config.attention_probs_dropout_prob)
    hidden: float = 0.0    # on each branch's output (config.hidden_dropout_prob)
    path: float = 0.0      # drop path on each residual branch


def dropout_mask(rng, shape, p, dtype):
    """Scaled Bernoulli keep-mask of ``shape`` or None when p == 0."""
    if p <= 0.0:
        return None
    dtype = np.dtype(dtype)
    keep = rng.random(shape) >= p
    return keep.astype(dtype) * dtype.type(1.0 / (1.0 - p))


def masks_branch(drop: Drop | None) -> bool:
    """Whether branch_mask will draw a mask for this block (without drawing it)."""
    return drop is not None and (drop.hidden > 0.0 or drop.path > 0.0)


def branch_mask(drop: Drop | None, shape, dtype):
    """The combined hidden-dropout x drop-path mask of a residual branch output (B, N, C), or None."""
    if drop is None:
        return None
    m = dropout_mask(drop.rng, shape, drop.hidden, dtype)
    dp = dropout_mask(drop.rng, (shape[0], 1, 1), drop.path, dtype)
    if dp is not None:
        m = dp if m is None else m * dp
    return m


def drop_path_rates(rate, depth):
    """Drop-path probability of each of ``depth`` blocks, rising linearly from 0 to ``rate``."""
    return [float(r) for r in np.linspace(0.0, rate, depth)] if depth else []
