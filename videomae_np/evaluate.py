"""A fine-tuned classifier on real videos: ``predict``, ``evaluate`` and ``features``.

    videomae-np predict  --model DIR VIDEO [VIDEO ...] [--top-k K] [--json]
    videomae-np evaluate --model DIR --data DIR/val [--segments S] [--crops C] [--out FILE.json]
    videomae-np features --model DIR --data DIR/val --out FILE.npz

--model is a ``finetune --data`` run or any transformers VideoMAEForVideoClassification folder.
The frames a clip takes come from the run's trainer_state.json (stride, or segment sampling) and
the model's num_frames; the pixels from its preprocessor_config.json (else transformers' defaults
sized to the model). A folder without a saved sampling uses --stride (default 4) and says so.

Multi-view testing (the original VideoMAE's): S temporal clips x C spatial crops per video, the
softmax scores averaged. Temporal views: dense clips start evenly from the first to the last
possible start frame (S = 1: the middle clip); segment sampling takes frame (s + 1/2) / S of each
segment. Spatial crops: C = 1 is the processor's centre crop; C > 1 takes C squares along the
longer side (left, centre, right for C = 3), each resized to the model's input by the processor.
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import numpy as np

from . import video as V
from .config import VideoMAEConfig
from .data.clips import DEFAULT_MAX_WORKERS, WORKERS_ENV, ClipLoader, check_workers, loader_spec, views_task
from .data.progress import progress
from .data.videos import VideoSplit, processor_for
from .fileio import atomic_write, atomic_write_text, read_json_object

DEFAULT_STRIDE = 4          # the original's frame_sample_rate for Kinetics-400 fine-tuning
METRICS_NAME = "eval_metrics.json"
CONFUSION_NAME = "confusion.png"


def stride_arg(text):
    """--stride: a positive integer, or 'segments' for TSN-style segment sampling (-> None)."""
    if str(text).lower() in ("segments", "segment", "tsn"):
        return None
    try:
        v = int(text)
    except ValueError:
        v = 0
    if v < 1:
        raise ValueError(f"--stride: expected a positive integer or 'segments', found {text!r}")
    return v


def softmax(logits):                          # (B, K) -> (B, K) float64
    z = np.asarray(logits, np.float64)
    z = z - z.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


# ------------------------------------------------------------------------------------------------
# loading a classifier with its processor and sampling
# ------------------------------------------------------------------------------------------------
def load_classifier(model_dir, stride="saved", log=print):
    """-> (model in eval mode, processor, stride (int, or None for segments), class names)."""
    from .models import VideoMAEForVideoClassification
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise FileNotFoundError(f"--model {model_dir}: expected a fine-tuned model folder "
                                f"(config.json + model.safetensors), found "
                                f"{'a file' if model_dir.exists() else 'nothing'}")
    cfg = VideoMAEConfig.from_pretrained(model_dir)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # a missing head is refused below, in one line
        model = VideoMAEForVideoClassification.from_pretrained(model_dir, config=cfg)
    missing = model.loading_info["missing_keys"]
    if missing:
        raise ValueError(f"--model {model_dir}: expected a video classifier, found a checkpoint "
                         f"without its head ({', '.join(missing[:4])} missing); fine-tune it first")
    model.eval()
    raw = read_json_object(model_dir / "config.json")
    if "id2label" not in raw:
        log(f"note: {model_dir / 'config.json'} has no id2label; classes are named "
            f"LABEL_0..LABEL_{cfg.num_labels - 1}")
    classes = [cfg.id2label[i] for i in range(cfg.num_labels)]
    if stride == "saved":
        stride = _saved_stride(model_dir, log)
    proc = processor_for(cfg, model_dir)
    return model, proc, stride, classes


def _saved_stride(model_dir, log):
    path = Path(model_dir) / "trainer_state.json"
    if path.is_file():
        settings = read_json_object(path).get("settings", {})
        if isinstance(settings, dict) and settings.get("data") and "stride" in settings:
            return settings["stride"]
    log(f"note: {model_dir} records no frame sampling (no finetune --data trainer_state.json); "
        f"using clips of a frame every {DEFAULT_STRIDE} (--stride to choose)")
    return DEFAULT_STRIDE


# ------------------------------------------------------------------------------------------------
# scores of one video
# ------------------------------------------------------------------------------------------------
def view_pixels(path, frame_count, proc, num_frames, stride, segments=1, crops=1, log=print):
    """(segments * crops, T, C, H, W) float32 pixel values of the views of one video (the job a
    clip worker runs, data/clips.py, done here)."""
    spec = loader_spec([(path, 0, frame_count)], proc, num_frames, stride)
    with ClipLoader(spec, lambda i: views_task(i, segments, crops), stop=1, workers=0, log=log) as views:
        return views.get(0)


def video_probabilities(model, proc, path, num_frames, stride, segments=1, crops=1, frame_count=None,
                        log=print):
    """Softmax scores averaged over the views of one video -> (num_labels,) float64."""
    if frame_count is None:
        frame_count = V.count_frames(path)
    x = view_pixels(path, frame_count, proc, num_frames, stride, segments, crops, log=log)
    return softmax(model(x).logits).mean(0)


def _views(segments, crops):
    for name, v in (("--segments", segments), ("--crops", crops)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name}: expected a positive integer, found {v!r}")


def _video_views(videos, proc, num_frames, stride, segments=1, crops=1, workers=None, log=print):
    """A ClipLoader of each video's views, decoded ahead in worker processes. videos: a
    VideoSplit or (path, label, frame count) rows."""
    spec = loader_spec(videos, proc, num_frames, stride)
    return ClipLoader(spec, lambda i: views_task(i, segments, crops), stop=len(spec["videos"]),
                      workers=workers, log=log)


# ------------------------------------------------------------------------------------------------
# evaluate
# ------------------------------------------------------------------------------------------------
def evaluate_clips(model, x, y, batch=128):
    """(accuracy, mean cross-entropy) of a classifier on clips x (n, T, C, H, W) with labels y
    (n,) held in memory (the toy clips), one view a clip, in eval mode."""
    was = model.training
    model.eval()
    try:
        correct, loss = 0, 0.0
        for i in range(0, len(y), batch):
            out = model(x[i:i + batch], labels=y[i:i + batch])
            correct += int((np.argmax(out.logits, -1) == y[i:i + batch]).sum())
            loss += float(out.loss) * len(y[i:i + batch])
    finally:
        model.train(was)
    return correct / len(y), loss / len(y)


def evaluate_split(model, proc, split: VideoSplit, num_frames, stride, segments=1, crops=1, log=print,
                   workers=None):
    """Multi-view accuracy of a classifier over a split -> dict of metrics (and the scores).
    workers: clip-decoding processes (data/clips.py; None: the default)."""
    _views(segments, crops)
    was = model.training
    model.eval()
    K = model.config.num_labels
    probs = np.zeros((len(split), K))
    try:
        with _video_views(split, proc, num_frames, stride, segments, crops, workers, log) as views, \
                progress("evaluate", len(split), unit="video", log=log, final_line=True) as bar:
            for i in range(len(split)):
                probs[i] = softmax(model(views.get(i)).logits).mean(0)
                bar.update()
    finally:
        model.train(was)
    y = split.labels
    order = np.argsort(-probs, axis=1, kind="stable")
    top1 = float(np.mean(order[:, 0] == y))
    k5 = min(5, K)
    top5 = float(np.mean((order[:, :k5] == y[:, None]).any(1)))
    confusion = np.zeros((K, K), np.int64)
    np.add.at(confusion, (y, order[:, 0]), 1)
    names = [model.config.id2label[i] for i in range(K)]
    per_class = {names[c]: (float(confusion[c, c] / confusion[c].sum()) if confusion[c].sum() else None)
                 for c in range(K)}
    return {"top1": top1, "top5": top5, "top5_k": k5, "videos": len(split),
            "per_class_accuracy": per_class, "confusion": confusion.tolist(), "classes": names,
            "segments": segments, "crops": crops, "probabilities": probs}


def save_confusion_png(path, confusion, classes, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    cm = np.asarray(confusion)
    k = len(classes)
    fig, ax = plt.subplots(figsize=(2 + 0.5 * k, 1.6 + 0.5 * k), dpi=100)
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(k), classes, rotation=90)
    ax.set_yticks(range(k), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    if k <= 30:
        for i in range(k):
            for j in range(k):
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if cm[i, j] > cm.max() / 2 else "black")
    fig.tight_layout()
    try:
        atomic_write(path, lambda f: fig.savefig(f, format="png"))
    finally:
        plt.close(fig)


def run_evaluate(args, log=print):
    _views(args.segments, args.crops)
    stride = "saved" if args.stride is None else stride_arg(args.stride)
    model, proc, stride, classes = load_classifier(args.model, stride, log)
    if (Path(args.data) / "train").is_dir() and "train" not in classes:
        raise ValueError(f"--data {args.data}: expected one split (class folders), found a dataset "
                         f"root with train/; pass {Path(args.data) / 'val'} (or test/)")
    split = VideoSplit(args.data, classes=classes, warn=log, require_every_class=False)
    out = Path(args.out) if args.out else Path(args.model) / METRICS_NAME
    if out.suffix.lower() != ".json":
        raise ValueError(f"--out: expected a .json file for the metrics, found {out}")
    if not out.parent.is_dir():
        raise FileNotFoundError(f"--out {out}: folder {out.parent} does not exist")
    cfg = model.config
    log(f"evaluating {args.model} on {len(split)} videos of {args.data} "
        f"({args.segments} clip(s) x {args.crops} crop(s) per video)")
    res = evaluate_split(model, proc, split, cfg.num_frames, stride, args.segments, args.crops, log,
                         workers=getattr(args, "workers", None))
    res.pop("probabilities")
    res.update({"model": str(args.model), "data": str(args.data), "stride": stride,
                "num_frames": cfg.num_frames, "skipped": [str(p) for p in split.skipped]})
    png = out.with_name(out.stem + "_" + CONFUSION_NAME) if args.out else Path(args.model) / CONFUSION_NAME
    save_confusion_png(png, res["confusion"], classes,
                       f"{Path(args.data).name}: top-1 {res['top1']:.1%} ({len(split)} videos)")
    res["confusion_png"] = str(png)
    atomic_write_text(out, json.dumps(res, indent=2, sort_keys=True) + "\n")
    for name, acc in res["per_class_accuracy"].items():
        log(f"  {name:<24s} {'-' if acc is None else f'{acc:.1%}'}")
    log(f"wrote {out} and {png}")
    log(f"top-1 {res['top1']:.1%}  top-{res['top5_k']} {res['top5']:.1%}  on {len(split)} videos")
    return res


# ------------------------------------------------------------------------------------------------
# predict
# ------------------------------------------------------------------------------------------------
def predict(model_dir, videos, top_k=5, stride="saved", log=print, workers=None):
    """-> list of {"video", "labels", "probabilities"} (top_k of each, highest first).

    Each video's middle clip is decoded alone (video.read_frames): memory holds num_frames
    frames of it, never the video. Several videos are decoded ahead in worker processes."""
    model, proc, stride, classes = load_classifier(model_dir, stride, log)
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"--top-k: expected a positive integer, found {top_k!r}")
    k = min(top_k, len(classes))
    rows = [(path, 0, V.count_frames(path)) for path in videos]     # a bad file stops here, named
    results = []
    with _video_views(rows, proc, model.config.num_frames, stride, workers=workers, log=log) as views, \
            progress("predict", len(rows), unit="video", log=log) as bar:
        for i, path in enumerate(videos):
            p = softmax(model(views.get(i)).logits).mean(0)
            order = np.argsort(-p, kind="stable")[:k]
            results.append({"video": str(path), "labels": [classes[j] for j in order],
                            "probabilities": [float(p[j]) for j in order]})
            bar.update()
    return results


def run_predict(args, log=print, emit=print):
    stride = "saved" if args.stride is None else stride_arg(args.stride)
    note = log if not args.json else (lambda m: None)    # keep --json output pure JSON lines
    for r in predict(args.model, args.videos, args.top_k, stride, log=note,
                     workers=getattr(args, "workers", None)):
        if args.json:
            emit(json.dumps(r))
        else:
            emit(r["video"])
            for name, p in zip(r["labels"], r["probabilities"]):
                emit(f"  {p:7.2%}  {name}")
    return 0


# ------------------------------------------------------------------------------------------------
# features
# ------------------------------------------------------------------------------------------------
def run_features(args, log=print):
    """Mean-pooled encoder features (last hidden state averaged over tokens, before fc_norm) of
    every video of a class-folder split -> OUT.npz with features (n, D) float32, labels (n,)
    int64, paths (n,), classes, and split (n,) naming each video's split. --data is one split
    (class folders) or a dataset root with train/ (then every split it has, classes from train)."""
    from .models import VideoMAEModel
    out = Path(args.out)
    if out.suffix.lower() != ".npz":
        raise ValueError(f"--out: expected a .npz file, found {out}")
    if not out.parent.is_dir():
        raise FileNotFoundError(f"--out {out}: folder {out.parent} does not exist")
    model_dir = Path(args.model)
    stride = "saved" if args.stride is None else stride_arg(args.stride)
    if stride == "saved":
        stride = _saved_stride(model_dir, log) if model_dir.is_dir() else DEFAULT_STRIDE
    if not model_dir.is_dir():
        raise FileNotFoundError(f"--model {model_dir}: expected a model folder, found "
                                f"{'a file' if model_dir.exists() else 'nothing'}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # the head of a classifier is not needed here
        model = VideoMAEModel.from_pretrained(model_dir)
    cfg = model.config
    proc = processor_for(cfg, model_dir)
    data = Path(args.data)
    if (data / "train").is_dir():
        from .data.videos import open_splits
        splits = {k: v for k, v in open_splits(data, warn=log).items() if v is not None}
    else:
        splits = {data.name: VideoSplit(data, warn=log, require_every_class=False)}
    videos = [(name, v) for name, sp in splits.items() for v in sp.videos]
    classes = next(iter(splits.values())).classes
    feats = np.zeros((len(videos), cfg.hidden_size), np.float32)
    with _video_views([v for _, v in videos], proc, cfg.num_frames, stride,
                      workers=getattr(args, "workers", None), log=log) as views, \
            progress("features", len(videos), unit="video", log=log, final_line=True) as bar:
        for i in range(len(videos)):
            feats[i] = model(views.get(i)).last_hidden_state.mean(1)[0]   # (1, N, D) -> mean over tokens
            bar.update()
    arrays = {"features": feats, "labels": np.array([v.label for _, v in videos], np.int64),
              "paths": np.array([str(v.path) for _, v in videos]),
              "split": np.array([name for name, _ in videos]), "classes": np.array(classes)}
    atomic_write(out, lambda f: np.savez(f, **arrays))
    log(f"wrote {out}: {len(videos)} videos x {cfg.hidden_size} features, {len(classes)} classes")
    return 0


# ------------------------------------------------------------------------------------------------
# command-line options
# ------------------------------------------------------------------------------------------------
def _stride_option(p):
    p.add_argument("--stride", help="frames between a clip's frames, or 'segments' (default: the "
                                    f"run's saved sampling, else {DEFAULT_STRIDE})")
    p.add_argument("--workers", type=_workers_arg,
                   help=f"processes decoding videos ahead of the model (default ${WORKERS_ENV}, else "
                        f"min({DEFAULT_MAX_WORKERS}, cores); 0 decodes in this process)")


def _workers_arg(text):
    try:
        return check_workers(int(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of worker processes >= 0, found {text!r}") from None


def add_predict_arguments(p):
    p.add_argument("--model", required=True, help="a fine-tuned classifier folder")
    p.add_argument("videos", nargs="+", metavar="VIDEO", help="video files or folders of frames")
    p.add_argument("--top-k", type=int, default=5, help="labels shown per video (default 5)")
    p.add_argument("--json", action="store_true", help="one JSON object per video and line")
    _stride_option(p)


def add_evaluate_arguments(p):
    p.add_argument("--model", required=True, help="a fine-tuned classifier folder")
    p.add_argument("--data", required=True, help="a folder of class folders, e.g. DATA/val")
    p.add_argument("--segments", type=int, default=1, help="temporal clips per video (default 1)")
    p.add_argument("--crops", type=int, default=1, help="spatial crops per clip (default 1; 3 as "
                                                        "in the paper's tables)")
    p.add_argument("--out", help=f"metrics JSON (default MODEL/{METRICS_NAME}); the confusion "
                                 "matrix PNG is written beside it")
    _stride_option(p)


def add_features_arguments(p):
    p.add_argument("--model", required=True, help="a model folder (any VideoMAE checkpoint)")
    p.add_argument("--data", required=True, help="a folder of class folders (e.g. DATA/train), or "
                                                 "DATA itself for every split")
    p.add_argument("--out", required=True, help="the .npz to write")
    _stride_option(p)
