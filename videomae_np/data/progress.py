"""Progress of the loops over videos (opening a folder, evaluate, predict, features).

    with progress("evaluate", total=len(videos), unit="video", log=log) as bar:
        for v in videos:
            ...
            bar.update()

At a terminal (stdout and stderr both TTYs) this is a tqdm bar on stderr that disappears when the
loop ends. Anywhere else -- a log file, a pipe, the test suite -- or with VIDEOMAE_NP_PROGRESS=0,
it is a plain line through ``log`` at most every PROGRESS_SECONDS, and one at the end when the
loop took that long (or always, with final_line=True): logs get a few readable lines and no
carriage-return noise. VIDEOMAE_NP_PROGRESS=1 forces the bar.
"""

from __future__ import annotations

import os
import sys
import time

PROGRESS_ENV = "VIDEOMAE_NP_PROGRESS"
PROGRESS_SECONDS = 5.0          # a plain progress line at most this often
OFF_VALUES = ("0", "false", "no", "off")
ON_VALUES = ("1", "true", "yes", "on")


def bars_enabled() -> bool:
    """tqdm bars: forced by the environment variable, else only at an interactive terminal."""
    value = os.environ.get(PROGRESS_ENV, "").strip().lower()
    if value in OFF_VALUES:
        return False
    if value in ON_VALUES:
        return True
    try:
        return sys.stdout.isatty() and sys.stderr.isatty()
    except (AttributeError, ValueError):        # replaced or closed streams
        return False


class progress:
    """A tqdm bar or periodic log lines over `total` items (see the module docstring)."""

    def __init__(self, what, total, unit="video", log=print, final_line=False, bar=None):
        self.what, self.total, self.unit, self.log = what, int(total), unit, log
        self.final_line = final_line
        self.done = 0
        self.t0 = self.last = time.perf_counter()
        self.bar = None
        if bars_enabled() if bar is None else bar:
            try:
                from tqdm import tqdm
            except ImportError:               # tqdm is a dependency; a broken install still runs
                tqdm = None
            if tqdm is not None:
                self.bar = tqdm(total=self.total, desc=what, unit=unit, leave=False, file=sys.stderr,
                                dynamic_ncols=True, mininterval=0.5)

    def update(self, n=1, postfix=None):
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
            if postfix:
                self.bar.set_postfix_str(postfix, refresh=False)
            return
        now = time.perf_counter()
        if now - self.last >= PROGRESS_SECONDS and self.done < self.total:
            self.last = now
            self._line(now, postfix)

    def _line(self, now, postfix=None):
        rate = self.done / max(now - self.t0, 1e-9)
        extra = f"  {postfix}" if postfix else ""
        self.log(f"{self.what} {self.done:>5d}/{self.total} {self.unit}s  {rate:5.1f} {self.unit}s/s{extra}")

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None
            return
        now = time.perf_counter()
        if self.done and (self.final_line or now - self.t0 >= PROGRESS_SECONDS):
            self._line(now)
        self.final_line = False               # closing twice prints once

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
