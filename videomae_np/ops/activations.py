"""Element-wise activations by transformers' ``hidden_act`` names, optionally with a fused bias."""

from .. import kernels
from ._util import rows

ACTIVATIONS = dict(kernels.ACT_CODES)


def activation_forward(x, name, b=None):   # x: (..., C), b: (C,) | None -> y = act(x + b): (..., C)
    kind = ACTIVATIONS[name]
    pre, y = kernels.bias_act_fwd(rows(x), b, kind)
    return y.reshape(x.shape), (pre, kind, x.shape)


def activation_backward(dy, cache):         # dy: (..., C) -> d(x + b): (..., C)
    pre, kind, shape = cache
    return kernels.act_bwd(rows(dy), pre, kind).reshape(shape)
