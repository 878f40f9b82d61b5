"""Checkpoints of the original VideoMAE repositories (MCG-NJU/VideoMAE, OpenGVLab/VideoMAEv2) into a
model folder that videomae_np and transformers both load.

    videomae-np convert --from original CKPT.pth --out DIR [--num-frames 16] [--image-size 224]
                        [--num-heads H] [--decoder-num-heads H] [--num-labels K] ...

The original names and what they become (transformers' ``convert_videomae_to_pytorch.py`` does the
same renaming):

    [encoder.]patch_embed.proj.{weight,bias}     videomae.embeddings.patch_embeddings.projection.*
    [encoder.]blocks.i.norm1 / norm2             videomae.encoder.layer.i.layernorm_before / _after
    [encoder.]blocks.i.attn.qkv.weight (3D, D)   ...attention.attention.{query,key,value}.weight (thirds)
    [encoder.]blocks.i.attn.q_bias / v_bias      ...attention.attention.{query,value}.bias
    [encoder.]blocks.i.attn.proj                 ...attention.output.dense
    [encoder.]blocks.i.mlp.fc1 / fc2             ...intermediate.dense / output.dense
    encoder.norm (pretraining), norm (fine-tuned)   videomae.layernorm
    encoder_to_decoder, mask_token, decoder.norm, decoder.head   the same names
    decoder.blocks.i.*                           decoder.decoder_layers.i.* (as the encoder's blocks)
    fc_norm, head                                fc_norm, classifier

The state dict may be wrapped under "model", "module" or "state_dict" and its keys prefixed with
"module.". Shapes give the widths, depths, patch and tubelet sizes, channels, decoder and number
of classes; the number of attention heads cannot be read from shapes and comes from --num-heads
(default by width, HEADS_BY_WIDTH), as does everything about the input (frames, image size).

A ``.pth`` file is a zip of pickles. Pickle can run any code it names, so we never let it: the
default reader (``read_torch_zip``) is a restricted unpickler that admits only tensor rebuilds,
storages and ordered dicts, and refuses anything else, naming it. ``--torch-load`` uses
``torch.load(weights_only=True)`` instead, when torch is installed.
"""

from __future__ import annotations

import argparse
import collections
import pickle
import re
import sys
import zipfile
from pathlib import Path

import numpy as np

from . import checkpoint as ckpt
from .config import VideoMAEConfig
from .models import VideoMAEForPreTraining, VideoMAEForVideoClassification, VideoMAEModel
from .positions import sinusoid_table

# Heads of the published models by width (ViT-S/B/L/H of VideoMAE, ViT-g of VideoMAEv2), and
# of their decoders (VideoMAE's small/base/large-huge decoders).
HEADS_BY_WIDTH = {384: 6, 768: 12, 1024: 16, 1280: 16, 1408: 16}
DECODER_HEADS_BY_WIDTH = {192: 3, 384: 6, 512: 8, 640: 8}
WRAPPERS = ("model", "module", "state_dict")
EXIT_OK, EXIT_ERROR = 0, 1

# one block's original names -> transformers' names inside a VideoMAELayer (qkv handled apart)
BLOCK_NAMES = {
    "norm1.weight": "layernorm_before.weight", "norm1.bias": "layernorm_before.bias",
    "norm2.weight": "layernorm_after.weight", "norm2.bias": "layernorm_after.bias",
    "attn.q_bias": "attention.attention.query.bias", "attn.v_bias": "attention.attention.value.bias",
    "attn.proj.weight": "attention.output.dense.weight", "attn.proj.bias": "attention.output.dense.bias",
    "mlp.fc1.weight": "intermediate.dense.weight", "mlp.fc1.bias": "intermediate.dense.bias",
    "mlp.fc2.weight": "output.dense.weight", "mlp.fc2.bias": "output.dense.bias",
}
HINTS = {
    "gamma_1": "layer scale (init_values > 0) has no counterpart in transformers' VideoMAE",
    "gamma_2": "layer scale (init_values > 0) has no counterpart in transformers' VideoMAE",
    "cls_token": "a class token has no counterpart in transformers' VideoMAE",
    "scale": "cosine attention has no counterpart in transformers' VideoMAE",
}


class ConversionError(ValueError):
    """A checkpoint that cannot be read or converted, said in one line."""


class UnsafePickleError(ConversionError):
    """A pickle that names something other than tensors, storages and plain containers."""


