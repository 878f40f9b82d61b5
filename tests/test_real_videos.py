"""Real videos end to end: finetune --data, predict, evaluate, features on a small labelled folder
of MP4 files and frame folders, through videomae_np.cli.main with a tiny model; the bad inputs of
a --data folder; and predict's numbers against transformers on the same frames."""

import json
import warnings

import numpy as np
import pytest

from videomae_np import cli, runs, train
from videomae_np.settings import FinetuneSettings
from videomae_np import video as V
from videomae_np.data import toy
from videomae_np.data.clips import WORKERS_ENV

from conftest import make_hf_model

pytest.importorskip("imageio_ffmpeg")

TINY = ["image_size=16", "patch_size=8", "num_frames=4", "tubelet_size=2", "hidden_size=16",
        "num_hidden_layers=1", "num_attention_heads=2", "intermediate_size=32",
        "decoder_hidden_size=16", "decoder_num_attention_heads=2", "decoder_intermediate_size=32"]
FAST = ["--steps", "2", "--batch-size", "2", "--warmup-steps", "0", "--threads", "1",
        "--log-every", "1"]


def toy_videos(n, seed, frames=20, size=48):
    """n toy clips as (T, H, W, 3) uint8 videos, with their motion labels."""
    x, y = toy.make_dataset(n, seed, toy.ToySpec(frames=frames, size=size))
    return (toy.denormalise(x) * 255).round().astype(np.uint8).transpose(0, 1, 3, 4, 2), y


def write_frame_folder(folder, frames):
    import imageio.v3 as iio
    folder.mkdir(parents=True)
    for i, f in enumerate(frames):
        iio.imwrite(folder / f"frame_{i}.png", f)


def make_data(root, classes=("left", "right"), splits=("train", "val"), per_class=2, seed=0):
    """root/<split>/<class>/: mp4 files, and one folder of PNG frames per class."""
    vids, _ = toy_videos(len(splits) * len(classes) * per_class, seed)
    k = 0
    for split in splits:
        for c in classes:
            (root / split / c).mkdir(parents=True)
            for j in range(per_class):
                if j == per_class - 1:
                    write_frame_folder(root / split / c / f"clip{j}", vids[k])
                else:
                    V.write_video(root / split / c / f"clip{j}.mp4", vids[k])
                k += 1
    return root


@pytest.fixture(autouse=True)
def _decode_in_process(monkeypatch):
    """Tests decode in the test process: spawning clip workers costs seconds per command. The
    module-scoped `run` fixture is set up before this one, so its finetune (training and the
    evaluation of val/) runs with the default worker processes; tests/test_clip_loader.py tests
    that workers give the same numbers."""
    monkeypatch.setenv(WORKERS_ENV, "0")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_data(tmp_path_factory.mktemp("videos") / "data")


@pytest.fixture(scope="module")
def run(data, tmp_path_factory):
    """A tiny classifier fine-tuned on the folder (2 steps)."""
    out = tmp_path_factory.mktemp("runs") / "ft"
    assert cli.main(["finetune", "--data", str(data), "--out", str(out), "--stride", "2",
                     *FAST, "--config", *TINY]) == 0
    return out


# ------------------------------------------------------------------------------------------------
# finetune --data
# ------------------------------------------------------------------------------------------------
def test_finetune_data_saves_labels_processor_and_sampling(run, data):
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["id2label"] == {"0": "left", "1": "right"} and cfg["label2id"] == {"left": 0, "right": 1}
    proc = json.loads((run / "preprocessor_config.json").read_text())
    assert proc["crop_size"] == {"height": 16, "width": 16}
    state = json.loads((run / "trainer_state.json").read_text())
    assert state["settings"]["stride"] == 2 and state["settings"]["data"] == str(data)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["eval_videos"] == 4 and 0 <= metrics["eval_accuracy"] <= 1
    assert set(metrics["eval_per_class"]) == {"left", "right"}


