"""VideoMAEConfig: the model's hyper-parameters, read and written as Hugging Face ``config.json``.

The fields and defaults are those of ``transformers.VideoMAEConfig`` (ViT-B/16 with a 4-layer,
384-wide decoder, 16 frames, tubelets of 2). Keys we do not know are kept and written back, so a
config passed through us reaches transformers unchanged.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

from .ops.activations import ACTIVATIONS

CONFIG_NAME = "config.json"
MODEL_TYPE = "videomae"
PROBLEM_TYPES = ("regression", "single_label_classification", "multi_label_classification")

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

    def __init__(self, **kwargs):
        if "qkv_bias" in kwargs:  # name used by the first VideoMAE checkpoints
            kwargs["qv_bias"] = kwargs.pop("qkv_bias")
        for k in _RUNTIME_KEYS:
            kwargs.pop(k, None)
        kwargs.pop("model_type", None)
        for name, default in DEFAULTS.items():
            setattr(self, name, kwargs.pop(name, default))
        if isinstance(self.image_size, list):
            self.image_size = tuple(self.image_size)
        if isinstance(self.patch_size, (list, tuple)):
            ps = tuple(self.patch_size)
            if len(ps) != 2 or ps[0] != ps[1]:
                raise ValueError(f"patch_size must be an int or a square pair, got {self.patch_size!r}")
            self.patch_size = ps[0]
        self.architectures = kwargs.pop("architectures", None)
        self.problem_type = kwargs.pop("problem_type", None)
        id2label = kwargs.pop("id2label", None)
        label2id = kwargs.pop("label2id", None)
        num_labels = kwargs.pop("num_labels", None)
        if id2label is not None:
            id2label = {int(k): v for k, v in dict(id2label).items()}
            if num_labels is not None and num_labels != len(id2label):
                raise ValueError(f"num_labels={num_labels} disagrees with id2label, which has "
                                 f"{len(id2label)} entries")
        else:
            n = 2 if num_labels is None else int(num_labels)
            id2label = {i: f"LABEL_{i}" for i in range(n)}
        self.id2label = id2label
        self.label2id = dict(label2id) if label2id is not None else {v: k for k, v in id2label.items()}
        self.extra = kwargs  # unknown keys survive a round trip
        self.validate()

    # --- derived sizes -------------------------------------------------------------------------
    @property
    def num_labels(self) -> int:
        return len(self.id2label)

    @num_labels.setter
    def num_labels(self, n: int):
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
        bad = []
        for name in _INT_FIELDS:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < (0 if "num_hidden_layers" in name else 1):
                bad.append(f"{name}={v!r} must be a positive integer")
        h, w = (self.image_size if isinstance(self.image_size, tuple) else (self.image_size,) * 2)
        for v in (h, w):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                bad.append(f"image_size={self.image_size!r} must be a positive integer or (height, width)")
                break
        if bad:
            raise ValueError("invalid VideoMAEConfig: " + "; ".join(bad))
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
        if self.hidden_act not in ACTIVATIONS:
            bad.append(f"hidden_act={self.hidden_act!r} is not one of {sorted(ACTIVATIONS)}")
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            p = getattr(self, name)
            if not 0.0 <= float(p) < 1.0:
                bad.append(f"{name}={p!r} must lie in [0, 1)")
        if not float(self.layer_norm_eps) > 0:
            bad.append(f"layer_norm_eps={self.layer_norm_eps!r} must be positive")
        if self.problem_type is not None and self.problem_type not in PROBLEM_TYPES:
            bad.append(f"problem_type={self.problem_type!r} is not one of {PROBLEM_TYPES}")
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
        path = Path(save_directory)
        path.mkdir(parents=True, exist_ok=True)
        _atomic_write_text(path / CONFIG_NAME, self.to_json_string())

    @classmethod
    def from_pretrained(cls, path) -> "VideoMAEConfig":
        """Read ``config.json`` from a directory (or the file itself)."""
        path = Path(path)
        file = path / CONFIG_NAME if path.is_dir() else path
        if not file.exists():
            raise FileNotFoundError(f"no {CONFIG_NAME} at {file} (expected a directory written by "
                                    "save_pretrained)")
        try:
            d = json.loads(file.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{file} is not valid JSON: {e}") from None
        if not isinstance(d, dict):
            raise ValueError(f"{file} must hold a JSON object, found {type(d).__name__}")
        return cls.from_dict(d)

    def copy(self, **changes) -> "VideoMAEConfig":
        d = self.to_dict()
        d.update(changes)
        return VideoMAEConfig.from_dict(d)

    def __eq__(self, other):
        return isinstance(other, VideoMAEConfig) and self.to_dict() == other.to_dict()

    def __repr__(self):
        return f"VideoMAEConfig {self.to_json_string()}"


def _atomic_write_text(path: Path, text: str):
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
