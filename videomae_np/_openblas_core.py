"""Which OpenBLAS kernel set NumPy's (and SciPy's, which Numba's np.dot calls) matmuls run on.

OpenBLAS picks its kernels when it loads, from the CPU it recognises. The wheels' OpenBLAS 0.3.31
does not recognise AMD's family 26 (Zen 5) and falls back to its AVX2 kernels ("Haswell") on a
CPU that has full-width AVX-512. Measured on the project's 2-core AMD EPYC (family 26, model 2),
one thread, float32: 1024³ sgemm 85 GFLOP/s with the fallback against 164 with the AVX-512
kernels ("SkylakeX"); (1024, 64) x (64, 256): 82 against 156; the toy pretraining step
(`videomae-np pretrain`) 1.3-1.5x faster (docs/performance.md).

So on an AMD CPU with the AVX-512 subsets OpenBLAS's SkylakeX kernels use (F, CD, BW, DQ, VL) we
ask for them with OPENBLAS_CORETYPE. Intel CPUs with AVX-512 are recognised by OpenBLAS itself
and are left alone, as is every CPU without those flags (asking for kernels the CPU cannot run
would crash the process on the first matmul). The variable is read when OpenBLAS loads, so this
takes effect only if videomae_np is imported before NumPy (the `videomae-np` command always is).

Overrides: VIDEOMAE_NP_OPENBLAS_CORE=off turns the choice off, and =<core> (e.g. SkylakeX) asks
for that core whatever else is set. Otherwise a value of OPENBLAS_CORETYPE already in the
environment is left alone, even where it costs speed (the project's own machine pins Haswell
machine-wide): `note()` says so in one line, for the training commands to print.
"""

import os

AVX512_FOR_SKYLAKEX = ("avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl")
CHOICE_ENV = "VIDEOMAE_NP_OPENBLAS_CORE"


def cpu_vendor_and_flags(cpuinfo: str):
    """('AuthenticAMD' | 'GenuineIntel' | ..., set of flags) of the first CPU in /proc/cpuinfo text."""
    vendor, flags = None, set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "vendor_id" and vendor is None:
            vendor = value.strip()
        elif key == "flags" and not flags:
            flags = set(value.split())
        if vendor and flags:
            break
    return vendor, flags


def choose_core(env, cpuinfo: str):
    """The OPENBLAS_CORETYPE to set, or None to leave OpenBLAS's own choice."""
    asked = env.get(CHOICE_ENV, "auto").strip()
    if asked.lower() in ("off", "0", "no", ""):
        return None
    if asked.lower() != "auto":
        return asked
    if "OPENBLAS_CORETYPE" in env:
        return None
    return _fast_core(cpuinfo)


def _fast_core(cpuinfo):
    vendor, flags = cpu_vendor_and_flags(cpuinfo)
    if vendor == "AuthenticAMD" and all(f in flags for f in AVX512_FOR_SKYLAKEX):
        return "SkylakeX"
    return None


def note(env=os.environ, cpuinfo_path="/proc/cpuinfo"):
    """One line when a preset OPENBLAS_CORETYPE keeps this CPU off the kernels we would choose."""
    preset = env.get("OPENBLAS_CORETYPE")
    if preset is None or env.get(CHOICE_ENV, "auto").strip().lower() != "auto":
        return None
    try:
        with open(cpuinfo_path, encoding="utf-8", errors="replace") as f:
            fast = _fast_core(f.read())
    except OSError:
        return None
    if fast is None or preset.lower() == fast.lower():
        return None
    return (f"note: OPENBLAS_CORETYPE={preset} is set in the environment; OpenBLAS's {fast} kernels ran "
            f"matmuls about 1.9x faster on the project's AMD Zen 5 (docs/performance.md): unset it, or set "
            f"{CHOICE_ENV}={fast}")


def apply(environ=os.environ, cpuinfo_path="/proc/cpuinfo"):
    """Set OPENBLAS_CORETYPE in `environ` if choose_core says so; returns the value set or None."""
    try:
        with open(cpuinfo_path, encoding="utf-8", errors="replace") as f:
            cpuinfo = f.read()
    except OSError:
        cpuinfo = ""
    core = choose_core(environ, cpuinfo)
    if core is not None:
        environ["OPENBLAS_CORETYPE"] = core
    return core
