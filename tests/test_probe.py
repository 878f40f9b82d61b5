"""The linear probe of a frozen encoder (videomae_np.probe) and its cache beside a pretraining run."""

import json

import numpy as np
import pytest
import scipy.linalg

import videomae_np as vm
from videomae_np import ablate, probe
from videomae_np.settings import toy_config


def _blobs(rng, n, classes=4, dim=6, spread=0.3):
    y = rng.integers(0, classes, n)
    centres = np.eye(classes, dim) * 3.0
    return centres[y] + spread * rng.standard_normal((n, dim)), y


def test_ridge_predicts_as_the_augmented_least_squares_problem_does():
    rng = np.random.default_rng(0)
    x_fit, y_fit = _blobs(rng, 200, spread=2.5)
    x_score, y_score = _blobs(rng, 300, spread=2.5)
    lam = 1.0
    mu, sd = x_fit.mean(0), x_fit.std(0) + 1e-6
    a = np.c_[(x_fit - mu) / sd, np.ones(len(x_fit))]
    b = np.c_[(x_score - mu) / sd, np.ones(len(x_score))]
    # ridge as ordinary least squares on [A; sqrt(lam) I] w = [Y; 0] (scipy's solver, not ours)
    w = scipy.linalg.lstsq(np.r_[a, np.sqrt(lam) * np.eye(a.shape[1])],
                           np.r_[np.eye(4)[y_fit], np.zeros((a.shape[1], 4))])[0]
    expected = np.mean(np.argmax(b @ w, 1) == y_score)
    got = probe.ridge_accuracy(x_fit, y_fit, x_score, y_score, 4, lam)
    assert got == pytest.approx(expected, abs=1e-12)
    assert 0.4 < got < 1.0                    # overlapping blobs: a real test of the weights


def test_ridge_separates_separable_classes_and_not_labels_unrelated_to_the_features():
    rng = np.random.default_rng(1)
    x, y = _blobs(rng, 400)
    assert probe.ridge_accuracy(x[:300], y[:300], x[300:], y[300:], 4) == 1.0
    noise = rng.standard_normal((1200, 6))
    labels = rng.integers(0, 4, 1200)
    assert probe.ridge_accuracy(noise[:800], labels[:800], noise[800:], labels[800:], 4) < 0.4


def test_pooled_features_are_the_mean_of_the_last_hidden_state_over_every_token():
    model = vm.VideoMAEModel(toy_config(), seed=0, dtype=np.float32)
    feats, labels = probe.pooled_features(model, 70, 5)          # two batches, the second cut
    assert feats.shape == (70, model.config.hidden_size) and labels.shape == (70,)
    from videomae_np.data import toy
    x, y = toy.batch_at(5, 1, probe.BATCH)
    h = model(x.astype(np.float32)).last_hidden_state
    np.testing.assert_allclose(feats[64:], h.mean(axis=1)[:6], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(labels[64:], y[:6])


def test_a_pretraining_runs_probe_is_kept_beside_it_and_measured_again_when_it_does_not_match(tmp_path, monkeypatch):
    model = vm.VideoMAEForPreTraining(toy_config(), seed=0, dtype=np.float32)
    model.save_pretrained(tmp_path)
    budget = ablate.Budget(pretrain_steps=1, finetune_steps=1, train_clips=8, eval_clips=8,
                           probe_fit=64, probe_score=64)
    first = ablate._probe(budget, 0, tmp_path, tmp_path)
    kept = json.loads((tmp_path / "probe.json").read_text())
    assert kept["accuracy"] == first and kept["fit"] == 64 and kept["score"] == 64
    calls = []
    real = probe.toy_probe_accuracy
    monkeypatch.setattr(probe, "toy_probe_accuracy", lambda *a, **k: calls.append(a) or real(*a, **k))
    assert ablate._probe(budget, 0, tmp_path, tmp_path) == first and not calls         # read back
    other = ablate.Budget(**{**budget.__dict__, "probe_score": 128})
    ablate._probe(other, 0, tmp_path, tmp_path)                                          # another budget
    (tmp_path / "probe.json").write_text("{not json")
    assert ablate._probe(budget, 0, tmp_path, tmp_path) == first                         # replaced
    assert len(calls) == 2


def test_an_untrained_encoders_probe_is_kept_once_per_seed(tmp_path, monkeypatch):
    budget = ablate.Budget(pretrain_steps=1, finetune_steps=1, train_clips=8, eval_clips=8,
                           probe_fit=64, probe_score=64)
    calls = []
    real = probe.toy_probe_accuracy
    monkeypatch.setattr(probe, "toy_probe_accuracy", lambda *a, **k: calls.append(a) or real(*a, **k))
    first = ablate._probe(budget, 0, tmp_path, None)
    assert ablate._probe(budget, 0, tmp_path, None) == first and len(calls) == 1   # the data study's 5 sizes
    ablate._probe(budget, 1, tmp_path, None)                                         # another seed, another model
    assert len(calls) == 2 and len(list((tmp_path / "untrained").iterdir())) == 2

