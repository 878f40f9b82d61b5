"""The DATASETS registry: every entry gives pretraining and fine-tuning what they read, and every
batch is a pure function of (settings, step)."""

import numpy as np
import pytest

from videomae_np.data import toy
from videomae_np.datasets import DATASETS, dataset_of
from videomae_np.randomness import PICTURE_SEED, PRETRAIN_SET_SEED, finetune_order
from videomae_np.settings import FinetuneSettings, PretrainSettings, toy_config

TINY_MODEL = dict(image_size=16, patch_size=8, num_frames=4, hidden_size=16, num_hidden_layers=1,
                  num_attention_heads=2, intermediate_size=32, decoder_hidden_size=16,
                  decoder_intermediate_size=32)
TINY_TOY = dict(size=16, frames=4, period=8)


def test_every_dataset_offers_what_both_tasks_read():
    for name, entry in DATASETS.items():
        assert isinstance(entry.doc, str) and entry.doc, name
        for method in ("check_pretrain", "pretraining", "finetuning"):
            assert callable(getattr(entry, method)), (name, method)


def test_a_run_reads_the_video_folder_it_names_else_the_toy_clips():
    assert dataset_of(PretrainSettings()) is DATASETS["toy"]
    assert dataset_of(PretrainSettings(data="videos/")) is DATASETS["videos"]
    assert dataset_of(FinetuneSettings(data="videos/")) is DATASETS["videos"]


def test_toy_pretraining_streams_new_clips_every_step_and_draws_the_picture_from_its_own_seed():
    s = PretrainSettings(batch_size=3, seed=5, model=TINY_MODEL, toy=TINY_TOY)
    clips = DATASETS["toy"].pretraining(s, s.model_config())
    np.testing.assert_array_equal(clips.at(7), toy.batch_at(5, 7, 3, s.spec())[0])
    np.testing.assert_array_equal(clips.picture(2), toy.batch_at(PICTURE_SEED, 0, 2, s.spec())[0])


def test_a_fixed_toy_pretraining_set_is_drawn_from_the_same_way_at_every_call():
    s = PretrainSettings(batch_size=4, pretrain_clips=6, model=TINY_MODEL, toy=TINY_TOY)
    first = DATASETS["toy"].pretraining(s, s.model_config())
    again = DATASETS["toy"].pretraining(s, s.model_config())
    np.testing.assert_array_equal(first.at(3), again.at(3))
    pool, _ = toy.make_dataset(6, PRETRAIN_SET_SEED + s.seed, s.spec())
    for clip in first.at(3):
        assert any(np.array_equal(clip, c) for c in pool)


def test_toy_pretraining_refuses_a_model_the_clips_cannot_feed():
    s = PretrainSettings(model=TINY_MODEL, toy={**TINY_TOY, "frames": 8})
    with pytest.raises(ValueError, match="the model expects 4 frames of 16x16.*the toy clips have 8"):
        DATASETS["toy"].check_pretrain(s, s.model_config())


def test_toy_finetuning_batches_follow_the_shuffled_order_of_the_labelled_set():
    s = FinetuneSettings(batch_size=5, train_clips=12, eval_clips=4, model=TINY_MODEL, toy=TINY_TOY)
    data = DATASETS["toy"].finetuning(s, log=print)
    assert data.labels == dict(num_labels=s.spec().num_classes, id2label=dict(enumerate(s.spec().labels)))
    data.start(s.model_config(), out=None, resume=False)
    x, y = data.batch(7)
    idx = finetune_order(s.seed, 7, 5, 12)
    np.testing.assert_array_equal(x, data.x_train[idx])
    np.testing.assert_array_equal(y, data.y_train[idx])
    with pytest.raises(ValueError, match="the model expects 8 frames"):
        data.start(toy_config(), out=None, resume=False)


def test_video_folder_pretraining_draws_from_every_video_and_pictures_the_first(tmp_path):
    from videomae_np import video as V
    rng = np.random.default_rng(0)
    for j in range(3):
        V.write_video(tmp_path / f"clip{j}.mp4", rng.integers(0, 255, (6, 16, 16, 3), dtype=np.uint8))
    s = PretrainSettings(batch_size=4, data=str(tmp_path), model=TINY_MODEL)
    cfg = s.model_config()
    DATASETS["videos"].check_pretrain(s, cfg)          # any model: the processor sizes the frames
    clips = DATASETS["videos"].pretraining(s, cfg)
    assert clips.at(0).shape == (4, 4, 3, 16, 16)
    again = DATASETS["videos"].pretraining(s, cfg)                 # a fresh opening: the same batches
    np.testing.assert_array_equal(clips.at(2), again.at(2))
    assert not np.array_equal(clips.at(2), clips.at(3))
    pictured = clips.picture(4)
    assert len(pictured) == 3                                       # one clip of each video, no more
    drawn = np.concatenate([clips.at(k) for k in range(12)])        # 48 draws from 3 videos
    assert all(any(np.array_equal(d, p) for d in drawn) for p in pictured)
