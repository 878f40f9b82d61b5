"""Benchmark: videomae_np against transformers (PyTorch eager, CPU), measured in the same run.

    python -m videomae_np.bench [--threads N] [--repeats R] [--rounds K] [--only main|small|vitb]
                                [--no-torch] [--no-extras] [--json PATH]
    videomae-np bench ...

First the machine: the CPU (model, vendor, family/model numbers, AVX2/AVX-512), the BLAS NumPy
loaded and the one our kernels call, torch's BLAS, and the thread count (machine_info). Then wall
times for five workloads: the median of R runs after a warm-up, in alternating rounds of ours and
torch (each side's best round is kept). The torch time is measured in this run (in a fresh
interpreter, see bench_torch) with the same thread count. Then the ratio ours / torch, our matmul
GFLOP/s and its share of the machine's measured sgemm throughput; then Numba's cold compile and
cached first-call times and the peak memory of one training step (each in a fresh subprocess).

The `main` workload is one update of the main job, `videomae-np pretrain` with its defaults: the
toy model, its batch and mask, forward + backward + gradient clipping + AdamW (main_step_ours);
torch does the same with transformers' model, torch.optim.AdamW and clip_grad_norm_
(main_step_torch). Rendering the toy clips is left out: the training loop renders the next
batch on a worker thread while the step runs.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
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
MAIN = "main"                     # the main job's step (main_job); not a WORKLOADS entry
ALL = (MAIN, "small", "vitb")     # the default order of the table
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


# ---- the machine ---------------------------------------------------------------------------------
def _cpuinfo_fields():
    """{field: value} of the first processor in /proc/cpuinfo (Linux), or {}."""
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
    except OSError:
        return {}
    out = {}
    for line in text.split("\n\n")[0].splitlines():
        k, sep, v = line.partition(":")
        if sep:
            out.setdefault(k.strip(), v.strip())
    return out


def _lscpu_fields():
    """{field: value} from `lscpu`, or {} where it is missing."""
    try:
        r = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10,
                           env=dict(os.environ, LC_ALL="C"))
    except (OSError, subprocess.TimeoutExpired):
        return {}
    out = {}
    for line in r.stdout.splitlines():
        k, sep, v = line.partition(":")
        if sep:
            out.setdefault(k.strip(), v.strip())
    return out


# SIMD extensions worth naming: x86's AVX family and AMX, ARM's SVE and Advanced SIMD
_SIMD = re.compile(r"^(?:avx\w*|amx\w*|sve\w*|asimd\w*|neon)$")


def cpu_info():
    """The CPU as the BLAS libraries see it: {"model", "vendor", "family", "model_number",
    "stepping", "simd", "avx2", "avx512", "logical_cpus"}.

    The model name comes from /proc/cpuinfo, else lscpu, else platform.processor(). A VM may show
    only "AMD EPYC" there, which says neither the generation nor the vector width, hence the
    family/model numbers (AMD family 25 is Zen 3/4, 26 Zen 5) and the SIMD flags: an OpenBLAS
    build picks its kernel from these, and may pick an AVX2 one on an AVX-512 CPU it does not know."""
    proc, lscpu = _cpuinfo_fields(), {}
    model = proc.get("model name")
    if not model or not proc.get("flags") and not proc.get("Features"):
        lscpu = _lscpu_fields()

    def first(*values):
        return next((v for v in values if v), None)

    flags = first(proc.get("flags"), proc.get("Features"), lscpu.get("Flags")) or ""
    simd = sorted(f for f in flags.split() if _SIMD.match(f))
    return {
        "model": first(model, lscpu.get("Model name"), platform.processor(), platform.machine()),
        "vendor": first(proc.get("vendor_id"), proc.get("CPU implementer"), lscpu.get("Vendor ID")),
        "family": first(proc.get("cpu family"), lscpu.get("CPU family")),
        "model_number": first(proc.get("model"), proc.get("CPU part"), lscpu.get("Model")),
        "stepping": first(proc.get("stepping"), lscpu.get("Stepping")),
        "simd": simd,
        "avx2": "avx2" in simd,
        "avx512": [f for f in simd if f.startswith("avx512")],
        "logical_cpus": os.cpu_count(),
    }


def numpy_blas_info():
    """The BLAS libraries loaded in this process (threadpoolctl), NumPy's first, each with
    internal_api (openblas, mkl, blis), version, architecture (the kernel OpenBLAS/BLIS chose),
    its file, and which of them our kernels call (kernels.blas.BLAS)."""
    import numpy
    from threadpoolctl import threadpool_info

    from .kernels import blas
    numpy_dir = os.path.dirname(numpy.__file__)
    libs = []
    for info in threadpool_info():
        if info.get("user_api") != "blas":
            continue
        path = info.get("filepath", "")
        of = "numpy" if os.path.basename(os.path.dirname(path)) == "numpy.libs" or path.startswith(numpy_dir) else (
            "scipy" if "scipy" in os.path.basename(os.path.dirname(path)) else "other")
        libs.append({"of": of, "internal_api": info.get("internal_api"), "version": info.get("version"),
                     "architecture": info.get("architecture") or info.get("corename"),
                     "threading_layer": info.get("threading_layer"), "filepath": path})
    libs.sort(key=lambda d: d["of"] != "numpy")
    return {"libraries": libs, "kernels_call": blas.BLAS}


_TORCH_INFO = r"""
import json, os, re, torch
shown = torch.__config__.show()
blas = re.search(r"BLAS_INFO=([^,\s]+)", shown)
mkl = re.search(r"Math Kernel Library Version ([\d.]+)", shown)
cap = re.search(r"CPU capability usage: (\S+)", shown)
libs = []
try:
    from threadpoolctl import threadpool_info
    libs = [{k: i.get(k) for k in ("internal_api", "version", "architecture", "filepath")}
            for i in threadpool_info() if i.get("user_api") == "blas"
            and os.path.basename(os.path.dirname(i.get("filepath", ""))) not in ("numpy.libs", "scipy.libs")]
