"""The fixed sinusoidal position table of VideoMAE (one 1-D table over all N tokens).

    angle[pos, j] = pos / 10000 ** (2 * (j // 2) / d);  table = sin(angle) on even j, cos on odd j

transformers builds the table in float64 and stores it as a float32 tensor, then casts it to the
model's dtype; we round through float32 the same way so that float64 runs match it exactly.
"""

import numpy as np

POSITION_BASE = 10000.0  # "Attention Is All You Need", section 3.5


def sinusoid_table(num_positions, dim, dtype=np.float32):   # -> (N, d)
    pos = np.arange(num_positions, dtype=np.float64)[:, None]
    j = np.arange(dim)
    angle = pos / np.power(POSITION_BASE, 2 * (j // 2) / dim)
    table = np.where(j % 2 == 0, np.sin(angle), np.cos(angle))
    return table.astype(np.float32).astype(dtype)
