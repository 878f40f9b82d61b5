"""Hugging Face checkpoints: ``config.json`` + ``model.safetensors`` (or shards), read and written.

The safetensors format is small enough to read by hand, which lets us give precise errors for
truncated or corrupt files and read every float type transformers may store (F16, BF16, F32, F64):
    8 bytes   little-endian u64 = n, the header length
    n bytes   JSON {name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}
    rest      the raw little-endian tensor bytes, offsets relative to the end of the header

What we write is one unit: model.safetensors and config.json carry the same random save id, are
written under a lock on the folder, weights first, each to a unique temp name then renamed; a
folder holding the files of two different saves is refused on reading. What we read stays inside
the folder the user named: shard names from an index may not climb out of it.

The models' checkpoint methods delegate here too (the policy at the end of this file): which tensors
of a checkpoint a model takes (``checked_tensors``, ``load_pretrained``), what is refused and what
is only warned about, and what ``save_pretrained`` writes.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
import uuid
import warnings
from pathlib import Path, PurePosixPath, PureWindowsPath

import numpy as np

from .config import CONFIG_NAME, SAVE_ID_KEY, VideoMAEConfig
from .fileio import atomic_write, atomic_write_text, read_json_object
from .params import BASE_PREFIX, HEAD_KEYS

try:
    import fcntl
except ImportError:  # Windows: saves into one folder are not serialised there
    fcntl = None

WEIGHTS_NAME = "model.safetensors"
WEIGHTS_INDEX_NAME = "model.safetensors.index.json"
_MAX_HEADER = 100 * 1024 * 1024
LOCK_TIMEOUT = 600.0   # seconds one save waits for another save into the same folder

_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": None,
           "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8,
           "BOOL": np.bool_}
_NAMES = {np.dtype(np.float64): "F64", np.dtype(np.float32): "F32", np.dtype(np.float16): "F16"}


class CheckpointError(ValueError):
    """A checkpoint that cannot be read, or whose contents disagree with the model."""


def _bf16_to_f32(raw: bytes, count: int) -> np.ndarray:
    # bfloat16 is the top half of a float32: shift the 16 bits into place
    u16 = np.frombuffer(raw, dtype="<u2", count=count)
    return (u16.astype(np.uint32) << 16).view(np.float32)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _unique_keys(pairs):
    d = {}
    for k, v in pairs:
        if k in d:
            raise ValueError(f"the key {k!r} appears twice")
        d[k] = v
    return d


def _read_header(path: Path, f, size: int) -> dict:
    head = f.read(8)
    if len(head) < 8:
        raise CheckpointError(f"{path} is truncated: {size} bytes, not even the 8-byte header length")
    n = int.from_bytes(head, "little")
    if n > min(_MAX_HEADER, size - 8):
        raise CheckpointError(f"{path} is corrupt or truncated: header claims {n} bytes, file has {size}")
    try:
        header = json.loads(f.read(n).decode("utf-8"), object_pairs_hook=_unique_keys)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise CheckpointError(f"{path} has a corrupt header: {e}") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path} has a corrupt header: not a JSON object")
    meta = header.get("__metadata__", {})
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path} has a corrupt header: __metadata__ is a "
                              f"{type(meta).__name__}, expected an object of strings")
    return header


def _entries(path: Path, header: dict, data_len: int) -> list[tuple]:
    """Check every tensor entry of a header against the format and the data section's length.
    Returns (name, dtype code, shape, begin, end) sorted by begin."""
    out = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        where = f"{path}: tensor {name!r}"
        if not isinstance(info, dict):
            raise CheckpointError(f"{where}: malformed header entry {info!r}; expected an object "
                                  f"with dtype, shape and data_offsets")
        dt, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
        if not isinstance(dt, str) or dt not in _DTYPES:
            raise CheckpointError(f"{where} has unsupported dtype {dt!r}; expected one of "
                                  f"{sorted(_DTYPES)}")
        if not isinstance(shape, list) or not all(_is_int(s) and s >= 0 for s in shape):
            raise CheckpointError(f"{where} has shape {shape!r}; expected a list of non-negative integers")
        if not (isinstance(offsets, list) and len(offsets) == 2
                and all(_is_int(o) and o >= 0 for o in offsets) and offsets[0] <= offsets[1]):
            raise CheckpointError(f"{where} has data_offsets {offsets!r}; expected [begin, end] "
                                  f"with integers 0 <= begin <= end")
        begin, end = offsets
        itemsize = 2 if dt == "BF16" else np.dtype(_DTYPES[dt]).itemsize
        nbytes = math.prod(shape) * itemsize
        if end - begin != nbytes:
            raise CheckpointError(f"{where} of shape {tuple(shape)} {dt} needs {nbytes} bytes, "
                                  f"header gives {end - begin}")
        if end > data_len:
            raise CheckpointError(f"{path} is truncated: tensor {name!r} ends at byte {end} of the "
                                  f"data section, which holds only {data_len}")
        out.append((name, dt, tuple(shape), begin, end))
    out.sort(key=lambda e: (e[3], e[4]))
    # the tensors must tile the data section exactly, as the safetensors library requires
    pos, prev = 0, None
    for name, _, _, begin, end in out:
        if begin < pos:
            raise CheckpointError(f"{path}: tensor {name!r} (bytes {begin}-{end}) overlaps tensor "
                                  f"{prev!r}, which ends at byte {pos}")
        if begin > pos:
            raise CheckpointError(f"{path}: tensor {name!r} starts at byte {begin}, but the previous "
                                  f"tensor ends at byte {pos}: a gap in the data section")
        pos, prev = end, name
    if pos != data_len:
        raise CheckpointError(f"{path} is corrupt: its tensors end at byte {pos} of the data "
                              f"section, which holds {data_len}")
    return out


def _read_file(path) -> tuple[dict[str, np.ndarray], dict]:
    """(tensors, __metadata__) of one .safetensors file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no safetensors file at {path}")
    size = path.stat().st_size
    with open(path, "rb") as f:
        header = _read_header(path, f, size)
        data = f.read()
    out = {}
    for name, dt, shape, begin, end in _entries(path, header, len(data)):
        count = math.prod(shape)
        raw = data[begin:end]
        if dt == "BF16":
            arr = _bf16_to_f32(raw, count)
        else:
            arr = np.frombuffer(raw, dtype=np.dtype(_DTYPES[dt]).newbyteorder("<"), count=count)
        out[name] = arr.reshape(shape).copy()
    bad = [k for k, a in out.items() if a.dtype.kind == "f" and not np.isfinite(a).all()]
    if bad:
        warnings.warn(f"{path}: {len(bad)} tensor(s) hold NaN or infinite values: {bad[:8]}"
                      f"{'...' if len(bad) > 8 else ''}", stacklevel=3)
    return out, header.get("__metadata__", {})