except ImportError:
    pass
print(json.dumps({"version": torch.__version__, "blas": blas.group(1) if blas else None,
                  "mkl_version": mkl.group(1).strip() if mkl else None,
                  "cpu_capability": cap.group(1) if cap else None, "loaded_blas": libs}))
"""


def torch_blas_info():
    """torch's version, BLAS (BLAS_INFO of torch.__config__.show(): mkl or open(blas)), MKL's
    version, the ISA its own CPU kernels use, and any BLAS library it loaded dynamically
    (threadpoolctl; MKL is linked statically into the Linux wheels, so it is often absent).
    Read in a fresh interpreter, like every torch measurement. None if that fails."""
    try:
        return _run_py(_TORCH_INFO, clean=True)
    except (RuntimeError, subprocess.TimeoutExpired, ValueError, IndexError):
        return None


def machine_info(threads, with_torch=False):
    """Everything about the machine a reader needs to compare two bench tables: the CPU, NumPy's
    BLAS and the one our kernels call, torch's BLAS (when torch is measured), the thread count."""
    info = {"cpu": cpu_info(), "numpy_blas": numpy_blas_info(), "threads": threads,
            "python": platform.python_version(), "numpy": np.__version__}
    try:
        import numba
        info["numba"] = numba.__version__
    except ImportError:
        pass
    if with_torch:
        info["torch"] = torch_blas_info()
    return info


def machine_lines(info):
    """The lines printed above the table."""
    c = info["cpu"]
    nums = ", ".join(f"{k} {c[f]}" for k, f in (("family", "family"), ("model", "model_number"),
                                                 ("stepping", "stepping")) if c.get(f) is not None)
    avx512 = (f"AVX-512 ({' '.join(sorted(f[len('avx512'):].lstrip('_') for f in c['avx512']))})"
              if c["avx512"] else "no AVX-512")
    vec = f"{'AVX2' if c['avx2'] else 'no AVX2'}, {avx512}" if c["simd"] and any(
        f.startswith("avx") for f in c["simd"]) else (" ".join(c["simd"]) or "SIMD flags unknown")
    lines = [f"cpu: {c['model']} ({c['vendor'] or '?'}{', ' + nums if nums else ''}; {vec}; "
             f"{c['logical_cpus']} logical CPUs)"]
    nb = info["numpy_blas"]
    for lib in nb["libraries"]:
        lines.append(f"BLAS ({lib['of']}): {lib['internal_api']} {lib['version']}, kernel "
                     f"{lib['architecture'] or '?'}, threading {lib['threading_layer'] or '?'}")
    if not nb["libraries"]:
        lines.append("BLAS: none found by threadpoolctl")
    lines.append(f"our kernels call: {nb['kernels_call']}")
    if "torch" in info:
        t = info["torch"]
        if t is None:
            lines.append("torch: its BLAS could not be read")
        else:
            blas = {"mkl": "MKL", "open": "OpenBLAS", "openblas": "OpenBLAS"}.get(t["blas"], t["blas"])
            ver = f" {t['mkl_version']}" if blas == "MKL" and t["mkl_version"] else "".join(
                f" {lib['version']}" for lib in t["loaded_blas"][:1])
            lines.append(f"torch {t['version']}: BLAS {blas}{ver}; its CPU kernels use {t['cpu_capability']}")
    lines.append(f"threads: {info['threads']} (Numba, BLAS and torch)")
    return lines


