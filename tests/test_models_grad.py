"""Whole-model gradients by finite differences, in the modes the torch oracle cannot cover:
training (dropout + drop path with a fixed generator) and head masks."""

import numpy as np
import pytest

import videomae_np as vm
from conftest import TINY
from _strategies import fd_check

CFG = dict(TINY, hidden_dropout_prob=0.2, attention_probs_dropout_prob=0.3)


def _clip(cfg, batch=2, seed=0):
    return np.random.default_rng(seed).standard_normal((batch, cfg.num_frames, cfg.num_channels, *cfg.image_hw))


@pytest.mark.parametrize("cls_name", ["VideoMAEForPreTraining", "VideoMAEForVideoClassification"])
def test_training_mode_gradients_match_finite_differences(cls_name):
    cfg = vm.VideoMAEConfig(**CFG)
    m = getattr(vm, cls_name)(cfg, seed=1, dtype=np.float64).train(True, drop_path_rate=0.5)
    x = _clip(cfg)
    kw = ({"bool_masked_pos": vm.tube_mask(2, cfg.grid, 0.5, rng=0)} if cls_name == "VideoMAEForPreTraining"
          else {"labels": np.array([0, 2])})
    loss = lambda: float(m(x, rng=np.random.default_rng(3), **kw).loss)
    out, grads = m.value_and_grad(x, rng=np.random.default_rng(3), **kw)
    assert out.loss == loss()                      # same generator state -> same masks
    assert loss() != float(m(x, rng=np.random.default_rng(4), **kw).loss)   # masks really are random
    rng = np.random.default_rng(0)
    for k in ["videomae.embeddings.patch_embeddings.projection.weight",
              "videomae.encoder.layer.0.attention.attention.query.weight",
              "videomae.encoder.layer.1.intermediate.dense.bias", "videomae.encoder.layer.1.layernorm_after.weight"]:
        fd_check(loss, m.params[k], grads[k], rng, n=5)


def test_eval_mode_ignores_dropout_probabilities():
    cfg = vm.VideoMAEConfig(**CFG)
    m = vm.VideoMAEModel(cfg, seed=0, dtype=np.float64)
    x = _clip(cfg)
    a = m(x, rng=np.random.default_rng(1)).last_hidden_state
    b = m(x, rng=np.random.default_rng(2)).last_hidden_state
    assert np.array_equal(a, b)
    m.train()
    c = m(x, rng=np.random.default_rng(1)).last_hidden_state
    assert not np.allclose(a, c)


def test_head_mask_gradients_and_semantics():
    cfg = vm.VideoMAEConfig(**TINY)
    m = vm.VideoMAEModel(cfg, seed=2, dtype=np.float64)
    x = _clip(cfg)
    ones = np.ones((cfg.num_hidden_layers, cfg.num_attention_heads))
    # all-ones takes the unfused path, which normalises P before P v rather than after: equal up
    # to rounding
    np.testing.assert_allclose(m(x, head_mask=ones).last_hidden_state, m(x).last_hidden_state,
                               rtol=1e-13, atol=1e-14)
    hm = np.array([[1.0, 0.0, 0.7], [0.3, 1.0, 1.0]])
    out = m(x, head_mask=hm, output_attentions=True)
    assert np.all(out.attentions[0][:, 1] == 0)    # a masked head contributes nothing
    go = np.random.default_rng(3).standard_normal(out.last_hidden_state.shape)
    _, grads = m.value_and_grad(x, head_mask=hm, grad_output=go, input_grad=True)
    f = lambda: float(np.sum(m(x, head_mask=hm).last_hidden_state * go))
    rng = np.random.default_rng(4)
    for k in ["encoder.layer.0.attention.attention.value.weight", "encoder.layer.1.output.dense.weight"]:
        fd_check(f, m.params[k], grads[k], rng, n=5)
    fd_check(f, x, grads["pixel_values"], rng, n=8)
