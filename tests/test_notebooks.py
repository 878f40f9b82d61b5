"""The study notebooks in notebooks/ run top to bottom without an error, each within its time limit.

Each notebook runs in a fresh kernel of the interpreter running pytest, started from a temporary
working directory (the notebooks write only to temporary directories of their own). The kernel
gets one BLAS / OpenMP / Numba thread unless the caller set those variables: on a shared machine
oversubscribed threads make these small models many times slower, and one thread keeps the run
short and its numbers repeatable.
"""

import json
import os
import sys
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
NOTEBOOK_TIMEOUT = 240          # seconds per notebook: the slowest takes ~1 min, plus ~30 s of first Numba compile
KERNEL_NAME = "videomae-np-test"
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")


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
            if var not in os.environ:
                mp.setenv(var, "1")
        yield


def test_notebooks_exist():
    assert len(NOTEBOOKS) >= 8, f"expected the study notebooks in {NOTEBOOK_DIR}, found {len(NOTEBOOKS)}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_stored_executed(path):
    """The committed notebooks carry their outputs: every code cell has been run, in order."""
    nb = nbformat.read(path, as_version=4)
    counts = [c.execution_count for c in nb.cells if c.cell_type == "code"]
    assert counts and None not in counts, f"{path.name}: cells without outputs; execute and save it"
    assert counts == sorted(counts), f"{path.name}: cells were executed out of order"
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors, f"{path.name}: stored with an error output: {errors[0].get('ename')}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path, kernel_env, tmp_path):
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