# ---- the main job's step: one update of `videomae-np pretrain` with its defaults ------------------
def main_job(settings=None):
    """(settings, cfg, x, mask): the default pretraining run's settings, its model config (the toy
    model) and its first batch with its mask -- train.pretrain_batch, what the run trains on."""
    from .settings import PretrainSettings
    from .train import pretrain_batch
    settings = settings or PretrainSettings()
    cfg = settings.model_config()
    x, mask = pretrain_batch(settings, cfg, 0)
    return settings, cfg, x, mask


def main_step_ours(settings, cfg):
    """(model, opt, step): the run's model and AdamW as train.py builds them, and step(x, mask),
    one update as its loop takes it -- learning rate of the schedule, forward + backward, the
    gradient norm (the loop's finiteness check), clipping, AdamW -- returning the loss. Parameter
    groups: no weight decay on biases, norms and the mask token; pretraining has no layer decay."""
    from . import optim
    from .models import VideoMAEForPreTraining
    model = VideoMAEForPreTraining(cfg, seed=settings.seed, dtype=np.float32)
    groups = optim.param_groups(model.params, settings.weight_decay)
    opt = optim.AdamW(model.params, settings.lr, settings.betas, weight_decay=settings.weight_decay,
                      groups=groups)
    schedule = settings.schedule()

    def step(x, mask):
        lr = schedule(opt.step_count)
        out, grads = model.value_and_grad(x, bool_masked_pos=mask, loss_fn=settings.loss)
        loss = float(out.loss)
        norm = optim.global_norm(grads)
        if not (math.isfinite(loss) and math.isfinite(norm)):
            raise FloatingPointError(f"main step: loss {loss}, gradient norm {norm}")
        if settings.clip_grad:
            optim.clip_grad_norm(grads, settings.clip_grad)
        opt.step(grads, lr)
        return loss

    return model, opt, step


def main_step_torch(settings, cfg, params=None):
    """(model, opt, step): transformers' VideoMAEForPreTraining with our model's initial weights
    (params: our state dict; default: a fresh main_step_ours model's), torch.optim.AdamW with the
    same betas, eps, learning rate and weight-decay groups, and step(x, mask) -> loss: forward,
    backward, torch.nn.utils.clip_grad_norm_, AdamW. x, mask: NumPy arrays or torch tensors."""
    import torch
    import transformers

    from . import optim
    from .params import decays
    if params is None:
        params = main_step_ours(settings, cfg)[0].state_dict()
    model = transformers.VideoMAEForPreTraining(transformers.VideoMAEConfig(**cfg.to_dict())).train()
    model.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in params.items()}, strict=True)
    named = list(model.named_parameters())
    opt = torch.optim.AdamW(
        [{"params": [p for n, p in named if decays(n)], "weight_decay": settings.weight_decay},
         {"params": [p for n, p in named if not decays(n)], "weight_decay": 0.0}],
        lr=settings.lr, betas=settings.betas, eps=optim.ADAM_EPS)
    schedule = settings.schedule()
    count = [0]

    def step(x, mask):
        xt, mt = torch.as_tensor(x), torch.as_tensor(mask)
        for g in opt.param_groups:
            g["lr"] = schedule(count[0])
        opt.zero_grad(set_to_none=True)
        loss = model(xt, bool_masked_pos=mt).loss
        loss.backward()
        if settings.clip_grad:
            torch.nn.utils.clip_grad_norm_(model.parameters(), settings.clip_grad)
        opt.step()
        count[0] += 1
        return loss.item()

    return model, opt, step


# ---- workloads -----------------------------------------------------------------------------------
def _inputs(cfg, B):
    import videomae_np as vm
    x = np.random.default_rng(0).standard_normal((B, cfg.num_frames, cfg.num_channels, *cfg.image_hw))
    mask = vm.tube_mask(B, cfg.grid, MASK_RATIO, rng=0)
    return x.astype(np.float32), mask


