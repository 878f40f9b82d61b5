"""Pretraining and fine-tuning loops (the ``videomae-np pretrain`` / ``finetune`` commands).

    pretrain   masked reconstruction of clips (toy clips streamed forever, or a folder of videos)
    finetune   classification of the toy clips' direction of motion from a few labelled clips,
               starting from a pretrained encoder (--init) or from scratch
               -- or, with --data, of a folder train/<class>/<video> of real videos
               (docs/real_videos.md)

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
    .lock                            held (flock) by the one process running in the folder
Each file is written whole to a unique temporary name and renamed into place (fileio). The npz
carries its own copy of the parameters and, like the json, the save id of the model files beside
it, so a stop between two renames is recognised on --resume, where trainer_state.npz wins.
Ctrl-C never lands inside an update (see _SigintFlag); docs/reliability.md states the policy.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import json
import math
import numbers
import os
import re
import signal
import socket
import threading
import time
import warnings
import zipfile
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from . import optim
from .config import VideoMAEConfig
from .data import toy
from .data.prefetch import Prefetcher
from .config import CONFIG_NAME, SAVE_ID_KEY
from .config import DEFAULTS as CONFIG_DEFAULTS
from .fileio import atomic_write, atomic_write_text, read_json_object
from .masking import MASKS, make_mask
from .ops.losses import RECONSTRUCTION_LOSSES
from .models import VideoMAEForPreTraining, VideoMAEForVideoClassification

try:
    import fcntl
except ImportError:  # Windows: runs are not locked there
    fcntl = None

STATE_JSON = "trainer_state.json"
LOCK_FILE = ".lock"
MODEL_SAVE_ID = "model_save_id"   # in trainer_state.npz/.json: the save id of the model files
STATE_NPZ = "trainer_state.npz"
METRICS_LOG = "metrics.jsonl"
METRICS_JSON = "metrics.json"
PICTURE = "reconstruction.png"

# streams of the per-step generators: default_rng([seed, step, stream])
DATA_STREAM, MASK_STREAM, DROPOUT_STREAM, ORDER_STREAM = 0, 1, 2, 3
PICTURE_SEED = 10_007      # the toy clips drawn in the reconstruction picture (never trained on)
PRETRAIN_SET_SEED = 20_011  # offset of the stream a fixed pretraining set (pretrain_clips) is drawn from

# The toy model: 8 frames of 32x32 RGB in 2x4x4 tubelets -> 4 x 8 x 8 = 256 tokens of 96 pixels.
TOY_MODEL = dict(
    image_size=32, patch_size=4, num_frames=8, tubelet_size=2,
    hidden_size=64, num_hidden_layers=4, num_attention_heads=2, intermediate_size=256,
    decoder_hidden_size=64, decoder_num_hidden_layers=1, decoder_num_attention_heads=2,
    decoder_intermediate_size=256,
    # N(0, 0.05): close to Xavier's 1/sqrt(width) at width 64 (MAE initialises its linears with
    # Xavier); transformers' 0.02 suits width 768 and leaves a width-64 model on a long plateau
    initializer_range=0.05,
    norm_pix_loss=True,
    num_labels=len(toy.LABELS),
    id2label=dict(enumerate(toy.LABELS)),
)


def _label_fields(spec):
    """num_labels and id2label of the toy clips' class set."""
    return dict(num_labels=spec.num_classes, id2label=dict(enumerate(spec.labels)))


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


class RunLocked(Exception):
    """Another process is running in the output folder (it holds OUT/.lock)."""


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
    # fields every saved run has held since the first version
    REQUIRED = frozenset({"steps", "batch_size", "lr", "min_lr", "warmup_steps", "weight_decay",
                          "betas", "clip_grad", "seed"})

    def __post_init__(self):
        validate_settings(self)

    def to_dict(self):
        d = asdict(self)
        d["betas"] = list(self.betas)
        d["kind"] = self.kind
        return d

    @classmethod
    def from_dict(cls, d):
        """Settings saved by to_dict. Fields added after a run was saved take their defaults (the
        behaviour they stand for is the one that run had); a saved run missing a field that
        changes its numbers, or holding one this version does not know, is refused."""
        d = dict(d)
        d.pop("kind", None)
        missing = sorted(cls.REQUIRED - set(d))
        unknown = sorted(set(d) - {f.name for f in dataclasses.fields(cls)})
        if missing or unknown:
            raise ValueError("; ".join(([f"missing {', '.join(missing)}"] if missing else [])
                                       + ([f"unknown {', '.join(unknown)}"] if unknown else [])))
        d["betas"] = tuple(d["betas"])
        return cls(**d)

    def spec(self):
        return toy.ToySpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in self.toy.items()})

    def model_config(self):
        """The toy model's config with this run's overrides and the toy clips' labels."""
        return toy_config(**{**_label_fields(self.spec()), **self.model})

    def schedule(self):
        return optim.WarmupCosine(self.lr, self.warmup_steps, self.steps, self.min_lr)


