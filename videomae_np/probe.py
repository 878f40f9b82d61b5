"""A linear probe of a frozen encoder on the toy clips: what its features already say about the
label, before any fine-tuning.

The features are what the classification head reads: the encoder's last hidden state, averaged
over all tokens (no mask). A ridge classifier (one-hot targets, lambda 1 on standardised features,
a bias) is fitted in closed form on `fit` clips of one toy stream and scored on `score` clips of
another. Nothing is trained by gradient, so the probe has no learning rate or steps to tune, and
fine-tuning noise (a 128-clip fine-tuning moves by 10-30 points between seeds) does not enter.
"""

from __future__ import annotations

import numpy as np

from .data import toy

FIT_STREAM, SCORE_STREAM = 777, 888      # toy streams of the probe's clips (pretraining uses 0, 1, 2...)
BATCH = 64


def pooled_features(model, clips: int, stream: int, spec: toy.ToySpec = toy.ToySpec()):
    """(clips, hidden) mean-pooled last hidden states of `model` (a VideoMAEModel) and the labels,
    for the first `clips` clips of toy stream `stream`, in batches of BATCH."""
    feats, labels = [], []
    for step in range(-(-clips // BATCH)):
        x, y = toy.batch_at(stream, step, BATCH, spec)
        h = model(x.astype(model.dtype)).last_hidden_state
        feats.append(np.asarray(h, np.float64).mean(axis=1))
        labels.append(y)
    return np.concatenate(feats)[:clips], np.concatenate(labels)[:clips]


def ridge_accuracy(x_fit, y_fit, x_score, y_score, num_classes: int, lam: float = 1.0) -> float:
    """Accuracy on (x_score, y_score) of a ridge classifier fitted on (x_fit, y_fit): features
    standardised with the fit set's mean and std, a bias column, one-hot targets, the class with
    the largest score."""
    mu, sd = x_fit.mean(axis=0), x_fit.std(axis=0) + 1e-6
    a, b = (np.c_[(x - mu) / sd, np.ones(len(x))] for x in (x_fit, x_score))
    w = np.linalg.solve(a.T @ a + lam * np.eye(a.shape[1]), a.T @ np.eye(num_classes)[y_fit])
    return float(np.mean(np.argmax(b @ w, axis=1) == y_score))


def toy_probe_accuracy(model, fit: int = 1024, score: int = 512, spec: toy.ToySpec = toy.ToySpec()) -> float:
    """Held-out accuracy of the linear probe of `model`'s frozen, mean-pooled features."""
    x_fit, y_fit = pooled_features(model, fit, FIT_STREAM, spec)
    x_score, y_score = pooled_features(model, score, SCORE_STREAM, spec)
    return ridge_accuracy(x_fit, y_fit, x_score, y_score, spec.num_classes)
