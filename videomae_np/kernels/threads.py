"""Running a kernel's parts at once: the calling thread takes part 0, and long-lived Python threads
take parts 1 .. T-1. Every part is an ``njit(nogil=True)`` function ``fn(*args, t, T)`` that
works out its own share from t and T, so while it runs the GIL is free and the parts proceed in
parallel.

Why not Numba's ``prange``: each ``parallel=True`` function is compiled into a gufunc of its own,
and that compilation optimises the whole callee again. The eight drivers, each a one-line
``for t in prange(T)`` around its part, took 10.7 s of the 19 s cold compile of a first training
step (measured with Numba's compile events: 0.8 s for LayerNorm forward, 2.1 s for attention
backward). A call through these threads costs a few microseconds more than through ``prange``
(a trivial two-part kernel: 16.4 against 12.7 us), which is small next to the kernels here.

The threads wait on a queue rather than spin, so a descheduled or busy core costs no more than
its own part's time. T is at most Numba's thread count (``numba.set_num_threads``) at the call
(:func:`num_threads`); a kernel with fewer pieces of work than that (heads, row chunks), or too
little work to pay for the hand-off, asks for fewer parts (:func:`threads_for`), and each part
finds its block of the work with :func:`part`.
"""

import os
import queue
import threading

from numba import get_num_threads, njit


@njit(cache=True, inline="always")
def part(n, parts, t):
    """The t-th of `parts` near-equal contiguous blocks of range(n). (Inlined into every kernel,
    whose Numba cache ignores edits made here: a change must come with an edit to each caller's
    file; see blas.py.)"""
    return t * n // parts, (t + 1) * n // parts


def _serve(todo, done):
    while True:
        seq, fn, args, t, T = todo.get()
        try:
            fn(*args, t, T)
            done.put((seq, None))
        except BaseException as e:       # handed to the caller, which re-raises it
            done.put((seq, e))


_workers = []                            # (todo, done) queue pairs, one per thread
_seq = 0
_run_lock = threading.Lock()             # one kernel at a time owns the workers


def _forget_workers():
    """In a forked child: the parent's threads do not exist there (and the lock may have been
    held by one of them)."""
    global _run_lock
    _workers.clear()
    _run_lock = threading.Lock()


if hasattr(os, "register_at_fork"):     # POSIX only; elsewhere there is no fork
    os.register_at_fork(after_in_child=_forget_workers)


def _start_workers(n):
    while len(_workers) < n:
        pair = (queue.SimpleQueue(), queue.SimpleQueue())
        threading.Thread(target=_serve, args=pair, daemon=True,
                         name=f"videomae_np-kernel-{len(_workers) + 1}").start()
        _workers.append(pair)


def _wait(done, seq):
    """The error of job seq (None if it succeeded). Older results, left behind when a wait was
    interrupted (Ctrl-C), are dropped."""
    while True:
        got, err = done.get()
        if got == seq:
            return err


def num_threads():
    """How many parts a kernel called now is split into (at most)."""
    return get_num_threads()


# The least work worth a part of its own. A run_parts call split into T > 1 parts costs about
# 15 us more than the same call on the calling thread alone (queue hand-off, wake-up, waiting for
# the slowest part), so a kernel is split only where each part gets work well above that:
MIN_FLOPS_PER_PART = 4_000_000     # gemm-bound kernels (linear, attention): ~40 us at 100 GFLOP/s
MIN_ITEMS_PER_PART = 65_536        # memory-bound kernels (layernorm, activations, softmax): ~30 us


def threads_for(work, per_part, pieces=None):
    """How many parts a kernel of `work` (flops or elements, per `per_part`) is split into: at most
    num_threads(), at most `pieces` (the kernel's units of work: heads, row chunks), and no more
    than leaves each part `per_part` of it -- 1 (the calling thread alone) for small work."""
    T = num_threads() if pieces is None else min(num_threads(), pieces)
    return max(1, min(T, int(work // per_part)))


def run_parts(fn, T, *args):
    """fn(*args, t, T) for every t in range(T), at once; returns when all have finished and
    re-raises the first error a part raised."""
    global _seq
    if T <= 1:
        fn(*args, 0, 1)
        return
    with _run_lock:
        if len(_workers) < T - 1:
            _start_workers(T - 1)
        _seq += 1
        seq = _seq
        for t in range(1, T):
            _workers[t - 1][0].put((seq, fn, args, t, T))
        try:
            fn(*args, 0, T)
        finally:                         # never leave a part writing into arrays we hand back
            errors = [_wait(_workers[t - 1][1], seq) for t in range(1, T)]
    for err in errors:
        if err is not None:
            raise err


def set_threads(n):
    """Use n threads in the kernels (Numba's count, which num_threads reads) and in BLAS."""
    import numba
    from threadpoolctl import threadpool_limits
    numba.set_num_threads(max(1, min(int(n), numba.config.NUMBA_NUM_THREADS)))
    threadpool_limits(int(n))
