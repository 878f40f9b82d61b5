"""Benchmark: our VideoMAEImageProcessor against transformers' PIL-backend processor.

    python -m videomae_np.bench_processing [repeats]

Each case preprocesses 240x320 uint8 frames into 224x224 pixel_values with the default settings
(shortest edge 224, bilinear, centre crop, rescale, normalise). Both sides run single-threaded in
the same process, interleaved, after one warm-up call; the table gives medians and the ratio
ours / transformers (below 1 = we are faster), plus the largest difference between the outputs.
Without transformers installed the transformers columns are empty.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from .processing import VideoMAEImageProcessor

FRAMES, HEIGHT, WIDTH = 16, 240, 320


def _reference_processor():
    try:
        import transformers
    except ImportError:
        return None
    cls = getattr(transformers, "VideoMAEImageProcessorPil", None)
    return cls() if cls is not None else None


def _cases(rng):
    video = rng.integers(0, 256, (FRAMES, HEIGHT, WIDTH, 3), dtype=np.uint8)
    batch = [rng.integers(0, 256, (FRAMES, HEIGHT, WIDTH, 3), dtype=np.uint8) for _ in range(4)]
    return [
        (f"1 video ({FRAMES}, {HEIGHT}, {WIDTH}, 3) uint8", video),
        (f"1 video ({FRAMES}, 3, {HEIGHT}, {WIDTH}) channels-first", np.ascontiguousarray(
            video.transpose(0, 3, 1, 2))),
        (f"1 video as a list of {FRAMES} frames", list(video)),
        (f"4 videos ({FRAMES}, {HEIGHT}, {WIDTH}, 3) uint8", batch),
    ]


def _median_ms(fn, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(times))


def bench_processing(repeats: int = 10, seed: int = 0) -> list[dict]:
    """Rows {case, ours_ms, transformers_ms, ratio, max_abs_diff, first_call_ms}; the
    transformers entries are None when it is not installed. first_call_ms is our very first call
    in this process (it includes loading or compiling the Numba kernel)."""
    ours = VideoMAEImageProcessor()
    ref = _reference_processor()
    rows = []
    for name, videos in _cases(np.random.default_rng(seed)):
        t0 = time.perf_counter()
        mine = ours(videos, return_tensors="np")["pixel_values"]
        first = 1e3 * (time.perf_counter() - t0)
        row = dict(case=name, ours_ms=None, transformers_ms=None, ratio=None, max_abs_diff=None,
                   first_call_ms=first)
        if ref is not None:
            theirs = ref(videos, return_tensors="np")["pixel_values"]
            row["max_abs_diff"] = float(np.abs(mine.astype(np.float64) - theirs).max())
        ours_times, ref_times = [], []
        for _ in range(repeats):           # interleaved, so machine load hits both alike
            ours_times.append(_median_ms(lambda: ours(videos, return_tensors="np"), 1))
            if ref is not None:
                ref_times.append(_median_ms(lambda: ref(videos, return_tensors="np"), 1))
        row["ours_ms"] = float(np.median(ours_times))
        if ref is not None:
            row["transformers_ms"] = float(np.median(ref_times))
            row["ratio"] = row["ours_ms"] / row["transformers_ms"]
        rows.append(row)
    return rows


def format_table(rows) -> str:
    def cell(v, width, fmt):
        return ("-" if v is None else format(v, fmt)).rjust(width)
    head = f"{'case':<44s} {'ours ms':>9s} {'transformers ms':>16s} {'ratio':>7s} {'max |diff|':>11s}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['case']:<44s} {cell(r['ours_ms'], 9, '.2f')} "
                     f"{cell(r['transformers_ms'], 16, '.2f')} {cell(r['ratio'], 7, '.2f')} "
                     f"{cell(r['max_abs_diff'], 11, '.1e')}")
    lines.append(f"(ours, first call in this process: {rows[0]['first_call_ms']:.1f} ms; "
                 f"transformers = VideoMAEImageProcessorPil; ratio = ours / transformers)")
    return "\n".join(lines)


if __name__ == "__main__":
    reps = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    print(format_table(bench_processing(repeats=reps)))
