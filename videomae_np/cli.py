"""The ``videomae-np`` command.

    videomae-np pretrain    [--out runs/pretrain] [--steps N] [--resume] ...
    videomae-np finetune    [--init runs/pretrain] [--out runs/finetune] [--steps N] [--resume] ...
    videomae-np reconstruct --model runs/pretrain --video clip.mp4 [--out picture.png]
    videomae-np bench       (timings against transformers; see videomae_np.bench)

Exit codes: 0 done, 1 error (including a non-finite loss), 130 interrupted by Ctrl-C (a
checkpoint was saved; continue with --resume).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130        # 128 + SIGINT, the shell's convention


def _key_values(text_items):
    """["a=1", "b=(1,2)", "c=true"] -> {"a": 1, "b": [1, 2], "c": True} (values read as JSON)."""
    out = {}
    for item in text_items or ():
        if "=" not in item:
            raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        v = v.strip().replace("(", "[").replace(")", "]")
        try:
            out[k.strip()] = json.loads(v)
        except json.JSONDecodeError:
            out[k.strip()] = v
    return out


def _common(p, defaults):
    """Options shared by pretrain and finetune. All default to None: the settings dataclass holds
    the real defaults, and on --resume only options actually given are considered."""
    p.add_argument("--out", default=None, help=f"run directory (default {defaults['out']})")
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
        given["model"] = _key_values(args.config)
    if args.toy is not None:
        given["toy"] = _key_values(args.toy)
    if "clip_grad" in given and given["clip_grad"] == 0:
        given["clip_grad"] = None
    return cls(**given), tuple(given)


COMMON = ("steps", "batch_size", "lr", "min_lr", "warmup_steps", "weight_decay", "clip_grad", "seed",
          "save_every", "log_every")


def build_parser():
    from .train import FinetuneSettings, PretrainSettings

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
    p.add_argument("--mask-type", choices=("tube", "random"), help=f"(default {pd.mask_type})")
    p.add_argument("--data", help="a folder of videos to pretrain on instead of the toy clips")

    f = sub.add_parser("finetune", help="classify the toy clips' motion from a small labelled set",
                       description="Fine-tune a classifier of the toy clips' direction of motion "
                                   "from a pretrained encoder (--init) or from scratch; evaluates "
                                   "on held-out clips and writes metrics.json.")
    _common(f, {**vars(fd), "out": "runs/finetune"})
    f.add_argument("--init", help="a pretraining run directory (default: from scratch)")
    f.add_argument("--layer-decay", type=float,
                   help="layer-wise lr decay (default 0.75 with --init, none from scratch)")
    f.add_argument("--drop-path", type=float, help=f"stochastic depth (default {fd.drop_path})")
    f.add_argument("--train-clips", type=int, help=f"labelled clips (default {fd.train_clips})")
    f.add_argument("--eval-clips", type=int, help=f"held-out clips (default {fd.eval_clips})")

    r = sub.add_parser("reconstruct", help="draw a pretrained model's reconstruction of a video",
                       description="Original | masked input | reconstruction of one video file (or "
                                   "folder of frames) as a PNG.")
    r.add_argument("--model", required=True, help="a pretraining run directory")
    r.add_argument("--video", required=True, help="a video file or a folder of frames")
    r.add_argument("--out", help="PNG path (default: next to the video)")
    r.add_argument("--mask-ratio", type=float, help="default: the pretraining run's")
    r.add_argument("--mask-type", choices=("tube", "random"), help="default: the pretraining run's")
    r.add_argument("--seed", type=int, default=0)

    b = sub.add_parser("bench", help="timings against transformers (videomae_np.bench)", add_help=False)
    b.add_argument("rest", nargs=argparse.REMAINDER)
    return parser


def set_threads(n):
    """Use n threads in the Numba kernels and in BLAS."""
    import numba
    from threadpoolctl import threadpool_limits
    numba.set_num_threads(max(1, min(int(n), numba.config.NUMBA_NUM_THREADS)))
    threadpool_limits(int(n))


# Another busy process makes every parallel kernel wait at its barrier for a descheduled thread:
# on the 2-core machine training ran at 9-50 clips/s with two threads instead of ~450 with one.
BUSY_LOAD = 0.5


def default_threads():
    """All cores on an idle machine, one when something else is already using the CPU."""
    try:
        load = os.getloadavg()[0]
    except OSError:
        return None
    if load > BUSY_LOAD:
        _log(f"(the machine is busy, load {load:.1f}: training with 1 thread; --threads N overrides)")
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
    from . import train

    threads = getattr(args, "threads", None)
    if threads is None and args.command in ("pretrain", "finetune"):
        threads = default_threads()
    if threads:
        set_threads(threads)
    try:
        if args.command == "pretrain":
            settings, explicit = _settings(train.PretrainSettings, args,
                                           COMMON + ("mask_ratio", "mask_type", "data"))
            train.run_pretrain(settings, args.out or "runs/pretrain", resume=args.resume,
                               explicit=explicit, log=_log)
        elif args.command == "finetune":
            settings, explicit = _settings(train.FinetuneSettings, args,
                                           COMMON + ("init", "layer_decay", "drop_path",
                                                     "train_clips", "eval_clips"))
            train.run_finetune(settings, args.out or "runs/finetune", resume=args.resume,
                               explicit=explicit, log=_log)
        elif args.command == "reconstruct":
            train.reconstruct_video(args.model, args.video, args.out, args.mask_ratio,
                                    args.mask_type, args.seed, log=_log)
    except train.TrainingInterrupted as e:
        print(str(e), file=sys.stderr)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (train.NonFiniteLoss, FileExistsError, FileNotFoundError, ValueError, ImportError) as e:
        print(f"videomae-np {args.command}: {e}", file=sys.stderr)
        return EXIT_ERROR
    return 0


if __name__ == "__main__":
    sys.exit(main())
