"""Benchmark: videomae_np against transformers (PyTorch eager, CPU), measured in the same run.

    python -m videomae_np.bench [--threads N] [--repeats R] [--rounds K] [--only small|vitb] [--no-torch]
    videomae-np bench ...

Prints wall times for four workloads: the median of R runs after a warm-up, in alternating
rounds of ours and torch (each side's best round is kept). The torch time is measured in this run
(in a fresh interpreter, see bench_torch) with the same thread count. Then the ratio ours / torch,
our matmul GFLOP/s and its share of the machine's measured sgemm throughput; then Numba's cold
compile and cached first-call times and the peak memory of one training step (each in a fresh
subprocess).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

SMALL = dict(image_size=64, patch_size=8, num_frames=8, tubelet_size=2, hidden_size=192, num_hidden_layers=6,
             num_attention_heads=3, intermediate_size=768, decoder_hidden_size=96, decoder_num_hidden_layers=2,
             decoder_num_attention_heads=3, decoder_intermediate_size=384)
VITB = dict()  # transformers' defaults: ViT-B/16, 224x224, 16 frames, tubelet 2, decoder 384 x 4
WORKLOADS = {"small": (SMALL, 8), "vitb": (VITB, 1)}
MASK_RATIO = 0.9


def _time(fn, repeats, warmup=1):
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts))


def sgemm_gflops(threads=None, n=1024, repeats=5):
    """The machine's float32 matmul throughput through NumPy's BLAS."""
    a = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
    t = _time(lambda: a @ a, repeats)
    return 2 * n ** 3 / t / 1e9


# ---- FLOP counts (matmuls only; elementwise work is small beside them) --------------------------
def _block_flops(B, n, D, I):
    return 2 * B * n * D * (3 * D + D + 2 * I) + 4 * B * n * n * D


def encoder_flops(cfg, B, n_visible=None):
    N = cfg.num_patches
    n = N if n_visible is None else n_visible
    K = cfg.num_channels * cfg.tubelet_size * cfg.patch_size ** 2
    return 2 * B * N * K * cfg.hidden_size + cfg.num_hidden_layers * _block_flops(B, n, cfg.hidden_size,
                                                                                  cfg.intermediate_size)


def pretrain_step_flops(cfg, B, n_visible):
    N, Dd = cfg.num_patches, cfg.decoder_hidden_size
    fwd = (encoder_flops(cfg, B, n_visible) + 2 * B * n_visible * cfg.hidden_size * Dd
           + cfg.decoder_num_hidden_layers * _block_flops(B, N, Dd, cfg.decoder_intermediate_size)
           + 2 * B * (N - n_visible) * Dd * cfg.pixels_per_token)
    # Backward: one matmul for the input gradient and one for the weight gradient, except that
    # the pixels take no gradient, so the patch embedding has only its weight gradient.
    K = cfg.num_channels * cfg.tubelet_size * cfg.patch_size ** 2
    return 3 * fwd - 2 * B * N * K * cfg.hidden_size


# ---- workloads -----------------------------------------------------------------------------------
def _inputs(cfg, B):
    import videomae_np as vm
    x = np.random.default_rng(0).standard_normal((B, cfg.num_frames, cfg.num_channels, *cfg.image_hw))
    mask = vm.tube_mask(B, cfg.grid, MASK_RATIO, rng=0)
    return x.astype(np.float32), mask


def bench_ours(name, repeats):
    import videomae_np as vm
    kw, B = WORKLOADS[name]
    cfg = vm.VideoMAEConfig(**kw)
    x, mask = _inputs(cfg, B)
    enc = vm.VideoMAEModel(cfg, seed=0)
    pt = vm.VideoMAEForPreTraining(cfg, seed=0)
    t_fwd = _time(lambda: enc(x), repeats)
    t_step = _time(lambda: pt.value_and_grad(x, bool_masked_pos=mask), repeats)
    nv = int((~mask[0]).sum())
    return cfg, B, nv, t_fwd, t_step


_TORCH = r"""
import json, sys
import numpy as np, torch, transformers
from videomae_np.bench import WORKLOADS, _inputs, _time
name, repeats, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(threads)
kw, B = WORKLOADS[name]
cfg = transformers.VideoMAEConfig(**kw)
x, mask = _inputs(__import__("videomae_np").VideoMAEConfig(**kw), B)
xt, mt = torch.tensor(x), torch.tensor(mask)
torch.manual_seed(0)
enc = transformers.VideoMAEModel(cfg).eval()
pt = transformers.VideoMAEForPreTraining(cfg).train()
def fwd():
    with torch.no_grad():
        enc(xt)
