"""The clip loader (videomae_np/data/clips.py), frame counts from container metadata, clamped
reads past a wrong count, and progress output. Videos are written here: small MP4 files
(imageio-ffmpeg) and folders of PNG frames."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from videomae_np import cli
from videomae_np.config import VideoMAEConfig
from videomae_np.datasets import DATASETS
from videomae_np.randomness import DATA_STREAM, finetune_order
from videomae_np.settings import FinetuneSettings
from videomae_np import video as V
from videomae_np.data import clips as C
from videomae_np.data import progress as P
from videomae_np.data.videos import VideoSplit, open_splits
from videomae_np.processing import VideoMAEImageProcessor

from test_real_videos import TINY, make_data, toy_videos, write_frame_folder

pytest.importorskip("imageio_ffmpeg")

ROOT = Path(__file__).resolve().parents[1]
NUM_FRAMES, STRIDE = 4, 2


def _proc():
    return VideoMAEImageProcessor(size={"shortest_edge": 16}, crop_size={"height": 16, "width": 16})


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:                                 # a zombie (exited, not yet reaped) counts as gone
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _gone(pids, seconds=5.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not any(_alive(p) for p in pids):
            return True
        time.sleep(0.05)
    return False


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_data(tmp_path_factory.mktemp("clips") / "data", per_class=3)


@pytest.fixture(scope="module")
def split(data):
    return open_splits(data, warn=lambda m: None)["train"]


def _settings(split, data="x"):
    return FinetuneSettings(data=str(data), stride=STRIDE, batch_size=3, seed=5)


def _plan(s, n):
    return lambda k: C.train_task(k, finetune_order(s.seed, k, s.batch_size, n), (s.seed, k, DATA_STREAM))


# ------------------------------------------------------------------------------------------------
# determinism
# ------------------------------------------------------------------------------------------------
def test_batches_are_a_function_of_seed_and_step_whatever_the_workers(split, data):
    s = _settings(split, data)
    proc = _proc()
    spec = C.loader_spec(split, proc, NUM_FRAMES, s.stride, s.flip)
    cfg = VideoMAEConfig(image_size=16, patch_size=8, num_frames=NUM_FRAMES, tubelet_size=2)
    steps = [0, 1, 2, 3]
    # the reference: the dataset's in-process batch function (what fine-tuning used before the loader)
    labelled = DATASETS["videos"].finetuning(s, log=lambda m: None)
    labelled.cfg, labelled.proc = cfg, proc
    want = [labelled.batch(k) for k in steps]
    for workers in (0, 2):
        with C.ClipLoader(spec, _plan(s, len(split)), workers=workers) as loader:
            got = [loader.get(k) for k in steps]
            again = loader.get(1)                      # out of order: restarts there, same numbers
        for k, ((x, y), (x2, y2)) in enumerate(zip(want, got)):
            np.testing.assert_array_equal(x2, x, err_msg=f"workers={workers} step={k}")
            np.testing.assert_array_equal(y2, y)
        np.testing.assert_array_equal(again[0], want[1][0])
    assert not np.array_equal(want[0][0], want[1][0])


def test_evaluation_views_are_the_same_in_workers_and_in_process(split):
    spec = C.loader_spec(split, _proc(), NUM_FRAMES, STRIDE)
    runs = []
    for workers in (0, 2):
        with C.ClipLoader(spec, lambda i: C.views_task(i, segments=2, crops=3), stop=len(split),
                          workers=workers) as loader:
            runs.append(list(loader))
    assert len(runs[0]) == len(split) and runs[0][0].shape == (6, NUM_FRAMES, 3, 16, 16)
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)


def test_at_most_ahead_tasks_are_in_flight(split):
    s = _settings(split)
    planned = []

    def plan(k):
        planned.append(k)
        return _plan(s, len(split))(k)

    spec = C.loader_spec(split, _proc(), NUM_FRAMES, STRIDE)
    with C.ClipLoader(spec, plan, workers=1, ahead=2) as loader:
        assert planned == [0, 1]                       # the window, before anything is asked
        loader.get(0)
        assert planned == [0, 1, 2]
        loader.get(1)
        assert planned == [0, 1, 2, 3] and loader.submitted - loader.next == 2


# ------------------------------------------------------------------------------------------------
# errors and shutdown
# ------------------------------------------------------------------------------------------------
def test_a_bad_video_in_a_worker_is_one_line_naming_it_and_stops_the_workers(tmp_path):
    vids, _ = toy_videos(2, 0, frames=8, size=32)
    good = tmp_path / "good.mp4"
    V.write_video(good, vids[0])
    bad = tmp_path / "bad_frames"
    write_frame_folder(bad, vids[1])
    for i in (4, 5):        # every clip (start 0 or 1, stride 2) reads one; the count (8 files) is fine
        (bad / f"frame_{i}.png").write_bytes(b"not a png")
    spec = C.loader_spec([(good, 0, 8), (bad, 1, 8)], _proc(), NUM_FRAMES, 2)
    plan = lambda k: C.train_task(k, [0, 1], (0, k))     # noqa: E731
    for workers in (0, 2):
        loader = C.ClipLoader(spec, plan, workers=workers)
        pids = loader.pids
        with pytest.raises(ValueError) as e, loader:
            loader.get(0)
        msg = str(e.value)
        assert "\n" not in msg and str(bad) in msg and ("frame_4.png" in msg or "frame_5.png" in msg), msg
        assert _gone(pids)


def test_workers_are_gone_after_an_exception_or_keyboard_interrupt(split):
    s = _settings(split)
    spec = C.loader_spec(split, _proc(), NUM_FRAMES, STRIDE)
    for exc in (RuntimeError, KeyboardInterrupt):
        with pytest.raises(exc):
            with C.ClipLoader(spec, _plan(s, len(split)), workers=2) as loader:
                pids = loader.pids
                assert len(pids) == 2 and all(_alive(p) for p in pids)
                loader.get(0)
                raise exc("stop")
        assert _gone(pids), exc
    import multiprocessing
    assert multiprocessing.active_children() == []


SCRIPT = textwrap.dedent("""
    import signal, sys, time
    # Ctrl-C as at a terminal, whatever this process inherited: a test runner started in the
    # background of a non-interactive shell runs with SIGINT ignored, and so would this child
    signal.signal(signal.SIGINT, signal.default_int_handler)
    from videomae_np.data import clips as C
    from videomae_np.processing import VideoMAEImageProcessor
    if __name__ == "__main__":
        proc = VideoMAEImageProcessor(size={"shortest_edge": 16}, crop_size={"height": 16, "width": 16})
        spec = C.loader_spec([(sys.argv[1], 0, 20)], proc, 4, 2)
        with C.ClipLoader(spec, lambda k: C.train_task(k, [0, 0], (0, k)), workers=2) as loader:
            loader.get(0)
            print(" ".join(map(str, loader.pids)), flush=True)
            while True:
                loader.get(loader.next)
                time.sleep(0.05)