@dataclass
class PretrainSettings(Settings):
    kind = "pretrain"
    steps: int = 6000
    batch_size: int = 16
    lr: float = 1.5e-3
    warmup_steps: int = 300
    # the paper's recipe: tube masking at a high ratio. 75% is its small-data recipe (UCF101,
    # HMDB51); 90%, its default on the large sets, did not transfer within this budget on the toy
    # (measured: docs/toy_scale.md, results/masking.md)
    mask_ratio: float = 0.75
    mask_type: str = "tube"        # a key of masking.MASKS
    loss: str = "mse"              # a key of ops.losses.RECONSTRUCTION_LOSSES (Table 1f)
    pretrain_clips: int | None = None   # a fixed set of this many toy clips (None: new clips every step)
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
    # --data: a folder train/<class>/<video>, val/<class>/<video> of real videos (docs/real_videos.md)
    data: str | None = None
    stride: int | None = 4         # dense clips: a frame every `stride` frames; None: one per segment
    flip: bool = True              # random horizontal flips (off for direction-sensitive classes)
    linear_probe: bool = False     # frozen encoder: only fc_norm and the classifier train

    def effective_layer_decay(self):
        if self.layer_decay is not None:
            return self.layer_decay
        return optim.LAYER_DECAY if self.init else None


# ------------------------------------------------------------------------------------------------
# checking settings: one line naming the option, what was expected and what was found
# ------------------------------------------------------------------------------------------------
# settings the command line takes as --name-with-dashes (the others exist only in the Python API)
_CLI_NAMES = {"steps", "batch_size", "lr", "min_lr", "warmup_steps", "weight_decay", "clip_grad",
              "seed", "save_every", "log_every", "mask_ratio", "mask_type", "loss", "data", "init",
              "layer_decay", "drop_path", "train_clips", "eval_clips", "stride", "linear_probe"}
# what --config may set: the VideoMAEConfig model fields and the classification head's
CONFIG_FIELDS = tuple(CONFIG_DEFAULTS) + ("num_labels", "id2label", "label2id", "problem_type")
_TOY_POSITIVE = ("frames", "size", "channels")


def _option(name):
    return "--" + name.replace("_", "-") if name in _CLI_NAMES else name


def _is_int(v):
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_real(v):
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def _is_path(v):
    return isinstance(v, (str, os.PathLike)) and str(v) != ""


_COUNT = (lambda v: _is_int(v) and v >= 1, "a positive integer")
_NATURAL = (lambda v: _is_int(v) and v >= 0, "an integer >= 0")
_FRACTION = (lambda v: _is_real(v) and 0 <= v < 1, "a number in [0, 1)")
# field -> (test, what is expected); a field a settings class lacks is skipped
_RULES = {
    "steps": _COUNT, "batch_size": _COUNT, "save_every": _COUNT, "log_every": _COUNT,
    "train_clips": _COUNT, "eval_clips": _COUNT, "eval_batch": _COUNT,
    "warmup_steps": _NATURAL, "seed": _NATURAL, "data_seed": _NATURAL, "eval_seed": _NATURAL,
    "lr": (lambda v: _is_real(v) and v > 0, "a positive number"),
    "min_lr": (lambda v: _is_real(v) and v >= 0, "a number >= 0"),
    "weight_decay": (lambda v: _is_real(v) and v >= 0, "a number >= 0"),
    "clip_grad": (lambda v: v is None or (_is_real(v) and v >= 0), "a number >= 0 (0 turns clipping off)"),
    "layer_decay": (lambda v: v is None or (_is_real(v) and 0 < v <= 1), "a number in (0, 1]"),
    "drop_path": _FRACTION,
    "mask_ratio": _FRACTION,
    "pretrain_clips": (lambda v: v is None or (_is_int(v) and v >= 1), "a positive integer"),
    "betas": (lambda v: isinstance(v, (tuple, list)) and len(v) == 2
              and all(_is_real(b) and 0 <= b < 1 for b in v), "two numbers in [0, 1)"),
    "mask_type": (lambda v: isinstance(v, str) and v in MASKS, f"one of {', '.join(MASKS)}"),
    "loss": (lambda v: isinstance(v, str) and v in RECONSTRUCTION_LOSSES,
             f"one of {', '.join(RECONSTRUCTION_LOSSES)}"),
    "data": (lambda v: v is None or _is_path(v), "a folder of videos"),
    "init": (lambda v: v is None or _is_path(v), "a pretraining run's folder"),
    "stride": (lambda v: v is None or (_is_int(v) and v >= 1), "a positive integer (or 'segments')"),
    "flip": (lambda v: isinstance(v, bool), "true or false"),
    "linear_probe": (lambda v: isinstance(v, bool), "true or false"),
}
LABEL_FIELDS = ("num_labels", "id2label", "label2id")


