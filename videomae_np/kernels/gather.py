"""The processor's last step: every pixel through its channel's lookup table, channels-last frames
in, channels-first planes out.

    out[t, k, i, j] = tables[x[t, i, j, k], k]     x: (T, h, w, C) uint8, tables: (256, C) float,
                                                   out: (T, C, h, w) of the tables' dtype

The table holds the whole value chain after the resize (rescale, normalise) for each of the 256
levels, so one gather replaces several passes over the video (processing.py builds the tables).
Both versions write into ``out`` and return nothing; their results are bit-identical (a gather
does no arithmetic). The Numba one is a single pass on the calling thread (nogil: callers may
run several at once).
"""

import numpy as np
from numba import njit


# ---- NumPy reference --------------------------------------------------------------------------
def gather_tables_numpy(x, tables, out):
    """out[t, k] = tables[x[t, :, :, k], k]: x (T, h, w, C) uint8, tables (256, C), out (T, C, h, w)."""
    columns = [np.ascontiguousarray(tables[:, k]) for k in range(tables.shape[1])]
    for t in range(x.shape[0]):
        for k, col in enumerate(columns):
            # mode="clip" lets take write straight into the view; uint8 indices never clip
            np.take(col, x[t, :, :, k], out=out[t, k], mode="clip")


# ---- Numba ------------------------------------------------------------------------------------
@njit(cache=True, nogil=True)
def gather_tables_numba(x, tables, out):
    """Same as gather_tables_numpy, in one compiled pass. Output planes are written contiguously
    (channel loop outside): three times faster than following x's channels-last order."""
    n, h, w, c = x.shape
    for t in range(n):
        for k in range(c):
            for i in range(h):
                for j in range(w):
                    out[t, k, i, j] = tables[x[t, i, j, k], k]
