"""Losses with their gradients w.r.t. the prediction (the targets carry no gradient).

  mse_forward          mean squared error (pretraining reconstruction; regression head)
  cross_entropy_forward  softmax cross-entropy over integer labels, -100 ignored (torch's default)
  bce_with_logits_forward  multi-label sigmoid cross-entropy, mean over all entries
"""

import numpy as np

IGNORE_INDEX = -100  # torch.nn.CrossEntropyLoss default


def mse_forward(pred, target):              # pred, target: same shape -> scalar
    diff = pred - target
    return np.mean(diff * diff), (diff,)


def mse_backward(dloss, cache):             # -> d(pred)
    (diff,) = cache
    return diff * (dloss * 2.0 / diff.size)


def _log_softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


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
    return logits.dtype.type(loss), (logp, safe, valid, n)


def cross_entropy_backward(dloss, cache):
    logp, safe, valid, n = cache
    g = np.exp(logp)
    g[np.arange(len(safe)), safe] -= 1.0
    g *= (valid[:, None] * (dloss / max(n, 1)))
    return g


def bce_with_logits_forward(logits, targets):  # logits, targets: (B, K) -> scalar
    z, y = logits, targets
    # log(1 + e^-|z|) keeps the loss finite for large |z|
    loss = np.mean(np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z))))
    return logits.dtype.type(loss), (z, y)


def bce_with_logits_backward(dloss, cache):
    z, y = cache
    sig = 0.5 * (1.0 + np.tanh(0.5 * z))
    return (sig - y) * (dloss / z.size)