def read_safetensors(path) -> dict[str, np.ndarray]:
    """All tensors of one .safetensors file as NumPy arrays (BF16 widened to float32).

    Every header entry is checked (dtype, shape, offsets that tile the data section); a bad one
    raises CheckpointError naming the file and the tensor. Tensors holding NaN or infinity load,
    with a warning naming them."""
    return _read_file(path)[0]


def write_safetensors(path, tensors: dict[str, np.ndarray], metadata: dict | None = None):
    """Write tensors (float16/32/64) to ``path`` atomically (a unique temp file, then rename)."""
    path = Path(path)
    header, chunks, offset = {}, [], 0
    for name in tensors:
        a = np.ascontiguousarray(tensors[name])
        if a.dtype not in _NAMES:
            raise TypeError(f"cannot store {name!r} of dtype {a.dtype} (float16/32/64 only)")
        raw = a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": _NAMES[a.dtype], "shape": list(a.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    # transformers refuses files whose metadata lacks a known "format"
    header["__metadata__"] = {"format": "pt", **(metadata or {})}
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * (-len(hb) % 8)  # align the data section to 8 bytes

    def write(f):
        f.write(len(hb).to_bytes(8, "little"))
        f.write(hb)
        for c in chunks:
            f.write(c)
    atomic_write(path, write)


