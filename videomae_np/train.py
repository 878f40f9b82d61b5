"""Pretraining and fine-tuning loops (the ``videomae-np pretrain`` / ``finetune`` commands).

    pretrain   masked reconstruction of clips (toy clips streamed forever, or a folder of videos)
    finetune   classification of the toy clips' direction of motion from a few labelled clips,
               starting from a pretrained encoder (--init) or from scratch
               -- or, with --data, of a folder train/<class>/<video> of real videos
               (docs/real_videos.md)

What a run does is its settings (settings.py); what it reads, an entry of datasets.DATASETS; what
it writes and how, its folder (runs.py). Every random draw of update s comes from a generator of
(seed, s, stream) (randomness.py), so a run is a pure function of its settings and a resumed run
computes exactly the losses of an uninterrupted one. One _Run carries the loop both tasks share;
Ctrl-C never lands inside an update (see _SigintFlag); docs/reliability.md states the policy.
"""

from __future__ import annotations

import contextlib
import json
import math
import signal
import threading
import time
import warnings
from pathlib import Path

import numpy as np

from . import optim, runs
from .config import VideoMAEConfig
from .data.prefetch import Prefetcher
from .datasets import dataset_of
from .models import VideoMAEForPreTraining, VideoMAEForVideoClassification
from .randomness import DROPOUT_STREAM, MASK_STREAM, PICTURE_SEED, step_rng
from .settings import FinetuneSettings, PretrainSettings, check_mask_ratio, merge_resume, toy_config

PICTURE_CLIPS = 4          # clips (rows of three) in a pretraining run's reconstruction picture


class TrainingInterrupted(Exception):
    """Ctrl-C (or a KeyboardInterrupt from a callback): a checkpoint was saved, if possible."""

    def __init__(self, step, saved):
        self.step, self.saved = step, saved
        super().__init__(f"interrupted after step {step}; " + (
            "checkpoint saved" if saved else "no checkpoint written (the last one is kept)"))


class NonFiniteLoss(Exception):
    """The loss or the gradient norm stopped being finite; nothing was written."""


# ------------------------------------------------------------------------------------------------
# the loop shared by both tasks
# ------------------------------------------------------------------------------------------------
class _SigintFlag:
    """While installed, the first Ctrl-C only sets a flag (the loop saves and stops at the end of
    the step); a second one raises KeyboardInterrupt at once -- except inside ``deferred()``, the
    update of parameters, moments and step count, where it waits until the update is complete.
    (A KeyboardInterrupt raised half-way through AdamW.step would save a torn update.)"""

    def __init__(self, log):
        self.raised, self.log, self.previous = False, log, None
        self.updating = self.pending = False

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.raised:
            if self.updating:
                self.pending = True        # raised by deferred() once the update is whole
                return
            raise KeyboardInterrupt
        self.raised = True
        self.log("\ninterrupt: saving a checkpoint after this step (Ctrl-C again to stop at once)")

    @contextlib.contextmanager
    def deferred(self):
        """Run the block whole: a second Ctrl-C during it is raised when it ends."""
        self.updating = True
        try:
            yield
        finally:
            self.updating = False
        if self.pending:
            self.pending = False
            raise KeyboardInterrupt

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)


def _format_seconds(s):
    s = int(round(s))
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


