"""A run's folder: the files a training run writes, how they are written, and who may write them.

An output folder holds
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
Temporaries of writers that died (a kill during a save) are removed when the next run takes the
lock. docs/reliability.md states the policy.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np

from . import randomness
from .config import CONFIG_NAME, SAVE_ID_KEY
from .fileio import atomic_write, atomic_write_text, read_json_object
from .settings import one_line

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


class RunLocked(Exception):
    """Another process is running in the output folder (it holds OUT/.lock)."""


# ------------------------------------------------------------------------------------------------
# checkpoints
# ------------------------------------------------------------------------------------------------
def write_json(path: Path, obj):
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def model_save_id(out):
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
    save_id = model_save_id(out) or ""
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
        "randomness": randomness.DESCRIPTION,
        "saved_at": time.strftime("%Y-%m-%d %H:%M:%S"),
        **(extra or {}),
    }
    write_json(out / STATE_JSON, state)


def _is_count(v):
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def read_state(out):
    """trainer_state.json of a run directory, or None if it has none. A file that is not JSON, or
    lacks the step, the kind or the settings, raises ValueError naming it."""
    path = Path(out) / STATE_JSON
    if not path.is_file():
        return None
    state = read_json_object(path)
    if not (_is_count(state.get("step")) and isinstance(state.get("kind"), str)
            and isinstance(state.get("settings"), dict)):
        raise ValueError(f"{path} is not a trainer state: expected 'step' (an integer >= 0), 'kind' "
                         f"and 'settings' (an object); found keys {sorted(state)[:12]}")
    return state


def saved_settings(out, cls, state):
    """The settings recorded in a run's trainer_state.json, as `cls`."""
    try:
        return cls.from_dict(state["settings"])
    except (TypeError, ValueError, KeyError) as e:
        raise ValueError(f"{Path(out) / STATE_JSON}: its settings cannot be used ({one_line(e)})") from None


def restore(out, model, opt):
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
        raise ValueError(f"cannot resume: {path} is corrupt or truncated ({one_line(e)}); "
                         f"it was written whole, so it was damaged afterwards") from None
    save_id = str(arrays.pop(MODEL_SAVE_ID, ""))
    try:
        model.load_state_dict({k[len("param/"):]: v for k, v in arrays.items() if k.startswith("param/")})
        opt.load_state_dict({k: v for k, v in arrays.items() if not k.startswith("param/")})
    except (KeyError, ValueError, TypeError) as e:
        raise ValueError(f"cannot resume from {path}: {one_line(e)}") from None
    return opt.step_count, save_id


def read_step(out):
    """The step a run folder was saved at (0 when it holds no readable state)."""
    try:
        return int((read_state(out) or {}).get("step", 0))
    except (ValueError, TypeError, OSError):
        return 0


def last_saved(out):
    """The last checkpoint of a run folder, in words (for a message)."""
    try:
        state = read_state(out)
    except (OSError, ValueError):
        return f"{STATE_JSON} unreadable"
    return f"step {state['step']}" if state else "none written yet"


# ------------------------------------------------------------------------------------------------
# metrics.jsonl, and a folder made ready for a new or a resumed run
# ------------------------------------------------------------------------------------------------
def truncate_log(path: Path, step: int):
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


def prepare(out, settings, resume):
    """Check the folder against --resume; returns the settings to use: the saved ones on resume
    (merge_resume combines them with those given), else `settings`, with an empty metrics.jsonl."""
    out = Path(out)
    state = read_state(out)
    if resume:
        if state is None:
            raise FileNotFoundError(f"--resume: no {STATE_JSON} in {out}; nothing to resume")
        if state["kind"] != settings.kind:
            raise ValueError(f"{out} holds a {state['kind']} run, not a {settings.kind} run")
        return saved_settings(out, type(settings), state)
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
        info = read_json_object(path)
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


