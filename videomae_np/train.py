"""Pretraining and fine-tuning loops (the ``videomae-np pretrain`` / ``finetune`` commands).

    pretrain   masked reconstruction of clips (toy clips streamed forever, or a folder of videos)
    finetune   classification of the toy clips' direction of motion from a few labelled clips,
               starting from a pretrained encoder (--init) or from scratch

Reproducibility: every random draw of update s -- the clips, the mask, dropout -- comes from a
generator seeded with (seed, s, stream), never from a generator carried across steps. A run is
therefore a pure function of its settings, and resuming at step s needs only the parameters, the
AdamW moments and s: the resumed run computes exactly the losses of an uninterrupted one.

An output directory holds
    config.json, model.safetensors   the model (transformers loads it)
    trainer_state.npz                parameters + AdamW moments + step: everything to resume
    trainer_state.json               step, settings, seeds (human-readable; written last)
    metrics.jsonl                    one line per update: step, loss, lr, grad norm, throughput
    reconstruction.png               pretraining: original | masked | reconstruction
    metrics.json                     fine-tuning: held-out accuracy
Each file is written to a temporary name and renamed into place. trainer_state.npz carries its
own copy of the parameters, so a crash between two renames never pairs weights of one step with
optimizer moments of another.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import threading
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from . import optim
from .config import VideoMAEConfig
from .data import toy
from .masking import random_mask, tube_mask
from .models import VideoMAEForPreTraining, VideoMAEForVideoClassification

STATE_JSON = "trainer_state.json"
STATE_NPZ = "trainer_state.npz"
METRICS_LOG = "metrics.jsonl"
METRICS_JSON = "metrics.json"
PICTURE = "reconstruction.png"

# streams of the per-step generators: default_rng([seed, step, stream])
DATA_STREAM, MASK_STREAM, DROPOUT_STREAM, ORDER_STREAM = 0, 1, 2, 3
PICTURE_SEED = 10_007      # the toy clips drawn in the reconstruction picture (never trained on)

# The toy model: 8 frames of 16x16 RGB in 2x4x4 tubelets -> 4 x 4 x 4 = 64 tokens of 96 pixels.
TOY_MODEL = dict(
    image_size=16, patch_size=4, num_frames=8, tubelet_size=2,
    hidden_size=64, num_hidden_layers=4, num_attention_heads=2, intermediate_size=256,
    decoder_hidden_size=64, decoder_num_hidden_layers=1, decoder_num_attention_heads=2,
    decoder_intermediate_size=256,
    # N(0, 0.05): close to Xavier's 1/sqrt(width) at width 64 (MAE initialises its linears with
    # Xavier); transformers' 0.02 suits width 768 and leaves a width-64 model on a long plateau
    initializer_range=0.05,
    # pixel targets: per-patch normalisation blows the sensor noise of the nearly flat 2x4x4
    # tubelets up (measured: noise alone is 0.38 of the 0.97 norm-pix loss of a zero prediction,
    # but 0.00018 of the 0.0059 pixel variance), so norm-pix could not fall much below 0.4
    norm_pix_loss=False,
    num_labels=len(toy.LABELS),
    id2label=dict(enumerate(toy.LABELS)),
)


def toy_config(**overrides) -> VideoMAEConfig:
    """The VideoMAEConfig of the toy model, with any field overridden."""
    return VideoMAEConfig(**{**TOY_MODEL, **overrides})


class TrainingInterrupted(Exception):
    """Ctrl-C (or a KeyboardInterrupt from a callback): a checkpoint was saved, if possible."""

    def __init__(self, step, saved):
        self.step, self.saved = step, saved
        super().__init__(f"interrupted after step {step}; " + (
            "checkpoint saved" if saved else "no checkpoint written (the last one is kept)"))


class NonFiniteLoss(Exception):
    """The loss or the gradient norm stopped being finite; nothing was written."""


# ------------------------------------------------------------------------------------------------
# settings
# ------------------------------------------------------------------------------------------------
@dataclass
class Settings:
    """What a run does. Saved in trainer_state.json and read back on --resume."""
    steps: int
    batch_size: int
    lr: float
    min_lr: float = 0.0
    warmup_steps: int = 0
    weight_decay: float = 0.05
    betas: tuple = optim.PRETRAIN_BETAS
    clip_grad: float | None = 1.0
    seed: int = 0
    save_every: int = 500
    log_every: int = 50
    toy: dict = field(default_factory=dict)        # ToySpec fields that differ from its defaults
    model: dict = field(default_factory=dict)      # VideoMAEConfig fields over TOY_MODEL

    # may differ between the first run and a resumed one. save_every / log_every change no number;
    # a new `steps` stretches the cosine schedule, so the resumed run equals an uninterrupted run
    # of the new length only from the start (a warning says so)
    RESUMABLE = ("steps", "save_every", "log_every")

    def to_dict(self):
        d = asdict(self)
        d["betas"] = list(self.betas)
        d["kind"] = self.kind
        return d

    @classmethod
    def from_dict(cls, d):
        d = dict(d)
        d.pop("kind", None)
        d["betas"] = tuple(d["betas"])
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def spec(self):
        return toy.ToySpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in self.toy.items()})

    def schedule(self):
        return optim.WarmupCosine(self.lr, self.warmup_steps, self.steps, self.min_lr)


@dataclass
class PretrainSettings(Settings):
    kind = "pretrain"
    steps: int = 6000
    batch_size: int = 16
    lr: float = 1.5e-3
    warmup_steps: int = 300
    # At this scale (4 x 4 patches a frame, minutes of CPU) random masking of half the tokens
    # gives an encoder that transfers; VideoMAE's tube masking at 75-90% does not in this budget
    # (measured: see the README table). Both are available.
    mask_ratio: float = 0.5
    mask_type: str = "random"      # "random" (per token, image MAE) or "tube" (VideoMAE)
    data: str | None = None        # a folder of videos instead of the toy clips
    save_every: int = 500


@dataclass
class FinetuneSettings(Settings):
    kind = "finetune"
    steps: int = 800
    batch_size: int = 16
    lr: float = 1e-3
    warmup_steps: int = 80
    betas: tuple = optim.FINETUNE_BETAS
    init: str | None = None        # a pretrained directory, or None to start from scratch
    layer_decay: float | None = None   # None: LAYER_DECAY with init, 1 (none) from scratch
    drop_path: float = 0.1
    train_clips: int = 1024        # labelled clips (a fixed set)
    eval_clips: int = 512          # held-out clips of another seed
    data_seed: int = 1
    eval_seed: int = 2
    eval_batch: int = 128
    save_every: int = 200

    def effective_layer_decay(self):
        if self.layer_decay is not None:
            return self.layer_decay
        return optim.LAYER_DECAY if self.init else None


# ------------------------------------------------------------------------------------------------
# checkpoints
# ------------------------------------------------------------------------------------------------
def _atomic(path: Path, write):
    """Call write(file) on a temporary file beside path, then rename it over path."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _write_json(path: Path, obj):
    _atomic(path, lambda f: f.write((json.dumps(obj, indent=2, sort_keys=True) + "\n").encode()))