class _Run:
    """One training run: model, optimizer, schedule and the step function of a task."""

    def __init__(self, kind, out, settings, model, grad_fn, log, callback):
        self.kind, self.out, self.settings, self.model = kind, Path(out), settings, model
        self.grad_fn, self.log, self.callback = grad_fn, log, callback
        layer_decay = getattr(settings, "effective_layer_decay", lambda: None)()
        groups = optim.param_groups(model.params, settings.weight_decay, layer_decay,
                                    model.config.num_hidden_layers)
        self.opt = optim.AdamW(model.params, settings.lr, settings.betas,
                               weight_decay=settings.weight_decay, groups=groups)
        self.schedule = settings.schedule()

    @property
    def step(self):
        return self.opt.step_count

    def resume(self):
        if not (self.out / runs.STATE_NPZ).is_file():
            raise FileNotFoundError(f"--resume: {self.out} has no {runs.STATE_NPZ} to resume from")
        step, npz_id = runs.restore(self.out, self.model, self.opt)
        state = runs.read_state(self.out)
        # A stop between the writes of a save (model files, then npz, then json) leaves the later
        # files of the previous save. trainer_state.npz holds parameters, moments and step
        # together: it is the truth we resume from, whatever the other files say.
        if state["step"] != step or state.get(runs.MODEL_SAVE_ID, npz_id) != npz_id:
            self.log(f"note: {runs.STATE_JSON} says step {state['step']}, {runs.STATE_NPZ} step {step}; "
                     f"resuming from {runs.STATE_NPZ}")
        if npz_id and runs.model_save_id(self.out) != npz_id:
            self.save()
            self.log(f"note: the model files in {self.out} came from a later save than {runs.STATE_NPZ} "
                     f"(stopped between the two); rewrote them from {runs.STATE_NPZ} at step {step}")
        runs.truncate_log(self.out / runs.METRICS_LOG, step)
        self.log(f"resumed {self.kind} from {self.out} at step {step}")
        return step

    def save(self, extra=None):
        runs.save_checkpoint(self.out, self.model, self.opt, self.settings, extra)

    def fit(self):
        """Run updates until settings.steps; returns the list of per-step losses of this call."""
        s = self.settings
        total = s.steps
        losses, window = [], []
        t0 = time.perf_counter()
        first = self.step
        log_file = open(self.out / runs.METRICS_LOG, "a")
        try:
            with _SigintFlag(self.log) as sigint:
                try:
                    while self.step < total:
                        k = self.step
                        lr = self.schedule(k)
                        out, grads = self.grad_fn(k)
                        loss = float(out.loss)
                        norm = optim.global_norm(grads)
                        if not (math.isfinite(loss) and math.isfinite(norm)):
                            raise NonFiniteLoss(
                                f"step {k + 1}: the loss is {loss} and the gradient norm {norm}; "
                                f"stopped without writing. The last checkpoint in {self.out} "
                                f"({runs.last_saved(self.out)}) is intact; try a lower --lr.")
                        if s.clip_grad:
                            optim.clip_grad_norm(grads, s.clip_grad)
                        elapsed = time.perf_counter() - t0
                        done = k + 1 - first
                        rate = done * s.batch_size / max(elapsed, 1e-9)
                        rec = {"step": k + 1, "loss": loss, "lr": lr, "grad_norm": norm,
                               "clips_per_s": round(rate, 2), "elapsed_s": round(elapsed, 3)}
                        with sigint.deferred():        # the update and its log line, whole
                            self.opt.step(grads, lr)             # self.step is now k + 1
                            log_file.write(json.dumps(rec) + "\n")
                            log_file.flush()
                        losses.append(loss)
                        window.append(loss)
                        if self.step % s.log_every == 0 or self.step == total or done == 1:
                            mean = sum(window) / len(window)       # since the last line
                            window.clear()
                            if done == 1:     # includes compiling the kernels: no rate to trust
                                pace = "first step (includes start-up)"
                            else:
                                eta = (total - self.step) * elapsed / done
                                pace = f"{rate:6.1f} clips/s  ETA {_format_seconds(eta)}"
                            self.log(f"{self.kind} step {self.step:>5d}/{total}  loss {mean:.4f}  "
                                     f"lr {lr:.2e}  {pace}")
                        if self.step % s.save_every == 0 and self.step < total:
                            self.save()
                        if self.callback is not None:
                            self.callback(self.step, self)
                        if sigint.raised:
                            raise KeyboardInterrupt
                except KeyboardInterrupt:
                    # the parameters and moments always belong together here: an update is
                    # never left half-done by the flag, and a callback runs between updates
                    self.save()
                    self.log(f"saved a checkpoint at step {self.step} in {self.out}; "
                             f"continue with --resume")
                    raise TrainingInterrupted(self.step, True) from None
        finally:
            log_file.close()
        return losses




def _start(out, settings, resume, explicit, log):
    """The settings of a run in its folder: the given ones for a new run (after the folder is made
    ready), else the saved ones with the explicitly given RESUMABLE fields."""
    chosen = runs.prepare(out, settings, resume)
    if resume:
        return merge_resume(chosen, settings, explicit, runs.read_state(out)["step"], log)
    return settings


# ------------------------------------------------------------------------------------------------
# pretraining
# ------------------------------------------------------------------------------------------------
def pretrain_batch(settings: PretrainSettings, cfg, step, clips=None):
    """(pixel_values, bool_masked_pos) of update `step`: a pure function of (settings, step).
    clips: the run's datasets.Clips (opened here when not given)."""
    if clips is None:
        clips = dataset_of(settings).pretraining(settings, cfg)
    B = settings.batch_size
    return clips.at(step), settings.mask(cfg, B, step_rng(settings.seed, step, MASK_STREAM))