def test_finetune_data_resumes_exactly(data, tmp_path):
    args = ["finetune", "--data", str(data), "--stride", "segments", "--config", *TINY]
    fast3 = [a if a != "2" else "3" for a in FAST[:2]] + FAST[2:]
    full, part = tmp_path / "full", tmp_path / "part"
    assert cli.main([*args, "--out", str(full), *fast3]) == 0
    with pytest.raises(train.TrainingInterrupted):
        s = FinetuneSettings(data=str(data), stride=None, steps=3, batch_size=2, warmup_steps=0,
                                   log_every=1, model=cli._key_values(TINY, "--config"))
        train.run_finetune(s, part, log=lambda m: None, callback=_stop_at(1))
    assert cli.main(["finetune", "--resume", "--out", str(part)]) == 0
    assert runs.read_metrics(part) == _drop_time(runs.read_metrics(full), runs.read_metrics(part))


def _stop_at(step):
    def cb(k, run):
        if k == step:
            raise KeyboardInterrupt
    return cb


def _drop_time(a, b):
    """a's losses with b's timings (only the numbers must agree)."""
    keep = ("elapsed_s", "clips_per_s")
    return [{**ra, **{k: rb[k] for k in keep}} for ra, rb in zip(a, b)] if len(a) == len(b) else a


def test_linear_probe_trains_only_the_head(data, tmp_path):
    out = tmp_path / "probe"
    assert cli.main(["finetune", "--data", str(data), "--out", str(out), "--linear-probe",
                     "--no-flip", *FAST, "--config", *TINY]) == 0
    import videomae_np as vm
    trained = vm.VideoMAEForVideoClassification.from_pretrained(out)
    cfg = trained.config
    fresh = vm.VideoMAEForVideoClassification(cfg, seed=0)
    for k, v in trained.params.items():
        if k.startswith(("fc_norm.", "classifier.")):
            continue
        np.testing.assert_array_equal(v, fresh.params[k], err_msg=k)
    assert not np.array_equal(trained.params["classifier.weight"], fresh.params["classifier.weight"])
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["settings"]["linear_probe"] is True and state["settings"]["flip"] is False


def test_finetune_data_skips_unreadable_and_empty_videos_naming_them(tmp_path, capsys):
    data = make_data(tmp_path / "data")
    (data / "train" / "left" / "broken.mp4").write_bytes(b"not a video")
    (data / "train" / "right" / "empty.mp4").write_bytes(b"")
    out = tmp_path / "ft"
    assert cli.main(["finetune", "--data", str(data), "--out", str(out), *FAST[:4],
                     "--threads", "1", "--config", *TINY]) == 0
    text = capsys.readouterr().out
    assert f"warning: skipped {data / 'train' / 'left' / 'broken.mp4'}" in text
    assert f"warning: skipped {data / 'train' / 'right' / 'empty.mp4'}" in text
    assert "on 4 videos of 2 classes" in text


