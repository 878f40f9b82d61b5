"""The bench's `main` workload is the training loop's update, its torch twin does the same update,
the machine info names this machine, and `bench --only main` runs end to end."""

import dataclasses
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from videomae_np import bench, runs, train
from videomae_np.settings import TOY_MODEL, PretrainSettings, toy_config
from videomae_np.train import pretrain_batch

STEPS = 2   # Adam's first update is g / |g| whatever the gradient's scale; the second is not


def _run_pretrain(tmp_path, settings):
    """Parameters, AdamW moments and losses after `settings.steps` updates of run_pretrain, read
    back from the files the run wrote."""
    out = tmp_path / "run"
    train.run_pretrain(settings, out=out, log=lambda *a: None)
    state = dict(np.load(out / runs.STATE_NPZ))
    metrics = [json.loads(line) for line in open(out / runs.METRICS_LOG)]
    return state, metrics


def _bench_steps(settings):
    """The bench's main step, taken on the run's batches 0 .. steps-1."""
    cfg = settings.model_config()
    model, opt, step = bench.main_step_ours(settings, cfg)
    losses = [step(*pretrain_batch(settings, cfg, k)) for k in range(settings.steps)]
    return model, opt, losses


def _max_diff(state, prefix, arrays):
    return max(float(np.abs(state[prefix + n] - a).max()) for n, a in arrays.items())


def test_main_job_is_the_default_pretraining_run():
    settings, cfg, x, mask = bench.main_job()
    default = PretrainSettings()
    assert settings == default
    assert cfg.to_dict() == default.model_config().to_dict()
    toy = toy_config().to_dict()
    assert all(cfg.to_dict()[k] == toy[k] for k in TOY_MODEL if k not in ("num_labels", "id2label"))
    assert x.shape == (default.batch_size, cfg.num_frames, cfg.num_channels, *cfg.image_hw)
    x0, mask0 = pretrain_batch(default, cfg, 0)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(mask, mask0)
    assert mask.mean() == pytest.approx(default.mask_ratio)


@pytest.mark.parametrize("clip_grad", [None, 0.05], ids=["default_settings", "clipping_active"])
def test_main_step_equals_the_updates_of_run_pretrain(tmp_path, clip_grad):
    # default settings (the toy's gradient norm, about 0.4, stays under the clip at 1.0), and a
    # clip at 0.05 that scales both gradients, so the clipping is exercised too
    over = {} if clip_grad is None else {"clip_grad": clip_grad}
    settings = PretrainSettings(steps=STEPS, **over)
    state, metrics = _run_pretrain(tmp_path, settings)
    model, opt, losses = _bench_steps(settings)

    assert int(state["step"]) == opt.step_count == STEPS
    assert losses == [m["loss"] for m in metrics]
    assert _max_diff(state, "param/", model.params) == 0.0
    assert _max_diff(state, "exp_avg/", opt.exp_avg) == 0.0
    assert _max_diff(state, "exp_avg_sq/", opt.exp_avg_sq) == 0.0

    # the comparison has teeth: leaving out the weight decay, or the clipping where it is active,
    # moves the parameters away from the run's
    variants = [dict(weight_decay=0.0)] + ([dict(clip_grad=None)] if clip_grad else [])
    if clip_grad:
        assert all(m["grad_norm"] > clip_grad for m in metrics)
    for v in variants:
        other, _, _ = _bench_steps(dataclasses.replace(settings, **v))
        assert _max_diff(state, "param/", other.params) > 0.0, v