def check_pretrain(settings: PretrainSettings):
    """What can be checked before a new pretraining run touches its folder: the model and the
    clips agree, and the mask ratio hides at least one token of the model's grid."""
    cfg = settings.model_config()
    dataset_of(settings).check_pretrain(settings, cfg)
    check_mask_ratio(settings.mask_type, cfg, settings.mask_ratio)


def run_pretrain(settings: PretrainSettings | None = None, out="runs/pretrain", resume=False,
                 explicit=(), log=print, callback=None):
    """Pretrain (or continue pretraining) into `out`. Returns a summary dict.

    explicit: names of settings the user gave (only these may change on resume).
    callback(step, run): called after every update (tests use it to interrupt or poison a run).
    The folder is locked for the whole run (run_lock): a second run into it is refused.
    """
    settings = settings or PretrainSettings()
    if not resume:
        check_pretrain(settings)
    out = runs.run_folder(out, resume)
    with runs.run_lock(out, "pretrain"):
        runs.remove_dead_temporaries(out)
        return _pretrain(settings, out, resume, explicit, log, callback)


def _pretrain(settings, out, resume, explicit, log, callback):
    out = Path(out)
    settings = _start(out, settings, resume, explicit, log)
    cfg = settings.model_config()
    clips = dataset_of(settings).pretraining(settings, cfg)
    model = VideoMAEForPreTraining(cfg, seed=settings.seed, dtype=np.float32)
    # batch k + 1 is rendered on another thread while the model trains on batch k (a batch is a
    # pure function of k, so the numbers are those of a run without it)
    batches = Prefetcher(lambda k: pretrain_batch(settings, cfg, k, clips),
                         start=runs.read_step(out) if resume else 0)

    def grad_fn(k):
        x, mask = batches.get(k)
        return model.value_and_grad(x, bool_masked_pos=mask, loss_fn=settings.loss)

    run = _Run("pretrain", out, settings, model, grad_fn, log, callback)
    if resume:
        run.resume()
    else:
        log(f"pretraining {model!r} for {settings.steps} steps of {settings.batch_size} clips "
            f"({settings.mask_type} mask {settings.mask_ratio:.0%}, {settings.loss} loss on "
            f"{'normalised' if cfg.norm_pix_loss else 'raw'} pixels) -> {out}")
    t0 = time.perf_counter()
    try:
        losses = run.fit()
    finally:
        batches.close()
    seconds = time.perf_counter() - t0
    run.save({"seconds_last_session": round(seconds, 2)})
    # the picture: clips never trained on (where the dataset has any), masked like the training clips
    px = clips.picture(PICTURE_CLIPS)
    mask = settings.mask(cfg, len(px), step_rng(PICTURE_SEED, 0, MASK_STREAM))
    from .reconstruction import save_picture
    text = save_picture(out / runs.PICTURE, model, px, mask, settings.mask_ratio,
                        note=f"VideoMAE pretraining, step {run.step}")
    log(f"{out / runs.PICTURE}: {text}")
    history = [r["loss"] for r in runs.read_metrics(out)]
    return {"out": str(out), "step": run.step, "losses": losses, "seconds": seconds,
            "loss_start": _head_mean(history), "loss_end": _tail_mean(history)}


def _head_mean(xs, n=20):
    return float(np.mean(xs[:n])) if xs else float("nan")


def _tail_mean(xs, n=20):
    return float(np.mean(xs[-n:])) if xs else float("nan")


# ------------------------------------------------------------------------------------------------
# fine-tuning
# ------------------------------------------------------------------------------------------------
HEAD_PARAMS = ("fc_norm.", "classifier.")


def _classifier(settings: FinetuneSettings, labels, resume_from=None):
    """The classifier to train: the run being resumed (its weights are loaded afterwards), the
    pretrained encoder of settings.init with a new head, or a fresh toy model. labels: the
    num_labels / id2label (/ label2id) of the dataset's classes."""
    if resume_from is not None:       # the init directory is not needed any more
        return VideoMAEForVideoClassification(VideoMAEConfig.from_pretrained(resume_from), seed=settings.seed)
    if settings.init:
        base = VideoMAEConfig.from_pretrained(settings.init)
        cfg = base.copy(**labels)
        with warnings.catch_warnings():   # the new head is expected: say it once, our way
            warnings.simplefilter("ignore")
            model = VideoMAEForVideoClassification.from_pretrained(settings.init, config=cfg)
        # the head is drawn from the run's seed, so the result does not depend on the loader
        fresh = VideoMAEForVideoClassification(cfg, seed=settings.seed)
        for k in model.loading_info["missing_keys"]:
            model.params[k][...] = fresh.params[k]
        return model
    # settings.model may not set the labels of a --data folder (validate_settings refuses it)
    return VideoMAEForVideoClassification(toy_config(**{**labels, **settings.model}), seed=settings.seed)


