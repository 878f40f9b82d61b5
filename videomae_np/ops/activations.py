"""Element-wise activations by transformers' ``hidden_act`` names, optionally with a fused bias."""

from typing import NamedTuple

import numpy as np

from .. import kernels
from ._util import rows

ACTIVATIONS = dict(kernels.ACT_CODES)


class ActivationCache(NamedTuple):
    pre: np.ndarray           # (R, C) x + b, the activation's input as rows
    kind: int                 # kernels.ACT_CODES code of the activation
    shape: tuple              # the input's shape (..., C)


def activation_forward(x, name, b=None):   # x: (..., C), b: (C,) | None -> y = act(x + b): (..., C)
    kind = ACTIVATIONS[name]
    pre, y = kernels.bias_act_fwd(rows(x), b, kind)
    return y.reshape(x.shape), ActivationCache(pre, kind, x.shape)


def activation_backward(dy, cache):         # dy: (..., C) -> d(x + b): (..., C)
    return kernels.act_bwd(rows(dy), cache.pre, cache.kind).reshape(cache.shape)