""")


@pytest.mark.parametrize("how", ["ctrl-c", "killed"])
def test_no_worker_outlives_its_parent(tmp_path, how):
    """Ctrl-C at a terminal (SIGINT to the whole process group): the parent stops its workers on
    the way out. The parent killed outright: each worker notices and exits by itself."""
    video = tmp_path / "v.mp4"
    V.write_video(video, toy_videos(1, 0, frames=20, size=32)[0][0])
    script = tmp_path / "loader_script.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, str(script), str(video)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
    try:
        pids = [int(p) for p in proc.stdout.readline().split()]
        assert len(pids) == 2, proc.stderr.read()
        if how == "ctrl-c":
            os.killpg(proc.pid, signal.SIGINT)
        else:
            proc.kill()
        try:          # communicate, not wait: a parent blocked on a full stderr pipe never exits
            _, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
            pytest.fail(f"{how}: the parent did not exit within 30 s; its stderr:\n{err[-3000:]}")
        assert _gone(pids, seconds=10), how
        if how == "ctrl-c":
            assert err.count("KeyboardInterrupt") == 1, err     # the parent's only, no worker's
    finally:
        if proc.poll() is None:
            proc.kill()
        try:
            os.killpg(proc.pid, signal.SIGKILL)               # whatever is left of this test
        except ProcessLookupError:
            pass


def test_bad_worker_counts_are_one_line(monkeypatch):
    monkeypatch.setenv(C.WORKERS_ENV, "two")
    with pytest.raises(ValueError, match=f"{C.WORKERS_ENV}: expected a number of worker processes >= 0, found 'two'"):
        C.default_workers()
    monkeypatch.setenv(C.WORKERS_ENV, "3")
    assert C.default_workers() == 3
    monkeypatch.delenv(C.WORKERS_ENV)
    assert C.default_workers() == min(2, os.cpu_count() or 1)
    with pytest.raises(ValueError, match="--workers: expected a number of worker processes >= 0, found -1"):
        C.check_workers(-1)


def test_a_bad_worker_count_stops_finetune_before_its_run_folder_exists(data, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(C.WORKERS_ENV, "two")
    out = tmp_path / "ft"
    assert cli.main(["finetune", "--data", str(data), "--out", str(out), "--steps", "2"]) != 0
    assert f"{C.WORKERS_ENV}: expected a number of worker processes" in capsys.readouterr().err
    assert not out.exists()


# ------------------------------------------------------------------------------------------------
# frame counts from metadata; reads past a wrong count
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("frames,fps", [(20, 10), (37, 30), (25, 7.5), (61, 24)])
def test_mp4_frames_are_counted_from_metadata_without_decoding(tmp_path, monkeypatch, frames, fps):
    import imageio_ffmpeg
    path = tmp_path / "v.mp4"
    V.write_video(path, np.zeros((frames, 16, 16, 3), np.uint8) + np.arange(frames)[:, None, None, None].astype(np.uint8),
                  fps=fps)
    exact = V.count_frames(path, exact=True)
    assert exact == frames

    def no_decoding(path):
        raise AssertionError("decoded the stream to count")

    monkeypatch.setattr(imageio_ffmpeg, "count_frames_and_secs", no_decoding)
    assert V.count_frames(path) == frames


def test_missing_metadata_falls_back_on_decoding(tmp_path, monkeypatch):
    path = tmp_path / "v.mp4"
    V.write_video(path, np.zeros((12, 16, 16, 3), np.uint8))
    monkeypatch.setattr(V, "ffmpeg_metadata", lambda p: {"fps": 10.0, "duration": 0})
    assert V.count_frames(path) == 12
    assert V.frames_from_metadata({"fps": 25.0, "duration": 2.0}) == 50
    assert V.frames_from_metadata({"fps": None, "duration": 2.0}) is None


def test_a_frame_folder_is_counted_by_its_files(tmp_path):
    write_frame_folder(tmp_path / "f", toy_videos(1, 0, frames=9, size=16)[0][0])
    (tmp_path / "f" / "notes.txt").write_text("not a frame")
    assert V.count_frames(tmp_path / "f") == 9


@pytest.mark.parametrize("kind", ["mp4", "folder"])
def test_a_count_past_the_real_end_clamps_to_the_last_frame_and_says_so(tmp_path, kind):
    vids, _ = toy_videos(1, 0, frames=10, size=32)
    (tmp_path / "d" / "a").mkdir(parents=True)
    path = tmp_path / "d" / "a" / ("v.mp4" if kind == "mp4" else "v")
    if kind == "mp4":
        V.write_video(path, vids[0])
    else:
        write_frame_folder(path, vids[0])
    split = VideoSplit(tmp_path / "d", warn=lambda m: None)
    assert split.videos[0].frames == 10
    real = V.read_video(path)
    split.videos[0].frames = 16                 # metadata that overstates the length
    notes = []
    clip = split.clip(0, 4, 5, train=False, notes=notes)     # frames 0, 5, 10, 15 of "16"
    np.testing.assert_array_equal(clip, real[[0, 5, 9, 9]])
    assert len(notes) == 1 and str(path) in notes[0] and "holds 10 frames, not the 16" in notes[0]
    with pytest.raises(ValueError, match="has 10 frames; frame 15 was asked for"):
        V.read_frames(path, [0, 15])            # without clamp=True it stays an error
    # through the loader: the note reaches the log once, whatever the number of reads
    logged = []
    spec = C.loader_spec(split, _proc(), 4, 5)
    with C.ClipLoader(spec, lambda i: C.views_task(0), stop=3, workers=0, log=logged.append) as loader:
        list(loader)
    assert logged == notes


def test_opening_a_folder_skips_unreadable_videos_from_their_headers(tmp_path):
    data = make_data(tmp_path / "data")
    (data / "train" / "left" / "broken.mp4").write_bytes(b"not a video")
    lines = []
    split = open_splits(data, warn=lines.append)["train"]
    assert [p.name for p in split.skipped] == ["broken.mp4"]
    assert any(line.startswith(f"warning: skipped {data / 'train' / 'left' / 'broken.mp4'}: could not read")
               for line in lines), lines
    assert sorted(v.frames for v in split.videos) == [20] * 4


# ------------------------------------------------------------------------------------------------
# progress output
# ------------------------------------------------------------------------------------------------
def test_progress_is_a_bar_at_a_terminal_and_lines_elsewhere(monkeypatch, capsys):
    monkeypatch.delenv(P.PROGRESS_ENV, raising=False)
    assert not P.bars_enabled()                         # pytest's captured streams are no TTY
    lines = []
    with P.progress("scan", 3, log=lines.append, final_line=True) as bar:
        for _ in range(3):
            bar.update()
    assert len(lines) == 1 and lines[0].startswith("scan     3/3 videos")
    monkeypatch.setenv(P.PROGRESS_ENV, "1")
    lines.clear()
    with P.progress("scan", 3, log=lines.append, final_line=True) as bar:
        for _ in range(3):
            bar.update()
    assert lines == [] and "scan" in capsys.readouterr().err
    monkeypatch.setenv(P.PROGRESS_ENV, "0")
    assert not P.bars_enabled()


def test_finetune_data_reports_clips_decoded_and_trained(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(C.WORKERS_ENV, "0")              # the worker path: test_real_videos' `run`
    data = make_data(tmp_path / "data")
    out = tmp_path / "ft"
    assert cli.main(["finetune", "--data", str(data), "--out", str(out), "--steps", "2", "--batch-size", "2",
                     "--warmup-steps", "0", "--threads", "1", "--log-every", "1", "--config", *TINY]) == 0
    lines = capsys.readouterr().out.splitlines()
    steps = [line for line in lines if line.startswith("finetune step")]
    assert len(steps) == 2 and all("| decode " in line and "clips/s (in-process)" in line for line in steps)
    end = [line for line in lines if line.startswith("data: ")]
    assert len(end) == 1 and "clips decoded at" in end[0] and "trained at" in end[0], lines
    import json
    loader = json.loads((out / "metrics.json").read_text())["loader"]
    assert loader["workers"] == 0 and loader["decode_clips_per_s"] > 0