def bench_ours(name, repeats):
    """(cfg, B, n_visible, encoder forward s, step s); for MAIN, no forward (None)."""
    import videomae_np as vm
    if name == MAIN:
        settings, cfg, x, mask = main_job()
        step = main_step_ours(settings, cfg)[2]
        return cfg, len(x), int((~mask[0]).sum()), None, _time(lambda: step(x, mask), repeats)
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
from videomae_np.bench import MAIN, WORKLOADS, _inputs, _time, main_job, main_step_torch
name, repeats, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(threads)
if name == MAIN:
    settings, vcfg, x, mask = main_job()
    step = main_step_torch(settings, vcfg)[2]
    xt, mt = torch.tensor(x), torch.tensor(mask)
    print(json.dumps({"fwd": None, "step": _time(lambda: step(xt, mt), repeats)}))
    sys.exit(0)
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
    p.add_argument("--only", choices=ALL, action="append",
                   help="run only this workload (repeatable); main: one update of `videomae-np pretrain`")
    p.add_argument("--no-torch", action="store_true", help="skip the transformers columns")
    p.add_argument("--no-extras", action="store_true", help="skip compile-time and memory measurements")
    p.add_argument("--json", metavar="PATH", help="also write the machine info and the table to PATH (JSON)")
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

    info = machine_info(threads, with_torch)
    for line in machine_lines(info):
        print(line)
    peak = sgemm_gflops()
    print(f"measured sgemm (NumPy BLAS, 1024^3): {peak:.0f} GFLOP/s\n")
    rows = []
    names = list(dict.fromkeys(args.only or ALL))
    for name in names:
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
            t_step = min(t_step, s)
            if f is not None:
                t_fwd = min(t_fwd, f)
            if with_torch:
                tf, ts = bench_torch(name, args.repeats, threads)
                if ts is not None:
                    tt = (None if tf is None else min(tf, tt[0] or tf), min(ts, tt[1] or ts))
        if name == MAIN:
            ratio = 1 - nv / cfg.num_patches
            rows.append((name, f"main: toy B{B} step+AdamW {ratio:.0%} mask*", t_step, tt[1],
                         pretrain_step_flops(cfg, B, nv)))
            continue
        label = {"small": f"small 64^2 x8 w192 L6 B{B}", "vitb": f"ViT-B 224^2 x16 B{B}"}[name]
        rows += [(name, f"{label} encoder fwd", t_fwd, tt[0], encoder_flops(cfg, B)),
                 (name, f"{label} pretrain step 90%", t_step, tt[1], pretrain_step_flops(cfg, B, nv))]
    header = f"{'workload':<44s} {'ours ms':>9s} {'torch ms':>9s} {'ratio':>6s} {'GFLOP/s':>8s} {'% sgemm':>8s}"
    print(header)
    print("-" * len(header))
    for _, what, ours, theirs, flops in rows:
        gf = flops / ours / 1e9
        ratio = f"{ours / theirs:6.2f}" if theirs else "     -"
        tms = f"{theirs * 1e3:9.1f}" if theirs else "        -"
        print(f"{what:<44s} {ours * 1e3:9.1f} {tms} {ratio} {gf:8.1f} {100 * gf / peak:7.0f}%")
    print(f"(% sgemm against the best sgemm measured during the run: {peak:.0f} GFLOP/s)")
    if MAIN in names:
        print("(* main: one update of `videomae-np pretrain` with its defaults -- toy model, its batch and\n"
              "   mask, forward + backward + grad clipping + AdamW; torch: torch.optim.AdamW, clip_grad_norm_.\n"
              "   Rendering the clips is not timed: the run renders the next batch on a worker thread.)")
    report = {"machine": info, "sgemm_gflops": peak, "repeats": args.repeats, "rounds": args.rounds,
              "rows": [{"workload": name, "row": what.rstrip("*"), "ours_s": ours, "torch_s": theirs,
                        "matmul_flops": flops} for name, what, ours, theirs, flops in rows]}
    if not args.no_extras:
        cold, warm = compile_times()
        print(f"\nNumba: cold compile + first step {cold['first']:.1f} s; cached first step {warm['first']:.2f} s "
              f"(import {warm['import']:.2f} s; steady step {warm['second'] * 1e3:.0f} ms, tiny model)")
        report["compile"] = {"cold": cold, "cached": warm}
        for name in names:
            if name == MAIN:       # measured for the two model sizes only
                continue
            ours, theirs = peak_memory(name, threads, with_torch)
            t = f"torch {theirs / 2**20:.0f} MiB, ratio {ours / theirs:.2f}" if theirs else "torch -"
            print(f"peak memory of one {name} pretraining step above the loaded model: ours {ours / 2**20:.0f} MiB; {t}")
            report.setdefault("peak_memory_bytes", {})[name] = {"ours": ours, "torch": theirs}
    if args.json:
        from .fileio import atomic_write_text
        atomic_write_text(args.json, json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