def _unknown(option, key, known):
    close = difflib.get_close_matches(str(key), list(known), n=1)
    hint = f"did you mean {close[0]!r}?" if close else "known: " + ", ".join(known)
    return f"{option}: unknown field {key!r} ({hint})"


def _check_toy(fields_given):
    """--toy: ToySpec field names, and values of the type of each field's default."""
    if not isinstance(fields_given, dict):
        raise ValueError(f"--toy: expected KEY=VALUE fields of the toy clips, found {fields_given!r}")
    defaults = {f.name: f.default for f in dataclasses.fields(toy.ToySpec)}
    for k, v in fields_given.items():
        if k not in defaults:
            raise ValueError(_unknown("--toy", k, defaults))
        d = defaults[k]
        if isinstance(d, bool):
            ok, want = isinstance(v, bool), "true or false"
        elif isinstance(d, int):
            ok, want = _is_int(v), "an integer"
            if ok and k in _TOY_POSITIVE and v < 1:
                ok, want = False, "a positive integer"
        elif isinstance(d, float):
            ok, want = _is_real(v), "a number"
        elif isinstance(d, tuple):
            ok = isinstance(v, (list, tuple)) and len(v) == len(d) and all(_is_real(x) for x in v)
            want = f"{len(d)} numbers such as {k}=({','.join(map(str, d))})"
        elif isinstance(d, str):
            ok, want = isinstance(v, str), "a name"
        else:
            ok, want = True, ""
        if not ok:
            raise ValueError(f"--toy: {k} expects {want}, found {v!r}")


def validate_settings(s):
    """Raise one ValueError naming the first setting whose type or value is wrong."""
    for f in dataclasses.fields(s):
        rule = _RULES.get(f.name)
        if rule is not None and not rule[0](getattr(s, f.name)):
            raise ValueError(f"{_option(f.name)}: expected {rule[1]}, found {getattr(s, f.name)!r}")
    if s.min_lr > s.lr:
        raise ValueError(f"--min-lr: expected a number <= --lr ({s.lr}), found {s.min_lr!r}")
    _check_toy(s.toy)
    try:
        s.spec()
    except (TypeError, ValueError) as e:
        raise ValueError(f"--toy: {_one_line(e)}") from None
    if not isinstance(s.model, dict):
        raise ValueError(f"--config: expected KEY=VALUE fields of the model config, found {s.model!r}")
    for k in s.model:
        if k not in CONFIG_FIELDS:
            raise ValueError(_unknown("--config", k, CONFIG_FIELDS))
    if s.kind == "finetune" and getattr(s, "data", None):
        given = [k for k in s.model if k in LABEL_FIELDS]
        if given:
            raise ValueError(f"--config: the labels come from the class folders of --data {s.data}; "
                             f"found {', '.join(given)} to set")
    try:
        s.model_config()
    except (TypeError, ValueError) as e:
        raise ValueError(f"--config: {_one_line(e)}") from None


def smallest_mask_ratio(kind, grid):
    """The smallest mask_ratio at which a `kind` mask hides at least one token of `grid`, as the
    shortest decimal within 0.1% of it that does; None if no ratio below 1 does."""
    def hides(r):
        return bool(make_mask(kind, 1, grid, r, rng=0).any())

    hi = math.nextafter(1.0, 0.0)
    if not hides(hi):
        return None
    lo = 0.0
    for _ in range(60):                 # the count masked grows with the ratio: bisect
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if hides(mid) else (mid, hi)
    for significant in range(1, 16):
        d = significant - 1 - math.floor(math.log10(hi))
        for r in (round(hi, d), math.ceil(hi * 10 ** d) / 10 ** d):
            if r < 1 and r - hi <= hi * 1e-3 and hides(r):
                return r
    return hi