@pytest.mark.parametrize("case, pattern", [
    ("no_train", r"--data .*: expected a train/ folder"),
    ("empty_class", r"train/right: class 'right' has no video"),
    ("all_broken", r"train/right: class 'right' has no readable video"),
    ("unknown_val_class", r"val: class folder\(s\) \['up'\] are not classes of the training set"),
    ("labels_in_config", r"--config: the labels come from the class folders"),
])
def test_bad_data_folders_get_one_line(tmp_path, capsys, case, pattern):
    import re
    data = tmp_path / "data"
    extra = []
    if case == "no_train":
        (data / "training").mkdir(parents=True)
    else:
        make_data(data, per_class=1)
        if case in ("empty_class", "all_broken"):
            for f in (data / "train" / "right").iterdir():
                if f.is_dir():
                    for g in f.iterdir():
                        g.unlink()
                    f.rmdir()
                else:
                    f.unlink()
            if case == "all_broken":
                (data / "train" / "right" / "x.mp4").write_bytes(b"junk")
        elif case == "unknown_val_class":
            (data / "val" / "up").mkdir()
        elif case == "labels_in_config":
            extra = ["num_labels=3"]
    out = tmp_path / "ft"
    code = cli.main(["finetune", "--data", str(data), "--out", str(out), *FAST,
                     "--config", *TINY, *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and re.search(pattern, err[0]), err
    assert not (out / "trainer_state.json").exists()


def test_a_class_missing_from_val_is_a_warning(tmp_path, capsys):
    data = make_data(tmp_path / "data", per_class=1)
    for f in (data / "val" / "right").iterdir():
        for g in f.iterdir():
            g.unlink()
        f.rmdir()
    (data / "val" / "right").rmdir()
    assert cli.main(["finetune", "--data", str(data), "--out", str(tmp_path / "ft"), *FAST,
                     "--config", *TINY]) == 0
    assert "has no video of class 'right'" in capsys.readouterr().out
    metrics = json.loads((tmp_path / "ft" / "metrics.json").read_text())
    assert metrics["eval_videos"] == 1 and metrics["eval_per_class"]["right"] is None


def test_finetune_data_from_a_transformers_checkpoint_keeps_its_size_and_processor(hf, data, tmp_path):
    torch, transformers = hf
    _, init = make_hf_model(hf, "VideoMAEForPreTraining", tmp_path)
    transformers.VideoMAEImageProcessorPil(size={"shortest_edge": 16}, crop_size={"height": 16, "width": 16},
                                           image_mean=[0.4, 0.4, 0.4]).save_pretrained(init)
    out = tmp_path / "ft"
    assert cli.main(["finetune", "--data", str(data), "--init", str(init), "--out", str(out), *FAST]) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["hidden_size"] == 12 and cfg["id2label"] == {"0": "left", "1": "right"}
    assert json.loads((out / "preprocessor_config.json").read_text())["image_mean"] == [0.4, 0.4, 0.4]
    model = transformers.VideoMAEForVideoClassification.from_pretrained(out)
    assert model.config.id2label == {0: "left", 1: "right"}


def test_finetune_data_from_our_pretraining_run(data, tmp_path):
    pt = tmp_path / "pt"
    toy_args = ["--toy", "frames=4", "size=16"]
    assert cli.main(["pretrain", "--out", str(pt), "--steps", "1", "--batch-size", "2", "--threads", "1",
                     "--config", *TINY, *toy_args]) == 0
    out = tmp_path / "ft"
    assert cli.main(["finetune", "--data", str(data), "--init", str(pt), "--out", str(out), *FAST]) == 0
    import videomae_np as vm
    clf = vm.VideoMAEForVideoClassification.from_pretrained(out)
    assert clf.config.hidden_size == 16 and clf.config.id2label == {0: "left", 1: "right"}
    assert json.loads((out / "metrics.json").read_text())["init"] == str(pt)


def test_stride_and_no_flip_without_data_are_refused(tmp_path, capsys):
    assert cli.main(["finetune", "--out", str(tmp_path / "o"), "--no-flip"]) == 1
    assert "--no-flip: sets how clips are taken from --data videos" in capsys.readouterr().err


def test_bad_stride_is_one_line(data, tmp_path, capsys):
    assert cli.main(["finetune", "--data", str(data), "--out", str(tmp_path / "o"), "--stride", "0"]) == 1
    assert "--stride: expected a positive integer or 'segments', found '0'" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------
# predict / evaluate / features
# ------------------------------------------------------------------------------------------------
def test_predict_prints_top_k_json_lines(run, data, capsys):
    videos = [str(data / "val" / "left" / "clip0.mp4"), str(data / "val" / "right" / "clip1")]
    assert cli.main(["predict", "--model", str(run), *videos, "--top-k", "2", "--json"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    rows = [json.loads(x) for x in lines]
    assert [r["video"] for r in rows] == videos
    for r in rows:
        assert sorted(r["labels"]) == ["left", "right"]
        assert r["probabilities"] == sorted(r["probabilities"], reverse=True)
        assert abs(sum(r["probabilities"]) - 1) < 1e-9


def test_predict_without_id2label_names_labels_and_says_so(run, data, tmp_path, capsys):
    import shutil
    m = tmp_path / "m"
    shutil.copytree(run, m, ignore=shutil.ignore_patterns(".lock"))
    cfg = json.loads((m / "config.json").read_text())
    for k in ("id2label", "label2id"):
        cfg.pop(k)
    cfg["num_labels"] = 2
    (m / "config.json").write_text(json.dumps(cfg))
    assert cli.main(["predict", "--model", str(m), str(data / "val" / "left" / "clip0.mp4")]) == 0
    out = capsys.readouterr().out
    assert "has no id2label; classes are named LABEL_0..LABEL_1" in out and "LABEL_" in out


def test_predict_equals_transformers_on_the_same_frames(run, data, hf):
    torch, transformers = hf
    video = data / "val" / "right" / "clip0.mp4"
    import io
    from contextlib import redirect_stdout
    buf = io.StringIO()
    with redirect_stdout(buf):
        assert cli.main(["predict", "--model", str(run), str(video), "--top-k", "2", "--json"]) == 0
    row = json.loads(buf.getvalue().strip().splitlines()[-1])
    ours = dict(zip(row["labels"], row["probabilities"]))
    frames = V.read_video(video)
    idx = V.clip_indices(4, len(frames), 2, train=False)          # the run's saved sampling
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        proc = transformers.VideoMAEImageProcessorPil.from_pretrained(run)
        model = transformers.VideoMAEForVideoClassification.from_pretrained(run).eval()
    px = proc(list(frames[idx]), return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        p = torch.softmax(model(pixel_values=px).logits.double(), -1)[0].numpy()
    ref = {model.config.id2label[i]: p[i] for i in range(len(p))}
    for name, v in ours.items():
        assert abs(v - ref[name]) <= 1e-5 * max(abs(ref[name]), 1e-3), (name, v, ref[name])


def test_evaluate_writes_metrics_and_confusion_and_ends_with_top1(run, data, tmp_path, capsys):
    out = tmp_path / "m.json"
    assert cli.main(["evaluate", "--model", str(run), "--data", str(data / "val"),
                     "--segments", "2", "--crops", "3", "--out", str(out)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    m = json.loads(out.read_text())
    assert lines[-1].startswith(f"top-1 {m['top1']:.1%}")
    assert m["videos"] == 4 and m["segments"] == 2 and m["crops"] == 3 and m["stride"] == 2
    assert np.sum(m["confusion"]) == 4 and m["top5"] == 1.0
    png = tmp_path / "m_confusion.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # one view is what predict computes; the default output goes into the model folder
    assert cli.main(["evaluate", "--model", str(run), "--data", str(data / "val")]) == 0
    assert (run / "eval_metrics.json").is_file() and (run / "confusion.png").is_file()


def test_features_writes_pooled_encoder_features(run, data, tmp_path):
    out = tmp_path / "f.npz"
    assert cli.main(["features", "--model", str(run), "--data", str(data / "train"), "--out", str(out)]) == 0
    with np.load(out) as z:
        assert z["features"].shape == (4, 16) and z["features"].dtype == np.float32
        assert z["labels"].tolist() == [0, 0, 1, 1] and list(z["classes"]) == ["left", "right"]
        assert z["paths"][1].endswith("left/clip1")
        assert np.isfinite(z["features"]).all() and set(z["split"]) == {"train"}
    # the dataset root: every split, classes from train/
    assert cli.main(["features", "--model", str(run), "--data", str(data), "--out", str(out)]) == 0
    with np.load(out) as z:
        assert z["features"].shape == (8, 16) and list(z["split"]) == ["train"] * 4 + ["val"] * 4


def test_evaluate_on_a_dataset_root_names_the_split_to_pass(run, data, capsys):
    assert cli.main(["evaluate", "--model", str(run), "--data", str(data)]) == 1
    assert f"pass {data / 'val'}" in capsys.readouterr().err
