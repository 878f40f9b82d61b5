"""The transformer MLP: y = act(x W1^T + b1) W2^T + b2. Each bias rides on its matmul (the output
starts from it), and an optional residual is folded into the second one (y + residual, as the
block wants it); the activation then reads the first matmul's output, which backward keeps."""

from typing import NamedTuple

from .activations import ActivationCache, activation_backward, activation_forward
from .linear import LinearCache, linear_backward, linear_forward


class MLPCache(NamedTuple):
    fc1: LinearCache          # input rows (R, C)
    act: ActivationCache      # x W1^T + b1, (R, I)
    fc2: LinearCache          # act(...) as rows (R, I): the hidden activation itself


def mlp_forward(x, p, act, residual=None):  # x: (..., C), p: fc1_w (I, C), fc1_b, fc2_w (C, I), fc2_b
    a, c1 = linear_forward(x, p["fc1_w"], p["fc1_b"])
    hid, ca = activation_forward(a, act)
    y, c2 = linear_forward(hid, p["fc2_w"], p["fc2_b"], residual)
    return y, MLPCache(c1, ca, c2)


def mlp_hidden(cache):                      # -> act(x W1^T + b1): (..., I), kept by fc2 as its input
    return cache.fc2.x2.reshape(cache.fc2.shape)


def mlp_backward(dy, cache):                # dy: (..., C) -> dx (..., C), grads dict
    dhid, g_fc2_w, g_fc2_b = linear_backward(dy, cache.fc2)
    da = activation_backward(dhid, cache.act)
    dx, g_fc1_w, g_fc1_b = linear_backward(da, cache.fc1)
    return dx, {"fc1_w": g_fc1_w, "fc1_b": g_fc1_b, "fc2_w": g_fc2_w, "fc2_b": g_fc2_b}
