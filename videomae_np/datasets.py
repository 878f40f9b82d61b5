"""The datasets training reads: one entry per kind, each giving pretraining and fine-tuning what
they need.

    DATASETS["toy"]      synthetic moving shapes (data/toy.py). Pretraining: new clips every step,
                         or a fixed set of pretrain_clips. Fine-tuning: the direction of motion of
                         train_clips labelled clips, scored on eval_clips of another seed.
    DATASETS["videos"]   a folder of real videos (--data). Pretraining: one clip of every video in
                         the folder (data/folder.py). Fine-tuning: DATA/train/<class>/<video> read
                         a clip at a time, scored on DATA/val (data/videos.py, docs/real_videos.md).

A run's settings choose the entry (dataset_of). An entry offers

    check_pretrain(settings, cfg)   refuse a model the clips cannot feed, before a run starts
    pretraining(settings, cfg)      -> Clips: .at(step) the batch (B, T, C, H, W) of update `step`,
                                       .picture(n) the clips the reconstruction picture shows
    finetuning(settings, log)       -> a labelled set:
                                       .labels       num_labels, id2label (, label2id) of the head
                                       .start(cfg, out, resume)  check the model, set up the pixels
                                       .batch(step)  (pixel_values, labels) of update `step`
                                       .loader(start, log)  the batches from `start` on, made ahead
                                           (get(step), close(); annotate(log, prefix), summary(),
                                           rates(): what loading cost, for the progress lines)
                                       .describe(cfg)  what it trains on, for the first log line
                                       .evaluate(model) -> (metrics, one-line summary)

Every batch is a pure function of (settings, step) (videomae_np.randomness), so a resumed run sees
the batches of an uninterrupted one. Adding a kind is one class, one entry and its tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .data import toy
from .data.prefetch import Prefetcher
from .randomness import DATA_STREAM, PICTURE_SEED, PRETRAIN_SET_SEED, finetune_order, step_rng
from .settings import label_fields


@dataclass(frozen=True)
class Clips:
    """The pretraining clips of a run."""
    at: Callable          # at(step) -> (B, T, C, H, W) float32, the batch of update `step`
    picture: Callable     # picture(n) -> (<= n, T, C, H, W), clips to draw (never trained on, if it can)


def _draw(clips, settings, step):
    """batch_size clips of a fixed set for update `step` (drawn with replacement)."""
    rng = step_rng(settings.seed, step, DATA_STREAM)
    return clips[rng.integers(0, len(clips), settings.batch_size)]


# ------------------------------------------------------------------------------------------------
# toy clips
# ------------------------------------------------------------------------------------------------
class ToyClips:
    doc = "synthetic moving shapes, labelled by their motion (the default)"

    def check_pretrain(self, settings, cfg):
        spec = settings.spec()
        if (cfg.num_frames, cfg.image_hw, cfg.num_channels) != (spec.frames, (spec.size,) * 2, spec.channels):
            raise ValueError(
                f"--config/--toy: the model expects {cfg.num_frames} frames of {cfg.image_hw[0]}x"
                f"{cfg.image_hw[1]} with {cfg.num_channels} channels, the toy clips have {spec.frames} "
                f"of {spec.size}x{spec.size} with {spec.channels}; set num_frames/image_size/"
                f"num_channels (--config) and frames/size/channels (--toy) alike")

    def pretraining(self, settings, cfg):
        spec = settings.spec()

        def picture(n):               # clips of a seed no batch is drawn from
            return toy.batch_at(PICTURE_SEED, 0, n, spec)[0]

        if settings.pretrain_clips:
            clips, _ = toy.make_dataset(settings.pretrain_clips, PRETRAIN_SET_SEED + settings.seed, spec)
            return Clips(lambda step: _draw(clips, settings, step), picture)
        return Clips(lambda step: toy.batch_at(settings.seed, step, settings.batch_size, spec)[0], picture)

    def finetuning(self, settings, log):
        return _ToyLabelled(settings)


class _ToyLabelled:
    """train_clips labelled toy clips (a fixed set of data_seed) and eval_clips held out."""

    def __init__(self, settings):
        self.settings = s = settings
        spec = s.spec()
        self.labels = label_fields(spec)
        self.x_train, self.y_train = toy.make_dataset(s.train_clips, s.data_seed, spec)
        self.x_eval, self.y_eval = toy.make_dataset(s.eval_clips, s.eval_seed, spec)

    def start(self, cfg, out, resume):
        spec = self.settings.spec()
        if (cfg.num_frames, cfg.image_hw) != (spec.frames, (spec.size,) * 2):
            raise ValueError(f"the model expects {cfg.num_frames} frames of {cfg.image_hw[0]}x{cfg.image_hw[1]}, the toy clips "
                             f"have {spec.frames} of {spec.size}x{spec.size}")

    def batch(self, step):
        s = self.settings
        idx = finetune_order(s.seed, step, s.batch_size, s.train_clips)
        return self.x_train[idx], self.y_train[idx]

    def loader(self, start, log):
        """The next batch rendered in a thread while this one trains."""
        return _Quiet(Prefetcher(self.batch, start=start))

    def describe(self, cfg):
        return f"{self.settings.train_clips} labelled clips"

    def evaluate(self, model):
        from .evaluate import evaluate_clips
        s = self.settings
        eval_acc, eval_loss = evaluate_clips(model, self.x_eval, self.y_eval, s.eval_batch)
        train_acc, train_loss = evaluate_clips(model, self.x_train, self.y_train, s.eval_batch)
        metrics = {"eval_accuracy": eval_acc, "eval_loss": eval_loss, "train_accuracy": train_acc,
                   "train_loss": train_loss, "eval_clips": s.eval_clips, "train_clips": s.train_clips}
        return metrics, f"held-out accuracy {eval_acc:.1%} on {s.eval_clips} clips (train {train_acc:.1%})"


# ------------------------------------------------------------------------------------------------
# a folder of videos
# ------------------------------------------------------------------------------------------------
class VideoFolder:
    doc = "a folder of videos (--data): any videos to pretrain on; train/ and val/ class folders to fine-tune"

    def check_pretrain(self, settings, cfg):
        """Any model: the processor sizes the frames to it."""

    def pretraining(self, settings, cfg):
        from .data.folder import load_video_folder
        clips, _, _ = load_video_folder(settings.data, num_frames=cfg.num_frames, image_size=cfg.image_hw)
        return Clips(lambda step: _draw(clips, settings, step), lambda n: clips[:n])

    def finetuning(self, settings, log):
        return _VideoLabelled(settings, log)


class _VideoLabelled:
    """The train/ and val/ splits of a --data folder (val may be missing), read a clip at a time."""

    def __init__(self, settings, log):
        from .data.videos import open_splits
        self.settings, self.log = settings, log
        splits = open_splits(settings.data, warn=log)
        self.train, self.val = splits["train"], splits["val"]
        self.classes = classes = self.train.classes
        self.labels = dict(num_labels=len(classes), id2label=dict(enumerate(classes)),
                           label2id={c: i for i, c in enumerate(classes)})
        self.cfg = self.proc = None
        from .data.clips import check_workers
        self.workers = check_workers(None)   # a bad VIDEOMAE_NP_WORKERS stops before the run folder exists

    def start(self, cfg, out, resume):
        """Refuse a resumed run of other classes; take the image processor of the run (or of
        --init), saving it beside a new run's model (preprocessor_config.json)."""
        from .data.videos import processor_for
        if resume and [cfg.id2label[i] for i in range(cfg.num_labels)] != self.classes:
            raise ValueError(f"--resume: the run in {out} was trained on classes "
                             f"{list(cfg.id2label.values())}, --data {self.settings.data} has {self.classes}")
        self.cfg = cfg
        self.proc = processor_for(cfg, out if resume else self.settings.init)
        if not resume:
            self.proc.save_pretrained(out)

    def batch(self, step):
        """Which videos, which frames and which augmentation all come from (seed, step)."""
        from .data.videos import augment
        s, cfg = self.settings, self.cfg
        idx = finetune_order(s.seed, step, s.batch_size, len(self.train))
        rng = step_rng(s.seed, step, DATA_STREAM)
        clips = [augment(self.train.clip(int(i), cfg.num_frames, s.stride, rng=rng, train=True), rng,
                         flip=s.flip) for i in idx]
        x = np.stack([self.proc(c, return_tensors="np")["pixel_values"][0] for c in clips]).astype(np.float32)
        return x, self.train.labels[idx]

    def loader(self, start, log):
        """Clips decoded and augmented in worker processes (data/clips.py); batch k equals batch(k)."""
        from .data.clips import ClipLoader, loader_spec, train_task
        s, cfg = self.settings, self.cfg
        return ClipLoader(loader_spec(self.train, self.proc, cfg.num_frames, s.stride, s.flip),
                          lambda k: train_task(k, finetune_order(s.seed, k, s.batch_size, len(self.train)),
                                               (s.seed, k, DATA_STREAM)),
                          start=start, stop=s.steps, workers=self.workers, log=log)

    def describe(self, cfg):
        s = self.settings
        sampling = f"{cfg.num_frames} frames every {s.stride}" if s.stride else f"{cfg.num_frames} segments"
        return f"{len(self.train)} videos of {len(self.classes)} classes in {s.data} ({sampling})"

    def evaluate(self, model):
        from .evaluate import evaluate_split
        s, cfg = self.settings, model.config
        metrics = {"data": str(s.data), "classes": self.classes, "train_videos": len(self.train),
                   "stride": s.stride, "num_frames": cfg.num_frames, "linear_probe": s.linear_probe}
        if self.val is None:
            return metrics, "no val/ folder: no held-out accuracy"
        res = evaluate_split(model, self.proc, self.val, cfg.num_frames, s.stride, log=self.log)
        metrics.update({"eval_accuracy": res["top1"], "eval_top5": res["top5"],
                        "eval_videos": res["videos"], "eval_per_class": res["per_class_accuracy"]})
        return metrics, (f"held-out accuracy {metrics['eval_accuracy']:.1%} on {metrics['eval_videos']} "
                         f"videos of {self.val.folder}")


class _Quiet:
    """A loader with nothing to report (the toy clips cost little to make)."""

    def __init__(self, batches):
        self.batches = batches

    def get(self, step):
        return self.batches.get(step)

    def close(self):
        self.batches.close()

    def annotate(self, log, prefix):
        return log

    def summary(self, what="trained"):
        return ""

    def rates(self):
        return {}


DATASETS = {"toy": ToyClips(), "videos": VideoFolder()}


def dataset_of(settings):
    """The entry a run reads: a folder of videos when --data is given, else the toy clips."""
    return DATASETS["videos" if settings.data else "toy"]
