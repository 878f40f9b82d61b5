"""The command line refuses bad input in one line (naming the input, what was expected and what
was found), never shows a traceback, and leaves nothing torn or half-written behind.

The commands run in this process (cli.main) with thread settings left alone; training runs are
a tiny model for one or two steps.
"""

import errno
import shutil

import numpy as np
import pytest

import videomae_np as vm
from videomae_np import bench, cli, runs, train
from videomae_np.settings import PretrainSettings, smallest_mask_ratio
from videomae_np.masking import make_mask

TINY = ["--config", "image_size=16", "num_frames=4", "hidden_size=16", "num_hidden_layers=1",
        "num_attention_heads=2", "intermediate_size=32", "decoder_hidden_size=16",
        "decoder_intermediate_size=32", "--toy", "size=16", "frames=4", "--batch-size", "2"]
TINY_CONFIG = dict(image_size=16, patch_size=4, num_frames=4, hidden_size=16, num_hidden_layers=1,
                   num_attention_heads=2, intermediate_size=32, decoder_hidden_size=16,
                   decoder_num_hidden_layers=1, decoder_num_attention_heads=2,
                   decoder_intermediate_size=32)


@pytest.fixture
def run_cli(monkeypatch, capsys, tmp_path):
    """cli.main(argv) in tmp_path -> (exit code, stdout, stderr)."""
    monkeypatch.setattr(cli, "set_threads", lambda n: None)
    monkeypatch.setattr(cli, "default_threads", lambda: None)
    monkeypatch.chdir(tmp_path)

    def run(*argv):
        code = cli.main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return code, out, err
    return run


def one_error_line(code, err, command, *fragments):
    assert code == 1, err
    assert err.endswith("\n") and err.count("\n") == 1, f"expected one line, got {err!r}"
    assert err.startswith(f"videomae-np {command}: ") and "Traceback" not in err
    for f in fragments:
        assert f in err, f"{f!r} not in {err!r}"


# ------------------------------------------------------------------------------------------------
# options: each bad value refused before anything is written
# ------------------------------------------------------------------------------------------------
BAD_OPTIONS = [
    ("pretrain", ["--save-every", "0"], "--save-every: expected a positive integer, found 0"),
    ("pretrain", ["--log-every", "0"], "--log-every: expected a positive integer, found 0"),
    ("pretrain", ["--clip-grad", "-1"], "--clip-grad: expected a number >= 0 (0 turns clipping off), found -1.0"),
    ("pretrain", ["--lr", "-1"], "--lr: expected a positive number, found -1.0"),
    ("pretrain", ["--lr", "nan"], "--lr: expected a positive number, found nan"),
    ("pretrain", ["--min-lr", "0.5", "--lr", "0.1"], "--min-lr: expected a number <= --lr (0.1), found 0.5"),
    ("pretrain", ["--weight-decay", "-1"], "--weight-decay: expected a number >= 0, found -1.0"),
    ("pretrain", ["--batch-size", "-2"], "--batch-size: expected a positive integer, found -2"),
    ("pretrain", ["--batch-size", "0"], "--batch-size: expected a positive integer, found 0"),
    ("pretrain", ["--steps", "0"], "--steps: expected a positive integer, found 0"),
    ("pretrain", ["--steps", "-5"], "--steps: expected a positive integer, found -5"),
    ("pretrain", ["--warmup-steps", "-1"], "--warmup-steps: expected an integer >= 0, found -1"),
    ("pretrain", ["--seed", "-1"], "--seed: expected an integer >= 0, found -1"),
    ("pretrain", ["--mask-ratio", "1"], "--mask-ratio: expected a number in [0, 1), found 1.0"),
    ("pretrain", ["--mask-ratio", "-0.1"], "--mask-ratio: expected a number in [0, 1), found -0.1"),
    ("pretrain", ["--threads", "0"], "--threads: expected a positive integer, found 0"),
    ("finetune", ["--layer-decay", "-1"], "--layer-decay: expected a number in (0, 1], found -1.0"),
    ("finetune", ["--layer-decay", "1.5"], "--layer-decay: expected a number in (0, 1], found 1.5"),
    ("finetune", ["--train-clips", "0"], "--train-clips: expected a positive integer, found 0"),
    ("finetune", ["--eval-clips", "0"], "--eval-clips: expected a positive integer, found 0"),
    ("finetune", ["--drop-path", "1"], "--drop-path: expected a number in [0, 1), found 1.0"),
    ("finetune", ["--drop-path", "-0.5"], "--drop-path: expected a number in [0, 1), found -0.5"),
    ("finetune", ["--threads", "-1"], "--threads: expected a positive integer, found -1"),
]


