"""The one rule for parameter names (videomae_np/params.py): which are LayerNorms', which decay."""

import numpy as np

import videomae_np as vm
from videomae_np.params import decays, is_norm

from conftest import TINY


def test_weight_decay_skips_biases_norms_and_mask_token():
    cfg = vm.VideoMAEConfig(**TINY)
    names = list(vm.VideoMAEForPreTraining(cfg).params) + list(vm.VideoMAEForVideoClassification(cfg).params)
    for n in names:
        exempt = (n.endswith(".bias") or n == "mask_token" or "layernorm" in n or "norm." in n
                  or n.startswith("fc_norm"))
        assert decays(n) == (not exempt), n
    assert not decays("decoder.norm.weight")
    assert not decays("fc_norm.weight")
    assert decays("videomae.encoder.layer.0.attention.attention.query.weight")


def test_one_norm_rule_for_initialisation_and_weight_decay():
    """Every LayerNorm parameter the models create starts at weight 1 / bias 0 and is not decayed,
    and a head's own LayerNorm named like `head_ln` is recognised by the same rule."""
    from videomae_np.settings import toy_config
    for cls in (vm.VideoMAEForPreTraining, vm.VideoMAEForVideoClassification):
        model = cls(toy_config(), seed=0)
        for name, value in model.params.items():
            if is_norm(name):
                assert not decays(name), name
                assert np.all(value == (1.0 if name.endswith("weight") else 0.0)), name
    assert is_norm("head_ln.weight") and not decays("head_ln.weight")
    assert not is_norm("classifier.weight") and decays("classifier.weight")
