"""Bad inputs to the models fail with messages that say what was expected and what was found."""

import numpy as np
import pytest

import videomae_np as vm
from conftest import TINY


@pytest.fixture(scope="module")
def models():
    cfg = vm.VideoMAEConfig(**TINY)
    return cfg, vm.VideoMAEModel(cfg), vm.VideoMAEForPreTraining(cfg), vm.VideoMAEForVideoClassification(cfg)


def _x(cfg, batch=2):
    return np.zeros((batch, cfg.num_frames, cfg.num_channels, *cfg.image_hw), np.float32)


def test_wrong_rank_channels_size_frames(models):
    cfg, base, _, _ = models
    x = _x(cfg)
    with pytest.raises(ValueError, match=r"\(batch, frames, channels, height, width\).*\(4, 3, 16, 16\)"):
        base(x[0])
    with pytest.raises(ValueError, match="1 channels.*expects 3"):
        base(x[:, :, :1])
    with pytest.raises(ValueError, match="16x8.*expects 16x16"):
        base(x[..., :8])
    with pytest.raises(ValueError, match="2 frames.*expects 4"):
        base(x[:, :2])


def test_non_finite_pixels(models):
    cfg, base, _, _ = models
    x = _x(cfg)
    x[0, 1, 2, 3, 4] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        base(x)


def test_bad_masks(models):
    cfg, base, pt, _ = models
    x = _x(cfg)
    good = vm.tube_mask(2, cfg.grid, 0.5, rng=0)
    with pytest.raises(TypeError, match="bool array.*int64"):
        base(x, bool_masked_pos=good.astype(np.int64))
    with pytest.raises(ValueError, match=r"\(2, 8\), got \(1, 8\)"):
        base(x, bool_masked_pos=good[:1])
    uneven = good.copy()
    uneven[0] = False
    uneven[0, 0] = True
    with pytest.raises(ValueError, match="same number of tokens"):
        base(x, bool_masked_pos=uneven)
    with pytest.raises(ValueError, match="at least one visible"):
        base(x, bool_masked_pos=np.ones((2, 8), bool))
    with pytest.raises(ValueError, match="needs bool_masked_pos"):
        pt(x)
    with pytest.raises(ValueError, match="nothing to reconstruct"):
        pt(x, bool_masked_pos=np.zeros((2, 8), bool))


def test_bad_labels(models):
    cfg, _, _, clf = models
    x = _x(cfg)
    with pytest.raises(ValueError, match=r"class labels must lie in \[0, 3\)"):
        clf(x, labels=np.array([0, 3]))
    with pytest.raises(ValueError, match="one class index per sample"):
        clf(x, labels=np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="multi-label targets must have shape"):
        clf(x, labels=np.zeros((2, 4)))
    with pytest.raises(ValueError, match="needs labels"):
        clf.value_and_grad(x)


def test_head_mask_shape_is_checked(models):
    cfg, base, _, _ = models
    with pytest.raises(ValueError, match="head_mask must have shape"):
        base(_x(cfg), head_mask=np.ones(4))


def test_bad_dtype_and_config_type():
    cfg = vm.VideoMAEConfig(**TINY)
    with pytest.raises(TypeError, match="float32 or float64"):
        vm.VideoMAEModel(cfg, dtype=np.float16)
    with pytest.raises(TypeError, match="VideoMAEConfig"):
        vm.VideoMAEModel(dict(TINY))