# ------------------------------------------------------------------------------------------------
# reading torch's zip format without torch, and without running pickle code
# ------------------------------------------------------------------------------------------------
# torch storage class -> the NumPy dtype of its bytes (bfloat16 is read as its 16 bits, widened later)
STORAGES = {
    "DoubleStorage": np.float64, "FloatStorage": np.float32, "HalfStorage": np.float16,
    "BFloat16Storage": np.uint16, "LongStorage": np.int64, "IntStorage": np.int32,
    "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


class _StorageType:
    """What the pickle's ``torch.FloatStorage`` (etc.) stands for here: a dtype, nothing callable."""

    def __init__(self, name):
        self.name = name
        self.dtype = np.dtype(STORAGES[name])


class _Storage:
    def __init__(self, data, bf16):
        self.data, self.bf16 = data, bf16


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                       metadata=None):
    """torch._utils._rebuild_tensor_v2, as an array copied out of the storage."""
    if not isinstance(storage, _Storage):
        raise UnsafePickleError(f"a tensor rebuild received {type(storage).__name__}, not a storage")
    size, stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)
    offset = int(storage_offset)
    data = storage.data
    if len(size) != len(stride) or offset < 0 or any(s < 0 for s in size + stride):
        raise ConversionError(f"a tensor of size {size} and stride {stride} is malformed")
    if 0 in size:
        arr = np.zeros(size, data.dtype)
    else:
        last = offset + sum((n - 1) * s for n, s in zip(size, stride))
        if last >= data.size:
            raise ConversionError(f"a tensor of size {size} at offset {offset} reaches element {last} "
                                  f"of a storage of {data.size}")
        arr = np.lib.stride_tricks.as_strided(data[offset:], size, [s * data.itemsize for s in stride])
        arr = np.array(arr, copy=True)
    if storage.bf16:
        arr = ckpt._bf16_to_f32(arr.tobytes(), arr.size).reshape(size)
    return arr


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
    return data


ALLOWED = {
    "torch._utils._rebuild_tensor_v2": _rebuild_tensor_v2,
    "torch._utils._rebuild_parameter": _rebuild_parameter,
    "collections.OrderedDict": collections.OrderedDict,
}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickles torch's data.pkl admitting only ALLOWED globals and the STORAGES; tensor bytes
    come from the zip's data/<key> records through persistent_load."""

    def __init__(self, file, archive: zipfile.ZipFile, prefix: str, byteorder: str, where: str):
        super().__init__(file)
        self.archive, self.prefix, self.where = archive, prefix, where
        self.order = "<" if byteorder == "little" else ">"
        self.storages = {}

    def find_class(self, module, name):
        full = f"{module}.{name}"
        if module == "torch" and name in STORAGES:
            return _StorageType(name)
        if full in ALLOWED:
            return ALLOWED[full]
        raise UnsafePickleError(f"{self.where}: refused to unpickle the global {full} (a checkpoint "
                                f"should hold only tensors and dicts; pickled code is never run)")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
                and isinstance(pid[1], _StorageType) and isinstance(pid[2], str)
                and re.fullmatch(r"[0-9A-Za-z_]+", pid[2])):
            raise UnsafePickleError(f"{self.where}: refused the persistent id {pid!r} (expected "
                                    f"('storage', torch.<Type>Storage, key, location, size))")
        _, st, key, _, _ = pid
        if key not in self.storages:
            member = f"{self.prefix}data/{key}"
            try:
                raw = self.archive.read(member)
            except KeyError:
                raise ConversionError(f"{self.where}: the pickle names storage {key!r}, which the "
                                      f"archive lacks ({member})") from None
            dt = st.dtype.newbyteorder(self.order) if st.dtype.itemsize > 1 else st.dtype
            if len(raw) % dt.itemsize:
                raise ConversionError(f"{self.where}: storage {key} holds {len(raw)} bytes, not a "
                                      f"whole number of {st.name} elements")
            data = np.frombuffer(raw, dtype=dt).astype(st.dtype.newbyteorder("="), copy=True)
            self.storages[key] = _Storage(data, st.name == "BFloat16Storage")
        return self.storages[key]


