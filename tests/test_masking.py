"""Properties of the mask generators: counts, tube structure, determinism by seed, errors."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import videomae_np as vm
from videomae_np.masking import visible_and_masked_indices

SETTINGS = settings(deadline=None, max_examples=40, derandomize=True)
grids = st.tuples(st.integers(1, 8), st.integers(1, 7), st.integers(1, 7))
ratios = st.floats(0.0, 0.99)


@SETTINGS
@given(st.integers(1, 5), grids, ratios, st.integers(0, 2**31))
def test_tube_mask_counts_and_tubes(batch, grid, ratio, seed):
    m = vm.tube_mask(batch, grid, ratio, rng=seed)
    t, gh, gw = grid
    per_frame = gh * gw
    assert m.shape == (batch, t * per_frame) and m.dtype == np.bool_
    assert np.all(m.sum(axis=1) == t * int(ratio * per_frame))      # equal counts per sample
    frames = m.reshape(batch, t, per_frame)
    assert np.all(frames == frames[:, :1])                          # same patches in every slot


@SETTINGS
@given(st.integers(1, 5), st.integers(1, 400), ratios, st.integers(0, 2**31))
def test_random_mask_counts(batch, n, ratio, seed):
    m = vm.random_mask(batch, n, ratio, rng=seed)
    assert m.shape == (batch, n) and np.all(m.sum(axis=1) == int(ratio * n))


@SETTINGS
@given(st.integers(1, 4), grids, st.floats(0.1, 0.95), st.integers(0, 2**31))
def test_masks_are_deterministic_by_seed(batch, grid, ratio, seed):
    a = vm.tube_mask(batch, grid, ratio, rng=seed)
    assert np.array_equal(a, vm.tube_mask(batch, grid, ratio, rng=np.random.default_rng(seed)))
    n = int(np.prod(grid))
    assert np.array_equal(vm.random_mask(batch, n, ratio, rng=seed), vm.random_mask(batch, n, ratio, rng=seed))


def test_samples_get_different_masks_and_seeds_differ():
    m = vm.tube_mask(8, (4, 8, 8), 0.75, rng=0)
    assert len({row.tobytes() for row in m}) > 1
    assert not np.array_equal(m, vm.tube_mask(8, (4, 8, 8), 0.75, rng=1))


@SETTINGS
@given(st.integers(1, 4), st.integers(2, 60), st.floats(0.1, 0.9), st.integers(0, 2**31))
def test_visible_and_masked_indices_partition_in_ascending_order(batch, n, ratio, seed):
    m = vm.random_mask(batch, n, ratio, rng=seed)
    vis, msk = visible_and_masked_indices(m)
    for b in range(batch):
        assert np.array_equal(vis[b], np.flatnonzero(~m[b]))
        assert np.array_equal(msk[b], np.flatnonzero(m[b]))


@pytest.mark.parametrize("ratio", [1.0, -0.1, 1.5])
def test_bad_ratio_is_rejected(ratio):
    with pytest.raises(ValueError, match="mask_ratio"):
        vm.tube_mask(2, (2, 2, 2), ratio)


def test_bad_batch_is_rejected():
    with pytest.raises(ValueError, match="batch_size"):
        vm.random_mask(0, 10, 0.5)


@SETTINGS
@given(st.integers(1, 4), st.integers(1, 8), st.integers(1, 3), st.integers(1, 3), st.sampled_from([0.25, 0.5, 0.75]),
       st.integers(0, 2**31))
def test_running_cell_mask_counts_motion_and_coverage(batch, t, ry, rx, ratio, seed):
    grid = (t, 2 * ry, 2 * rx)
    m = vm.running_cell_mask(batch, grid, ratio, rng=seed)
    per_frame = 4 * ry * rx
    frames = m.reshape(batch, t, per_frame)
    assert np.all(frames.sum(axis=2) == int(ratio * 4) * ry * rx)          # equal counts, every slot
    if t >= 2:
        assert np.all(np.any(frames[:, 1:] != frames[:, :-1], axis=2))   # the pattern moves
    if t >= 4:
        assert np.all(~frames[:, :4].all(axis=1))                        # every patch seen in 4 slots
    assert np.array_equal(m, vm.running_cell_mask(batch, grid, ratio, rng=seed))


def test_running_cell_mask_needs_a_grid_divisible_by_the_cell():
    with pytest.raises(ValueError, match="not divisible by the cell"):
        vm.running_cell_mask(1, (2, 3, 4), 0.5)


@SETTINGS
@given(st.integers(1, 5), grids, ratios, st.integers(0, 2**31))
def test_frame_mask_hides_whole_slots_with_equal_counts(batch, grid, ratio, seed):
    m = vm.frame_mask(batch, grid, ratio, rng=seed)
    t, gh, gw = grid
    assert m.shape == (batch, t * gh * gw) and m.dtype == np.bool_
    slots = m.reshape(batch, t, gh * gw)
    assert np.all(slots == slots[:, :, :1])                         # a slot is all in or all out
    assert np.all(slots[:, :, 0].sum(axis=1) == int(ratio * t))     # the same count per sample


@pytest.mark.parametrize("kind", sorted(vm.MASKS))
def test_every_registered_mask_kind_is_reproducible_and_usable_by_the_model(kind):
    """Each registry entry makes (B, N) bool masks with equal counts per sample, the same for the
    same seed, which the pretraining model accepts."""
    cfg = vm.VideoMAEConfig(image_size=16, patch_size=4, num_frames=8, tubelet_size=2, hidden_size=16,
                            num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                            decoder_hidden_size=16, decoder_num_hidden_layers=1,
                            decoder_num_attention_heads=2, decoder_intermediate_size=32)
    m = vm.make_mask(kind, 3, cfg.grid, 0.75, rng=5)
    assert m.shape == (3, cfg.num_patches) and m.dtype == np.bool_
    assert len(set(m.sum(axis=1).tolist())) == 1 and 0 < m.sum(axis=1)[0] < cfg.num_patches
    np.testing.assert_array_equal(m, vm.make_mask(kind, 3, cfg.grid, 0.75, rng=5))
    x = np.random.default_rng(0).standard_normal((3, 8, 3, 16, 16)).astype(np.float32)
    out = vm.VideoMAEForPreTraining(cfg, seed=0)(x, bool_masked_pos=m)
    assert out.logits.shape[1] == m.sum(axis=1)[0] and np.isfinite(out.loss)


def test_unknown_mask_kind_names_the_registered_ones():
    with pytest.raises(ValueError, match="tube, random, frame, running_cell"):
        vm.make_mask("checkerboard", 1, (2, 2, 2), 0.5)
