"""Hugging Face checkpoints: ``config.json`` + ``model.safetensors`` (or shards), read and written.

The safetensors format is small enough to read by hand, which lets us give precise errors for
truncated or corrupt files and read every float type transformers may store (F16, BF16, F32, F64):
    8 bytes   little-endian u64 = n, the header length
    n bytes   JSON {name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}
    rest      the raw little-endian tensor bytes, offsets relative to the end of the header
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

WEIGHTS_NAME = "model.safetensors"
WEIGHTS_INDEX_NAME = "model.safetensors.index.json"
_MAX_HEADER = 100 * 1024 * 1024

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


def read_safetensors(path) -> dict[str, np.ndarray]:
    """All tensors of one .safetensors file as NumPy arrays (BF16 widened to float32)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no safetensors file at {path}")
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise CheckpointError(f"{path} is truncated: {size} bytes, not even the 8-byte header length")
        n = int.from_bytes(head, "little")
        if n > min(_MAX_HEADER, size - 8):
            raise CheckpointError(f"{path} is corrupt or truncated: header claims {n} bytes, file has {size}")
        try:
            header = json.loads(f.read(n))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise CheckpointError(f"{path} has a corrupt header: {e}") from None
        data = f.read()
    if not isinstance(header, dict):
        raise CheckpointError(f"{path} has a corrupt header: not a JSON object")
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dt, shape, (begin, end) = info["dtype"], tuple(info["shape"]), info["data_offsets"]
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(f"{path}: malformed header entry for {name!r}: {info!r}") from None
        if dt not in _DTYPES:
            raise CheckpointError(f"{path}: tensor {name!r} has unsupported dtype {dt}")
        count = int(np.prod(shape, dtype=np.int64))
        itemsize = 2 if dt == "BF16" else np.dtype(_DTYPES[dt]).itemsize
        if end - begin != count * itemsize or begin < 0:
            raise CheckpointError(f"{path}: tensor {name!r} of shape {shape} {dt} needs "
                                  f"{count * itemsize} bytes, header gives {end - begin}")
        if end > len(data):
            raise CheckpointError(f"{path} is truncated: tensor {name!r} ends at byte {end} of the data "
                                  f"section, which holds only {len(data)}")
        raw = data[begin:end]
        if dt == "BF16":
            arr = _bf16_to_f32(raw, count)
        else:
            arr = np.frombuffer(raw, dtype=np.dtype(_DTYPES[dt]).newbyteorder("<"), count=count)
        out[name] = arr.reshape(shape).copy()
    return out


def write_safetensors(path, tensors: dict[str, np.ndarray], metadata: dict | None = None):
    """Write tensors (float16/32/64) to ``path`` atomically (a temp file, then rename)."""
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
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(len(hb).to_bytes(8, "little"))
        f.write(hb)
        for c in chunks:
            f.write(c)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_weights(directory) -> dict[str, np.ndarray]:
    """The state dict stored in a transformers directory: one file or an index of shards."""
    d = Path(directory)
    single, index = d / WEIGHTS_NAME, d / WEIGHTS_INDEX_NAME
    if single.is_file():
        return read_safetensors(single)
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise CheckpointError(f"{index} is not a valid shard index: {e!r}") from None
        out = {}
        for shard in sorted(set(weight_map.values())):
            part = read_safetensors(d / shard)
            out.update({k: v for k, v in part.items() if weight_map.get(k) == shard})
        missing = sorted(set(weight_map) - set(out))
        if missing:
            raise CheckpointError(f"{index} lists tensors that no shard holds: {missing[:5]}")
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