# ------------------------------------------------------------------------------------------------
# A model folder: weights and config.json as one unit
# ------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def folder_lock(directory: Path, timeout: float = LOCK_TIMEOUT):
    """Hold an exclusive lock on the folder itself (flock on its descriptor: no lock file is left
    behind) so that two saves into one folder, from threads or processes, run one after the other
    and never leave weights of one beside the config of the other."""
    fd = None
    if fcntl is not None:
        try:
            fd = os.open(directory, os.O_RDONLY)
        except OSError:
            fd = None
    if fd is None:
        yield
        return
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"cannot save into {directory}: another save into it has "
                                       f"been running for {timeout:.0f} s") from None
                time.sleep(0.02)
            except OSError:    # a file system without flock: save unlocked
                break
        yield
    finally:
        os.close(fd)           # closing the descriptor releases the lock


def write_pretrained(directory, tensors: dict[str, np.ndarray], config: dict):
    """Write model.safetensors, then config.json, into ``directory`` as one unit.

    Both files carry one fresh random save id (the safetensors ``__metadata__`` and a config key
    transformers ignores). Weights go first: if the process dies between the two renames, the new
    weights sit beside an older config.json whose id differs, and read_weights refuses the pair.
    """
    directory = Path(directory)
    save_id = uuid.uuid4().hex
    config = dict(config, **{SAVE_ID_KEY: save_id})
    text = json.dumps(config, indent=2, sort_keys=True) + "\n"
    with folder_lock(directory):
        write_safetensors(directory / WEIGHTS_NAME, tensors, metadata={SAVE_ID_KEY: save_id})
        atomic_write_text(directory / CONFIG_NAME, text)


def _check_same_save(d: Path, weight_ids: set, files: str):
    """Weights written by write_pretrained must sit beside the config.json of the same save."""
    if not weight_ids:
        return                        # written by transformers or by hand: nothing to compare
    if len(weight_ids) > 1:
        raise CheckpointError(f"{d}: the shards of {files} come from different saves "
                              f"(save ids {sorted(weight_ids)}); re-save the model")
    try:
        config_id = read_json_object(d / CONFIG_NAME).get(SAVE_ID_KEY)
    except (OSError, ValueError):
        return                        # no readable config.json: the caller gave the config
    (weight_id,) = weight_ids
    if config_id != weight_id:
        found = f"save id {config_id}" if config_id else "no save id"
        raise CheckpointError(f"{d}: {files} (save id {weight_id}) and {CONFIG_NAME} ({found}) come "
                              f"from different saves, e.g. a save_pretrained interrupted between "
                              f"its two files or a file copied in from elsewhere; re-save the model")


def _shard_path(d: Path, index: Path, shard) -> Path:
    """The file a shard index names, refused unless it is a plain relative name inside ``d``."""
    if not isinstance(shard, str) or not shard or "\x00" in shard:
        raise CheckpointError(f"{index}: shard file name {shard!r} is not a non-empty string")
    posix, win = PurePosixPath(shard), PureWindowsPath(shard)
    if posix.is_absolute() or win.is_absolute() or win.drive or ".." in posix.parts or ".." in win.parts:
        raise CheckpointError(f"{index}: shard file {shard!r} lies outside the checkpoint folder; "
                              f"expected a file name relative to {d}")
    path = d / posix
    # Symbolic links are followed only into the folder or next to the index's own target: the
    # Hugging Face cache links snapshots/<rev>/* to ../../blobs/*.
    real, homes = path.resolve(), {d.resolve(), index.resolve().parent}
    if not any(real == h or h in real.parents for h in homes):
        raise CheckpointError(f"{index}: shard file {shard!r} resolves to {real}, outside the "
                              f"checkpoint folder {d}")
    return path


