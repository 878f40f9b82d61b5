"""Files written whole or not at all, and JSON files read with one-line errors.

Every file this package saves goes through ``atomic_write``: the bytes go to a temporary file with
a name no other writer can pick (the process id and a random part) in the target's own folder, are
flushed to disk, and only then renamed over the target. A reader therefore sees the old file or the
new one, never half of one, and two writers saving into one folder never share a temporary file.
Whatever goes wrong on the way (a full disk, Ctrl-C), the temporary file is removed.
"""

from __future__ import annotations

import errno
import json
import os
import uuid
from pathlib import Path
from typing import BinaryIO, Callable

# errno values that mean "no room left": a full disk, or the user's quota
_NO_SPACE = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


class DiskFullError(OSError):
    """A file could not be written for lack of space; nothing at its path was changed."""


def temp_name(path: Path) -> Path:
    """A hidden sibling of ``path`` that no other process or thread will choose."""
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp")


def atomic_write(path, write: Callable[[BinaryIO], object]) -> None:
    """Replace ``path`` by what ``write(f)`` writes to a binary file ``f``, atomically."""
    path = Path(path)
    tmp = temp_name(path)
    try:
        with open(tmp, "xb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        try:
            tmp.unlink()
        except OSError:
            pass
        if isinstance(e, OSError) and e.errno in _NO_SPACE:
            raise DiskFullError(e.errno, f"cannot write {path}: disk full (no space left on the "
                                         f"device); the previous file, if any, is unchanged") from None
        raise
    _sync_folder(path.parent)


def atomic_write_bytes(path, data: bytes) -> None:
    atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def _sync_folder(folder: Path):
    """Make the rename itself durable (POSIX); best effort, folders cannot be opened everywhere."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read_json_object(path, error: type[Exception] = ValueError) -> dict:
    """The JSON object stored in ``path``. Bytes that are not UTF-8, text that is not JSON and a
    top level that is not an object each raise ``error`` with one line naming the file."""
    path = Path(path)
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise error(f"{path} is not valid JSON: not UTF-8 text (byte 0x{raw[e.start]:02x} at "
                    f"offset {e.start})") from None
    try:
        d = json.loads(text)
    except json.JSONDecodeError as e:
        raise error(f"{path} is not valid JSON: {e}") from None
    except RecursionError:
        raise error(f"{path} is not valid JSON: nested too deeply") from None
    if not isinstance(d, dict):
        raise error(f"{path} must hold a JSON object, found {type(d).__name__}")
    return d