def step():
    pt.zero_grad(set_to_none=True)
    pt(xt, bool_masked_pos=mt).loss.backward()
print(json.dumps({"fwd": _time(fwd, repeats), "step": _time(step, repeats)}))
"""


def _torch_env():
    """The environment torch would see without us: the thread settings videomae_np chose for its
    own libraries are removed (they share a process-wide OpenMP runtime with torch)."""
    from . import ENV_SET_HERE
    return {k: v for k, v in os.environ.items() if k not in ENV_SET_HERE}


def bench_torch(name, repeats, threads):
    """transformers' times, measured in a fresh interpreter during this run. In our process the
    two runtimes' thread pools get in each other's way (torch measured 2.5-4x slower there than
    alone), which would flatter the ratio."""
    try:
        out = subprocess.run([sys.executable, "-c", _TORCH, name, str(repeats), str(threads)],
                             capture_output=True, text=True, env=_torch_env(), timeout=3600)
    except subprocess.TimeoutExpired:
        return None, None
    if out.returncode != 0:
        print(f"(transformers run failed: {out.stderr.strip().splitlines()[-1] if out.stderr else '?'})")
        return None, None
    r = json.loads(out.stdout.strip().splitlines()[-1])
    return r["fwd"], r["step"]


# ---- compile time and memory, each in a fresh interpreter ---------------------------------------
_PROBE = r"""
import json, sys, time, resource, os
t0 = time.perf_counter()
import numpy as np, videomae_np as vm
t_import = time.perf_counter() - t0
cfg = vm.VideoMAEConfig(image_size=16, patch_size=8, num_frames=4, hidden_size=12, num_hidden_layers=1,
                        num_attention_heads=3, intermediate_size=24, decoder_hidden_size=8,
                        decoder_num_hidden_layers=1, decoder_num_attention_heads=2, decoder_intermediate_size=16)
x = np.zeros((1, 4, 3, 16, 16), np.float32)
mask = vm.tube_mask(1, cfg.grid, 0.5, rng=0)
m = vm.VideoMAEForPreTraining(cfg)
t0 = time.perf_counter(); m.value_and_grad(x, bool_masked_pos=mask); first = time.perf_counter() - t0
t0 = time.perf_counter(); m.value_and_grad(x, bool_masked_pos=mask); second = time.perf_counter() - t0
print(json.dumps({"import": t_import, "first": first, "second": second}))
"""

_MEM = r"""
import json, sys, numpy as np
which, name = sys.argv[1], sys.argv[2]
from videomae_np.bench import WORKLOADS, _inputs
import videomae_np as vm
kw, B = WORKLOADS[name]
cfg = vm.VideoMAEConfig(**kw)
x, mask = _inputs(cfg, B)
def status(field):
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) * 1024 for l in f if l.startswith(field + ":"))
def rss():
    with open("/proc/self/clear_refs", "w") as f:   # reset the high-water mark to the current RSS
        f.write("5")
    return status("VmRSS")
if which == "ours":
    m = vm.VideoMAEForPreTraining(cfg, seed=0)
    small = vm.VideoMAEForPreTraining(vm.VideoMAEConfig(**dict(kw, num_hidden_layers=1, decoder_num_hidden_layers=1)))
    small.value_and_grad(x, bool_masked_pos=mask)          # compile kernels outside the measurement
    base = rss()
    step = lambda: m.value_and_grad(x, bool_masked_pos=mask)
else:
    import torch, transformers
    torch.set_num_threads(int(sys.argv[3]))
    m = transformers.VideoMAEForPreTraining(transformers.VideoMAEConfig(**kw)).train()
    xt, mt = torch.tensor(x), torch.tensor(mask)
    base = rss()
    def step():
        m(xt, bool_masked_pos=mt).loss.backward()
