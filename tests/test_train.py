"""Training runs: exact resume, interruption and NaN safety, outputs transformers can load.

Every run here uses a tiny model on 16x16 four-frame clips and a handful of steps (seconds).
"""

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

import videomae_np as vm
from videomae_np import randomness, runs, train
from videomae_np.reconstruction import reconstruct_video
from videomae_np.settings import FinetuneSettings, PretrainSettings, toy_config

TINY_MODEL = dict(image_size=16, patch_size=8, num_frames=4, hidden_size=16, num_hidden_layers=2,
                  num_attention_heads=2, intermediate_size=32, decoder_hidden_size=16,
                  decoder_num_hidden_layers=1, decoder_num_attention_heads=2,
                  decoder_intermediate_size=32, norm_pix_loss=True)   # the toy default is False
TINY_TOY = dict(size=16, frames=4, period=8)


def quiet(*args, **kwargs):
    pass


def pre(**kw):
    base = dict(steps=6, batch_size=4, lr=3e-3, warmup_steps=2, save_every=2, log_every=1,
                model=TINY_MODEL, toy=TINY_TOY)
    return PretrainSettings(**{**base, **kw})


def fine(**kw):
    base = dict(steps=6, batch_size=4, lr=3e-3, warmup_steps=2, save_every=2, log_every=1,
                model={} if kw.get("init") else TINY_MODEL,     # with init the model comes from it
                toy=TINY_TOY, train_clips=12, eval_clips=8, eval_batch=8)
    return FinetuneSettings(**{**base, **kw})


def losses(out):
    return [r["loss"] for r in runs.read_metrics(out)]


class Stop:
    """A callback that raises KeyboardInterrupt after a given step (as Ctrl-C would)."""

    def __init__(self, at):
        self.at = at

    def __call__(self, step, run):
        if step == self.at:
            raise KeyboardInterrupt


# ------------------------------------------------------------------------------------------------
# pretraining
# ------------------------------------------------------------------------------------------------
def test_pretrain_writes_model_state_metrics_and_picture(tmp_path):
    out = tmp_path / "run"
    summary = train.run_pretrain(pre(), out, log=quiet)
    for name in ("config.json", "model.safetensors", "trainer_state.npz", "trainer_state.json",
                 "metrics.jsonl", "reconstruction.png"):
        assert (out / name).is_file(), name
    assert summary["step"] == 6 and len(losses(out)) == 6
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["step"] == 6 and state["kind"] == "pretrain"
    assert not [p for p in out.iterdir() if "tmp" in p.name]        # no temporary files left
    model = vm.VideoMAEForPreTraining.from_pretrained(out)
    assert model.config.hidden_size == 16


def assert_resumes_to(part, full):
    """Resuming the interrupted run `part` gives exactly the losses and weights of `full`."""
    train.run_pretrain(pre(), part, resume=True, log=quiet)
    assert losses(part) == losses(full)
    a = vm.VideoMAEForPreTraining.from_pretrained(full).params
    b = vm.VideoMAEForPreTraining.from_pretrained(part).params
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


def test_resumed_pretraining_has_exactly_the_losses_of_an_uninterrupted_run(tmp_path):
    full, part = tmp_path / "full", tmp_path / "part"
    train.run_pretrain(pre(), full, log=quiet)
    with pytest.raises(train.TrainingInterrupted) as info:
        train.run_pretrain(pre(), part, log=quiet, callback=Stop(3))
    assert info.value.step == 3 and info.value.saved
    assert len(losses(part)) == 3
    assert_resumes_to(part, full)


