"""Where every random draw of a training run comes from.

Every draw of update s -- the clips, the mask, dropout, the order of the labelled set -- comes from
a generator seeded with (seed, s, stream), never from a generator carried across steps. A run is
therefore a pure function of its settings, and resuming at step s needs only the parameters, the
AdamW moments and s: the resumed run computes exactly the losses of an uninterrupted one.
"""

from __future__ import annotations

import numpy as np

# streams of the per-step generators: default_rng([seed, step, stream])
DATA_STREAM, MASK_STREAM, DROPOUT_STREAM, ORDER_STREAM = 0, 1, 2, 3
PICTURE_SEED = 10_007      # the toy clips drawn in the reconstruction picture (never trained on)
PRETRAIN_SET_SEED = 20_011  # offset of the stream a fixed pretraining set (pretrain_clips) is drawn from
# said in trainer_state.json, so that a reader of a run folder can redraw any batch
DESCRIPTION = ("every draw of update s uses numpy default_rng([seed, s, stream]); "
               f"streams: data {DATA_STREAM}, mask {MASK_STREAM}, dropout {DROPOUT_STREAM}, "
               f"batch order {ORDER_STREAM}")


def step_rng(seed, step, stream):
    """The generator of one stream of update `step`."""
    return np.random.default_rng([int(seed), int(step), int(stream)])


def finetune_order(seed, step, batch, n):
    """Indices into a labelled set of n clips for update `step`: epochs of shuffled passes, each
    shuffle a pure function of (seed, epoch)."""
    pos = np.arange(step * batch, (step + 1) * batch)
    epochs = pos // n
    out = np.empty(batch, np.int64)
    for e in np.unique(epochs):
        perm = step_rng(seed, int(e), ORDER_STREAM).permutation(n)
        sel = epochs == e
        out[sel] = perm[pos[sel] % n]
    return out
