"""The ``videomae-np`` command.

    videomae-np pretrain    [--out runs/pretrain] [--steps N] [--resume] ...
    videomae-np finetune    [--init runs/pretrain] [--out runs/finetune] [--steps N] [--resume] ...
    videomae-np reconstruct --model runs/pretrain --video clip.mp4 [--out picture.png]
    videomae-np ablate      STUDY [--out results] [--seeds 3] [--quick | --pretrain-steps N]   (the paper's ablations)
    videomae-np trace       --model DIR (--random SEED | --video FILE) --out TAPE.safetensors [--grad]
    videomae-np compare     A.safetensors B.safetensors [--rtol R] [--atol A]
    videomae-np convert     --from original CKPT.pth --out DIR
    videomae-np predict     --model DIR VIDEO [VIDEO ...] [--top-k K] [--json]
    videomae-np evaluate    --model DIR --data DIR/val [--segments S] [--crops C] [--out FILE.json]
    videomae-np features    --model DIR --data DIR --out FILE.npz
    videomae-np bench       (timings against transformers; see videomae_np.bench)

Exit codes: 0 done, 1 error (including a non-finite loss), 2 a malformed command line (argparse),
130 interrupted by Ctrl-C (a checkpoint was saved; continue with --resume). An error is one line
on stderr naming the input, what was expected and what was found; set VIDEOMAE_NP_TRACEBACK=1 to
see the Python traceback instead.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130        # 128 + SIGINT, the shell's convention
TRACEBACK_ENV = "VIDEOMAE_NP_TRACEBACK"


def _key_values(text_items, option):
    """["a=1", "b=(1,2)", "c=true"] -> {"a": 1, "b": [1, 2], "c": True} (values read as JSON; a
    value that is not JSON stays a string, and the settings' checks name it if that is wrong)."""
    out = {}
    for item in text_items or ():
        k, eq, v = item.partition("=")
        k = k.strip()
        if not eq or not k:
            raise ValueError(f"{option}: expected KEY=VALUE, found {item!r}")
        if k in out:
            raise ValueError(f"{option}: {k} given twice ({item!r})")
        v = v.strip().replace("(", "[").replace(")", "]")
        try:
            out[k] = json.loads(v)
        except json.JSONDecodeError:
            out[k] = v
    return out


def _common(p, defaults):
    """Options shared by pretrain and finetune. All default to None: the settings dataclass holds
    the real defaults, and on --resume only options actually given are considered."""
    p.add_argument("--out", default=None, help=f"run directory (default {defaults['out']}); one run "
                                                "at a time uses it (OUT/.lock)")
    p.add_argument("--steps", type=int, help=f"total updates (default {defaults['steps']})")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out up to --steps (exactly as if never stopped)")
    p.add_argument("--batch-size", type=int, help=f"clips per update (default {defaults['batch_size']})")
    p.add_argument("--lr", type=float, help=f"peak learning rate (default {defaults['lr']})")
    p.add_argument("--min-lr", type=float, help="learning rate at the end of the cosine (default 0)")
    p.add_argument("--warmup-steps", type=int, help=f"linear warmup (default {defaults['warmup_steps']})")
    p.add_argument("--weight-decay", type=float, help="AdamW decoupled weight decay (default 0.05)")
    p.add_argument("--clip-grad", type=float, help="global gradient-norm clip, 0 = off (default 1.0)")
    p.add_argument("--seed", type=int, help="seed of every random draw (default 0)")
    p.add_argument("--save-every", type=int, help=f"checkpoint interval (default {defaults['save_every']})")
    p.add_argument("--log-every", type=int, help="progress line interval (default 50)")
    p.add_argument("--threads", type=int,
                   help="CPU threads for Numba and BLAS (default: all, or 1 when the machine is already busy)")
    p.add_argument("--config", nargs="+", metavar="KEY=VALUE",
                   help="model config fields over the toy model, e.g. hidden_size=96 num_hidden_layers=6")
    p.add_argument("--toy", nargs="+", metavar="KEY=VALUE",
                   help="toy clip settings (videomae_np.data.toy.ToySpec), e.g. noise=0.05 speed=(1,2)")


def _settings(cls, args, names):
    """Build settings from the options that were given; returns (settings, explicit names)."""
    given = {}
    for n in names:
        v = getattr(args, n, None)
        if v is not None:
            given[n] = v
    if args.config is not None:
        given["model"] = _key_values(args.config, "--config")
    if args.toy is not None:
        given["toy"] = _key_values(args.toy, "--toy")
    if "clip_grad" in given and given["clip_grad"] == 0:
        given["clip_grad"] = None
    return cls(**given), tuple(given)


COMMON = ("steps", "batch_size", "lr", "min_lr", "warmup_steps", "weight_decay", "clip_grad", "seed",
          "save_every", "log_every")


def _registry_help(registry, default):
    """'a: doc; b: doc' for --help from a registry of name -> entry with a .doc (or a plain dict)."""
    return "; ".join(f"{k}: {v.doc}" for k, v in registry.items()) + f". Default {default}."


def build_parser():
    from .masking import MASKS
    from .ops.losses import RECONSTRUCTION_LOSSES
    from .settings import FinetuneSettings, PretrainSettings

    pd, fd = PretrainSettings(), FinetuneSettings()
    parser = argparse.ArgumentParser(
        prog="videomae-np",
        description="VideoMAE in NumPy: pretrain on toy clips, fine-tune, draw reconstructions.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("pretrain", help="masked-autoencoder pretraining (toy clips or a video folder)",
                       description="Pretrain the toy VideoMAE by masked reconstruction; writes the "
                                   "model, trainer state, metrics.jsonl and reconstruction.png.")
    _common(p, {**vars(pd), "out": "runs/pretrain"})
    p.add_argument("--mask-ratio", type=float, help=f"fraction of tokens hidden (default {pd.mask_ratio})")
    p.add_argument("--mask-type", choices=tuple(MASKS), metavar="{" + ",".join(MASKS) + "}",
                   help=_registry_help(MASKS, pd.mask_type))
    p.add_argument("--loss", choices=tuple(RECONSTRUCTION_LOSSES),
                   help=f"reconstruction loss: {', '.join(RECONSTRUCTION_LOSSES)} (default {pd.loss}; "
                        "config norm_pix_loss=false switches to raw-pixel targets)")
    p.add_argument("--data", help="a folder of videos to pretrain on instead of the toy clips")

    f = sub.add_parser("finetune", help="fine-tune a classifier: toy clips' motion, or a folder of videos (--data)",
                       description="Fine-tune a classifier of the toy clips' motion, or of the "
                                   "classes of a video folder (--data DIR with train/ and val/), "
                                   "from a pretrained encoder (--init) or from scratch; evaluates "
                                   "on held-out clips and writes metrics.json.")
    _common(f, {**vars(fd), "out": "runs/finetune"})
    f.add_argument("--init", help="a pretraining run directory (default: from scratch)")
    f.add_argument("--layer-decay", type=float,
                   help="layer-wise lr decay (default 0.75 with --init, none from scratch)")
    f.add_argument("--drop-path", type=float, help=f"stochastic depth (default {fd.drop_path})")
    f.add_argument("--train-clips", type=int, help=f"labelled clips (default {fd.train_clips})")
    f.add_argument("--eval-clips", type=int, help=f"held-out clips (default {fd.eval_clips})")
    f.add_argument("--data", help="a folder train/<class>/<video> (+ val/, test/) of real videos "
                                  "instead of the toy clips (docs/real_videos.md)")
    f.add_argument("--stride", help=f"with --data: frames between a clip's frames (default "
                                    f"{fd.stride}), or 'segments' for one frame per segment")
    f.add_argument("--no-flip", action="store_true",
                   help="with --data: no random horizontal flips (direction-sensitive classes)")
    f.add_argument("--linear-probe", action="store_true",
                   help="freeze the encoder: train only fc_norm and the classifier")

    r = sub.add_parser("reconstruct", help="draw a pretrained model's reconstruction of a video",
                       description="Original | masked input | reconstruction of one video file (or "
                                   "folder of frames) as a PNG.")
    r.add_argument("--model", required=True, help="a pretraining run directory")
    r.add_argument("--video", required=True, help="a video file or a folder of frames")
    r.add_argument("--out", help="PNG path (default: next to the video)")
    r.add_argument("--mask-ratio", type=float, help="default: the pretraining run's")
    r.add_argument("--mask-type", choices=tuple(MASKS), help="default: the pretraining run's")
    r.add_argument("--seed", type=int, default=0)

    from . import ablate, convert, evaluate, tape
    # the commands that bring their own options: name, one-line help, description, add_arguments
    for name, help_, description, add in (
            ("ablate", "one of the paper's ablations at toy scale, beside its tables",
             "Run one study (arms x seeds: pretrain, fine-tune, held-out accuracy) and write "
             "STUDY.json, STUDY.md (our mean ± std beside the paper's number) and STUDY.png. "
             "Restartable: finished runs are kept under OUT/runs and reused.", ablate.add_arguments),
            ("trace", "record every named intermediate of a forward (and backward) pass",
             "Run a model and keep every intermediate under transformers' module paths in a "
             "safetensors tape (docs/tape_format.md).", tape.add_trace_arguments),
            ("compare", "diff two tapes tensor by tensor; names the first divergence",
             "A table of every tensor of two tapes in execution order with max abs and rel "
             "differences; exit 1 when any is beyond tolerance.", tape.add_compare_arguments),
            ("convert", "original VideoMAE / VideoMAE V2 .pth -> config.json + model.safetensors",
             "Convert a checkpoint of the original repositories (never executing pickle) into a "
             "folder that videomae_np and transformers load.", convert.add_arguments),
            ("predict", "top-k labels of videos by a fine-tuned classifier",
             "Per video the top-k class names and probabilities (the clip sampling and processor "
             "saved with the model); --json prints one JSON object per line.",
             evaluate.add_predict_arguments),
            ("evaluate", "multi-view accuracy of a classifier on a folder of class folders",
             "Top-1, top-5 and per-class accuracy over S temporal clips x C spatial crops per "
             "video (softmax scores averaged); writes the metrics JSON and a confusion-matrix PNG.",
             evaluate.add_evaluate_arguments),
            ("features", "mean-pooled encoder features of a folder of class folders -> .npz",
             "features (n, D), labels, paths and classes of every video, for a linear probe or a "
             "nearest-neighbour look.", evaluate.add_features_arguments)):
        add(sub.add_parser(name, help=help_, description=description))

    b = sub.add_parser("bench", help="timings against transformers (videomae_np.bench)", add_help=False)
    b.add_argument("rest", nargs=argparse.REMAINDER)
    return parser


def set_threads(n):
    """Use n threads in the Numba kernels and in BLAS (kernels.threads.set_threads)."""
    from .kernels.threads import set_threads as set_kernel_threads
    set_kernel_threads(n)


# Another busy process makes every parallel kernel wait at its barrier for a descheduled thread:
# on the 2-core machine training ran at 9-50 clips/s with two threads instead of ~450 with one.
BUSY_LOAD = 0.5


BUSY_SAMPLE_S = 0.3   # how long the CPU is watched before choosing the thread count


def _busy_cores(seconds=BUSY_SAMPLE_S):
    """Cores' worth of CPU time used by other processes right now (Linux: /proc/stat sampled over
    `seconds`), or None where that cannot be read. The load average is not used: it still holds
    a minute-old install or build and would send an idle machine to one thread."""
    def sample():
        with open("/proc/stat") as f:
            fields = [float(v) for v in f.readline().split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)      # idle + iowait
        return sum(fields), idle

    try:
        total0, idle0 = sample()
        time.sleep(seconds)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    if total1 <= total0:
        return None
    return (os.cpu_count() or 1) * (1.0 - (idle1 - idle0) / (total1 - total0))


def default_threads():
    """All cores on an idle machine, one when something else is already using the CPU."""
    busy = _busy_cores()
    if busy is None:                                   # no /proc/stat: fall back on the load
        try:
            busy = os.getloadavg()[0]
        except OSError:
            return None
    if busy > BUSY_LOAD:
        _log(f"(the machine is busy, {busy:.1f} cores in use by other processes: training with 1 "
             "thread; --threads N overrides)")
        return 1
    return None


def _log(msg):
    print(msg, flush=True)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "bench":                  # the benchmark parses its own options
        from . import bench
        return bench.main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    from . import runs, train

    try:
        status = _run(args, train)
    except train.TrainingInterrupted as e:
        print(str(e), file=sys.stderr)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as e:
        if os.environ.get(TRACEBACK_ENV):
            raise
        msg = " ".join(str(e.args[0] if isinstance(e, KeyError) and e.args else e).split())
        expected = (train.NonFiniteLoss, runs.RunLocked, ValueError, OSError, ImportError)
        if not isinstance(e, expected):      # a bug of ours: still one line, the traceback on request
            msg = f"unexpected {type(e).__name__}: {msg} (set {TRACEBACK_ENV}=1 for the traceback)"
        print(f"videomae-np {args.command}: {msg}", file=sys.stderr)
        return EXIT_ERROR
    return status or 0


def _run(args, train):
    """Check the arguments (before any thread setting or file is touched), then run the command."""
    from .settings import FinetuneSettings, PretrainSettings
    settings = explicit = None
    if args.command == "pretrain":
        settings, explicit = _settings(PretrainSettings, args,
                                       COMMON + ("mask_ratio", "mask_type", "loss", "data"))
    elif args.command == "finetune":
        settings, explicit = _settings(FinetuneSettings, args,
                                       COMMON + ("init", "layer_decay", "drop_path",
                                                 "train_clips", "eval_clips", "data"))
        extra = {}
        if args.stride is not None:
            from .evaluate import stride_arg
            extra["stride"] = stride_arg(args.stride)
        if args.no_flip:
            extra["flip"] = False
        if args.linear_probe:
            extra["linear_probe"] = True
        toy_only = [o for o, k in (("--stride", "stride"), ("--no-flip", "flip")) if k in extra]
        if toy_only and not settings.data and not args.resume:
            raise ValueError(f"{toy_only[0]}: sets how clips are taken from --data videos; the toy "
                             f"clips (no --data) are whole clips, so it would change nothing")
        if extra:
            settings = dataclasses.replace(settings, **extra)
            explicit = explicit + tuple(extra)
    threads = getattr(args, "threads", None)
    if threads is not None and threads < 1:
        raise ValueError(f"--threads: expected a positive integer, found {threads}")
    if threads is None and args.command in ("pretrain", "finetune"):
        threads = default_threads()
    if threads:
        set_threads(threads)
    if args.command in ("pretrain", "finetune", "ablate"):
        from ._openblas_core import note
        from .kernels.blas import note as blas_note
        for line in (note(), blas_note()):
            if line:
                print(line)
    if args.command == "pretrain":
        train.run_pretrain(settings, args.out or "runs/pretrain", resume=args.resume,
                           explicit=explicit, log=_log)
    elif args.command == "finetune":
        train.run_finetune(settings, args.out or "runs/finetune", resume=args.resume,
                           explicit=explicit, log=_log)
    elif args.command == "ablate":
        from . import ablate
        ablate.run_study(args.study, args.out, seeds=args.seeds, quick=args.quick, jobs=args.jobs,
                         log=_log, pretrain_steps=args.pretrain_steps)
    elif args.command == "reconstruct":
        from .reconstruction import reconstruct_video
        reconstruct_video(args.model, args.video, args.out, args.mask_ratio,
                          args.mask_type, args.seed, log=_log)
    elif args.command in ("trace", "compare"):
        from . import tape
        return (tape.run_trace if args.command == "trace" else tape.run_compare)(args)
    elif args.command == "convert":
        from . import convert
        return convert.run(args)
    elif args.command in ("predict", "evaluate", "features"):
        from . import evaluate
        run = {"predict": evaluate.run_predict, "evaluate": evaluate.run_evaluate,
               "features": evaluate.run_features}[args.command]
        run(args, log=_log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