def test_resume_drops_metrics_logged_after_the_checkpoint(tmp_path):
    """A crash (not Ctrl-C) after step 3 leaves the step-2 checkpoint and a log with 3 lines."""
    out = tmp_path / "run"

    class Crash(Exception):
        pass

    def crash(step, run):
        if step == 3:
            raise Crash

    with pytest.raises(Crash):
        train.run_pretrain(pre(), out, log=quiet, callback=crash)
    assert len(losses(out)) == 3 and runs.read_state(out)["step"] == 2
    train.run_pretrain(pre(), out, resume=True, log=quiet)
    full = tmp_path / "full"
    train.run_pretrain(pre(), full, log=quiet)
    assert losses(out) == losses(full)


def test_interrupted_run_leaves_a_checkpoint_transformers_and_resume_can_load(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(train.TrainingInterrupted):
        train.run_pretrain(pre(steps=20, save_every=100), out, log=quiet, callback=Stop(5))
    assert runs.read_state(out)["step"] == 5
    vm.VideoMAEForPreTraining.from_pretrained(out)
    train.run_pretrain(pre(steps=7, save_every=100), out, resume=True, explicit=("steps",), log=quiet)
    assert runs.read_state(out)["step"] == 7


def test_non_finite_loss_stops_without_touching_the_last_checkpoint(tmp_path):
    out = tmp_path / "run"

    def poison(step, run):
        if step == 3:                       # after the step-2 checkpoint: break the weights
            run.model.params["decoder.head.bias"][...] = np.nan

    with pytest.raises(train.NonFiniteLoss, match="step 4.*intact"):
        train.run_pretrain(pre(), out, log=quiet, callback=poison)
    state = runs.read_state(out)
    assert state["step"] == 2
    model = vm.VideoMAEForPreTraining.from_pretrained(out)
    assert all(np.isfinite(v).all() for v in model.params.values())
    with np.load(out / "trainer_state.npz") as z:
        assert all(np.isfinite(z[k]).all() for k in z.files if z[k].dtype.kind == "f")
    train.run_pretrain(pre(), out, resume=True, log=quiet)     # and it resumes from there
    assert runs.read_state(out)["step"] == 6


class SigintInsideTheUpdate(dict):
    """Gradients that deliver two Ctrl-C (SIGINT) to this process while AdamW.step reads them,
    after it has updated some parameters and before it has updated the others."""

    def __init__(self, grads, after):
        super().__init__(grads)
        self.reads, self.after = 0, after

    def __getitem__(self, key):
        self.reads += 1
        if self.reads == self.after:
            signal.raise_signal(signal.SIGINT)      # the first: stop after this step
            signal.raise_signal(signal.SIGINT)      # the second: stop at once
        return super().__getitem__(key)


def test_a_second_ctrl_c_inside_the_optimizer_step_saves_a_whole_update(tmp_path):
    full, part = tmp_path / "full", tmp_path / "part"
    train.run_pretrain(pre(), full, log=quiet)

    def arm(step, run):
        if step == 2:                       # the third update is hit half-way through
            inner = run.grad_fn

            def grad_fn(k):
                out, grads = inner(k)
                return out, SigintInsideTheUpdate(grads, after=len(grads) // 2)
            run.grad_fn = grad_fn

    with pytest.raises(train.TrainingInterrupted) as info:
        train.run_pretrain(pre(), part, log=quiet, callback=arm)
    assert info.value.step == 3 and runs.read_state(part)["step"] == 3
    clean = tmp_path / "clean"                          # the same step, stopped between updates
    with pytest.raises(train.TrainingInterrupted):
        train.run_pretrain(pre(), clean, log=quiet, callback=Stop(3))
    with np.load(part / "trainer_state.npz") as a, np.load(clean / "trainer_state.npz") as b:
        for k in b.files:                               # parameters, both moments, step
            if k != "model_save_id":
                np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert len(losses(part)) == 3
    assert_resumes_to(part, full)


def test_state_files_carry_the_save_id_of_the_model_files(tmp_path):
    out = tmp_path / "run"
    train.run_pretrain(pre(steps=2), out, log=quiet)
    save_id = json.loads((out / "config.json").read_text())["videomae_np_save_id"]
    with np.load(out / "trainer_state.npz") as z:           # no pickle needed to read it
        assert str(z["model_save_id"]) == save_id
    assert runs.read_state(out)["model_save_id"] == save_id


def test_model_files_saved_after_the_npz_are_replaced_from_it_on_resume(tmp_path):
    """A kill between the model files and trainer_state.npz of a save: the npz wins."""
    full, part = tmp_path / "full", tmp_path / "part"
    train.run_pretrain(pre(), full, log=quiet)
    with pytest.raises(train.TrainingInterrupted):
        train.run_pretrain(pre(), part, log=quiet, callback=Stop(3))
    newer = vm.VideoMAEForPreTraining.from_pretrained(part)
    for v in newer.params.values():
        v += 1.0                                      # the model files of a later, unfinished save
    newer.save_pretrained(part)
    lines = []
    with pytest.raises(train.TrainingInterrupted):    # resume, and stop before any update
        train.run_pretrain(pre(), part, resume=True, log=lines.append, callback=Stop(4))
    assert any("rewrote them from trainer_state.npz at step 3" in x for x in lines), lines
    assert_resumes_to(part, full)


def test_a_second_run_into_a_folder_in_use_is_refused_naming_the_holder(tmp_path):
    out = tmp_path / "run"
    train.run_pretrain(pre(steps=2), out, log=quiet)
    inside = []

    def second(step, run):        # while this run holds the folder, another one tries it
        if step == 3:
            with pytest.raises(runs.RunLocked, match=rf"in use by another run \(pid {os.getpid()} on "):
                train.run_pretrain(pre(steps=4), out, resume=True, explicit=("steps",), log=quiet)
            inside.append(step)

    train.run_pretrain(pre(steps=4), out, resume=True, explicit=("steps",), log=quiet, callback=second)
    assert inside == [3] and runs.read_state(out)["step"] == 4
    with runs.run_lock(out):     # released at the end of the run
        pass


def test_a_lock_left_by_a_killed_process_does_not_block(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom videomae_np.runs import run_lock\n"
         "with run_lock(sys.argv[1], 'test'):\n    print('locked', flush=True)\n    time.sleep(120)",
         str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(runs.RunLocked, match=f"pid {holder.pid} .*test started"):
            with runs.run_lock(out):
                pass
        holder.kill()                                  # kill -9: no clean-up runs
        holder.wait(timeout=60)
    finally:
        holder.kill()
        holder.stdout.close()
    assert (out / ".lock").is_file()                   # the file stays behind ...
    train.run_pretrain(pre(steps=1), out, log=quiet)   # ... and blocks nothing
    assert runs.read_state(out)["step"] == 1


def test_resume_removes_temporary_files_of_dead_writers(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(train.TrainingInterrupted):
        train.run_pretrain(pre(), out, log=quiet, callback=Stop(3))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = [out / f".trainer_state.json.{dead.pid}.tmp",
             out / f".model.safetensors.{dead.pid}.0123456789ab.tmp"]
    for p in stale:
        p.write_bytes(b"half a file")
    train.run_pretrain(pre(), out, resume=True, log=quiet)
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]


def test_new_run_refuses_a_used_directory_and_resume_refuses_changed_settings(tmp_path):
    out = tmp_path / "run"
    train.run_pretrain(pre(steps=2), out, log=quiet)
    with pytest.raises(FileExistsError, match="--resume"):
        train.run_pretrain(pre(steps=2), out, log=quiet)
    with pytest.raises(ValueError, match="lr"):
        train.run_pretrain(pre(steps=4, lr=1.0), out, resume=True, explicit=("steps", "lr"), log=quiet)
    with pytest.raises(FileNotFoundError):
        train.run_pretrain(pre(), tmp_path / "empty", resume=True, log=quiet)


def test_batches_and_masks_are_a_pure_function_of_seed_and_step():
    s = pre()
    cfg = toy_config(**s.model)
    x1, m1 = train.pretrain_batch(s, cfg, 5)
    x2, m2 = train.pretrain_batch(s, cfg, 5)
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(m1, m2)
    x3, m3 = train.pretrain_batch(s, cfg, 6)
    assert not np.array_equal(x1, x3)
    order = [randomness.finetune_order(0, k, 5, 12) for k in range(12)]
    flat = np.concatenate(order)                    # 60 draws = 5 epochs of a 12-clip set
    for e in range(5):
        assert sorted(flat[e * 12:(e + 1) * 12]) == list(range(12))
    np.testing.assert_array_equal(randomness.finetune_order(0, 7, 5, 12), order[7])


def test_transformers_loads_the_pretrained_output(tmp_path):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    out = tmp_path / "run"
    train.run_pretrain(pre(steps=2), out, log=quiet)
    ours = vm.VideoMAEForPreTraining.from_pretrained(out, dtype=np.float64)
    theirs, info = transformers.VideoMAEForPreTraining.from_pretrained(out, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    x, mask = train.pretrain_batch(pre(), ours.config, 0)
    with torch.no_grad():
        ref = theirs.double().eval()(torch.tensor(x, dtype=torch.float64), bool_masked_pos=torch.tensor(mask)).loss
    assert float(ours(x, bool_masked_pos=mask).loss) == pytest.approx(float(ref), rel=1e-9)


def test_reconstruction_picture_says_it_uses_true_patch_statistics(tmp_path):
    from videomae_np import reconstruction
    cfg = toy_config(**TINY_MODEL)
    model = vm.VideoMAEForPreTraining(cfg, seed=0)
    x, mask = train.pretrain_batch(pre(), cfg, 0)
    text = reconstruction.save_picture(tmp_path / "r.png", model, x[:2], mask[:2], 0.75)
    assert "TRUE per-patch mean/std" in text
    import imageio.v3 as iio
    img = iio.imread(tmp_path / "r.png")
    assert img.ndim == 3 and img.shape[2] == 3 and img.shape[0] > 2 * 3 * 16 * reconstruction.scale_for(16)
    assert "no true statistics" in reconstruction.describe(cfg.copy(norm_pix_loss=False))


def test_reconstruction_of_visible_patches_is_the_input_and_masked_input_is_grey():
    from videomae_np import pixels, reconstruction
    cfg = toy_config(**TINY_MODEL)
    model = vm.VideoMAEForPreTraining(cfg, seed=0)
    x, mask = train.pretrain_batch(pre(), cfg, 0)
    recon, masked = reconstruction.reconstruct(model, x, mask)
    vis = ~mask
    shown = vm.ops.patchify(pixels.denormalise(x), 2, 8)
    np.testing.assert_allclose(vm.ops.patchify(recon, 2, 8)[vis], shown[vis], atol=1e-6)
    np.testing.assert_allclose(vm.ops.patchify(masked, 2, 8)[mask], reconstruction.MASK_GREY)


def test_reconstruct_draws_a_video_file_with_the_runs_mask_settings(tmp_path):
    from videomae_np.data import toy
    from videomae_np.video import write_video
    out = tmp_path / "run"
    train.run_pretrain(pre(steps=1, mask_type="random", mask_ratio=0.5), out, log=quiet)
    frames, _ = toy.batch_at(0, 0, 1, toy.ToySpec(size=24, frames=10))       # another size and length
    write_video(tmp_path / "clip.gif", (toy.denormalise(frames[0]).transpose(0, 2, 3, 1) * 255).astype(np.uint8))
    lines = []
    png = reconstruct_video(out, tmp_path / "clip.gif", tmp_path / "r.png", log=lines.append)
    assert png.is_file() and "50% of the tubelets hidden" in lines[0]


# ------------------------------------------------------------------------------------------------
# fine-tuning
# ------------------------------------------------------------------------------------------------
def test_finetune_from_a_pretrained_run_reports_accuracy_and_resumes_exactly(tmp_path):
    pt = tmp_path / "pt"
    train.run_pretrain(pre(steps=2), pt, log=quiet)
    full, part = tmp_path / "full", tmp_path / "part"
    metrics = train.run_finetune(fine(init=str(pt)), full, log=quiet)
    assert 0.0 <= metrics["eval_accuracy"] <= 1.0
    saved = json.loads((full / "metrics.json").read_text())
    assert saved["eval_accuracy"] == metrics["eval_accuracy"] and saved["init"] == str(pt)
    with pytest.raises(train.TrainingInterrupted):
        train.run_finetune(fine(init=str(pt)), part, log=quiet, callback=Stop(3))
    again = train.run_finetune(fine(init=str(pt)), part, resume=True, log=quiet)
    assert losses(part) == losses(full)
    assert again["eval_accuracy"] == metrics["eval_accuracy"]
    # the encoder came from the pretrained run, the classifier is new
    clf = vm.VideoMAEForVideoClassification.from_pretrained(full)
    assert clf.config.num_labels == 4 and clf.config.id2label[0] == "right"


def test_finetune_from_scratch_and_transformers_loads_the_classifier(tmp_path):
    out = tmp_path / "scratch"
    metrics = train.run_finetune(fine(steps=3), out, log=quiet)
    assert metrics["init"] == "scratch"
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("torch")
    model, info = transformers.VideoMAEForVideoClassification.from_pretrained(out, output_loading_info=True)
    assert not info["missing_keys"] and model.config.num_labels == 4


def test_layer_decay_applies_only_when_starting_from_a_pretrained_encoder():
    assert fine(init="somewhere").effective_layer_decay() == 0.75
    assert fine().effective_layer_decay() is None
    assert fine(layer_decay=0.9).effective_layer_decay() == 0.9


# ------------------------------------------------------------------------------------------------
# the command line
# ------------------------------------------------------------------------------------------------
def _cli(*args, cwd):
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run([sys.executable, "-m", "videomae_np.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_cli_help_lists_every_command(tmp_path):
    r = _cli("--help", cwd=tmp_path)
    assert r.returncode == 0
    for cmd in ("pretrain", "finetune", "reconstruct", "bench"):
        assert cmd in r.stdout


TINY_CLI = ["--config", "image_size=16", "num_frames=4", "hidden_size=16", "num_hidden_layers=1",
            "num_attention_heads=2", "intermediate_size=32", "decoder_hidden_size=16",
            "decoder_intermediate_size=32", "norm_pix_loss=true", "--toy", "size=16", "frames=4", "--batch-size", "2"]


def test_cli_pretrain_then_resume_runs_to_the_requested_step(tmp_path):
    r = _cli("pretrain", "--steps", "2", "--out", "run", *TINY_CLI, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "step     2/2" in r.stdout and "TRUE per-patch mean/std" in r.stdout
    r = _cli("pretrain", "--steps", "3", "--resume", "--out", "run", "--threads", "1", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert runs.read_state(tmp_path / "run")["step"] == 3
    r = _cli("pretrain", "--steps", "3", "--out", "run", cwd=tmp_path)       # not without --resume
    assert r.returncode == 1 and "--resume" in r.stderr


def test_cli_ctrl_c_saves_a_checkpoint_and_exits_130(tmp_path):
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    proc = subprocess.Popen([sys.executable, "-m", "videomae_np.cli", "pretrain", "--steps", "100000",
                             "--out", "run", "--log-every", "1", "--save-every", "100000", *TINY_CLI],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        for line in proc.stdout:                     # wait until training is under way
            if "step     3/" in line:
                break
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    state = runs.read_state(tmp_path / "run")
    assert state["step"] >= 3
    assert len(losses(tmp_path / "run")) == state["step"]
    vm.VideoMAEForPreTraining.from_pretrained(tmp_path / "run")
