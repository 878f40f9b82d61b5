"""Decode and augment clips in worker processes while the model trains (or evaluates).

    spec = loader_spec(split, proc, num_frames=16, stride=4, flip=True)
    plan = lambda k: train_task(k, indices=order(k), seed=(seed, k, DATA_STREAM))
    with ClipLoader(spec, plan, start=k0, workers=2) as batches:
        x, y = batches.get(k0)          # (B, T, C, H, W) float32, (B,) int64

A task is plain data (ints and lists) that fixes everything random about its result: the videos,
and the seed of the generator that draws frames and crops. A worker turns a task into arrays with
the functions below and nothing else, so the batch of step k is a pure function of (seed, k):
0 workers (the calling process does the work when asked) and N workers give the same arrays, in
the same order, whatever the timing.

Workers are ``spawn``ed (no fork of a process holding BLAS and Numba threads); they get the spec as
a JSON string -- paths, labels, frame counts, the processor's settings -- and plain tasks; results
come back as arrays through a multiprocessing queue. At most ``ahead`` tasks are in flight (queued,
being decoded or waiting to be taken): memory holds that many batches, never a video. Workers
ignore Ctrl-C (the parent decides: it stops them when the loader closes), stop on their own if
the parent dies, and are terminated and reaped by ``close()``, which the ``with`` block always
calls -- on an exception or KeyboardInterrupt too. A video a worker cannot read raises, in the parent, one
ValueError naming the file.

Count: ``workers=None`` reads VIDEOMAE_NP_WORKERS, else min(2, cores); 0 decodes in the caller.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import queue
import signal
import threading
import time

import numpy as np

WORKERS_ENV = "VIDEOMAE_NP_WORKERS"
DEFAULT_MAX_WORKERS = 2        # decode beside one training process on a small machine
AHEAD_PER_WORKER = 2           # tasks in flight per worker: one being decoded, one ready
POLL_SECONDS = 0.5             # how often a blocked side checks that the other is still alive
JOIN_SECONDS = 2.0             # a terminated worker gets this long to go before it is killed


def default_workers() -> int:
    """VIDEOMAE_NP_WORKERS if set (0 = decode in the calling process), else min(2, cores)."""
    value = os.environ.get(WORKERS_ENV)
    if value is not None and value.strip():
        try:
            n = int(value)
        except ValueError:
            n = -1
        if n < 0:
            raise ValueError(f"{WORKERS_ENV}: expected a number of worker processes >= 0, found {value!r}")
        return n
    return min(DEFAULT_MAX_WORKERS, os.cpu_count() or 1)


def check_workers(workers):
    if workers is None:
        return default_workers()
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 0:
        raise ValueError(f"--workers: expected a number of worker processes >= 0, found {workers!r}")
    return int(workers)


# ------------------------------------------------------------------------------------------------
# the work: plain data in, arrays out (run in a worker, or in the caller with 0 workers)
# ------------------------------------------------------------------------------------------------
def loader_spec(videos, proc, num_frames, stride, flip=True) -> dict:
    """What every worker needs, as JSON-able data. videos: a VideoSplit or a list of
    (path, label, frame count); proc: a VideoMAEImageProcessor."""
    rows = []
    for v in getattr(videos, "videos", videos):
        path, label, frames = (v.path, v.label, v.frames) if hasattr(v, "path") else v
        rows.append([str(path), int(label), int(frames)])
    return {"videos": rows, "processor": proc.to_dict(), "num_frames": int(num_frames),
            "stride": None if stride is None else int(stride), "flip": bool(flip)}


def train_task(step, indices, seed) -> dict:
    """The task of one training batch: which videos, and the seed of its random draws."""
    return {"kind": "train", "step": int(step), "indices": [int(i) for i in indices],
            "seed": [int(s) for s in seed]}


def views_task(video, segments=1, crops=1) -> dict:
    """The task of one video's evaluation views (segments temporal x crops spatial)."""
    return {"kind": "views", "video": int(video), "segments": int(segments), "crops": int(crops)}


class _Context:
    """A worker's view of the spec: the videos and a processor built from its settings."""

    def __init__(self, spec: dict):
        from ..processing import VideoMAEImageProcessor
        self.videos = spec["videos"]
        self.proc = VideoMAEImageProcessor.from_dict(spec["processor"])
        self.num_frames, self.stride, self.flip = spec["num_frames"], spec["stride"], spec["flip"]


def _pixels(ctx, frames):                          # (T, H, W, C) uint8 -> (T, C, h, w) float32
    return ctx.proc(frames, return_tensors="np")["pixel_values"][0].astype(np.float32)


def _one_line(e) -> str:
    msg = " ".join(str(e).split()) or type(e).__name__
    return msg if isinstance(e, (ValueError, OSError)) else f"{type(e).__name__}: {msg}"


def _named(path, e) -> ValueError:
    """One line that names the video, whatever raised."""
    msg = _one_line(e)
    return ValueError(msg if str(path) in msg else f"{path}: {msg}")