def read_weights(directory) -> dict[str, np.ndarray]:
    """The state dict stored in a transformers directory: one file or an index of shards.

    Shard names come from the index and are refused (before any is opened) if absolute, with
    '..', or resolving outside the folder. Weights written by write_pretrained must pair with the
    config.json of the same save (see write_pretrained)."""
    d = Path(directory)
    single, index = d / WEIGHTS_NAME, d / WEIGHTS_INDEX_NAME
    if single.is_file():
        out, meta = _read_file(single)
        _check_same_save(d, {meta[SAVE_ID_KEY]} if SAVE_ID_KEY in meta else set(), WEIGHTS_NAME)
        return out
    if index.is_file():
        weight_map = read_json_object(index, error=CheckpointError).get("weight_map")
        if not isinstance(weight_map, dict):
            raise CheckpointError(f"{index} is not a valid shard index: weight_map is a "
                                  f"{type(weight_map).__name__}, expected an object mapping "
                                  f"tensor names to shard files")
        paths = {shard: _shard_path(d, index, shard) for shard in set(weight_map.values())}
        out, ids = {}, set()
        for shard in sorted(paths):
            part, meta = _read_file(paths[shard])
            if SAVE_ID_KEY in meta:
                ids.add(meta[SAVE_ID_KEY])
            out.update({k: v for k, v in part.items() if weight_map.get(k) == shard})
        missing = sorted(set(weight_map) - set(out))
        if missing:
            raise CheckpointError(f"{index} lists tensors that no shard holds: {missing[:5]}")
        _check_same_save(d, ids, "the shards")
        return out
    others = [p.name for p in d.glob("*.bin")] + [p.name for p in d.glob("*.pt*")]
    hint = (f" (found {others}: PyTorch pickles are not read here; convert them with "
            "transformers' save_pretrained(safe_serialization=True))") if others else ""
    raise FileNotFoundError(f"no {WEIGHTS_NAME} or {WEIGHTS_INDEX_NAME} in {d}{hint}")


def rename_legacy_keys(sd: dict) -> dict:
    """Map the first VideoMAE checkpoints' ``attention.attention.q_bias``/``v_bias`` to the
    ``query.bias``/``value.bias`` names of current transformers."""
    out = {}
    for k, v in sd.items():
        if k.endswith("attention.attention.q_bias"):
            k = k[: -len("q_bias")] + "query.bias"
        elif k.endswith("attention.attention.v_bias"):
            k = k[: -len("v_bias")] + "value.bias"
        out[k] = v
    return out


# ------------------------------------------------------------------------------------------------
# The models' loading policy (VideoMAEPreTrainedModel.load_state_dict / from_pretrained /
# save_pretrained delegate here). Key names and shapes come from params.py.
# ------------------------------------------------------------------------------------------------
def adapt_prefix(sd: dict, prefix: str) -> dict:
    """Map a checkpoint's keys to a class's scheme (encoder keys with or without 'videomae.');
    prefix: where that class keeps its encoder ('' for the bare encoder, BASE_PREFIX otherwise)."""
    has_prefixed = any(k.startswith(BASE_PREFIX) for k in sd)
    if prefix and not has_prefixed:         # base-model checkpoint into a head model
        return {(k if k.startswith(HEAD_KEYS) else BASE_PREFIX + k): v for k, v in sd.items()}
    if not prefix and has_prefixed:         # head checkpoint into the base model
        return {(k[len(BASE_PREFIX):] if k.startswith(BASE_PREFIX) else k): v for k, v in sd.items()}
    return sd


