"""VideoMAEConfig: the model's hyper-parameters, read and written as Hugging Face ``config.json``.

The fields and defaults are those of ``transformers.VideoMAEConfig`` (ViT-B/16 with a 4-layer,
384-wide decoder, 16 frames, tubelets of 2). Keys we do not know are kept and written back, so a
config passed through us reaches transformers unchanged. Every field's type and range is checked
on construction and on assignment (``cfg.qv_bias = "false"`` raises), with one line naming it.
"""

from __future__ import annotations

import copy
import json
import math
import numbers
from pathlib import Path

from .fileio import atomic_write_text, read_json_object
from .ops.activations import ACTIVATIONS

CONFIG_NAME = "config.json"
MODEL_TYPE = "videomae"
PROBLEM_TYPES = ("regression", "single_label_classification", "multi_label_classification")
# Written by our save_pretrained into config.json and, equal, into model.safetensors' metadata, so
# that a folder whose two files come from different saves is recognised (checkpoint.read_weights).
# Not a model field: kept aside on read (not in to_dict) and written back by save_pretrained.
SAVE_ID_KEY = "videomae_np_save_id"

# Field -> default, in the order transformers declares them.
DEFAULTS = {
    "image_size": 224,
    "patch_size": 16,
    "num_channels": 3,
    "num_frames": 16,
    "tubelet_size": 2,
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.0,
    "attention_probs_dropout_prob": 0.0,
    "initializer_range": 0.02,
    "layer_norm_eps": 1e-12,
    "qv_bias": True,
    "use_mean_pooling": True,
    "decoder_num_attention_heads": 6,
    "decoder_hidden_size": 384,
    "decoder_num_hidden_layers": 4,
    "decoder_intermediate_size": 1536,
    "norm_pix_loss": True,
}
_INT_FIELDS = (
    "patch_size", "num_channels", "num_frames", "tubelet_size", "hidden_size", "num_hidden_layers",
    "num_attention_heads", "intermediate_size", "decoder_num_attention_heads", "decoder_hidden_size",
    "decoder_num_hidden_layers", "decoder_intermediate_size",
)
_BOOL_FIELDS = ("qv_bias", "use_mean_pooling", "norm_pix_loss")
_PROB_FIELDS = ("hidden_dropout_prob", "attention_probs_dropout_prob")
# Keys transformers writes for every config that carry no meaning for us; dropped on read.
_RUNTIME_KEYS = {"transformers_version", "_name_or_path", "return_dict", "output_hidden_states",
                 "output_attentions", "torch_dtype", "dtype", "chunk_size_feed_forward",
                 "is_encoder_decoder", "_attn_implementation_autoset", "use_return_dict"}


