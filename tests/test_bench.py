"""The benchmark command: its FLOP counts against torch's own counter, and its table."""

import os
import re
import subprocess
import sys

import pytest

import videomae_np as vm
from videomae_np.bench import SMALL, _inputs, encoder_flops, pretrain_step_flops


@pytest.mark.oracle
def test_flop_counts_equal_torchs_count_of_the_transformers_model():
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from torch.utils.flop_counter import FlopCounterMode

    kw = dict(SMALL, num_hidden_layers=2, decoder_num_hidden_layers=1)
    B = 2
    cfg = vm.VideoMAEConfig(**kw)
    x, mask = _inputs(cfg, B)
    tcfg = transformers.VideoMAEConfig(**kw)
    tcfg._attn_implementation = "eager"  # plain matmuls, which the counter sees
    xt, mt = torch.tensor(x), torch.tensor(mask)

    enc = transformers.VideoMAEModel(tcfg).eval()
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        enc(xt)
    assert encoder_flops(cfg, B) == fc.get_total_flops()

    pt = transformers.VideoMAEForPreTraining(tcfg).train()
    with FlopCounterMode(display=False) as fc:
        pt(xt, bool_masked_pos=mt).loss.backward()
    n_visible = int((~mask[0]).sum())
    assert pretrain_step_flops(cfg, B, n_visible) == fc.get_total_flops()


ROW = re.compile(r"^small .*?(encoder fwd|pretrain step 90%)\s+([\d.]+)\s+(\S+)\s+(\S+)\s+([\d.]+)\s+(\d+)%$")


def _bench(*args):
    r = subprocess.run([sys.executable, "-m", "videomae_np.bench", "--only", "small", "--repeats", "1",
                        "--rounds", "1", "--no-extras", *args], capture_output=True, text=True, timeout=600,
                       env=dict(os.environ, PYTHONWARNINGS="ignore"))
    assert r.returncode == 0, r.stderr[-2000:]
    rows = [m.groups() for m in map(ROW.match, r.stdout.splitlines()) if m]
    assert [g[0] for g in rows] == ["encoder fwd", "pretrain step 90%"], r.stdout
    return rows


@pytest.mark.oracle
def test_bench_table_has_both_small_workloads_with_consistent_ratios():
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    for _, ours, theirs, ratio, gflops, share in _bench():
        ours, theirs, ratio = float(ours), float(theirs), float(ratio)
        assert ours > 0 and theirs > 0 and float(gflops) > 0 and int(share) > 0
        assert ratio == pytest.approx(ours / theirs, abs=0.01)


def test_bench_without_torch_leaves_its_columns_empty():
    for _, ours, theirs, ratio, gflops, _share in _bench("--no-torch"):
        assert float(ours) > 0 and float(gflops) > 0
        assert theirs == "-" and ratio == "-"