def checked_tensors(owner: str, shapes: dict, state_dict: dict, dtype, strict: bool):
    """The tensors of ``state_dict`` that a model with these ``shapes`` takes, as fresh arrays of
    ``dtype``, with the keys it lacks and those it does not know: (tensors, missing, unexpected).
    Legacy q_bias/v_bias names are accepted; ``owner`` (the class name) heads the strict error.

    strict: every expected key must be present and no other key may be. Shapes and float dtypes
    are always checked."""
    sd = rename_legacy_keys(state_dict)
    missing = sorted(set(shapes) - set(sd))
    unexpected = sorted(set(sd) - set(shapes))
    if strict and (missing or unexpected):
        raise KeyError(f"{owner}.load_state_dict: missing keys {missing[:10]}"
                       f"{'...' if len(missing) > 10 else ''}, unexpected keys {unexpected[:10]}"
                       f"{'...' if len(unexpected) > 10 else ''}")
    new = {}
    for k, shape in shapes.items():
        if k not in sd:
            continue
        a = np.asarray(sd[k])
        if tuple(a.shape) != tuple(shape):
            raise CheckpointError(f"{k}: expected shape {tuple(shape)} from the config, found "
                                  f"{tuple(a.shape)}")
        if not np.issubdtype(a.dtype, np.floating):
            raise CheckpointError(f"{k}: expected a float tensor, found dtype {a.dtype}")
        new[k] = np.array(a, dtype=dtype, copy=True)
    return new, missing, unexpected


def load_pretrained(cls, directory, dtype, config: VideoMAEConfig | None = None):
    """A ``cls`` model (one of the three classes) from a folder written by ``save_pretrained``.

    Like transformers, the encoder of any VideoMAE checkpoint loads into any of the three classes:
    head tensors of another class are ignored, this class's missing head tensors are freshly
    initialised (with a warning), unless the checkpoint was saved by this very class. A missing
    encoder tensor, or a tensor that belongs to no VideoMAE model, is an error. The model's
    ``loading_info`` lists the missing and unexpected keys."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory} is not a directory (expected one written by save_pretrained)")
    config = config or VideoMAEConfig.from_pretrained(directory)
    sd = rename_legacy_keys(read_weights(directory))
    model = cls(config, seed=0, dtype=dtype)
    sd = adapt_prefix(sd, model.prefix)
    shapes = model._shapes()
    missing = sorted(set(shapes) - set(sd))
    unexpected = sorted(set(sd) - set(shapes))
    foreign = [k for k in unexpected if k.startswith(HEAD_KEYS)]
    stray = [k for k in unexpected if k not in foreign]
    if stray:
        raise CheckpointError(f"{directory}: tensors that belong to no VideoMAE model: {stray[:10]}")
    enc_missing = [k for k in missing if not k.startswith(HEAD_KEYS)]
    if enc_missing:
        raise CheckpointError(f"{directory}: encoder tensors missing from the checkpoint: "
                              f"{enc_missing[:10]}{'...' if len(enc_missing) > 10 else ''}")
    same_class = (config.architectures or [None])[0] == cls.__name__
    if missing and same_class:
        raise CheckpointError(f"{directory}: a {cls.__name__} checkpoint without {missing[:10]}")
    if missing:
        # stacklevel 3: the warning names the line that called cls.from_pretrained
        warnings.warn(f"{cls.__name__}: {len(missing)} head tensors are not in the checkpoint and "
                      f"were newly initialised: {missing[:6]}{'...' if len(missing) > 6 else ''}",
                      stacklevel=3)
    model.load_state_dict({k: sd[k] for k in shapes if k in sd}, strict=False)
    model.loading_info = {"missing_keys": missing, "unexpected_keys": unexpected}
    return model


def save_pretrained(model, directory):
    """Write a model's config.json + model.safetensors, which transformers loads with no missing
    keys: the config names the model's class (``architectures``) and dtype."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    cfg = model.config.to_dict()
    cfg["architectures"] = [type(model).__name__]
    cfg["dtype"] = np.dtype(model.dtype).name
    write_pretrained(directory, model.params, cfg)   # both files, tied by one save id
