"""The OpenBLAS kernel choice made at import (videomae_np/_openblas_core.py)."""

import json
import os
import subprocess
import sys

import pytest

from videomae_np import _openblas_core as core

AVX512 = " ".join(core.AVX512_FOR_SKYLAKEX)


def cpuinfo(vendor, flags):
    return f"processor\t: 0\nvendor_id\t: {vendor}\nflags\t\t: fpu sse avx avx2 {flags}\n\nprocessor\t: 1\n"


@pytest.mark.parametrize("vendor, flags, env, want", [
    ("AuthenticAMD", AVX512, {}, "SkylakeX"),                       # Zen 4/5: OpenBLAS may fall back to AVX2
    ("AuthenticAMD", "avx512f avx512cd", {}, None),                # not every subset SkylakeX needs
    ("AuthenticAMD", "", {}, None),                                 # AVX2 only
    ("GenuineIntel", AVX512, {}, None),                             # OpenBLAS recognises Intel itself
    ("AuthenticAMD", AVX512, {"OPENBLAS_CORETYPE": "Haswell"}, None),   # a value already set wins
    ("AuthenticAMD", AVX512, {core.CHOICE_ENV: "off"}, None),
    ("GenuineIntel", AVX512, {core.CHOICE_ENV: "Cooperlake"}, "Cooperlake"),
    ("AuthenticAMD", AVX512, {"OPENBLAS_CORETYPE": "Haswell", core.CHOICE_ENV: "SkylakeX"}, "SkylakeX"),
])
def test_the_avx512_kernels_are_asked_for_only_on_amd_cpus_with_every_subset(vendor, flags, env, want):
    assert core.choose_core(env, cpuinfo(vendor, flags)) == want


def test_apply_sets_the_variable_and_a_missing_cpuinfo_sets_nothing(tmp_path):
    f = tmp_path / "cpuinfo"
    f.write_text(cpuinfo("AuthenticAMD", AVX512))
    env = {}
    assert core.apply(env, f) == "SkylakeX" and env == {"OPENBLAS_CORETYPE": "SkylakeX"}
    env = {}
    assert core.apply(env, tmp_path / "missing") is None and env == {}


def _loaded_kernels(env):
    code = ("import videomae_np, numpy, json; from threadpoolctl import threadpool_info; "
            "print(json.dumps([videomae_np.OPENBLAS_CORE_SET_HERE, "
            "[i.get('architecture') for i in threadpool_info() if i.get('internal_api') == 'openblas']]))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_importing_videomae_np_first_gives_numpy_the_chosen_kernels():
    pytest.importorskip("threadpoolctl")
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", core.CHOICE_ENV)}
    with open("/proc/cpuinfo") as f:
        want = core.choose_core(env, f.read())
    set_here, kernels = _loaded_kernels(env)
    assert set_here == want
    if want is not None:
        assert kernels and all(k == want for k in kernels)
    # declined: OpenBLAS's own choice, whatever it is
    set_here, _ = _loaded_kernels({**env, core.CHOICE_ENV: "off"})
    assert set_here is None


def test_a_preset_core_that_costs_speed_is_named_in_one_line(tmp_path):
    f = tmp_path / "cpuinfo"
    f.write_text(cpuinfo("AuthenticAMD", AVX512))
    line = core.note({"OPENBLAS_CORETYPE": "Haswell"}, f)
    assert "OPENBLAS_CORETYPE=Haswell" in line and "SkylakeX" in line and "\n" not in line
    assert core.note({"OPENBLAS_CORETYPE": "SkylakeX"}, f) is None
    assert core.note({}, f) is None
    assert core.note({"OPENBLAS_CORETYPE": "Haswell", core.CHOICE_ENV: "off"}, f) is None
    f.write_text(cpuinfo("GenuineIntel", AVX512))
    assert core.note({"OPENBLAS_CORETYPE": "Haswell"}, f) is None