def read_torch_zip(path):
    """The object ``torch.save`` wrote to ``path`` (a zip), tensors as NumPy arrays (bfloat16
    widened to float32), read without torch and without running any pickled code."""
    path = Path(path)
    where = str(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint file at {path}")
    if not zipfile.is_zipfile(path):
        raise ConversionError(f"{path} is not a zip archive: only torch.save's zip format (torch >= "
                              f"1.6) is read; re-save it with a current torch, or use --torch-load")
    with zipfile.ZipFile(path) as z:
        pkls = [n for n in z.namelist() if n == "data.pkl" or n.endswith("/data.pkl")]
        if len(pkls) != 1:
            raise ConversionError(f"{path}: expected one data.pkl in the archive, found {len(pkls)}")
        prefix = pkls[0][: -len("data.pkl")]
        byteorder = "little"
        if prefix + "byteorder" in z.namelist():
            byteorder = z.read(prefix + "byteorder").decode("ascii", "replace").strip()
            if byteorder not in ("little", "big"):
                raise ConversionError(f"{path}: unknown byteorder record {byteorder!r}")
        with z.open(pkls[0]) as f:
            try:
                return RestrictedUnpickler(f, z, prefix, byteorder, where).load()
            except (ConversionError, FileNotFoundError):
                raise
            except Exception as e:   # a malformed pickle: say so in one line
                raise ConversionError(f"{path}: cannot read the pickle: {type(e).__name__}: {e}") from None


def read_with_torch(path):
    """The same through ``torch.load(weights_only=True)`` (torch's own restricted unpickler)."""
    try:
        import torch
    except ImportError:
        raise ImportError("--torch-load needs torch; leave it out to read without torch") from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        named = re.search(r"GLOBAL ([\w.]+)", str(e))
        what = f"the global {named.group(1)}" if named else "it"
        raise UnsafePickleError(f"{path}: torch.load(weights_only=True) refused {what} (a checkpoint "
                                f"should hold only tensors and dicts)") from None

    def to_numpy(x):
        if isinstance(x, torch.Tensor):
            x = x.detach().cpu()
            return (x.float() if x.dtype == torch.bfloat16 else x).numpy().copy()
        if isinstance(x, dict):
            return type(x)((k, to_numpy(v)) for k, v in x.items()) if isinstance(x, collections.OrderedDict) \
                else {k: to_numpy(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return type(x)(to_numpy(v) for v in x)
        return x
    return to_numpy(obj)


def read_checkpoint(path, torch_load=False) -> dict:
    """The flat state dict {original name: array} of a checkpoint file (.pth/.pt/.bin zip, or
    .safetensors), unwrapped from "model"/"module"/"state_dict" and a "module." key prefix."""
    path = Path(path)
    if path.suffix == ".safetensors":
        obj = ckpt.read_safetensors(path)
    else:
        obj = read_with_torch(path) if torch_load else read_torch_zip(path)
    if not isinstance(obj, dict):
        raise ConversionError(f"{path} holds a {type(obj).__name__}, expected a state dict")
    for key in WRAPPERS:
        if isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    bad = [k for k, v in obj.items() if not isinstance(v, np.ndarray)]
    if bad:
        raise ConversionError(f"{path}: expected a state dict of tensors (possibly under "
                              f"{'/'.join(WRAPPERS)}), but {bad[:5]} are not tensors")
    sd = dict(obj)
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


# ------------------------------------------------------------------------------------------------
# renaming and the config
# ------------------------------------------------------------------------------------------------
def _take(sd, key, where):
    if key not in sd:
        raise ConversionError(f"{where}: the checkpoint has no {key}")
    return sd.pop(key)


def _blocks(sd, prefix):
    """Sorted block indices under ``prefix`` (e.g. "encoder.blocks."), checked to be 0..L-1."""
    idx = sorted({int(m.group(1)) for k in sd if (m := re.match(re.escape(prefix) + r"(\d+)\.", k))})
    if idx != list(range(len(idx))):
        raise ConversionError(f"the blocks under {prefix} are numbered {idx}, expected 0..{len(idx) - 1}")
    return idx


def _convert_blocks(sd, src, dst, out, where):
    """Move the blocks under ``src`` ("encoder.blocks.") to ``dst`` ("videomae.encoder.layer.").
    Returns (depth, width, intermediate size, has q/v bias)."""
    idx = _blocks(sd, src)
    biases = set()
    width = inter = None
    for i in idx:
        s, d = f"{src}{i}.", f"{dst}{i}."
        qkv = _take(sd, s + "attn.qkv.weight", where)
        if qkv.ndim != 2 or qkv.shape[0] != 3 * qkv.shape[1]:
            raise ConversionError(f"{s}attn.qkv.weight has shape {qkv.shape}, expected (3D, D)")
        D = qkv.shape[1]
        for j, name in enumerate(("query", "key", "value")):
            out[f"{d}attention.attention.{name}.weight"] = qkv[j * D:(j + 1) * D]
        if s + "attn.qkv.bias" in sd:          # timm's fused bias: the key third must be zero
            b = sd.pop(s + "attn.qkv.bias")
            if np.any(b[D:2 * D] != 0):
                raise ConversionError(f"{s}attn.qkv.bias has a non-zero key bias, which transformers' "
                                      f"VideoMAE does not have")
            sd[s + "attn.q_bias"], sd[s + "attn.v_bias"] = b[:D], b[2 * D:]
        for o, n in BLOCK_NAMES.items():
            if s + o in sd:
                out[d + n] = sd.pop(s + o)
        biases.add(f"{d}attention.attention.query.bias" in out and f"{d}attention.attention.value.bias" in out)
        fc1 = out.get(d + "intermediate.dense.weight")
        if fc1 is None:
            raise ConversionError(f"{where}: the checkpoint has no {s}mlp.fc1.weight")
        if width not in (None, D) or inter not in (None, fc1.shape[0]):
            raise ConversionError(f"the blocks under {src} differ in width")
        width, inter = D, fc1.shape[0]
    if len(biases) > 1:
        raise ConversionError(f"some blocks under {src} have q_bias/v_bias and others do not")
    return len(idx), width, inter, biases == {True}


def _heads(given, width, table, option):
    if given is not None:
        heads = given
    elif width in table:
        heads = table[width]
    else:
        raise ConversionError(f"no default number of heads for width {width} (defaults: "
                              f"{', '.join(f'{w}: {h}' for w, h in table.items())}); give {option}")
    if heads < 1 or width % heads:
        raise ConversionError(f"{option} {heads} does not divide the width {width}")
    return heads


def _drop_fixed_positions(sd, key, n, width, where):
    """Original checkpoints may carry the fixed sinusoid table; a learned one cannot be converted."""
    if key not in sd:
        return
    table = np.asarray(sd.pop(key), np.float64)
    ref = sinusoid_table(n, width, np.float64)
    if table.size != ref.size or not np.allclose(table.reshape(ref.shape), ref, atol=1e-3):
        raise ConversionError(f"{where}: {key} is not the fixed sinusoid table of {n} tokens "
                              f"(learned position embeddings have no counterpart in transformers' VideoMAE)")


def convert_state_dict(sd: dict, options) -> tuple[type, VideoMAEConfig, dict]:
    """(model class, config, state dict under transformers' names) of an original state dict.

    options: num_frames, image_size, tubelet_size, num_heads, decoder_num_heads, num_labels,
    norm_pix_loss, layer_norm_eps (attributes; None = inferred or transformers' default)."""
    sd = dict(sd)
    where = getattr(options, "checkpoint", "checkpoint")
    pretrain = any(k.startswith("encoder.") for k in sd)
    enc = "encoder." if pretrain else ""
    out = {}
    w = _take(sd, enc + "patch_embed.proj.weight", where)
    if w.ndim != 5 or w.shape[3] != w.shape[4]:
        raise ConversionError(f"{enc}patch_embed.proj.weight has shape {w.shape}, expected a Conv3d "
                              f"kernel (D, C, t, p, p)")
    D, C, t, p, _ = w.shape
    out["videomae.embeddings.patch_embeddings.projection.weight"] = w
    out["videomae.embeddings.patch_embeddings.projection.bias"] = _take(sd, enc + "patch_embed.proj.bias", where)
    L, width, inter, qv_bias = _convert_blocks(sd, enc + "blocks.", "videomae.encoder.layer.", out, where)
    if L == 0:
        raise ConversionError(f"{where}: no transformer blocks under {enc}blocks.")
    if width != D:
        raise ConversionError(f"the blocks are {width} wide but the patch embedding gives {D}")
    if options.tubelet_size is not None and options.tubelet_size != t:
        raise ConversionError(f"--tubelet-size {options.tubelet_size} disagrees with the patch "
                              f"embedding kernel, whose tubelet is {t}")
    has_norm = enc + "norm.weight" in sd
    if has_norm:
        out["videomae.layernorm.weight"] = sd.pop(enc + "norm.weight")
        out["videomae.layernorm.bias"] = _take(sd, enc + "norm.bias", where)
    fields = dict(hidden_size=D, num_channels=C, tubelet_size=t, patch_size=p, num_hidden_layers=L,
                  intermediate_size=inter, qv_bias=qv_bias,
                  num_attention_heads=_heads(options.num_heads, D, HEADS_BY_WIDTH, "--num-heads"),
                  num_frames=options.num_frames, image_size=options.image_size,
                  use_mean_pooling=not has_norm)
    if options.layer_norm_eps is not None:
        fields["layer_norm_eps"] = options.layer_norm_eps
    if options.norm_pix_loss is not None:
        fields["norm_pix_loss"] = options.norm_pix_loss
    if options.num_frames % t:
        raise ConversionError(f"--num-frames {options.num_frames} is not a multiple of the tubelet size {t}")
    if options.image_size % p:
        raise ConversionError(f"--image-size {options.image_size} is not a multiple of the patch size {p}")
    n_tokens = (options.num_frames // t) * (options.image_size // p) ** 2
    _drop_fixed_positions(sd, enc + "pos_embed", n_tokens, D, where)

    if "encoder_to_decoder.weight" in sd:                                  # pretraining
        cls = VideoMAEForPreTraining
        e2d = sd.pop("encoder_to_decoder.weight")
        Dd = e2d.shape[0]
        out["encoder_to_decoder.weight"] = e2d
        out["mask_token"] = _take(sd, "mask_token", where).reshape(1, 1, Dd)
        Ld, dwidth, dinter, dq = _convert_blocks(sd, "decoder.blocks.", "decoder.decoder_layers.", out, where)
        if Ld and (dwidth != Dd or dq != qv_bias):
            raise ConversionError(f"the decoder blocks ({dwidth} wide, q/v bias {dq}) do not match "
                                  f"encoder_to_decoder ({Dd}) and the encoder (q/v bias {qv_bias})")
        for part in ("norm.weight", "norm.bias", "head.weight", "head.bias"):
            out["decoder." + part] = _take(sd, "decoder." + part, where)
        P = t * p * p * C
        if out["decoder.head.weight"].shape != (P, Dd):
            raise ConversionError(f"decoder.head.weight has shape {out['decoder.head.weight'].shape}, "
                                  f"expected ({P}, {Dd}) = (tubelet*patch^2*channels, decoder width)")
        _drop_fixed_positions(sd, "decoder.pos_embed", n_tokens, Dd, where)
        fields.update(decoder_hidden_size=Dd, decoder_num_hidden_layers=Ld,
                      decoder_intermediate_size=dinter if Ld else 4 * Dd,
                      decoder_num_attention_heads=_heads(options.decoder_num_heads, Dd, DECODER_HEADS_BY_WIDTH,
                                                         "--decoder-num-heads"))
        if options.num_labels is not None:
            raise ConversionError("--num-labels: a pretraining checkpoint has no classifier head")
    elif "head.weight" in sd:                                              # fine-tuned classifier
        cls = VideoMAEForVideoClassification
        head = sd.pop("head.weight")
        K = head.shape[0]
        if options.num_labels is not None and options.num_labels != K:
            raise ConversionError(f"--num-labels {options.num_labels} disagrees with head.weight, "
                                  f"which has {K} classes")
        out["classifier.weight"] = head
        out["classifier.bias"] = _take(sd, "head.bias", where)
        if "fc_norm.weight" in sd:
            if has_norm:
                raise ConversionError("the checkpoint has both norm and fc_norm; VideoMAE uses one")
            out["fc_norm.weight"] = sd.pop("fc_norm.weight")
            out["fc_norm.bias"] = _take(sd, "fc_norm.bias", where)
        elif not has_norm:
            raise ConversionError("the checkpoint has neither fc_norm (mean pooling) nor norm")
        fields["num_labels"] = K
    else:                                                                  # a bare encoder
        cls = VideoMAEModel
        if options.num_labels is not None:
            raise ConversionError("--num-labels: the checkpoint has no classifier head")
        out = {k[len("videomae."):] if k.startswith("videomae.") else k: v for k, v in out.items()}
    if sd:
        left = sorted(sd)
        hints = sorted({h for k in left for part, h in HINTS.items() if k.rsplit(".", 1)[-1] == part})
        raise ConversionError(f"{where}: tensors with no counterpart in transformers' VideoMAE: "
                              f"{left[:8]}{'...' if len(left) > 8 else ''}" + (f" ({'; '.join(hints)})" if hints else ""))
    config = VideoMAEConfig(**fields)
    return cls, config, out


def convert(options) -> tuple[object, str]:
    """Read options.checkpoint, write options.out; returns (model, one-line summary)."""
    out_dir = Path(options.out)
    if out_dir.exists() and any(out_dir.iterdir()) and not options.force:
        raise ConversionError(f"--out {out_dir} exists and is not empty; choose a new folder or pass --force")
    sd = read_checkpoint(options.checkpoint, torch_load=options.torch_load)
    cls, config, new = convert_state_dict(sd, options)
    model = cls(config, seed=0, dtype=np.float32)
    bad = [k for k, v in new.items() if not np.issubdtype(v.dtype, np.floating)]
    if bad:
        raise ConversionError(f"tensors that are not floating point: {bad[:5]}")
    model.load_state_dict(new)                       # strict: every tensor placed, shapes checked
    model.save_pretrained(out_dir)
    c = config
    dec = (f", decoder {c.decoder_num_hidden_layers} x {c.decoder_hidden_size} "
           f"({c.decoder_num_attention_heads} heads)" if cls is VideoMAEForPreTraining else "")
    head = f", {c.num_labels} classes" if cls is VideoMAEForVideoClassification else ""
    summary = (f"{out_dir}: {cls.__name__}, {c.num_hidden_layers} layers x {c.hidden_size} "
               f"({c.num_attention_heads} heads){dec}{head}, patch {c.patch_size}, tubelet {c.tubelet_size}, "
               f"{c.num_channels} channels, {c.num_frames} frames of {c.image_size}x{c.image_size}")
    return model, summary


# ------------------------------------------------------------------------------------------------
# the command
# ------------------------------------------------------------------------------------------------
def add_arguments(p: argparse.ArgumentParser):
    p.add_argument("--from", dest="source", choices=("original",), required=True,
                   help="original: MCG-NJU/VideoMAE or OpenGVLab/VideoMAEv2 naming")
    p.add_argument("checkpoint", help="the checkpoint (.pth/.pt/.bin from torch.save, or .safetensors)")
    p.add_argument("--out", required=True, help="the model folder to write (config.json + model.safetensors)")
    p.add_argument("--num-frames", type=int, default=16, help="frames per clip (default 16)")
    p.add_argument("--image-size", type=int, default=224, help="frame height = width (default 224)")
    p.add_argument("--tubelet-size", type=int, help="checked against the patch embedding (default: read from it)")
    p.add_argument("--num-heads", type=int,
                   help="encoder heads (default by width: " + ", ".join(f"{w}->{h}" for w, h in HEADS_BY_WIDTH.items()) + ")")
    p.add_argument("--decoder-num-heads", type=int,
                   help="decoder heads (default by width: " +
                        ", ".join(f"{w}->{h}" for w, h in DECODER_HEADS_BY_WIDTH.items()) + ")")
    p.add_argument("--num-labels", type=int, help="checked against the classifier head (default: read from it)")
    p.add_argument("--norm-pix-loss", action=argparse.BooleanOptionalAction, default=None,
                   help="pretraining target per-patch normalised (default: transformers', true)")
    p.add_argument("--layer-norm-eps", type=float,
                   help="block LayerNorm eps (default: transformers' 1e-12; the original code used 1e-6)")
    p.add_argument("--torch-load", action="store_true",
                   help="read with torch.load(weights_only=True) instead of the built-in reader")
    p.add_argument("--force", action="store_true", help="write into a non-empty --out")


def run(args) -> int:
    for name in ("num_frames", "image_size"):
        if getattr(args, name) < 1:
            print(f"videomae-np convert: --{name.replace('_', '-')} must be positive", file=sys.stderr)
            return EXIT_ERROR
    try:
        _, summary = convert(args)
    except (ValueError, KeyError, OSError, ImportError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"videomae-np convert: {msg}", file=sys.stderr)
        return EXIT_ERROR
    print(summary, flush=True)
    return EXIT_OK


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="videomae-np convert",
                                     description="Convert an original VideoMAE checkpoint to a model folder.")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