def check_mask_ratio(kind, cfg, ratio):
    """Refuse a ratio that hides no token of the model's grid (the masked counts are rounded
    down per frame, per slot or per cell), saying what the smallest working ratio is."""
    if make_mask(kind, 1, cfg.grid, ratio, rng=0).any():
        return
    grid = "x".join(map(str, cfg.grid))
    low = smallest_mask_ratio(kind, cfg.grid)
    if low is None:
        raise ValueError(f"--mask-type: {kind} masking hides no token of the model's {grid} token "
                         f"grid at any ratio; expected another --mask-type")
    raise ValueError(f"--mask-ratio: expected a ratio that hides at least one token; {ratio} hides "
                     f"none of the model's {grid} token grid with {kind} masking (the smallest that "
                     f"does is {low})")


def _one_line(e):
    msg = e.args[0] if isinstance(e, KeyError) and e.args else e
    return " ".join(str(msg).split()) or type(e).__name__


# ------------------------------------------------------------------------------------------------
# checkpoints
# ------------------------------------------------------------------------------------------------
def _write_json(path: Path, obj):
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def _model_save_id(out):
    """The save id of the model files in `out` (config.json), or None."""
    try:
        sid = read_json_object(Path(out) / CONFIG_NAME).get(SAVE_ID_KEY)
    except (OSError, ValueError):
        return None
    return sid if isinstance(sid, str) else None


def save_checkpoint(out, model, opt, settings, extra=None):
    """Model files first, then trainer_state.npz, then trainer_state.json, each written whole to a
    unique temporary name and renamed. The npz and the json record the save id of the model files
    they were written with, so a stop between two renames is recognised on --resume."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    save_id = _model_save_id(out) or ""
    arrays = {"param/" + k: v for k, v in model.params.items()}
    arrays.update(opt.state_dict())
    arrays[MODEL_SAVE_ID] = np.array(save_id)       # a unicode array: no pickle needed to read it
    atomic_write(out / STATE_NPZ, lambda f: np.savez(f, **arrays))
    state = {
        "step": opt.step_count,
        MODEL_SAVE_ID: save_id,
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
    """trainer_state.json of a run directory, or None if it has none. A file that is not JSON, or
    lacks the step, the kind or the settings, raises ValueError naming it."""
    path = Path(out) / STATE_JSON
    if not path.is_file():
        return None
    state = read_json_object(path)
    if not (_is_int(state.get("step")) and state["step"] >= 0 and isinstance(state.get("kind"), str)
            and isinstance(state.get("settings"), dict)):
        raise ValueError(f"{path} is not a trainer state: expected 'step' (an integer >= 0), 'kind' "
                         f"and 'settings' (an object); found keys {sorted(state)[:12]}")
    return state


def _saved_settings(out, cls, state):
    """The settings recorded in a run's trainer_state.json, as `cls`."""
    try:
        return cls.from_dict(state["settings"])
    except (TypeError, ValueError, KeyError) as e:
        raise ValueError(f"{Path(out) / STATE_JSON}: its settings cannot be used ({_one_line(e)})") from None


def _load_checkpoint(out, model, opt):
    """Restore parameters and AdamW state from trainer_state.npz; returns (step, the save id of
    the model files it was written with, or "" for a checkpoint older than save ids)."""
    path = Path(out) / STATE_NPZ
    try:
        z = np.load(path)          # allow_pickle stays False: a pickle is refused, never run
        if not hasattr(z, "files"):
            raise ValueError("a single array, not an .npz archive")
        with z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as e:
        raise ValueError(f"cannot resume: {path} is corrupt or truncated ({_one_line(e)}); "
                         f"it was written whole, so it was damaged afterwards") from None
    save_id = str(arrays.pop(MODEL_SAVE_ID, ""))
    try:
        model.load_state_dict({k[len("param/"):]: v for k, v in arrays.items() if k.startswith("param/")})
        opt.load_state_dict({k: v for k, v in arrays.items() if not k.startswith("param/")})
    except (KeyError, ValueError, TypeError) as e:
        raise ValueError(f"cannot resume from {path}: {_one_line(e)}") from None
    return opt.step_count, save_id


