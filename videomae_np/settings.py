"""What a training run does: its settings, their defaults and the rules that check them.

    PretrainSettings()              the pretraining recipe (``videomae-np pretrain``)
    FinetuneSettings(init=DIR)      the fine-tuning recipe (``videomae-np finetune``)
    toy_config(**overrides)         the VideoMAEConfig of the toy model (TOY_MODEL)

Settings are checked when they are built (validate_settings): a bad value raises one ValueError
naming the option, what was expected and what was found, before any file is touched. A run saves
its settings in trainer_state.json (to_dict) and a resumed run reads them back (from_dict,
merge_resume).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import numbers
import os
from dataclasses import asdict, dataclass, field

from . import optim
from .config import DEFAULTS as CONFIG_DEFAULTS
from .config import VideoMAEConfig
from .data import toy
from .masking import MASKS, make_mask
from .ops.losses import RECONSTRUCTION_LOSSES

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


def label_fields(spec):
    """num_labels and id2label of the toy clips' class set."""
    return dict(num_labels=spec.num_classes, id2label=dict(enumerate(spec.labels)))


def toy_config(**overrides) -> VideoMAEConfig:
    """The VideoMAEConfig of the toy model, with any field overridden."""
    return VideoMAEConfig(**{**TOY_MODEL, **overrides})


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
        return toy_config(**{**label_fields(self.spec()), **self.model})

    def schedule(self):
        return optim.WarmupCosine(self.lr, self.warmup_steps, self.steps, self.min_lr)


@dataclass
class PretrainSettings(Settings):
    kind = "pretrain"
    # 12000 updates of 16 clips: tube 75% then reached 100.0, 100.0 and 99.8% held-out after
    # fine-tuning (seeds 0-2), where 6000 reached 78.6 +- 2.6% (results/data.md, docs/toy_scale.md);
    # 427 s on the project's 2 cores (docs/performance.md)
    steps: int = 12000
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

    def mask(self, cfg, batch, rng):
        """(batch, N) bool: a mask of this run's kind and ratio over the model's token grid."""
        return make_mask(self.mask_type, batch, cfg.grid, self.mask_ratio, rng=rng)


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
        raise ValueError(f"--toy: {one_line(e)}") from None
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
        raise ValueError(f"--config: {one_line(e)}") from None


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


def one_line(e):
    """The message of an exception on one line (a KeyError's without its quotes)."""
    msg = e.args[0] if isinstance(e, KeyError) and e.args else e
    return " ".join(str(msg).split()) or type(e).__name__


# ------------------------------------------------------------------------------------------------
# the settings of a resumed run
# ------------------------------------------------------------------------------------------------
def merge_resume(saved, given, explicit, step, log):
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