class VideoMAEConfig:
    """Hyper-parameters of VideoMAE; same fields and defaults as ``transformers.VideoMAEConfig``.

    Besides the model fields it carries the classification head's ``num_labels`` / ``id2label`` /
    ``label2id`` / ``problem_type`` (transformers' ``PreTrainedConfig`` fields). The legacy key
    ``qkv_bias`` is read as ``qv_bias``.
    """

    model_type = MODEL_TYPE

    def __init__(self, /, **kwargs):
        object.__setattr__(self, "_checking", False)   # fields are checked together by validate()
        if "qkv_bias" in kwargs:  # name used by the first VideoMAE checkpoints
            kwargs["qv_bias"] = kwargs.pop("qkv_bias")
        for k in _RUNTIME_KEYS:
            kwargs.pop(k, None)
        kwargs.pop("model_type", None)
        self._save_id = kwargs.pop(SAVE_ID_KEY, None)
        for name, default in DEFAULTS.items():
            setattr(self, name, _normalise(name, kwargs.pop(name, default)))
        self.architectures = kwargs.pop("architectures", None)
        self.problem_type = kwargs.pop("problem_type", None)
        id2label = kwargs.pop("id2label", None)
        label2id = kwargs.pop("label2id", None)
        num_labels = _normalise("num_labels", kwargs.pop("num_labels", None))
        if num_labels is not None and (msg := _field_error("num_labels", num_labels)):
            raise ValueError(f"invalid VideoMAEConfig: {msg}")
        if id2label is not None:
            id2label = _label_map(id2label)
            if num_labels is not None and num_labels != len(id2label):
                raise ValueError(f"num_labels={num_labels} disagrees with id2label, which has "
                                 f"{len(id2label)} entries")
        else:
            n = 2 if num_labels is None else int(num_labels)
            id2label = {i: f"LABEL_{i}" for i in range(n)}
        self.id2label = id2label
        if label2id is not None and not isinstance(label2id, dict):
            raise ValueError(f"invalid VideoMAEConfig: label2id must be a mapping from label to "
                             f"index, found {type(label2id).__name__}")
        self.label2id = dict(label2id) if label2id is not None else {v: k for k, v in id2label.items()}
        self.extra = kwargs  # unknown keys survive a round trip
        self.validate()
        self._checking = True

    def __setattr__(self, name, value):
        """Assigning a field checks its type and range, as construction does. (Constraints between
        fields, such as hidden_size % num_attention_heads, are checked by validate(), which
        construction, from_pretrained and copy() call: a change may need several assignments.)"""
        if name in _CHECKED and self.__dict__.get("_checking"):
            try:
                value = _normalise(name, value)
            except ValueError as e:
                raise ValueError(f"invalid VideoMAEConfig: {e}") from None
            msg = _field_error(name, value)
            if msg:
                raise ValueError(f"invalid VideoMAEConfig: {msg}")
        object.__setattr__(self, name, value)

    # --- derived sizes -------------------------------------------------------------------------
    @property
    def num_labels(self) -> int:
        return len(self.id2label)

    @num_labels.setter
    def num_labels(self, n: int):
        n = _normalise("num_labels", n)
        msg = _field_error("num_labels", n)
        if msg:
            raise ValueError(f"invalid VideoMAEConfig: {msg}")
        self.id2label = {i: f"LABEL_{i}" for i in range(int(n))}
        self.label2id = {v: k for k, v in self.id2label.items()}

    @property
    def image_hw(self) -> tuple[int, int]:
        s = self.image_size
        return (int(s[0]), int(s[1])) if isinstance(s, tuple) else (int(s), int(s))

    @property
    def grid(self) -> tuple[int, int, int]:
        """Token grid (T/tubelet, H/p, W/p); tokens are ordered time-major, then rows, then columns."""
        h, w = self.image_hw
        return (self.num_frames // self.tubelet_size, h // self.patch_size, w // self.patch_size)

    @property
    def num_patches(self) -> int:
        t, gh, gw = self.grid
        return t * gh * gw

    @property
    def patches_per_frame(self) -> int:
        _, gh, gw = self.grid
        return gh * gw

    @property
    def pixels_per_token(self) -> int:
        """P = tubelet * p * p * C, the width of one reconstructed token."""
        return self.tubelet_size * self.patch_size ** 2 * self.num_channels

    # --- validation ----------------------------------------------------------------------------
    def validate(self):
        """Raise one ValueError naming every field whose type or value is wrong, then (once the
        types are right) every pair of fields that do not fit together."""
        bad = [msg for name in _CHECKED if (msg := _field_error(name, getattr(self, name)))]
        if bad:
            raise ValueError("invalid VideoMAEConfig: " + "; ".join(bad))
        h, w = self.image_hw
        if self.hidden_size % self.num_attention_heads:
            bad.append(f"hidden_size={self.hidden_size} is not divisible by "
                       f"num_attention_heads={self.num_attention_heads}")
        if self.decoder_hidden_size % self.decoder_num_attention_heads:
            bad.append(f"decoder_hidden_size={self.decoder_hidden_size} is not divisible by "
                       f"decoder_num_attention_heads={self.decoder_num_attention_heads}")
        if h % self.patch_size or w % self.patch_size:
            bad.append(f"image_size={self.image_size!r} is not divisible by patch_size={self.patch_size}")
        if self.num_frames % self.tubelet_size:
            bad.append(f"num_frames={self.num_frames} is not divisible by tubelet_size={self.tubelet_size}")
        if bad:
            raise ValueError("invalid VideoMAEConfig: " + "; ".join(bad))

    # --- (de)serialisation ---------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = {name: getattr(self, name) for name in DEFAULTS}
        if isinstance(d["image_size"], tuple):
            d["image_size"] = list(d["image_size"])
        d.update(
            model_type=MODEL_TYPE,
            architectures=self.architectures,
            id2label={str(k): v for k, v in self.id2label.items()},
            label2id=dict(self.label2id),
            problem_type=self.problem_type,
        )
        d.update(copy.deepcopy(self.extra))
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "VideoMAEConfig":
        d = dict(d)
        mt = d.get("model_type", MODEL_TYPE)
        if mt != MODEL_TYPE:
            raise ValueError(f"config has model_type={mt!r}, expected {MODEL_TYPE!r}")
        return cls(**d)

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def save_pretrained(self, save_directory):
        """Write config.json. A config read from a model folder keeps that folder's save id, so
        an edited config written back still pairs with the weights beside it."""
        path = Path(save_directory)
        path.mkdir(parents=True, exist_ok=True)
        d = self.to_dict()
        if self._save_id is not None:
            d[SAVE_ID_KEY] = self._save_id
        atomic_write_text(path / CONFIG_NAME, json.dumps(d, indent=2, sort_keys=True) + "\n")

    @classmethod
    def from_pretrained(cls, path) -> "VideoMAEConfig":
        """Read ``config.json`` from a directory (or the file itself)."""
        path = Path(path)
        file = path / CONFIG_NAME if path.is_dir() else path
        if not file.exists():
            raise FileNotFoundError(f"no {CONFIG_NAME} at {file} (expected a directory written by "
                                    "save_pretrained)")
        d = read_json_object(file)
        try:
            return cls.from_dict(d)
        except ValueError as e:
            raise ValueError(f"{file}: {e}") from None

    def copy(self, **changes) -> "VideoMAEConfig":
        d = self.to_dict()
        d.update(changes)
        return VideoMAEConfig.from_dict(d)

    def __eq__(self, other):
        return isinstance(other, VideoMAEConfig) and self.to_dict() == other.to_dict()

    def __repr__(self):
        return f"VideoMAEConfig {self.to_json_string()}"


# --- field checks ------------------------------------------------------------------------------
_CHECKED = (*DEFAULTS, "architectures", "problem_type", "id2label", "label2id")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_real(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _normalise(name, v):
    """The stored form of a field: NumPy scalars become Python ones, an image_size list a tuple,
    a square patch_size pair one int."""
    if isinstance(v, numbers.Number) and type(v).__module__ == "numpy":
        v = v.item()
    if name == "image_size" and isinstance(v, list):
        v = tuple(v)
    if name == "patch_size" and isinstance(v, (list, tuple)):
        ps = tuple(v)
        if len(ps) != 2 or ps[0] != ps[1]:
            raise ValueError(f"patch_size must be an int or a square pair, got {v!r}")
        v = ps[0]
    return v


def _found(v) -> str:
    return f"{v!r} ({type(v).__name__})"


def _field_error(name, v) -> str | None:
    """None if field ``name`` may hold ``v``, else one sentence: the field, what it must be, what
    it is."""
    if name in _INT_FIELDS or name == "num_labels":
        low = 0 if "num_hidden_layers" in name else 1
        if not _is_int(v) or v < low:
            return f"{name}={_found(v)} must be a {'non-negative' if low == 0 else 'positive'} integer"
    elif name == "image_size":
        pair = isinstance(v, tuple) and len(v) == 2 and all(_is_int(x) and x >= 1 for x in v)
        if not pair and not (_is_int(v) and v >= 1):
            return f"image_size={_found(v)} must be a positive integer or a (height, width) pair of them"
    elif name in _BOOL_FIELDS:
        if not isinstance(v, bool):
            return f"{name}={_found(v)} must be a bool (true or false)"
    elif name == "hidden_act":
        if not isinstance(v, str) or v not in ACTIVATIONS:
            return f"hidden_act={_found(v)} must be one of the strings {sorted(ACTIVATIONS)}"
    elif name in _PROB_FIELDS:
        if not _is_real(v) or not 0.0 <= v < 1.0:
            return f"{name}={_found(v)} must be a number in [0, 1)"
    elif name == "initializer_range":
        if not _is_real(v) or not math.isfinite(v) or v < 0:
            return f"initializer_range={_found(v)} must be a finite number >= 0"
    elif name == "layer_norm_eps":
        if not _is_real(v) or not math.isfinite(v) or v <= 0:
            return f"layer_norm_eps={_found(v)} must be a finite number > 0"
    elif name == "problem_type":
        if v is not None and v not in PROBLEM_TYPES:
            return f"problem_type={v!r} is not one of {PROBLEM_TYPES}"
    elif name == "architectures":
        if v is not None and not (isinstance(v, (list, tuple)) and all(isinstance(a, str) for a in v)):
            return f"architectures={_found(v)} must be a list of class names or None"
    elif name == "id2label":
        if not isinstance(v, dict) or not all(_is_int(k) for k in v):
            return f"id2label={_found(v)} must map integer indices to labels"
    elif name == "label2id":
        if not isinstance(v, dict):
            return f"label2id={_found(v)} must map labels to integer indices"
    return None


def _label_map(id2label) -> dict:
    """id2label as read from JSON (string keys) or given (int keys) -> {int: label}."""
    if not isinstance(id2label, dict):
        raise ValueError(f"invalid VideoMAEConfig: id2label={_found(id2label)} must map integer "
                         f"indices to labels")
    out = {}
    for k, v in id2label.items():
        try:
            if isinstance(k, bool) or (isinstance(k, float) and not k.is_integer()):
                raise ValueError
            i = int(k)
        except (TypeError, ValueError, OverflowError):
            raise ValueError(f"invalid VideoMAEConfig: id2label key {k!r} is not an integer "
                             f"index") from None
        out[i] = v
    return out

