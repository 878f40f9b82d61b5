"""kernels/threads.py: every part runs once, errors come back to the caller, and the workers
survive errors and forks."""

import multiprocessing
import threading

import numpy as np
import pytest

from videomae_np.kernels import linear_fwd
from videomae_np.kernels.threads import run_parts


def _record(out, names, t, T):
    out[t] += 1
    names[t] = threading.current_thread().name
    assert T == len(out)


@pytest.mark.parametrize("T", [1, 2, 3, 5])
def test_every_part_runs_once_with_its_index(T):
    out, names = np.zeros(T, int), [None] * T
    run_parts(_record, T, out, names)
    assert out.tolist() == [1] * T
    assert names[0] == threading.current_thread().name        # the caller takes part 0
    assert len(set(names)) == T                                # each other part its own thread


def _fail_in(bad, log, t, T):
    log.append(t)
    if t == bad:
        raise ValueError(f"part {t}")


@pytest.mark.parametrize("bad", [0, 1])
def test_a_failing_part_raises_in_the_caller_after_all_parts_finish(bad):
    log = []
    with pytest.raises(ValueError, match=f"part {bad}"):
        run_parts(_fail_in, 3, bad, log)
    assert sorted(log) == [0, 1, 2]
    out, names = np.zeros(3, int), [None] * 3                  # the workers are still there
    run_parts(_record, 3, out, names)
    assert out.tolist() == [1, 1, 1]


def _parts_and_linear_in_child(queue):
    out, names = np.zeros(2, int), [None] * 2
    run_parts(_record, 2, out, names)          # two parts whatever Numba's thread count
    x = np.arange(12.0).reshape(3, 4)
    w = np.ones((5, 4))
    queue.put((out.tolist(), len(set(names)), linear_fwd(x, w).tolist()))


def test_kernels_work_in_a_forked_child_after_the_parent_used_its_threads():
    run_parts(_record, 2, np.zeros(2, int), [None] * 2)
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_parts_and_linear_in_child, args=(q,))
    p.start()
    try:
        counts, n_threads, got = q.get(timeout=60)
        p.join(timeout=60)
    finally:
        if p.is_alive():                        # a child stuck on the parent's workers: fail, not hang
            p.kill()
            p.join()
    assert p.exitcode == 0
    assert counts == [1, 1] and n_threads == 2
    np.testing.assert_array_equal(got, np.arange(12.0).reshape(3, 4) @ np.ones((4, 5)))


def test_small_work_runs_on_the_calling_thread_and_large_work_is_split(monkeypatch):
    """threads_for: one part (no hand-off to a worker) below the per-part minimum, as many as
    the work fills up to the thread count, never more than the kernel's pieces."""
    from videomae_np.kernels import threads
    monkeypatch.setattr(threads, "num_threads", lambda: 4)
    per = threads.MIN_FLOPS_PER_PART
    assert threads.threads_for(per - 1, per) == 1
    assert threads.threads_for(0, per) == 1
    assert threads.threads_for(2 * per, per) == 2
    assert threads.threads_for(100 * per, per) == 4
    assert threads.threads_for(100 * per, per, pieces=3) == 3


@pytest.mark.parametrize("rows, want", [(2, 1), (4096, 2)])
def test_linear_asks_for_parts_by_its_work(monkeypatch, rows, want):
    """The linear kernel's split follows its flops: a (2, 64) x (64, 64)^T product runs on the
    calling thread; a (4096, 64) x (256, 64)^T one (134 MFLOP) on both threads."""
    from videomae_np.kernels import linear, threads
    monkeypatch.setattr(threads, "num_threads", lambda: 2)
    seen = []
    real = linear.run_parts
    monkeypatch.setattr(linear, "run_parts", lambda fn, T, *a: (seen.append(T), real(fn, T, *a)))
    x = np.ones((rows, 64), np.float32)
    w = np.ones((256 if rows > 2 else 64, 64), np.float32)
    y = linear.linear_fwd_numba(x, w)
    assert seen == [want]
    np.testing.assert_allclose(y, x @ w.T)