@pytest.mark.parametrize("command, options, message", BAD_OPTIONS,
                         ids=[" ".join(o) for _, o, _ in BAD_OPTIONS])
def test_a_bad_option_value_is_one_line_and_writes_nothing(run_cli, tmp_path, command, options, message):
    code, _, err = run_cli(command, "--out", "run", *options)
    one_error_line(code, err, command, message)
    assert not (tmp_path / "run").exists()


def test_the_same_checks_apply_on_resume(run_cli, tmp_path):
    code, _, err = run_cli("pretrain", "--resume", "--out", "run", "--log-every", "0")
    one_error_line(code, err, "pretrain", "--log-every: expected a positive integer, found 0")


def test_a_mask_ratio_that_hides_no_token_names_the_smallest_that_does(run_cli, tmp_path):
    # the tiny model's grid is 2 x 4 x 4: tube masking hides int(ratio * 16) patches per frame
    code, _, err = run_cli("pretrain", "--out", "run", *TINY, "--mask-ratio", "0.05")
    one_error_line(code, err, "pretrain", "--mask-ratio:", "0.05 hides none of the model's 2x4x4 token grid "
                   "with tube masking (the smallest that does is 0.0625)")
    code, _, err = run_cli("pretrain", "--out", "run", *TINY, "--mask-ratio", "0.02", "--mask-type", "random")
    one_error_line(code, err, "pretrain", "with random masking (the smallest that does is 0.03125)")
    assert not (tmp_path / "run").exists()
    for kind, ratio, units in (("tube", 0.0625, 16), ("random", 0.03125, 32), ("frame", 0.5, 2)):
        assert smallest_mask_ratio(kind, (2, 4, 4)) == ratio
        assert make_mask(kind, 1, (2, 4, 4), ratio, rng=0).sum() == 32 // units
        assert not make_mask(kind, 1, (2, 4, 4), ratio * 0.999, rng=0).any()
    assert smallest_mask_ratio("tube", (2, 7, 7)) == 0.02041          # 1/49, rounded up
    assert smallest_mask_ratio("frame", (1, 4, 4)) is None              # one slot: never


# ------------------------------------------------------------------------------------------------
# --config and --toy
# ------------------------------------------------------------------------------------------------
BAD_FIELDS = [
    (["--config", "hiden_size=128"], "--config: unknown field 'hiden_size' (did you mean 'hidden_size'?)"),
    (["--config", "hidden_size"], "--config: expected KEY=VALUE, found 'hidden_size'"),
    (["--config", "=3"], "--config: expected KEY=VALUE, found '=3'"),
    (["--config", "hidden_size=32", "hidden_size=64"], "--config: hidden_size given twice"),
    (["--config", "hidden_size=abc"], "--config: invalid VideoMAEConfig: hidden_size='abc' (str) must be a positive integer"),
    (["--toy", "frames=abc"], "--toy: frames expects an integer, found 'abc'"),
    (["--toy", "frame=4"], "--toy: unknown field 'frame' (did you mean 'frames'?)"),
    (["--toy", "speed=1"], "--toy: speed expects 2 numbers such as speed=("),
    (["--toy", "noise=NaN"], "--toy: noise expects a number, found nan"),
    (["--toy", "size=0"], "--toy: size expects a positive integer, found 0"),
    (["--config", "num_frames=4"], "--config/--toy: the model expects 4 frames of 32x32 with 3 channels, "
                                   "the toy clips have 8 of 32x32 with 3"),
]


@pytest.mark.parametrize("options, message", BAD_FIELDS, ids=[" ".join(o) for o, _ in BAD_FIELDS])
def test_a_bad_config_or_toy_field_is_one_line(run_cli, tmp_path, options, message):
    code, _, err = run_cli("pretrain", "--out", "run", *options)
    one_error_line(code, err, "pretrain", message)
    assert not (tmp_path / "run").exists()