def test_main_step_torch_does_the_same_update_as_ours():
    """transformers + torch.optim.AdamW + clip_grad_norm_, as the bench times them, take the same
    update: the same losses, clipped gradients (AdamW's first moments) and parameters."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    torch.set_num_threads(1)
    settings = PretrainSettings(clip_grad=0.05)     # clipping active on both sides
    cfg = settings.model_config()
    model, opt, step = bench.main_step_ours(settings, cfg)
    tmodel, topt, tstep = bench.main_step_torch(settings, cfg, {k: v.copy() for k, v in model.params.items()})
    for k in range(STEPS):
        x, mask = pretrain_batch(settings, cfg, k)
        ours, theirs = step(x, mask), tstep(x, mask)
        assert ours == pytest.approx(theirs, rel=1e-5)
    named = dict(tmodel.named_parameters())
    assert set(named) == set(model.params)
    for n, p in named.items():
        m = topt.state[p]["exp_avg"].numpy()
        assert np.abs(opt.exp_avg[n] - m).max() <= 1e-4 * np.abs(m).max() + 1e-30, n
        # each update moves a parameter by at most about lr; a rounding-level difference in a
        # gradient near zero can flip the direction of that entry's move, hence lr as the scale
        lr = settings.schedule()(STEPS - 1)
        assert np.abs(model.params[n] - p.detach().numpy()).max() <= 0.1 * lr, n
    assert topt.param_groups[0]["betas"] == settings.betas == opt.betas
    assert [g["weight_decay"] for g in topt.param_groups] == [settings.weight_decay, 0.0]


def test_machine_info_names_this_machines_cpu_and_blas():
    info = bench.machine_info(threads=1)
    cpu = info["cpu"]
    assert cpu["model"] and cpu["logical_cpus"] == os.cpu_count()
    if os.path.exists("/proc/cpuinfo") and os.uname().machine in ("x86_64", "AMD64"):
        assert cpu["vendor"] in ("GenuineIntel", "AuthenticAMD", "HygonGenuine")
        assert cpu["family"].isdigit() and cpu["model_number"].isdigit()
        assert cpu["avx2"] == ("avx2" in cpu["simd"])
        assert all(f.startswith("avx512") for f in cpu["avx512"])
    libs = info["numpy_blas"]["libraries"]
    assert libs and libs[0]["of"] == "numpy"
    assert all(lib["internal_api"] and lib["version"] for lib in libs)
    assert libs[0]["internal_api"] != "openblas" or libs[0]["architecture"]   # OpenBLAS names its kernel
    assert info["numpy_blas"]["kernels_call"] in ("numpy's OpenBLAS", "scipy's BLAS")
    assert info["threads"] == 1 and "torch" not in info
    lines = bench.machine_lines(info)
    assert lines[0].startswith(f"cpu: {cpu['model']} (") and lines[-1].startswith("threads: 1 ")
    assert any(line.startswith("BLAS (numpy): ") for line in lines)
    json.dumps(info)                                      # goes into --json as it is


def test_cpu_info_falls_back_to_lscpu_when_cpuinfo_has_no_model_name(monkeypatch):
    import shutil
    if shutil.which("lscpu") is None:
        pytest.skip("no lscpu here")
    lscpu = bench._lscpu_fields()
    if "Model name" not in lscpu:
        pytest.skip("lscpu gives no model name here")
    monkeypatch.setattr(bench, "_cpuinfo_fields", lambda: {})
    cpu = bench.cpu_info()
    assert cpu["model"] == lscpu["Model name"]
    assert cpu["vendor"] == lscpu.get("Vendor ID")
    assert cpu["avx2"] == ("avx2" in lscpu.get("Flags", "").split())


def test_torch_blas_info_names_torchs_blas_and_its_version():
    pytest.importorskip("torch")
    t = bench.torch_blas_info()
    assert t is not None and t["version"]
    assert t["blas"] in ("mkl", "open", "openblas"), t
    if t["blas"] == "mkl":
        assert re.fullmatch(r"\d+(\.\d+)+", t["mkl_version"]), t


MAIN_ROW = re.compile(r"^main: toy B16 step\+AdamW 75% mask\*\s+([\d.]+)\s+(\S+)\s+(\S+)\s+([\d.]+)\s+(\d+)%$")


def _bench_main(tmp_path, *args):
    report = tmp_path / "bench.json"
    r = subprocess.run([sys.executable, "-m", "videomae_np.cli", "bench", "--only", "main", "--repeats", "1",
                        "--rounds", "1", "--no-extras", "--json", str(report), *args],
                       capture_output=True, text=True, timeout=900, env=dict(os.environ, PYTHONWARNINGS="ignore"))
    assert r.returncode == 0, r.stderr[-2000:]
    lines = r.stdout.splitlines()
    rows = [m.groups() for m in map(MAIN_ROW.match, lines) if m]
    assert len(rows) == 1, r.stdout
    assert lines[0].startswith("cpu: ") and any(line.startswith("threads: ") for line in lines), r.stdout
    assert "Rendering the clips is not timed" in r.stdout
    return lines, rows[0], json.loads(report.read_text())


def test_bench_only_main_runs_end_to_end_without_torch(tmp_path):
    lines, (ours, theirs, ratio, gflops, _), report = _bench_main(tmp_path, "--no-torch")
    assert float(ours) > 0 and float(gflops) > 0 and theirs == "-" and ratio == "-"
    assert not any(line.startswith("torch ") for line in lines)
    assert [r["workload"] for r in report["rows"]] == ["main"] and report["rows"][0]["torch_s"] is None
    assert report["machine"]["cpu"]["model"] and report["machine"]["numpy_blas"]["libraries"]


def test_bench_only_main_runs_end_to_end_against_torch(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    lines, (ours, theirs, ratio, _, _), report = _bench_main(tmp_path, "--threads", "1")
    assert float(ratio) == pytest.approx(float(ours) / float(theirs), abs=0.01)
    assert any(re.match(r"torch \S+: BLAS (MKL|OpenBLAS)", line) for line in lines), lines[:8]
    assert report["machine"]["torch"]["blas"] and report["rows"][0]["torch_s"] > 0
