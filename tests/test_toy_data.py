"""The synthetic clips: determinism, layout, balance, and labels that only motion reveals."""

import dataclasses

import numpy as np
import pytest

from videomae_np.data import toy


def test_same_seed_and_step_give_identical_clips_and_other_seeds_differ():
    x1, y1 = toy.batch_at(3, 7, 8)
    x2, y2 = toy.batch_at(3, 7, 8)
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)
    assert not np.array_equal(x1, toy.batch_at(4, 7, 8)[0])
    assert not np.array_equal(x1, toy.batch_at(3, 8, 8)[0])


def test_stream_from_any_start_equals_the_pure_batches():
    stream = list(toy.stream(5, 4, start=2, stop=5))
    assert len(stream) == 3
    for i, (x, y) in enumerate(stream):
        bx, by = toy.batch_at(5, 2 + i, 4)
        np.testing.assert_array_equal(x, bx)
        np.testing.assert_array_equal(y, by)


def test_clips_are_processor_normalised_float32_in_hf_layout():
    spec = toy.ToySpec(frames=6, size=24)
    x, y = toy.batch_at(0, 0, 5, spec)
    assert x.shape == (5, 6, 3, 24, 24) and x.dtype == np.float32
    assert y.shape == (5,) and y.dtype.kind == "i"
    assert x.min() >= -1.0 and x.max() <= 1.0          # (frame - 0.5) / 0.5 of [0, 1] frames
    frames = toy.denormalise(x)
    np.testing.assert_allclose(toy.normalise(frames), x, atol=1e-6)


def test_labels_are_balanced_within_every_batch():
    for step in range(5):
        _, y = toy.batch_at(1, step, 32)
        assert np.bincount(y, minlength=4).tolist() == [8, 8, 8, 8]
    _, y = toy.make_dataset(96, 2, chunk=32)
    assert np.bincount(y, minlength=4).tolist() == [24] * 4


def test_make_dataset_is_deterministic_and_chunk_independent_of_count():
    xa, ya = toy.make_dataset(40, 9, chunk=16)
    xb, yb = toy.make_dataset(40, 9, chunk=16)
    np.testing.assert_array_equal(xa, xb)
    np.testing.assert_array_equal(ya, yb)
    x_small, _ = toy.make_dataset(16, 9, chunk=16)
    np.testing.assert_array_equal(x_small, xa[:16])      # a prefix of a larger set


def test_first_frame_is_the_same_whatever_the_label():
    """Every label-independent draw happens before the direction is chosen, so the first frame
    of a scene is identical for all four directions: the label is only visible in motion."""
    rng = np.random.default_rng(0)
    scenes = toy.draw_scenes(rng, 6)
    clips = [toy.render(scenes, np.full(6, k)) for k in range(4)]
    for k in range(1, 4):
        np.testing.assert_array_equal(clips[k][:, 0], clips[0][:, 0])
        assert not np.array_equal(clips[k][:, 1:], clips[0][:, 1:])


def test_first_frames_carry_no_label_information_a_motion_feature_does():
    """A nearest-class-mean classifier on first frames stays near chance on held-out clips,
    while the same classifier on a crude motion feature (frame differences weighted by the
    image gradient) is far above it."""
    spec = toy.ToySpec()
    x_tr, y_tr = toy.make_dataset(512, 11, spec)
    x_te, y_te = toy.make_dataset(512, 12, spec)

    def accuracy(feature):
        f_tr, f_te = feature(x_tr), feature(x_te)
        means = np.stack([f_tr[y_tr == k].mean(0) for k in range(4)])
        pred = np.argmin(((f_te[:, None] - means[None]) ** 2).sum(-1), axis=1)
        return (pred == y_te).mean()

    def first_frame(x):
        return x[:, 0].reshape(len(x), -1)

    def motion(x):        # optical-flow sign: -dI/dt * dI/dx (and dy), summed over the clip
        g = x.mean(axis=2)                              # (B, T, H, W) grey
        dt = np.diff(g, axis=1)[:, :, 1:-1, 1:-1]
        gx = (g[:, :-1, 1:-1, 2:] - g[:, :-1, 1:-1, :-2]) / 2
        gy = (g[:, :-1, 2:, 1:-1] - g[:, :-1, :-2, 1:-1]) / 2
        f = np.stack([-(dt * gx).sum((1, 2, 3)), -(dt * gy).sum((1, 2, 3))], axis=1)
        return f / (np.linalg.norm(f, axis=1, keepdims=True) + 1e-12)    # direction only

    assert accuracy(first_frame) < 0.35          # chance is 0.25 (measured 0.22)
    assert accuracy(motion) > 0.7                # measured 0.91