def test_finetune_from_a_pretrained_model_refuses_config_changes(run_cli, tmp_path):
    code, _, err = run_cli("finetune", "--init", "somewhere", "--out", "run", "--config", "hidden_size=32")
    one_error_line(code, err, "finetune", "--config: the model comes from --init somewhere",
                   "found hidden_size")
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------------------------------------
# --out, bench
# ------------------------------------------------------------------------------------------------
def test_an_out_that_is_a_file_or_under_a_file_is_one_line(run_cli, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    code, _, err = run_cli("pretrain", "--out", "notes.txt")
    one_error_line(code, err, "pretrain", "--out notes.txt is a file; expected a folder")
    code, _, err = run_cli("finetune", "--out", "notes.txt/sub/run")
    one_error_line(code, err, "finetune", "--out notes.txt/sub/run: notes.txt is a file, so no folder")
    code, _, err = run_cli("pretrain", "--resume", "--out", "nowhere")
    one_error_line(code, err, "pretrain", "--resume: nowhere does not exist; nothing to resume")
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_bench_refuses_zero_repeats(capsys):
    with pytest.raises(SystemExit) as info:
        bench.main(["--repeats", "0", "--no-torch", "--no-extras"])
    assert info.value.code == 2
    assert "--repeats: expected a positive integer, found '0'" in capsys.readouterr().err


def test_an_unexpected_error_is_still_one_line(run_cli, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("something\nwe did not foresee")
    monkeypatch.setattr(train, "run_pretrain", broken)
    code, _, err = run_cli("pretrain", "--out", "run")
    one_error_line(code, err, "pretrain", "unexpected RuntimeError: something we did not foresee",
                   cli.TRACEBACK_ENV)


# ------------------------------------------------------------------------------------------------
# the run folder: one run at a time, state files, disk full
# ------------------------------------------------------------------------------------------------
def test_a_second_run_into_a_locked_folder_is_one_line_naming_the_holder(run_cli, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    with runs.run_lock(out, "pretrain"):
        code, _, err = run_cli("pretrain", "--out", "run", *TINY)
    one_error_line(code, err, "pretrain", "--out run is in use by another run (pid ", "pretrain started")
    assert not (out / runs.STATE_JSON).exists()


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A finished two-step pretraining run (copied by the tests that damage it)."""
    out = tmp_path_factory.mktemp("tiny") / "run"
    settings = PretrainSettings(steps=2, batch_size=2, warmup_steps=1, save_every=1, log_every=1,
                                      model=TINY_CONFIG, toy=dict(size=16, frames=4))
    train.run_pretrain(settings, out, log=lambda *a: None)
    return out


def _damage(src, dst, name, data):
    shutil.copytree(src, dst)
    (dst / name).write_bytes(data(dst / name))


@pytest.mark.parametrize("name, data, message", [
    ("trainer_state.json", lambda p: b'{"step": 2, "kind": ', "trainer_state.json is not valid JSON"),
    ("trainer_state.json", lambda p: b'{"step": 2, "kind": "pretrain"}',
     "trainer_state.json is not a trainer state: expected 'step' (an integer >= 0), 'kind' and 'settings'"),
    ("trainer_state.json", lambda p: p.read_bytes().replace(b'"batch_size": 2', b'"batch_size": "2"'),
     "trainer_state.json: its settings cannot be used (--batch-size: expected a positive integer, found '2')"),
    ("trainer_state.npz", lambda p: p.read_bytes()[: p.stat().st_size // 2],
     "trainer_state.npz is corrupt or truncated"),
    ("trainer_state.npz", lambda p: b"\x80\x04K\x01.", "trainer_state.npz is corrupt or truncated"),  # a pickle
], ids=["json-cut", "json-no-settings", "json-bad-settings", "npz-cut", "npz-pickle"])
def test_a_damaged_trainer_state_is_one_line_naming_the_file(run_cli, tmp_path, tiny_run, name, data, message):
    _damage(tiny_run, tmp_path / "run", name, data)
    code, _, err = run_cli("pretrain", "--resume", "--out", "run", "--steps", "3")
    one_error_line(code, err, "pretrain", message)


def test_disk_full_during_a_save_is_one_line_and_leaves_no_temporary_file(run_cli, tmp_path, monkeypatch):
    def full(file, **arrays):
        file.write(b"PK" + b"\0" * 100)                  # part of the archive, then no room
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(np, "savez", full)
    code, _, err = run_cli("pretrain", "--out", "run", "--steps", "1", *TINY)
    one_error_line(code, err, "pretrain", "trainer_state.npz: disk full")
    assert not [p.name for p in (tmp_path / "run").iterdir() if p.name.endswith(".tmp")]
    assert not (tmp_path / "run" / runs.STATE_NPZ).exists()


# ------------------------------------------------------------------------------------------------
# reconstruct
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def video_and_models(tmp_path_factory):
    from videomae_np.data import toy
    from videomae_np.video import write_video
    root = tmp_path_factory.mktemp("reconstruct")
    cfg = vm.VideoMAEConfig(**TINY_CONFIG)
    vm.VideoMAEForPreTraining(cfg, seed=0).save_pretrained(root / "pretrained")
    vm.VideoMAEForVideoClassification(cfg, seed=0).save_pretrained(root / "classifier")
    frames, _ = toy.batch_at(0, 0, 1, toy.ToySpec(size=16, frames=4))
    write_video(root / "clip.gif", (toy.denormalise(frames[0]).transpose(0, 2, 3, 1) * 255).astype(np.uint8))
    return root


def test_reconstruct_writes_the_format_its_file_name_says(run_cli, tmp_path, video_and_models):
    from PIL import Image
    root = video_and_models
    for name, fmt, magic in (("r.jpg", "JPEG", b"\xff\xd8\xff"), ("r.png", "PNG", b"\x89PNG")):
        code, _, err = run_cli("reconstruct", "--model", root / "pretrained", "--video", root / "clip.gif",
                               "--out", name)
        assert code == 0, err
        assert (tmp_path / name).read_bytes()[:len(magic)] == magic
        with Image.open(tmp_path / name) as im:
            assert im.format == fmt
    assert not [p.name for p in tmp_path.iterdir() if "tmp" in p.name]


def test_reconstruct_refuses_an_unknown_picture_extension(run_cli, tmp_path, video_and_models):
    root = video_and_models
    code, _, err = run_cli("reconstruct", "--model", root / "pretrained", "--video", root / "clip.gif",
                           "--out", "r.xyz")
    one_error_line(code, err, "reconstruct", "--out r.xyz: expected a picture name ending in .png, .jpg",
                   "found '.xyz'")
    assert not (tmp_path / "r.xyz").exists()


def test_reconstruct_refuses_a_model_without_a_decoder(run_cli, tmp_path, video_and_models):
    root = video_and_models
    code, _, err = run_cli("reconstruct", "--model", root / "classifier", "--video", root / "clip.gif",
                           "--out", "r.png")
    one_error_line(code, err, "reconstruct", "expected a pretraining run's model, found a "
                   "VideoMAEForVideoClassification checkpoint without the decoder")
    assert not (tmp_path / "r.png").exists()


def test_reconstruct_refuses_a_mask_ratio_that_hides_nothing(run_cli, tmp_path, video_and_models):
    root = video_and_models
    code, _, err = run_cli("reconstruct", "--model", root / "pretrained", "--video", root / "clip.gif",
                           "--out", "r.png", "--mask-ratio", "0.01")
    one_error_line(code, err, "reconstruct", "--mask-ratio:", "the smallest that does is 0.0625")


def test_saved_settings_missing_a_field_or_holding_an_unknown_one_are_refused():
    d = PretrainSettings().to_dict()
    assert PretrainSettings.from_dict(d) == PretrainSettings()
    old = {k: v for k, v in d.items() if k not in ("loss", "pretrain_clips")}   # an older run
    assert PretrainSettings.from_dict(old).loss == "mse"
    with pytest.raises(ValueError, match="missing lr"):
        PretrainSettings.from_dict({k: v for k, v in d.items() if k != "lr"})
    with pytest.raises(ValueError, match="unknown warp"):
        PretrainSettings.from_dict({**d, "warp": 9})
