"""pixel_values of any dtype but float32/float64 are refused with one line that says what to do
(transformers' Conv3d refuses them too); float32/float64 behave exactly as before."""

import numpy as np
import pytest

import videomae_np as vm
from conftest import TINY


@pytest.fixture(scope="module")
def model():
    return vm.VideoMAEModel(vm.VideoMAEConfig(**TINY), seed=0, dtype=np.float32)


def _x(cfg, dtype):
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (2, cfg.num_frames, cfg.num_channels, *cfg.image_hw)).astype(dtype)


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.int64, np.float16, np.bool_])
def test_non_float32_64_pixel_values_are_a_type_error_saying_what_to_do(model, dtype):
    name = np.dtype(dtype).name
    for entry in (model, model.value_and_grad):
        with pytest.raises(TypeError, match=rf"pixel_values must be float32 or float64 \(the image "
                                            rf"processor's output\); got {name}; run "
                                            rf"VideoMAEImageProcessor or divide by 255") as e:
            entry(_x(model.config, dtype))
        assert "\n" not in str(e.value)


def test_float32_and_float64_pixels_still_run_and_agree(model):
    x64 = _x(model.config, np.float64) / 255
    a = model(x64).last_hidden_state
    b = model(x64.astype(np.float32)).last_hidden_state
    assert a.dtype == np.float32 and np.array_equal(a, b)