def _freeze_encoder(run):
    """Linear probe: the encoder's learning rate and weight decay are 0 (AdamW leaves it exactly
    as loaded); its gradients are zeroed in the step so gradient clipping sees the head only."""
    for n in run.opt.groups:
        if not n.startswith(HEAD_PARAMS):
            run.opt.groups[n] = (0.0, 0.0)


def _head_only(grads):
    for n, g in grads.items():
        if not n.startswith(HEAD_PARAMS):
            g[...] = 0
    return grads


def run_finetune(settings: FinetuneSettings | None = None, out="runs/finetune", resume=False,
                 explicit=(), log=print, callback=None):
    """Fine-tune a classifier of the dataset's labels into `out`; evaluates on held-out clips at
    the end and writes metrics.json. Returns the metrics dict. The folder is locked for the whole
    run."""
    settings = settings or FinetuneSettings()
    if not resume and settings.init and settings.model:
        raise ValueError(f"--config: the model comes from --init {settings.init}, whose config "
                         f"fine-tuning keeps; found {', '.join(map(str, settings.model))} to change. "
                         f"Drop --config, or fine-tune from scratch (no --init)")
    data = None
    if settings.data and not resume:     # a folder that cannot work stops before anything is written
        data = dataset_of(settings).finetuning(settings, log)
    out = runs.run_folder(out, resume)
    with runs.run_lock(out, "finetune"):
        runs.remove_dead_temporaries(out)
        if resume:
            _check_resumed_data(out, settings, explicit)
        return _finetune(settings, out, resume, explicit, log, callback, data)


def _check_resumed_data(out, settings, explicit):
    """A resumed run continues on the data it started with (its saved settings say which)."""
    state = runs.read_state(out)
    saved = (runs.saved_settings(out, FinetuneSettings, state)
             if state and state["kind"] == "finetune" else None)
    if saved is not None and saved.data:
        if settings.data and "data" in explicit and settings.data != saved.data:
            raise ValueError(f"--resume continues the saved run; data was {saved.data!r}, not "
                             f"{settings.data!r} (start a new --out to change it)")
    elif "data" in explicit:
        raise ValueError(f"--resume continues the saved run, which fine-tuned on the toy clips, "
                         f"not on --data {settings.data}")


def _finetune(settings, out, resume, explicit, log, callback, data=None):
    out = Path(out)
    settings = _start(out, settings, resume, explicit, log)
    if data is None:
        data = dataset_of(settings).finetuning(settings, log)
    model = _classifier(settings, data.labels, out if resume else None)
    cfg = model.config
    data.start(cfg, out, resume)
    model.train(True, drop_path_rate=0.0 if settings.linear_probe else settings.drop_path)
    batches = data.loader(runs.read_step(out) if resume else 0, log)

    def grad_fn(k):
        x, y = batches.get(k)
        out_, grads = model.value_and_grad(x, labels=y, rng=step_rng(settings.seed, k, DROPOUT_STREAM))
        return out_, (_head_only(grads) if settings.linear_probe else grads)

    try:                                   # the loader's workers end however this ends
        run = _Run("finetune", out, settings, model, grad_fn, batches.annotate(log, "finetune step"), callback)
        if settings.linear_probe:
            _freeze_encoder(run)
        if resume:
            run.resume()
        else:
            start = f"the encoder of {settings.init}" if settings.init else "scratch"
            # (the toy clips' line has never named the linear probe; kept as it was)
            probe = " (linear probe)" if settings.linear_probe and settings.data else ""
            log(f"fine-tuning {model!r} from {start}{probe} on {data.describe(cfg)} for "
                f"{settings.steps} steps -> {out}")
        t0 = time.perf_counter()
        run.fit()
    finally:
        batches.close()
    seconds = time.perf_counter() - t0
    note = batches.summary("trained")
    if note:
        log(note)
    metrics, summary = data.evaluate(model)
    metrics.update({"init": settings.init or "scratch", "step": run.step,
                    "seconds_last_session": round(seconds, 2)})
    if batches.rates():
        metrics["loader"] = batches.rates()
    run.save({"eval_accuracy": metrics.get("eval_accuracy")})
    runs.write_json(out / runs.METRICS_JSON, metrics)
    log(f"{summary}; wrote {out / runs.METRICS_JSON}")
    return metrics