def train_batch(ctx, task):
    """(x (B, T, C, H, W) float32, y (B,) int64) of a training task, and notes to print.

    One generator for the batch, drawn from in clip order (frames, then crop and flip): the
    same draws as datasets._VideoLabelled.batch, so a run keeps its batches whether it loads them here
    or there."""
    from .videos import augment, read_clip
    rng = np.random.default_rng(task["seed"])
    notes, xs, ys = [], [], []
    for i in task["indices"]:
        path, label, frames = ctx.videos[i]
        try:
            clip = read_clip(path, frames, ctx.num_frames, ctx.stride, rng=rng, train=True, notes=notes)
            clip = augment(clip, rng, flip=ctx.flip)
            xs.append(_pixels(ctx, clip))
        except Exception as e:
            raise _named(path, e) from e
        ys.append(label)
    return (np.stack(xs), np.array(ys, np.int64)), notes


def view_batch(ctx, task):
    """(segments * crops, T, C, H, W) float32 views of one video (evaluate's multi-view test)."""
    from .videos import read_clip, spatial_crop
    path, _, frames = ctx.videos[task["video"]]
    S, C = task["segments"], task["crops"]
    notes, xs = [], []
    try:
        for s in range(S):
            clip = read_clip(path, frames, ctx.num_frames, ctx.stride, train=False, view=s, views=S,
                             notes=notes)
            for c in range(C):
                xs.append(_pixels(ctx, spatial_crop(clip, c, C)))
    except Exception as e:
        raise _named(path, e) from e
    return np.stack(xs), notes


JOBS = {"train": train_batch, "views": view_batch}


def _clips_of(task):
    return len(task["indices"]) if task["kind"] == "train" else task["segments"] * task["crops"]


def _run(ctx, task):
    return JOBS[task["kind"]](ctx, task)