def save_checkpoint(out, model, opt, settings, extra=None):
    """Model files first, then trainer_state.npz, then trainer_state.json (each atomically)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    arrays = {"param/" + k: v for k, v in model.params.items()}
    arrays.update(opt.state_dict())
    _atomic(out / STATE_NPZ, lambda f: np.savez(f, **arrays))
    state = {
        "step": opt.step_count,
        "kind": settings.kind,
        "model_class": type(model).__name__,
        "settings": settings.to_dict(),
        "randomness": "every draw of update s uses numpy default_rng([seed, s, stream]); "
                      f"streams: data {DATA_STREAM}, mask {MASK_STREAM}, dropout {DROPOUT_STREAM}, "
                      f"batch order {ORDER_STREAM}",
        "saved_at": time.strftime("%Y-%m-%d %H:%M:%S"),
        **(extra or {}),
    }
    _write_json(out / STATE_JSON, state)


def read_state(out):
    """trainer_state.json of a run directory, or None if it has none."""
    path = Path(out) / STATE_JSON
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def load_checkpoint(out, model, opt):
    """Restore parameters and AdamW state from trainer_state.npz; returns the step."""
    with np.load(Path(out) / STATE_NPZ) as z:
        arrays = {k: z[k] for k in z.files}
    model.load_state_dict({k[len("param/"):]: v for k, v in arrays.items() if k.startswith("param/")})
    opt.load_state_dict({k: v for k, v in arrays.items() if not k.startswith("param/")})
    return opt.step_count


# ------------------------------------------------------------------------------------------------
# the loop shared by both tasks
# ------------------------------------------------------------------------------------------------
class _SigintFlag:
    """While installed, the first Ctrl-C only sets a flag (the loop saves and stops at the end of
    the step); a second one raises KeyboardInterrupt at once."""

    def __init__(self, log):
        self.raised, self.log, self.previous = False, log, None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.raised:
            raise KeyboardInterrupt
        self.raised = True
        self.log("\ninterrupt: saving a checkpoint after this step (Ctrl-C again to stop at once)")

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
        if not (self.out / STATE_NPZ).is_file():
            raise FileNotFoundError(f"--resume: {self.out} has no {STATE_NPZ} to resume from")
        step = load_checkpoint(self.out, self.model, self.opt)
        state = read_state(self.out)
        if state["step"] != step:   # a crash between the two renames: the .npz is the newer truth
            self.log(f"note: {STATE_JSON} says step {state['step']}, {STATE_NPZ} step {step}; "
                     f"resuming from {STATE_NPZ}")
        _truncate_log(self.out / METRICS_LOG, step)
        self.log(f"resumed {self.kind} from {self.out} at step {step}")
        return step

    def save(self, extra=None):
        save_checkpoint(self.out, self.model, self.opt, self.settings, extra)

    def fit(self):
        """Run updates until settings.steps; returns the list of per-step losses of this call."""
        s = self.settings
        total = s.steps
        losses, window = [], []
        t0 = time.perf_counter()
        first = self.step
        log_file = open(self.out / METRICS_LOG, "a")
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
                                f"({_last_saved(self.out)}) is intact; try a lower --lr.")
                        if s.clip_grad:
                            optim.clip_grad_norm(grads, s.clip_grad)
                        self.opt.step(grads, lr)                 # self.step is now k + 1
                        losses.append(loss)
                        elapsed = time.perf_counter() - t0
                        done = self.step - first
                        rate = done * s.batch_size / max(elapsed, 1e-9)
                        rec = {"step": self.step, "loss": loss, "lr": lr, "grad_norm": norm,
                               "clips_per_s": round(rate, 2), "elapsed_s": round(elapsed, 3)}
                        log_file.write(json.dumps(rec) + "\n")
                        log_file.flush()
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


def _last_saved(out):
    state = read_state(out)
    return f"step {state['step']}" if state else "none written yet"


def _truncate_log(path: Path, step: int):
    """Drop metrics lines of updates after `step` (logged after the checkpoint we resume from)."""
    if not path.is_file():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)["step"] <= step:
                keep.append(line)
        except (json.JSONDecodeError, KeyError, TypeError):
            continue
    _atomic(path, lambda f: f.write("".join(x + "\n" for x in keep).encode()))


def read_metrics(out):
    """The metrics.jsonl records of a run directory, in order."""
    path = Path(out) / METRICS_LOG
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def _prepare(out, settings, resume, log):
    """Check the directory against --resume; returns the settings to use."""
    out = Path(out)
    state = read_state(out)
    if resume:
        if state is None:
            raise FileNotFoundError(f"--resume: no {STATE_JSON} in {out}; nothing to resume")
        saved = type(settings).from_dict(state["settings"])
        if state.get("kind") != settings.kind:
            raise ValueError(f"{out} holds a {state.get('kind')} run, not a {settings.kind} run")
        return saved
    if state is not None:
        raise FileExistsError(f"{out} already holds a run (step {state['step']}); pass --resume to "
                              "continue it or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    (out / METRICS_LOG).write_text("")
    return settings


def _merge_resume(saved, given, explicit, step, log):
    """Settings of a resumed run: the saved ones, with the explicitly given RESUMABLE fields.
    Any other explicitly given field that disagrees is an error (it would change the numbers)."""
    if "steps" in explicit and given.steps != saved.steps and step > 0:
        log(f"note: the run was planned for {saved.steps} steps; the learning-rate schedule of the "
            f"remaining updates is re-planned for {given.steps}")
    changes = {}
    for name in explicit:
        new, old = getattr(given, name), getattr(saved, name)
        if name in Settings.RESUMABLE:
            changes[name] = new
        elif new != old:
            raise ValueError(f"--resume continues the saved run; {name} was {old!r}, not {new!r} "
                             "(start a new --out to change it)")
    return dataclasses.replace(saved, **changes)


# ------------------------------------------------------------------------------------------------
# pretraining
# ------------------------------------------------------------------------------------------------
def _rng(seed, step, stream):
    return np.random.default_rng([int(seed), int(step), int(stream)])


def _mask(settings, cfg, batch, rng):
    if settings.mask_type == "tube":
        return tube_mask(batch, cfg.grid, settings.mask_ratio, rng=rng)
    if settings.mask_type == "random":
        return random_mask(batch, cfg.num_patches, settings.mask_ratio, rng=rng)
    raise ValueError(f"mask_type must be 'tube' or 'random', got {settings.mask_type!r}")


def pretrain_batch(settings: PretrainSettings, cfg, step, clips=None):
    """(pixel_values, bool_masked_pos) of update `step`: a pure function of (settings, step)."""
    B = settings.batch_size
    if clips is None:
        x, _ = toy.batch_at(settings.seed, step, B, settings.spec())
    else:
        x = clips[_rng(settings.seed, step, DATA_STREAM).integers(0, len(clips), B)]
    return x, _mask(settings, cfg, B, _rng(settings.seed, step, MASK_STREAM))


def run_pretrain(settings: PretrainSettings | None = None, out="runs/pretrain", resume=False,
                 explicit=(), log=print, callback=None):
    """Pretrain (or continue pretraining) into `out`. Returns a summary dict.

    explicit: names of settings the user gave (only these may change on resume).
    callback(step, run): called after every update (tests use it to interrupt or poison a run).
    """
    settings = settings or PretrainSettings()
    out = Path(out)
    chosen = _prepare(out, settings, resume, log)
    if resume:
        settings = _merge_resume(chosen, settings, explicit, read_state(out)["step"], log)
    cfg = toy_config(**settings.model)
    clips = None
    if settings.data:
        from .data import load_video_folder
        clips, _, _ = load_video_folder(settings.data, num_frames=cfg.num_frames, image_size=cfg.image_hw)
    model = VideoMAEForPreTraining(cfg, seed=settings.seed, dtype=np.float32)

    def grad_fn(k):
        x, mask = pretrain_batch(settings, cfg, k, clips)
        return model.value_and_grad(x, bool_masked_pos=mask)

    run = _Run("pretrain", out, settings, model, grad_fn, log, callback)
    if resume:
        run.resume()
    else:
        log(f"pretraining {model!r} for {settings.steps} steps of {settings.batch_size} clips "
            f"({settings.mask_type} mask {settings.mask_ratio:.0%}) -> {out}")
    t0 = time.perf_counter()
    losses = run.fit()
    seconds = time.perf_counter() - t0
    run.save({"seconds_last_session": round(seconds, 2)})
    # the picture: clips never trained on, masked like the training clips
    if clips is None:
        px, _ = toy.batch_at(PICTURE_SEED, 0, 4, settings.spec())
    else:
        px = clips[:4]
    mask = _mask(settings, cfg, len(px), _rng(PICTURE_SEED, 0, MASK_STREAM))
    from .reconstruction import save_picture
    text = save_picture(out / PICTURE, model, px, mask, settings.mask_ratio,
                        note=f"VideoMAE pretraining, step {run.step}")
    log(f"{out / PICTURE}: {text}")
    history = [r["loss"] for r in read_metrics(out)]
    return {"out": str(out), "step": run.step, "losses": losses, "seconds": seconds,
            "loss_start": _head_mean(history), "loss_end": _tail_mean(history)}


def _head_mean(xs, n=20):
    return float(np.mean(xs[:n])) if xs else float("nan")


def _tail_mean(xs, n=20):
    return float(np.mean(xs[-n:])) if xs else float("nan")


# ------------------------------------------------------------------------------------------------
# fine-tuning
# ------------------------------------------------------------------------------------------------
def finetune_order(seed, step, batch, n):
    """Indices into the labelled set for update `step`: epochs of shuffled passes, each shuffle a
    pure function of (seed, epoch)."""
    pos = np.arange(step * batch, (step + 1) * batch)
    epochs = pos // n
    out = np.empty(batch, np.int64)
    for e in np.unique(epochs):
        perm = _rng(seed, int(e), ORDER_STREAM).permutation(n)
        sel = epochs == e
        out[sel] = perm[pos[sel] % n]
    return out


def evaluate(model, x, y, batch=128):
    """(accuracy, mean cross-entropy) of a classifier on clips x with labels y, in eval mode."""
    was = model.training
    model.eval()
    try:
        correct, loss = 0, 0.0
        for i in range(0, len(y), batch):
            out = model(x[i:i + batch], labels=y[i:i + batch])
            correct += int((np.argmax(out.logits, -1) == y[i:i + batch]).sum())
            loss += float(out.loss) * len(y[i:i + batch])
    finally:
        model.train(was)
    return correct / len(y), loss / len(y)


def _classifier(settings: FinetuneSettings, resume_from=None):
    """The classifier to train: the run being resumed (its weights are loaded afterwards), the
    pretrained encoder of settings.init with a new head, or a fresh toy model."""
    if resume_from is not None:       # the init directory is not needed any more
        return VideoMAEForVideoClassification(VideoMAEConfig.from_pretrained(resume_from), seed=settings.seed)
    labels = dict(num_labels=len(toy.LABELS), id2label=dict(enumerate(toy.LABELS)))
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
    return VideoMAEForVideoClassification(toy_config(**settings.model), seed=settings.seed)


def run_finetune(settings: FinetuneSettings | None = None, out="runs/finetune", resume=False,
                 explicit=(), log=print, callback=None):
    """Fine-tune a classifier of the toy labels into `out`; evaluates on held-out clips at the end
    and writes metrics.json. Returns the metrics dict."""
    settings = settings or FinetuneSettings()
    out = Path(out)
    chosen = _prepare(out, settings, resume, log)
    if resume:
        settings = _merge_resume(chosen, settings, explicit, read_state(out)["step"], log)
    model = _classifier(settings, out if resume else None)
    cfg = model.config
    if (cfg.num_frames, cfg.image_hw) != (settings.spec().frames, (settings.spec().size,) * 2):
        raise ValueError(f"the model expects {cfg.num_frames} frames of {cfg.image_hw}, the toy clips "
                         f"have {settings.spec().frames} of {settings.spec().size}x{settings.spec().size}")
    model.train(True, drop_path_rate=settings.drop_path)
    spec = settings.spec()
    x_train, y_train = toy.make_dataset(settings.train_clips, settings.data_seed, spec)
    x_eval, y_eval = toy.make_dataset(settings.eval_clips, settings.eval_seed, spec)

    def grad_fn(k):
        idx = finetune_order(settings.seed, k, settings.batch_size, settings.train_clips)
        return model.value_and_grad(x_train[idx], labels=y_train[idx],
                                    rng=_rng(settings.seed, k, DROPOUT_STREAM))

    run = _Run("finetune", out, settings, model, grad_fn, log, callback)
    if resume:
        run.resume()
    else:
        start = f"the encoder of {settings.init}" if settings.init else "scratch"
        log(f"fine-tuning {model!r} from {start} on {settings.train_clips} labelled clips for "
            f"{settings.steps} steps -> {out}")
    t0 = time.perf_counter()
    run.fit()
    seconds = time.perf_counter() - t0
    eval_acc, eval_loss = evaluate(model, x_eval, y_eval, settings.eval_batch)
    train_acc, train_loss = evaluate(model, x_train, y_train, settings.eval_batch)
    metrics = {"eval_accuracy": eval_acc, "eval_loss": eval_loss, "train_accuracy": train_acc,
               "train_loss": train_loss, "eval_clips": settings.eval_clips,
               "train_clips": settings.train_clips, "init": settings.init or "scratch",
               "step": run.step, "seconds_last_session": round(seconds, 2)}
    run.save({"eval_accuracy": eval_acc})
    _write_json(out / METRICS_JSON, metrics)
    log(f"held-out accuracy {eval_acc:.1%} on {settings.eval_clips} clips "
        f"(train {train_acc:.1%}); wrote {out / METRICS_JSON}")
    return metrics


# ------------------------------------------------------------------------------------------------
# reconstruction of any video
# ------------------------------------------------------------------------------------------------
def reconstruct_video(model_dir, video, out_png=None, mask_ratio=None, mask_type=None, seed=0,
                      log=print):
    """The reconstruction picture of a video file (or a folder of frames) by a pretrained model.

    mask_ratio / mask_type default to those the model was pretrained with (its trainer_state.json),
    else to the pretraining defaults."""
    try:
        from .processing import VideoMAEImageProcessor
        from .video import read_video
    except ImportError as e:  # pragma: no cover - the modules ship with the package
        raise ImportError(f"reading videos needs videomae_np.video and videomae_np.processing: {e}") from e
    from .reconstruction import save_picture

    model = VideoMAEForPreTraining.from_pretrained(model_dir)
    cfg = model.config
    frames = read_video(video)                                        # (T, H, W, C) uint8
    idx = np.floor(np.linspace(0, len(frames) - 1, cfg.num_frames)).astype(np.int64)
    h, w = cfg.image_hw
    proc = VideoMAEImageProcessor(size={"shortest_edge": min(h, w)}, crop_size={"height": h, "width": w})
    px = proc(frames[idx], return_tensors="np")["pixel_values"]         # (1, T, C, h, w)
    state = read_state(model_dir)
    settings = (PretrainSettings.from_dict(state["settings"])
                if state and state.get("kind") == "pretrain" else PretrainSettings())
    if mask_ratio is not None:
        settings = dataclasses.replace(settings, mask_ratio=mask_ratio)
    if mask_type is not None:
        settings = dataclasses.replace(settings, mask_type=mask_type)
    mask = _mask(settings, cfg, 1, _rng(seed, 0, MASK_STREAM))
    out_png = Path(out_png) if out_png else Path(video).with_suffix(".reconstruction.png")
    text = save_picture(out_png, model, px, mask, settings.mask_ratio, note=f"{Path(video).name}")
    log(f"{out_png}: {text}")
    return out_png