def test_spec_changes_the_clips_and_round_trips_as_a_dict():
    spec = toy.ToySpec(noise=0.0, speed=(2.0, 2.0))
    assert toy.ToySpec(**spec.to_dict()) == spec
    a, _ = toy.batch_at(0, 0, 2, spec)
    b, _ = toy.batch_at(0, 0, 2, dataclasses.replace(spec, noise=0.1))
    assert not np.array_equal(a, b)


def test_load_video_folder_without_videos_is_a_clear_error(tmp_path):
    from videomae_np.data import load_video_folder
    with pytest.raises(FileNotFoundError, match="no videos"):
        load_video_folder(tmp_path)
    with pytest.raises(FileNotFoundError, match="not a directory"):
        load_video_folder(tmp_path / "missing")


def test_load_video_folder_reads_class_subfolders_through_the_processor(tmp_path):
    from videomae_np.data import load_video_folder
    from videomae_np.video import write_video
    for k, name in enumerate(("left", "right")):
        (tmp_path / name).mkdir()
        for i in range(2):
            x, _ = toy.batch_at(k, i, 1, toy.ToySpec(size=20, frames=6))
            write_video(tmp_path / name / f"v{i}.gif",
                        (toy.denormalise(x[0]).transpose(0, 2, 3, 1) * 255).astype(np.uint8))
    clips, labels, classes = load_video_folder(tmp_path, num_frames=4, image_size=16)
    assert classes == ["left", "right"]
    assert labels.tolist() == [0, 0, 1, 1]
    assert clips.shape == (4, 4, 3, 16, 16) and clips.dtype == np.float32
    assert clips.min() >= -1.0 and clips.max() <= 1.0


@pytest.mark.parametrize("classes", sorted(toy.CLASS_SETS))
def test_every_class_set_keeps_the_first_frame_label_free(classes):
    spec = toy.ToySpec(classes=classes, objects=2)
    scenes = toy.draw_scenes(np.random.default_rng(3), 4, spec)
    clips = [toy.render(scenes, np.full(4, k), spec) for k in range(spec.num_classes)]
    for k in range(1, spec.num_classes):
        np.testing.assert_array_equal(clips[k][:, 0], clips[0][:, 0])
        assert not np.array_equal(clips[k][:, 1:], clips[0][:, 1:]), spec.labels[k]
    _, y = toy.batch_at(0, 0, 2 * spec.num_classes, spec)
    assert np.bincount(y).tolist() == [2] * spec.num_classes


def test_unknown_class_set_is_refused():
    with pytest.raises(ValueError, match="classes"):
        toy.ToySpec(classes="colours")


def test_the_premise_of_tube_masking_holds_on_the_default_clips():
    """What the toy is built for (see the module docstring), measured on noise-free renders:
    texture in most patches well above the sensor noise (norm-pix targets are patterns), objects
    that cross at least one patch per clip, and consecutive frames that are mostly alike."""
    spec = toy.ToySpec()
    rng = np.random.default_rng(5)
    scenes = toy.draw_scenes(rng, 64, spec)
    labels = toy.balanced_labels(rng, 64)
    clean = toy.denormalise(toy.render(scenes, labels, dataclasses.replace(spec, noise=0.0)))
    p, t = 4, 2                                             # the toy model's patch and tubelet
    B, T, C, S, _ = clean.shape
    tub = clean.reshape(B, T // t, t, C, S // p, p, S // p, p).transpose(0, 1, 4, 6, 3, 2, 5, 7)
    patch_std = tub.reshape(B, T // t, S // p, S // p, C, -1).std(-1, ddof=1)     # per channel
    assert np.median(patch_std) > 3 * spec.noise, np.median(patch_std)
    travel = spec.speed[0] * (spec.frames - 1)
    assert travel >= p                                      # every object crosses a patch
    # redundancy: between consecutive frames most pixels keep their value (only the objects move)
    changed = (np.abs(np.diff(clean, axis=1)).max(axis=2) > 0.05).mean()
    assert changed < 0.3, changed         # measured 0.29 with two shapes (0.19 with one)
