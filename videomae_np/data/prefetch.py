"""Make the next batch while this one trains.

Training batches here are pure functions of the step (``make(step)``), so a worker thread can
compute batch s + 1 while the model trains on batch s and nothing about the numbers changes: the
same batches arrive in the same order. Rendering toy clips and sampling masks is NumPy work that
releases the GIL for most of its time, so on a machine with a spare core it overlaps with the
model's kernels almost entirely.

    with Prefetcher(make, start=k) as batches:
        for step in range(k, total):
            x, mask = batches.get(step)
"""

from __future__ import annotations

import threading


class Prefetcher:
    """Computes make(step + 1) in a daemon thread while the caller uses make(step).

    ``get(step)`` returns make(step); asking for any step other than the one prefetched (a
    resumed run, a skipped step) computes it on the calling thread. An exception raised by make
    in the worker is re-raised by the get() that asks for that step.
    """

    def __init__(self, make, start: int = 0, enabled: bool = True):
        self.make, self.enabled = make, enabled
        self._next = start
        self._result = None
        self._thread = None
        if enabled:
            self._launch(start)

    def _launch(self, step):
        box = {}

        def work():
            try:
                box["value"] = self.make(step)
            except BaseException as e:       # handed to the caller of get(step)
                box["error"] = e

        self._next, self._result = step, box
        self._thread = threading.Thread(target=work, name=f"prefetch-{step}", daemon=True)
        self._thread.start()

    def get(self, step: int):
        if not self.enabled:
            return self.make(step)
        if self._thread is not None and self._next == step:
            self._thread.join()
            box, self._thread = self._result, None
            self._launch(step + 1)
            if "error" in box:
                raise box["error"]
            return box["value"]
        self.close()
        value = self.make(step)
        self._launch(step + 1)
        return value

    def close(self):
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
