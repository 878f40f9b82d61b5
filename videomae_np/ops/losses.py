"""Losses with their gradients w.r.t. the prediction (the targets carry no gradient).

  mse_forward          mean squared error (pretraining reconstruction; regression head)
  l1_forward           mean absolute error (VideoMAE's Table 1f)
  smooth_l1_forward    Huber-like: quadratic below beta, linear above (torch's SmoothL1Loss, beta 1)
  cross_entropy_forward  softmax cross-entropy over integer labels, -100 ignored (torch's default)
  bce_with_logits_forward  multi-label sigmoid cross-entropy, mean over all entries
"""

from typing import NamedTuple

import numpy as np

IGNORE_INDEX = -100  # torch.nn.CrossEntropyLoss default
SMOOTH_L1_BETA = 1.0  # torch.nn.SmoothL1Loss default


class DiffCache(NamedTuple):               # MSE's and L1's cache
    diff: np.ndarray          # pred - target, the prediction's shape


class SmoothL1Cache(NamedTuple):
    diff: np.ndarray          # pred - target, the prediction's shape
    beta: float               # where the quadratic part ends


def mse_forward(pred, target):              # pred, target: same shape -> scalar
    diff = pred - target
    return np.mean(diff * diff), DiffCache(diff)


def mse_backward(dloss, cache):             # -> d(pred)
    diff = cache.diff
    return diff * (dloss * 2.0 / diff.size)


def l1_forward(pred, target):               # pred, target: same shape -> scalar
    diff = pred - target
    return np.mean(np.abs(diff)), DiffCache(diff)


def l1_backward(dloss, cache):              # d|x|/dx = sign(x), 0 at 0 (torch's convention)
    diff = cache.diff
    return np.sign(diff) * (dloss / diff.size)


def smooth_l1_forward(pred, target, beta=SMOOTH_L1_BETA):   # -> scalar
    diff = pred - target
    a = np.abs(diff)
    return np.mean(np.where(a < beta, 0.5 * diff * diff / beta, a - 0.5 * beta)), SmoothL1Cache(diff, beta)


def smooth_l1_backward(dloss, cache):
    diff, beta = cache.diff, cache.beta
    return np.where(np.abs(diff) < beta, diff / beta, np.sign(diff)) * (dloss / diff.size)


# the reconstruction losses of pretraining: name -> (forward, backward); Table 1f of the paper
RECONSTRUCTION_LOSSES = {
    "mse": (mse_forward, mse_backward),
    "l1": (l1_forward, l1_backward),
    "smooth_l1": (smooth_l1_forward, smooth_l1_backward),
}


def _log_softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


class CrossEntropyCache(NamedTuple):
    logp: np.ndarray          # (B, K) log-softmax of the logits
    safe: np.ndarray          # (B,) int labels, ignored ones replaced by 0
    valid: np.ndarray         # (B,) bool: the label is not IGNORE_INDEX
    n: int                    # the number of valid labels (the mean's divisor)


def cross_entropy_forward(logits, labels):  # logits: (B, K), labels: (B,) int -> scalar
    K = logits.shape[-1]
    labels = labels.reshape(-1)
    if labels.shape[0] != logits.shape[0]:
        raise ValueError(f"labels hold {labels.shape[0]} entries for a batch of {logits.shape[0]}")
    valid = labels != IGNORE_INDEX
    if np.any((labels[valid] < 0) | (labels[valid] >= K)):
        raise ValueError(f"class labels must lie in [0, {K}) (or be {IGNORE_INDEX}); got "
                         f"{np.unique(labels[valid]).tolist()}")
    logp = _log_softmax(logits)
    n = int(valid.sum())
    safe = np.where(valid, labels, 0)
    picked = np.take_along_axis(logp, safe[:, None], axis=1)[:, 0]
    loss = -(picked * valid).sum() / n if n else logits.dtype.type(np.nan)
    return logits.dtype.type(loss), CrossEntropyCache(logp, safe, valid, n)


def cross_entropy_backward(dloss, cache):
    safe, valid, n = cache.safe, cache.valid, cache.n
    g = np.exp(cache.logp)
    g[np.arange(len(safe)), safe] -= 1.0
    g *= (valid[:, None] * (dloss / max(n, 1)))
    return g


class BCECache(NamedTuple):
    z: np.ndarray             # (B, K) logits
    y: np.ndarray             # (B, K) targets in [0, 1]


def bce_with_logits_forward(logits, targets):  # logits, targets: (B, K) -> scalar
    z, y = logits, targets
    # log(1 + e^-|z|) keeps the loss finite for large |z|
    loss = np.mean(np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z))))
    return logits.dtype.type(loss), BCECache(z, y)


def bce_with_logits_backward(dloss, cache):
    z, y = cache.z, cache.y
    sig = 0.5 * (1.0 + np.tanh(0.5 * z))
    return (sig - y) * (dloss / z.size)


# the classification heads' losses by transformers' problem_type: name -> (forward, backward)
CLASSIFICATION_LOSSES = {
    "regression": (mse_forward, mse_backward),
    "single_label_classification": (cross_entropy_forward, cross_entropy_backward),
    "multi_label_classification": (bce_with_logits_forward, bce_with_logits_backward),
}