step()
print(json.dumps({"peak_over_base": status("VmHWM") - base}))
"""


def _run_py(code, args=(), env=None, clean=False):
    base = _torch_env() if clean else dict(os.environ)
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                         env={**base, **(env or {})}, timeout=1800)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def compile_times():
    with tempfile.TemporaryDirectory() as d:
        env = {"NUMBA_CACHE_DIR": d}
        cold = _run_py(_PROBE, env=env)
        warm = _run_py(_PROBE, env=env)
    return cold, warm


def peak_memory(name, threads, with_torch):
    ours = _run_py(_MEM, ("ours", name))["peak_over_base"]
    theirs = (_run_py(_MEM, ("torch", name, str(threads)), env=None, clean=True)["peak_over_base"]
              if with_torch else None)
    return ours, theirs


# ---- the table -----------------------------------------------------------------------------------
def _positive_int(text):
    """argparse type: an integer >= 1 (0 repeats would time nothing, 0 threads means nothing)."""
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, found {text!r}")
    return n


def main(argv=None):
    p = argparse.ArgumentParser(prog="videomae-np bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=_positive_int, default=None,
                   help="threads for Numba, BLAS and torch (default: all cores)")
    p.add_argument("--repeats", type=_positive_int, default=5, help="timed runs per round (their median is kept)")
    p.add_argument("--rounds", type=_positive_int, default=2,
                   help="alternating rounds of ours and torch; each side's best median is reported")
    p.add_argument("--only", choices=sorted(WORKLOADS), action="append", help="run only this workload (repeatable)")
    p.add_argument("--no-torch", action="store_true", help="skip the transformers columns")
    p.add_argument("--no-extras", action="store_true", help="skip compile-time and memory measurements")
    args = p.parse_args(argv)

    threads = args.threads or os.cpu_count()
    import importlib.util

    import numba
    from threadpoolctl import threadpool_limits

    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    threadpool_limits(threads, user_api="blas")
    with_torch = not args.no_torch
    if with_torch and not all(importlib.util.find_spec(m) for m in ("torch", "transformers")):
        print("(torch/transformers not installed: torch columns skipped; pip install -e '.[test]')")
        with_torch = False

    peak = sgemm_gflops()
    print(f"threads: {threads}   measured sgemm (NumPy BLAS, 1024^3): {peak:.0f} GFLOP/s\n")
    rows = []
    for name in args.only or ["small", "vitb"]:
        # Alternate the two sides and keep each one's best median: this machine's speed drifts
        # over minutes (sgemm read 98 to 185 GFLOP/s in one day), and one round each would
        # compare two different machines.
        t_fwd = t_step = float("inf")
        tt = (None, None)
        for k in range(max(1, args.rounds)):
            print(f"timing {name}, round {k + 1} of {max(1, args.rounds)} ...", file=sys.stderr, flush=True)
            # The sgemm share is taken against the best sgemm of the run, re-measured each round.
            peak = max(peak, sgemm_gflops())
            cfg, B, nv, f, s = bench_ours(name, args.repeats)
            t_fwd, t_step = min(t_fwd, f), min(t_step, s)
            if with_torch:
                tf, ts = bench_torch(name, args.repeats, threads)
                if tf is not None:
                    tt = (min(tf, tt[0] or tf), min(ts, tt[1] or ts))
        label = {"small": f"small 64^2 x8 w192 L6 B{B}", "vitb": f"ViT-B 224^2 x16 B{B}"}[name]
        rows += [(f"{label} encoder fwd", t_fwd, tt[0], encoder_flops(cfg, B)),
                 (f"{label} pretrain step 90%", t_step, tt[1], pretrain_step_flops(cfg, B, nv))]
    header = f"{'workload':<44s} {'ours ms':>9s} {'torch ms':>9s} {'ratio':>6s} {'GFLOP/s':>8s} {'% sgemm':>8s}"
    print(header)
    print("-" * len(header))
    for what, ours, theirs, flops in rows:
        gf = flops / ours / 1e9
        ratio = f"{ours / theirs:6.2f}" if theirs else "     -"
        tms = f"{theirs * 1e3:9.1f}" if theirs else "        -"
        print(f"{what:<44s} {ours * 1e3:9.1f} {tms} {ratio} {gf:8.1f} {100 * gf / peak:7.0f}%")
    print(f"(% sgemm against the best sgemm measured during the run: {peak:.0f} GFLOP/s)")
    if args.no_extras:
        return 0
    cold, warm = compile_times()
    print(f"\nNumba: cold compile + first step {cold['first']:.1f} s; cached first step {warm['first']:.2f} s "
          f"(import {warm['import']:.2f} s; steady step {warm['second'] * 1e3:.0f} ms, tiny model)")
    for name in args.only or ["small", "vitb"]:
        ours, theirs = peak_memory(name, threads, with_torch)
        t = f"torch {theirs / 2**20:.0f} MiB, ratio {ours / theirs:.2f}" if theirs else "torch -"
        print(f"peak memory of one {name} pretraining step above the loaded model: ours {ours / 2**20:.0f} MiB; {t}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