def load_checkpoint(out, model, opt):
    """Restore parameters and AdamW state from trainer_state.npz; returns the step."""
    return _load_checkpoint(out, model, opt)[0]


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
        if not (self.out / STATE_NPZ).is_file():
            raise FileNotFoundError(f"--resume: {self.out} has no {STATE_NPZ} to resume from")
        step, npz_id = _load_checkpoint(self.out, self.model, self.opt)
        state = read_state(self.out)
        # A stop between the writes of a save (model files, then npz, then json) leaves the later
        # files of the previous save. trainer_state.npz holds parameters, moments and step
        # together: it is the truth we resume from, whatever the other files say.
        if state["step"] != step or state.get(MODEL_SAVE_ID, npz_id) != npz_id:
            self.log(f"note: {STATE_JSON} says step {state['step']}, {STATE_NPZ} step {step}; "
                     f"resuming from {STATE_NPZ}")
        if npz_id and _model_save_id(self.out) != npz_id:
            self.save()
            self.log(f"note: the model files in {self.out} came from a later save than {STATE_NPZ} "
                     f"(stopped between the two); rewrote them from {STATE_NPZ} at step {step}")
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


def _last_saved(out):
    try:
        state = read_state(out)
    except (OSError, ValueError):
        return f"{STATE_JSON} unreadable"
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
    atomic_write_text(path, "".join(x + "\n" for x in keep))


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
        if state["kind"] != settings.kind:
            raise ValueError(f"{out} holds a {state['kind']} run, not a {settings.kind} run")
        return _saved_settings(out, type(settings), state)
    if state is not None:
        raise FileExistsError(f"{out} already holds a run (step {state['step']}); pass --resume to "
                              "continue it or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / METRICS_LOG, "")
    return settings


# ------------------------------------------------------------------------------------------------
# the run folder: one run at a time, no leftovers of dead writers
# ------------------------------------------------------------------------------------------------
# a temporary file of fileio.atomic_write (".name.<pid>.<12 hex>.tmp") or of its predecessor
_TEMP_FILE = re.compile(r"^\..+\.(\d+)(\.[0-9a-f]{12})?\.tmp$")


def run_folder(out, resume):
    """The run's output folder as a Path, created for a new run. A path that is a file, or lies
    under one, is refused in one line (instead of NotADirectoryError from deep inside a save)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {out} is a file; expected a folder for the run (or a path "
                                 f"that does not exist yet)")
    if not out.exists():
        for parent in out.parents:
            if parent.exists():
                if not parent.is_dir():
                    raise NotADirectoryError(f"--out {out}: {parent} is a file, so no folder can be "
                                             f"made under it")
                break
        if resume:
            raise FileNotFoundError(f"--resume: {out} does not exist; nothing to resume")
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OSError(f"--out {out}: cannot create the folder ({e.strerror or e})") from None
    return out


def _lock_holder(path):
    try:
        info = json.loads(path.read_text())
        return (f"pid {info['pid']} on {info['host']}, {info['command']} started {info['started']}")
    except (OSError, ValueError, KeyError, TypeError):
        return "holder unknown"


@contextlib.contextmanager
def run_lock(out, command="run"):
    """Hold OUT/.lock for the whole run: an exclusive flock, refused at once (RunLocked, naming
    the holder) while another process holds it. The kernel drops a flock when its process dies,
    even by kill -9, so a lock file left behind never blocks anyone; its text (pid, host, start)
    only names the holder. A separate file, because checkpoint saves flock the folder itself."""
    if fcntl is None:
        yield
        return
    path = Path(out) / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunLocked(f"--out {out} is in use by another run ({_lock_holder(path)}); wait for "
                            f"it to end or choose another --out") from None
        except OSError:
            pass                          # a file system without flock: run unlocked
        else:
            info = {"pid": os.getpid(), "host": socket.gethostname(), "command": command,
                    "started": time.strftime("%Y-%m-%d %H:%M:%S")}
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        yield
    finally:
        os.close(fd)                      # releases the lock


def _alive(pid):
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)                   # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def remove_dead_temporaries(out):
    """Delete temporary files that writers which no longer run left in `out` (a kill during a
    save). Called with the run lock held; POSIX only (os.kill(pid, 0) means something else on
    Windows)."""
    if os.name != "posix":
        return
    for p in Path(out).iterdir():
        m = _TEMP_FILE.match(p.name)
        if m and p.is_file() and not _alive(int(m.group(1))):
            with contextlib.suppress(OSError):
                p.unlink()


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
    return make_mask(settings.mask_type, batch, cfg.grid, settings.mask_ratio, rng=rng)


def pretrain_batch(settings: PretrainSettings, cfg, step, clips=None):
    """(pixel_values, bool_masked_pos) of update `step`: a pure function of (settings, step)."""
    B = settings.batch_size
    if clips is None:
        x, _ = toy.batch_at(settings.seed, step, B, settings.spec())
    else:
        x = clips[_rng(settings.seed, step, DATA_STREAM).integers(0, len(clips), B)]
    return x, _mask(settings, cfg, B, _rng(settings.seed, step, MASK_STREAM))


def check_pretrain(settings: PretrainSettings):
    """What can be checked before a new pretraining run touches its folder: the model and the toy
    clips agree, and the mask ratio hides at least one token of the model's grid."""
    cfg = settings.model_config()
    if not settings.data:
        spec = settings.spec()
        if (cfg.num_frames, cfg.image_hw, cfg.num_channels) != (spec.frames, (spec.size,) * 2, spec.channels):
            raise ValueError(
                f"--config/--toy: the model expects {cfg.num_frames} frames of {cfg.image_hw[0]}x"
                f"{cfg.image_hw[1]} with {cfg.num_channels} channels, the toy clips have {spec.frames} "
                f"of {spec.size}x{spec.size} with {spec.channels}; set num_frames/image_size/"
                f"num_channels (--config) and frames/size/channels (--toy) alike")
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
    out = run_folder(out, resume)
    with run_lock(out, "pretrain"):
        remove_dead_temporaries(out)
        return _pretrain(settings, out, resume, explicit, log, callback)


def _pretrain(settings, out, resume, explicit, log, callback):
    settings = settings or PretrainSettings()
    out = Path(out)
    chosen = _prepare(out, settings, resume, log)
    if resume:
        settings = _merge_resume(chosen, settings, explicit, read_state(out)["step"], log)
    cfg = settings.model_config()
    clips = None
    if settings.data:
        from .data import load_video_folder
        clips, _, _ = load_video_folder(settings.data, num_frames=cfg.num_frames, image_size=cfg.image_hw)
    elif settings.pretrain_clips:
        clips, _ = toy.make_dataset(settings.pretrain_clips, PRETRAIN_SET_SEED + settings.seed, settings.spec())
    model = VideoMAEForPreTraining(cfg, seed=settings.seed, dtype=np.float32)
    # batch k + 1 is rendered on another thread while the model trains on batch k (a batch is a
    # pure function of k, so the numbers are those of a run without it)
    batches = Prefetcher(lambda k: pretrain_batch(settings, cfg, k, clips), start=read_step(out) if resume else 0)

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
    # the picture: clips never trained on, masked like the training clips
    if clips is None or not settings.data:
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


def read_step(out):
    """The step a run folder was saved at (0 when it holds no readable state)."""
    try:
        return int((read_state(out) or {}).get("step", 0))
    except (ValueError, TypeError, OSError):
        return 0


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


def _classifier(settings: FinetuneSettings, resume_from=None, labels=None):
    """The classifier to train: the run being resumed (its weights are loaded afterwards), the
    pretrained encoder of settings.init with a new head, or a fresh toy model. labels: the
    num_labels / id2label / label2id of a --data folder (default: the toy clips')."""
    if resume_from is not None:       # the init directory is not needed any more
        return VideoMAEForVideoClassification(VideoMAEConfig.from_pretrained(resume_from), seed=settings.seed)
    toy_labels = labels is None
    if toy_labels:
        labels = _label_fields(settings.spec())
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
    cfg = settings.model_config() if toy_labels else toy_config(**{**settings.model, **labels})
    return VideoMAEForVideoClassification(cfg, seed=settings.seed)


def run_finetune(settings: FinetuneSettings | None = None, out="runs/finetune", resume=False,
                 explicit=(), log=print, callback=None):
    """Fine-tune a classifier of the toy labels into `out`; evaluates on held-out clips at the end
    and writes metrics.json. Returns the metrics dict. The folder is locked for the whole run."""
    settings = settings or FinetuneSettings()
    if not resume and settings.init and settings.model:
        raise ValueError(f"--config: the model comes from --init {settings.init}, whose config "
                         f"fine-tuning keeps; found {', '.join(map(str, settings.model))} to change. "
                         f"Drop --config, or fine-tune from scratch (no --init)")
    splits = None
    if settings.data and not resume:     # a folder that cannot work stops before anything is written
        splits = _open_video_data(settings, log)
    out = run_folder(out, resume)
    with run_lock(out, "finetune"):
        remove_dead_temporaries(out)
        if settings.data or resume:
            return _finetune_dispatch(settings, out, resume, explicit, log, callback, splits)
        return _finetune(settings, out, resume, explicit, log, callback)


def _open_video_data(settings, log):
    from .data.videos import open_splits
    return open_splits(settings.data, warn=log)


def _finetune_dispatch(settings, out, resume, explicit, log, callback, splits):
    """A resumed run continues on the data it started with (its saved settings say which)."""
    if resume:
        state = read_state(out)
        saved = _saved_settings(out, FinetuneSettings, state) if state and state["kind"] == "finetune" else None
        if saved is not None and saved.data:
            if settings.data and "data" in explicit and settings.data != saved.data:
                raise ValueError(f"--resume continues the saved run; data was {saved.data!r}, not "
                                 f"{settings.data!r} (start a new --out to change it)")
            return _finetune_videos(settings, out, resume, explicit, log, callback, None)
        if "data" in explicit:
            raise ValueError(f"--resume continues the saved run, which fine-tuned on the toy clips, "
                             f"not on --data {settings.data}")
        return _finetune(settings, out, resume, explicit, log, callback)
    return _finetune_videos(settings, out, resume, explicit, log, callback, splits)


def _freeze_encoder(run):
    """Linear probe: the encoder's learning rate and weight decay are 0 (AdamW leaves it exactly
    as loaded); its gradients are zeroed in the step so gradient clipping sees the head only."""
    for n in run.opt.groups:
        if not n.startswith(HEAD_PARAMS):
            run.opt.groups[n] = (0.0, 0.0)


HEAD_PARAMS = ("fc_norm.", "classifier.")


def _head_only(grads):
    for n, g in grads.items():
        if not n.startswith(HEAD_PARAMS):
            g[...] = 0
    return grads


def video_batch(settings, split, cfg, proc, step):
    """(pixel_values, labels) of update `step` from a folder of videos: which videos, which frames
    and which augmentation all come from (seed, step), so a resumed run sees the same batches."""
    from .data.videos import augment
    idx = finetune_order(settings.seed, step, settings.batch_size, len(split))
    rng = _rng(settings.seed, step, DATA_STREAM)
    clips = [augment(split.clip(int(i), cfg.num_frames, settings.stride, rng=rng, train=True), rng,
                     flip=settings.flip) for i in idx]
    x = np.stack([proc(c, return_tensors="np")["pixel_values"][0] for c in clips]).astype(np.float32)
    return x, split.labels[idx]


def _finetune_videos(settings, out, resume, explicit, log, callback, splits):
    from .data.videos import processor_for
    from .evaluate import evaluate_split
    out = Path(out)
    chosen = _prepare(out, settings, resume, log)
    if resume:
        settings = _merge_resume(chosen, settings, explicit, read_state(out)["step"], log)
    if splits is None:
        splits = _open_video_data(settings, log)
    train_split, val_split = splits["train"], splits["val"]
    classes = train_split.classes
    labels = dict(num_labels=len(classes), id2label=dict(enumerate(classes)),
                  label2id={c: i for i, c in enumerate(classes)})
    model = _classifier(settings, out if resume else None, labels=labels)
    cfg = model.config
    if resume and [cfg.id2label[i] for i in range(cfg.num_labels)] != classes:
        raise ValueError(f"--resume: the run in {out} was trained on classes "
                         f"{list(cfg.id2label.values())}, --data {settings.data} has {classes}")
    proc = processor_for(cfg, out if resume else settings.init)
    if not resume:
        proc.save_pretrained(out)               # preprocessor_config.json beside the model
    model.train(True, drop_path_rate=0.0 if settings.linear_probe else settings.drop_path)
    # clips decoded + augmented in worker processes (data/clips.py); batch k is video_batch's
    from .data.clips import ClipLoader, loader_spec, train_task
    batches = ClipLoader(loader_spec(train_split, proc, cfg.num_frames, settings.stride, settings.flip),
                         lambda k: train_task(k, finetune_order(settings.seed, k, settings.batch_size,
                                                                len(train_split)), (settings.seed, k, DATA_STREAM)),
                         start=read_step(out) if resume else 0, log=log)

    def grad_fn(k):
        x, y = batches.get(k)
        out_, grads = model.value_and_grad(x, labels=y, rng=_rng(settings.seed, k, DROPOUT_STREAM))
        return out_, (_head_only(grads) if settings.linear_probe else grads)

    run = _Run("finetune", out, settings, model, grad_fn, batches.annotate(log, "finetune step"), callback)
    if settings.linear_probe:
        _freeze_encoder(run)
    sampling = (f"{cfg.num_frames} frames every {settings.stride}" if settings.stride
                else f"{cfg.num_frames} segments")
    if resume:
        run.resume()
    else:
        start = f"the encoder of {settings.init}" if settings.init else "scratch"
        log(f"fine-tuning {model!r} from {start}{' (linear probe)' if settings.linear_probe else ''} "
            f"on {len(train_split)} videos of {len(classes)} classes in {settings.data} ({sampling}) "
            f"for {settings.steps} steps -> {out}")
    t0 = time.perf_counter()
    try:
        run.fit()
    finally:
        batches.close()
    seconds = time.perf_counter() - t0
    log(batches.summary("trained"))
    metrics = {"data": str(settings.data), "classes": classes, "init": settings.init or "scratch",
               "step": run.step, "seconds_last_session": round(seconds, 2),
               "train_videos": len(train_split), "stride": settings.stride,
               "num_frames": cfg.num_frames, "linear_probe": settings.linear_probe,
               "loader": batches.rates()}
    if val_split is not None:
        res = evaluate_split(model, proc, val_split, cfg.num_frames, settings.stride, log=log)
        metrics.update({"eval_accuracy": res["top1"], "eval_top5": res["top5"],
                        "eval_videos": res["videos"], "eval_per_class": res["per_class_accuracy"]})
    run.save({"eval_accuracy": metrics.get("eval_accuracy")})
    _write_json(out / METRICS_JSON, metrics)
    if val_split is not None:
        log(f"held-out accuracy {metrics['eval_accuracy']:.1%} on {metrics['eval_videos']} videos of "
            f"{val_split.folder}; wrote {out / METRICS_JSON}")
    else:
        log(f"no val/ folder: no held-out accuracy; wrote {out / METRICS_JSON}")
    return metrics


def _finetune(settings, out, resume, explicit, log, callback):
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
    model.train(True, drop_path_rate=0.0 if settings.linear_probe else settings.drop_path)
    spec = settings.spec()
    x_train, y_train = toy.make_dataset(settings.train_clips, settings.data_seed, spec)
    x_eval, y_eval = toy.make_dataset(settings.eval_clips, settings.eval_seed, spec)

    def grad_fn(k):
        idx = finetune_order(settings.seed, k, settings.batch_size, settings.train_clips)
        out_, grads = model.value_and_grad(x_train[idx], labels=y_train[idx],
                                           rng=_rng(settings.seed, k, DROPOUT_STREAM))
        return out_, (_head_only(grads) if settings.linear_probe else grads)

    run = _Run("finetune", out, settings, model, grad_fn, log, callback)
    if settings.linear_probe:
        _freeze_encoder(run)
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
    from .reconstruction import picture_format, save_picture

    out_png = Path(out_png) if out_png else Path(video).with_suffix(".reconstruction.png")
    picture_format(out_png, "--out")               # refused before anything is computed
    model_dir = Path(model_dir)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")             # a missing decoder is refused below, in one line
        model = VideoMAEForPreTraining.from_pretrained(model_dir)
    missing = model.loading_info["missing_keys"]
    if missing:
        kind = (model.config.architectures or ["model"])[0]
        raise ValueError(f"--model {model_dir}: expected a pretraining run's model, found a {kind} "
                         f"checkpoint without the decoder ({len(missing)} tensors missing, e.g. "
                         f"{missing[0]}); a random decoder would draw noise")
    cfg = model.config
    frames = read_video(video)                                        # (T, H, W, C) uint8
    idx = np.floor(np.linspace(0, len(frames) - 1, cfg.num_frames)).astype(np.int64)
    h, w = cfg.image_hw
    proc = VideoMAEImageProcessor(size={"shortest_edge": min(h, w)}, crop_size={"height": h, "width": w})
    px = proc(frames[idx], return_tensors="np")["pixel_values"]         # (1, T, C, h, w)
    state = read_state(model_dir)
    settings = (_saved_settings(model_dir, PretrainSettings, state)
                if state and state["kind"] == "pretrain" else PretrainSettings())
    if mask_ratio is not None:
        settings = dataclasses.replace(settings, mask_ratio=mask_ratio)
    if mask_type is not None:
        settings = dataclasses.replace(settings, mask_type=mask_type)
    check_mask_ratio(settings.mask_type, cfg, settings.mask_ratio)
    mask = _mask(settings, cfg, 1, _rng(seed, 0, MASK_STREAM))
    text = save_picture(out_png, model, px, mask, settings.mask_ratio, note=f"{Path(video).name}")
    log(f"{out_png}: {text}")
    return out_png