# ------------------------------------------------------------------------------------------------
# the worker process
# ------------------------------------------------------------------------------------------------
def _worker(spec_json, tasks, results):
    """Take (position, task) until None; put (position, "ok", value, notes, seconds) or
    (position, "error", one line, [], 0)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)      # Ctrl-C is the parent's to handle
    results.cancel_join_thread()                       # never block at exit on an unread result
    parent = mp.parent_process()
    try:
        ctx = _Context(json.loads(spec_json))
    except Exception as e:
        results.put((-1, "error", f"a clip worker could not start: {_one_line(e)}", [], 0.0))
        return
    while True:
        try:
            item = tasks.get(timeout=POLL_SECONDS)
        except queue.Empty:
            if parent is not None and not parent.is_alive():
                return                                  # orphaned: stop, do not decode for no one
            continue
        if item is None:
            return
        pos, task = item
        t0 = time.perf_counter()
        try:
            value, notes = _run(ctx, task)
        except Exception as e:
            results.put((pos, "error", _one_line(e), [], 0.0))
            continue
        results.put((pos, "ok", value, notes, time.perf_counter() - t0))


# ------------------------------------------------------------------------------------------------
# the parent's side
# ------------------------------------------------------------------------------------------------
class ClipLoader:
    """Results of plan(start), plan(start + 1), ... in order, made `ahead` tasks in advance by
    `workers` processes (see the module docstring). stop: the number of tasks (None: endless).
    log: where notes of the workers go (each different note once)."""

    def __init__(self, spec, plan, start=0, stop=None, workers=None, ahead=None, log=print):
        self.spec, self.plan, self.stop, self.log = spec, plan, stop, log
        self.workers = check_workers(workers)
        if stop is not None:        # never more processes than tasks; one task: no process
            self.workers = 0 if stop - start <= 1 else min(self.workers, stop - start)
        self.ahead = max(1, ahead if ahead is not None else AHEAD_PER_WORKER * max(self.workers, 1))
        self._ctx = None
        self._procs = []
        self._seen_notes = set()
        self._restart(start)
        # rates: clips made and the seconds of work they took; clips taken and the wait for them
        self.made = self.taken = 0
        self.work_s = self.wait_s = 0.0
        self.t_first = None

    # -- processes --------------------------------------------------------------------------
    def _restart(self, start):
        self._close_processes()
        self.next = self.submitted = start
        self._done = {}
        if self.workers == 0:
            return
        ctx = mp.get_context("spawn")
        self._tasks, self._results = ctx.Queue(), ctx.Queue()
        spec_json = json.dumps(self.spec)
        self._procs = [ctx.Process(target=_worker, args=(spec_json, self._tasks, self._results),
                                   name=f"videomae-np clip worker {i}", daemon=True)
                       for i in range(self.workers)]
        # a child keeps an ignored SIGINT through exec: Ctrl-C never lands in a starting worker
        main = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if main else None
        try:
            for p in self._procs:
                p.start()
        finally:
            if main:
                signal.signal(signal.SIGINT, previous)
        self._fill()

    def _fill(self):
        while self.submitted < self.next + self.ahead and (self.stop is None or self.submitted < self.stop):
            self._tasks.put((self.submitted, self.plan(self.submitted)))
            self.submitted += 1

    def _close_processes(self):
        """Terminate the workers and reap them. Whatever they hold is work ahead that nobody
        will take (the consumer has closed), so there is nothing to wait for; a worker's ffmpeg
        ends on the broken pipe. Idempotent."""
        procs, self._procs = self._procs, []
        if not procs:
            return
        procs = [p for p in procs if p.pid is not None]     # a worker that failed to start has nothing to reap
        self._tasks.cancel_join_thread()
        for p in procs:
            if p.is_alive():
                p.terminate()
        for p in procs:
            p.join(JOIN_SECONDS)
            if p.is_alive():                          # ignored SIGTERM: stuck in a native call
                p.kill()
                p.join()
        for q in (self._tasks, self._results):
            q.close()

    def close(self):
        """Stop the workers; the with-block calls it on any exit (exception, Ctrl-C too)."""
        self._close_processes()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    @property
    def pids(self):
        return [p.pid for p in self._procs]

    # -- results ----------------------------------------------------------------------------
    def get(self, pos):
        """The result of plan(pos). In order is the fast path; any other pos restarts the
        pipeline there (same numbers, only slower)."""
        if self.stop is not None and not 0 <= pos < self.stop:
            raise IndexError(f"task {pos} of {self.stop}")
        t0 = time.perf_counter()
        if self.t_first is None:
            self.t_first = t0
        if self.workers == 0:
            task = self.plan(pos)
            value, notes = _run(self._context(), task)
            clips = _clips_of(task)
            self.made += clips
            self.work_s += time.perf_counter() - t0
            self.next = pos + 1
        else:
            if pos != self.next:
                self._restart(pos)
            while pos not in self._done:
                self._receive()
            value, notes, clips = self._done.pop(pos)
            self.next = pos + 1
            self._fill()
        self.wait_s += time.perf_counter() - t0
        self.taken += clips
        for note in notes:
            if note not in self._seen_notes:
                self._seen_notes.add(note)
                self.log(note)
        return value

    def __iter__(self):
        pos = self.next
        while self.stop is None or pos < self.stop:
            yield self.get(pos)
            pos += 1

    def _context(self):
        if self._ctx is None:
            self._ctx = _Context(json.loads(json.dumps(self.spec)))    # exactly what a worker sees
        return self._ctx

    def _receive(self):
        try:
            pos, status, value, notes, seconds = self._results.get(timeout=POLL_SECONDS)
        except queue.Empty:
            dead = [p for p in self._procs if not p.is_alive()]
            if dead:
                codes = ", ".join(str(p.exitcode) for p in dead)
                self.close()
                raise RuntimeError(f"{len(dead)} clip worker process(es) died (exit code {codes}) "
                                   f"while decoding; see the lines above, or rerun with "
                                   f"{WORKERS_ENV}=0 to decode in this process")
            return
        if status != "ok":
            self.close()
            raise ValueError(value)
        clips = len(value[1]) if isinstance(value, tuple) else len(value)
        self.made += clips
        self.work_s += seconds
        self._done[pos] = (value, notes, clips)

    # -- rates ------------------------------------------------------------------------------
    def rates(self) -> dict:
        """decode_clips_per_s: what the workers make per second of wall time when never kept
        waiting (clips / seconds of work x workers); taken_clips_per_s: what the consumer took
        per second since its first get; data_wait: the share of that time it spent waiting."""
        wall = time.perf_counter() - self.t_first if self.t_first is not None else 0.0
        return {"decode_clips_per_s": round(self.made / self.work_s * max(self.workers, 1), 2)
                if self.work_s > 0 else None,
                "taken_clips_per_s": round(self.taken / wall, 2) if wall > 0 else None,
                "data_wait": round(self.wait_s / wall, 3) if wall > 0 else None,
                "workers": self.workers}

    def rate_text(self) -> str:
        r = self.rates()
        if r["decode_clips_per_s"] is None:
            return "decode -"
        where = f"{self.workers} worker{'s' if self.workers != 1 else ''}" if self.workers else "in-process"
        return f"decode {r['decode_clips_per_s']:.1f} clips/s ({where}), data wait {r['data_wait']:.0%}"

    def annotate(self, log, prefix):
        """log, with this loader's rates appended to the lines that start with `prefix`."""
        def annotated(msg):
            if isinstance(msg, str) and msg.startswith(prefix) and self.t_first is not None:
                msg = f"{msg}  | {self.rate_text()}"
            log(msg)
        return annotated

    def summary(self, what="trained") -> str:
        r = self.rates()
        if r["taken_clips_per_s"] is None:
            return "data: no clip loaded"
        return (f"data: {self.made} clips decoded at {r['decode_clips_per_s']:.1f} clips/s "
                f"({self.workers or 'no'} worker process{'es' if self.workers != 1 else ''}); "
                f"{what} at {r['taken_clips_per_s']:.1f} clips/s, "
                f"{r['data_wait']:.0%} of the time waiting for data")
