"""Tapes: every named intermediate of one pass through a VideoMAE model, for finding where two
implementations part ways.

A tape is a safetensors file (docs/tape_format.md) holding the inputs, the output of each module
under transformers' module path (``videomae.encoder.layer.3.intermediate``), the loss, and with
gradients the loss's gradient with respect to each of those (``grad:<name>``) and to every
parameter (``grad:param:<key>``). The execution order and the config travel in ``__metadata__``.

    videomae-np trace   --model DIR (--random SEED | --video FILE | --inputs TAPE) --out T.safetensors
                        [--backend numpy|transformers] [--dtype float64|float32] [--grad] ...
    videomae-np compare A.safetensors B.safetensors [--rtol R] [--atol A]

``compare`` prints one row per tensor the two tapes share, in A's execution order, and names the
first tensor beyond tolerance: with both tapes taken on the same inputs, that is the module where
the two implementations first disagree.

The names are those both implementations produce exactly (what a forward hook on transformers'
module sees; for a module returning a tuple, its first element):

    [videomae.]embeddings                    patch embedding + position, visible tokens only (B, Nv, D)
    [videomae.]encoder.layer.i.layernorm_before                                           (B, Nv, D)
    [videomae.]encoder.layer.i.attention.attention   softmax(q k^T / sqrt d) v, heads merged (B, Nv, D)
    [videomae.]encoder.layer.i.attention.output      output projection, before the residual (B, Nv, D)
    [videomae.]encoder.layer.i.layernorm_after       of the first residual sum              (B, Nv, D)
    [videomae.]encoder.layer.i.intermediate          act(fc1)                               (B, Nv, I)
    [videomae.]encoder.layer.i.output                fc2 + residual: the layer's output     (B, Nv, D)
    [videomae.]layernorm                             (use_mean_pooling=False)               (B, Nv, D)
    encoder_to_decoder                                                                      (B, Nv, Dd)
    decoder.decoder_layers.i.<as in the encoder>                                            (B, N, Dd)
    decoder.norm                                     of the last Nm tokens                  (B, Nm, Dd)
    decoder.head                                     the logits                             (B, Nm, P)
    fc_norm                                          of the mean over tokens                (B, D)
    classifier                                       the logits                             (B, K)
    loss                                             scalar; the bare encoder's is sum(last_hidden_state)

torch and transformers are imported only by the transformers backend (the test extra).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np

from . import checkpoint as ckpt
from .fileio import atomic_write, read_json_object
from .models import (TAPE_GRAD, VideoMAEForPreTraining, VideoMAEForVideoClassification,
                     VideoMAEModel)

TAPE_FORMAT = "videomae-tape/1"      # __metadata__["format_version"] of the tapes written here
PARAM_GRAD = TAPE_GRAD + "param:"
INPUTS = ("pixel_values", "bool_masked_pos", "labels")
CLASSES = {c.__name__: c for c in (VideoMAEForPreTraining, VideoMAEForVideoClassification, VideoMAEModel)}
DEFAULT_MASK_RATIO = 0.9             # the paper's tube-masking ratio for pretraining
DEFAULT_RTOL, DEFAULT_ATOL = 1e-5, 1e-8   # numpy.allclose's: |a - b| <= atol + rtol |b|
EXIT_OK, EXIT_DIFFERENT = 0, 1

# safetensors dtype codes of the arrays a tape may hold
_CODES = {np.dtype(np.float64): "F64", np.dtype(np.float32): "F32", np.dtype(np.float16): "F16",
          np.dtype(np.int64): "I64", np.dtype(np.int32): "I32", np.dtype(np.uint8): "U8"}

# the module paths (relative to the encoder or the head model) that a tape records
_BLOCK = r"(layernorm_before|attention\.attention|attention\.output|layernorm_after|intermediate|output)"
_TAPED = re.compile(r"((videomae\.)?(embeddings|layernorm|encoder\.layer\.\d+\." + _BLOCK + r")"
                    r"|encoder_to_decoder|decoder\.decoder_layers\.\d+\." + _BLOCK +
                    r"|decoder\.norm|decoder\.head|fc_norm|classifier)")


class TapeError(ValueError):
    """A tape that cannot be written, read or compared as asked."""


# ------------------------------------------------------------------------------------------------
# recording
# ------------------------------------------------------------------------------------------------
class _Recorder:
    """The ``tape(name, array)`` callable handed down the model: forward names and gradients
    (TAPE_GRAD names) in the order they arrive, each copied (the model updates some in place)."""

    def __init__(self):
        self.forward, self.backward = {}, {}

    def __call__(self, name, value):
        book = self.backward if name.startswith(TAPE_GRAD) else self.forward
        if name in book:
            raise RuntimeError(f"tape: {name!r} recorded twice")
        book[name] = np.array(value, copy=True)


def _kind(model_or_name):
    name = model_or_name if isinstance(model_or_name, str) else type(model_or_name).__name__
    for kind in ("ForPreTraining", "ForVideoClassification"):
        if name.endswith(kind):
            return kind
    return "Model"


def _assemble(inputs, forward, loss, backward, pixel_grad, param_grads):
    tape = dict(inputs)
    tape.update(forward)
    if loss is not None:
        tape["loss"] = loss
    tape.update(backward)
    if pixel_grad is not None:
        tape[TAPE_GRAD + "pixel_values"] = pixel_grad
    tape.update((PARAM_GRAD + k, v) for k, v in param_grads.items())
    return tape


def _inputs(pixel_values, bool_masked_pos, labels):
    out = {"pixel_values": pixel_values}
    if bool_masked_pos is not None:
        out["bool_masked_pos"] = np.asarray(bool_masked_pos).astype(np.uint8)
    if labels is not None:
        out["labels"] = np.asarray(labels)
    return out


def record(model, pixel_values, bool_masked_pos=None, labels=None, grad=False) -> dict:
    """Run one of our models and return its tape: {name: array} in execution order.

    bool_masked_pos: (B, N) bool (pretraining, optional for the bare encoder); labels: for a
    classifier's loss. grad=True adds the gradient of the loss with respect to every recorded
    tensor, the input and every parameter (the bare encoder's loss is sum(last_hidden_state)).
    The model is run as it is: call model.eval() first for a deterministic tape.
    """
    kind = _kind(model)
    rec = _Recorder()
    px = np.asarray(pixel_values).astype(model.dtype, copy=False)
    mask = None if bool_masked_pos is None else np.asarray(bool_masked_pos, dtype=bool)
    kw = {"labels": labels} if kind == "ForVideoClassification" else {"bool_masked_pos": mask}
    if grad:
        out, grads = model.value_and_grad(px, input_grad=True, tape=rec, **kw)
        pixel_grad = grads.pop("pixel_values")
    else:
        out, grads, pixel_grad = model(px, tape=rec, **kw), {}, None
    if kind == "Model":
        loss = np.sum(out.last_hidden_state) if grad else None
    else:
        loss = out.loss
    loss = None if loss is None else np.asarray(loss, dtype=model.dtype)
    return _assemble(_inputs(px, mask, labels), rec.forward, loss, rec.backward, pixel_grad, grads)


def taped_modules(hf_model) -> list[str]:
    """The module paths of a transformers VideoMAE model that a tape records (Identity skipped)."""
    return [name for name, m in hf_model.named_modules()
            if _TAPED.fullmatch(name) and type(m).__name__ != "Identity"]


def record_transformers(hf_model, pixel_values, bool_masked_pos=None, labels=None, grad=False) -> dict:
    """The tape of a transformers VideoMAE model, from forward hooks (and tensor hooks on their
    outputs for the gradients), under the same names as ``record``. Needs torch."""
    import torch

    kind = _kind(hf_model)
    dtype = next(hf_model.parameters()).dtype
    px_np = np.asarray(pixel_values)
    px = torch.tensor(px_np, dtype=dtype).requires_grad_(grad)
    mask = None if bool_masked_pos is None else np.asarray(bool_masked_pos, dtype=bool)
    forward, grads, handles = {}, {}, []

    def hook(name):
        def on_forward(module, args, output):
            t = output[0] if isinstance(output, tuple) else output
            if name in forward:
                raise RuntimeError(f"tape: {name!r} recorded twice")
            forward[name] = t.detach().cpu().numpy().copy()
            if grad and t.requires_grad:
                t.register_hook(lambda g: grads.__setitem__(name, g.detach().cpu().numpy().copy()))
        return on_forward

    for name in taped_modules(hf_model):
        handles.append(hf_model.get_submodule(name).register_forward_hook(hook(name)))
    kw = {}
    if kind == "ForVideoClassification":
        if labels is not None:
            lab = np.asarray(labels)
            kw["labels"] = torch.tensor(lab, dtype=torch.long if lab.dtype.kind in "iu" else dtype)
    elif mask is not None:
        kw["bool_masked_pos"] = torch.tensor(mask)
    try:
        for p in hf_model.parameters():
            p.grad = None
        with torch.set_grad_enabled(grad):
            out = hf_model(pixel_values=px, **kw)
            loss = out.last_hidden_state.sum() if kind == "Model" and grad else getattr(out, "loss", None)
            if grad:
                if loss is None:
                    raise ValueError("gradients need a loss: give the classifier labels")
                loss.backward()
    finally:
        for h in handles:
            h.remove()
    np_dtype = px.detach().numpy().dtype
    loss_np = None if loss is None else np.asarray(loss.detach().cpu().numpy(), dtype=np_dtype)
    backward = {TAPE_GRAD + n: grads[n] for n in reversed(forward) if n in grads}
    params = {}
    if grad:
        for k, p in hf_model.named_parameters():
            params[k] = (np.zeros(tuple(p.shape), np_dtype) if p.grad is None
                         else p.grad.detach().cpu().numpy().copy())
    pixel_grad = px.grad.numpy().copy() if grad and px.grad is not None else None
    return _assemble(_inputs(px.detach().numpy(), mask, labels), forward, loss_np, backward,
                     pixel_grad, params)


# ------------------------------------------------------------------------------------------------
# the file
# ------------------------------------------------------------------------------------------------
def save_tape(path, tape: dict, metadata: dict | None = None):
    """Write a tape as safetensors (atomically). metadata: {str: str}; other values are stored
    as JSON text. "order" (the names in execution order) and "format_version" are added."""
    meta = {"format_version": TAPE_FORMAT}
    for k, v in (metadata or {}).items():
        meta[str(k)] = v if isinstance(v, str) else json.dumps(v)
    meta.setdefault("order", json.dumps(list(tape)))
    header, chunks, offset = {}, [], 0
    for name, value in tape.items():
        a = np.asarray(value)
        a = a if a.flags.c_contiguous else a.copy(order="C")   # (ascontiguousarray makes 0-d 1-d)
        if a.dtype == np.bool_:
            a = a.astype(np.uint8)
        if a.dtype not in _CODES:
            raise TapeError(f"tape entry {name!r} has dtype {a.dtype}; a tape holds "
                            f"{', '.join(sorted(str(d) for d in _CODES))}")
        raw = a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": _CODES[a.dtype], "shape": list(a.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    header["__metadata__"] = meta
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * (-len(hb) % 8)             # the data section starts 8-byte aligned

    def write(f):
        f.write(len(hb).to_bytes(8, "little"))
        f.write(hb)
        for c in chunks:
            f.write(c)
    atomic_write(Path(path), write)


def load_tape(path) -> tuple[dict, dict]:
    """(tape, metadata) of a tape file: tensors in the recorded execution order (metadata
    "order"; without it, the order of the data section), metadata as stored (strings)."""
    tensors, meta = ckpt._read_file(path)
    order = []
    if "order" in meta:
        try:
            order = json.loads(meta["order"])
        except ValueError:
            raise TapeError(f"{path}: __metadata__ 'order' is not a JSON list of names") from None
        if not isinstance(order, list) or not all(isinstance(n, str) for n in order):
            raise TapeError(f"{path}: __metadata__ 'order' is not a JSON list of names")
    names = [n for n in order if n in tensors] + [n for n in tensors if n not in set(order)]
    return {n: tensors[n] for n in names}, dict(meta)


# ------------------------------------------------------------------------------------------------
# comparing two tapes
# ------------------------------------------------------------------------------------------------
def diff(a, b, rtol=DEFAULT_RTOL, atol=DEFAULT_ATOL):
    """(max |a - b|, max |a - b| / |b|, within tolerance) of two arrays, in float64.

    The relative difference counts 0/0 as 0 and x/0 as infinity (numpy.testing's convention);
    within tolerance means |a - b| <= atol + rtol |b| everywhere (NaN is never within)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        return np.inf, np.inf, False
    if a.size == 0:
        return 0.0, 0.0, True
    d = np.abs(a - b)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(d == 0, 0.0, d / np.abs(b))
    ok = bool(np.all(d <= atol + rtol * np.abs(b)))    # False wherever a NaN is
    return float(np.max(d)), float(np.max(rel)), ok


def compare(a_path, b_path, rtol=DEFAULT_RTOL, atol=DEFAULT_ATOL, out=print) -> int:
    """Print the difference table of two tapes; EXIT_OK if every shared tensor is within
    tolerance (and there is at least one), else EXIT_DIFFERENT."""
    ta, ma = load_tape(a_path)
    tb, mb = load_tape(b_path)
    common = [n for n in ta if n in tb]
    width = max([len(n) for n in common] + [6])
    out(f"A: {a_path}  ({_describe(ma)})")
    out(f"B: {b_path}  ({_describe(mb)})")
    out(f"tolerance: |a - b| <= {atol:g} + {rtol:g} |b|")
    out(f"{'tensor':<{width}}  {'shape':<18} {'max abs':>10} {'max rel':>10}")
    first = None
    for n in common:
        a, b = ta[n], tb[n]
        d_abs, d_rel, ok = diff(a, b, rtol, atol)
        shape = str(tuple(a.shape)) if a.shape == b.shape else f"{tuple(a.shape)}!={tuple(b.shape)}"
        mark = "" if ok else "  <-- beyond tolerance"
        out(f"{n:<{width}}  {shape:<18} {d_abs:>10.3e} {d_rel:>10.3e}{mark}")
        if not ok and first is None:
            first = n
    for label, only in (("A", [n for n in ta if n not in tb]), ("B", [n for n in tb if n not in ta])):
        if only:
            out(f"only in {label} ({len(only)}): {', '.join(only)}")
    if not common:
        out("no tensor in common")
        out("first: none")
        return EXIT_DIFFERENT
    out(f"first: {first or 'none'}")
    return EXIT_OK if first is None else EXIT_DIFFERENT


def _describe(meta):
    keys = ("producer", "model_class", "dtype", "grad")
    return ", ".join(f"{k}={meta[k]}" for k in keys if k in meta) or "no metadata"


# ------------------------------------------------------------------------------------------------
# trace: inputs, the model, the command
# ------------------------------------------------------------------------------------------------
def model_class_name(directory, config=None) -> str:
    """The class a tape of ``directory`` runs: config.json's ``architectures`` when it names one
    of ours, else VideoMAEForPreTraining with decoder weights, VideoMAEForVideoClassification with
    a classifier, VideoMAEModel otherwise."""
    from .config import VideoMAEConfig
    config = config or VideoMAEConfig.from_pretrained(directory)
    for name in config.architectures or ():
        if name in CLASSES:
            return name
    keys = ckpt.read_weights(directory).keys()
    if any(k.startswith("decoder.") for k in keys):
        return "VideoMAEForPreTraining"
    if any(k.startswith(("classifier.", "fc_norm.")) for k in keys):
        return "VideoMAEForVideoClassification"
    return "VideoMAEModel"


def random_inputs(config, seed, batch_size=1):
    """Pixels drawn as float32 from N(0, 1) (so float32 and float64 tapes see the same values)."""
    rng = np.random.default_rng(seed)
    h, w = config.image_hw
    shape = (batch_size, config.num_frames, config.num_channels, h, w)
    return rng.standard_normal(shape, dtype=np.float32)


def video_inputs(config, directory, video):
    """One clip as the model wants it: num_frames evenly spaced frames through the image
    processor of ``directory`` (preprocessor_config.json) or one sized to the model."""
    from .processing import VideoMAEImageProcessor
    from .video import read_video

    frames = read_video(video)                                       # (T, H, W, C) uint8
    idx = np.floor(np.linspace(0, len(frames) - 1, config.num_frames)).astype(np.int64)
    if (Path(directory) / "preprocessor_config.json").is_file():
        proc = VideoMAEImageProcessor.from_pretrained(directory)
    else:
        h, w = config.image_hw
        proc = VideoMAEImageProcessor(size={"shortest_edge": min(h, w)}, crop_size={"height": h, "width": w})
    return proc(frames[idx], return_tensors="np")["pixel_values"]


def _labels(config, seed, batch_size, label):
    rng = np.random.default_rng([seed, 2])
    K = config.num_labels
    kind = config.problem_type or ("regression" if K == 1 else "single_label_classification")
    if kind == "single_label_classification":
        if label is not None:
            if not 0 <= label < K:
                raise TapeError(f"--label must lie in [0, {K}) for this classifier, got {label}")
            return np.full(batch_size, label, np.int64)
        return rng.integers(0, K, size=batch_size).astype(np.int64)
    if kind == "regression":
        return rng.standard_normal((batch_size, K)).astype(np.float32).reshape(batch_size, K)
    return (rng.random((batch_size, K)) < 0.5).astype(np.float32)          # multi-label


def trace(args) -> dict:
    """Build the inputs, run the model on the chosen backend, write the tape; returns it."""
    from .config import VideoMAEConfig
    from .masking import tube_mask

    directory = Path(args.model)
    config = VideoMAEConfig.from_pretrained(directory)
    cls_name = args.model_class or model_class_name(directory, config)
    kind = _kind(cls_name)
    dtype = np.dtype(args.dtype).type
    seed = args.random if args.random is not None else args.seed
    labels = mask = ratio = None
    if args.inputs is not None:
        given, _ = load_tape(args.inputs)
        if "pixel_values" not in given:
            raise TapeError(f"--inputs {args.inputs}: the tape holds no pixel_values")
        px = given["pixel_values"]
        if "bool_masked_pos" in given:
            mask = given["bool_masked_pos"].astype(bool)
        labels = given.get("labels")
    else:
        px = (random_inputs(config, seed, args.batch_size) if args.random is not None
              else video_inputs(config, directory, args.video))
    B = px.shape[0]
    if kind == "ForVideoClassification":
        if args.mask_ratio is not None:
            raise TapeError("--mask-ratio: a video classifier sees every token; leave it out")
        mask = None
        if labels is None:                    # always labels, so that the tape holds the loss
            labels = _labels(config, seed, B, args.label)
    else:
        labels = None
        ratio = args.mask_ratio
        if ratio is None and kind == "ForPreTraining" and mask is None:
            ratio = DEFAULT_MASK_RATIO
        if ratio is not None:
            mask = tube_mask(B, config.grid, ratio, rng=np.random.default_rng([seed, 1]))
    px = px.astype(dtype)
    if args.backend == "numpy":
        model = CLASSES[cls_name].from_pretrained(directory, dtype=dtype).eval()
        tape = record(model, px, mask, labels, grad=args.grad)
        producer = "videomae_np"
    else:
        try:
            import torch
            import transformers
        except ImportError as e:
            raise ImportError(f"--backend transformers needs torch and transformers (the test extra): {e}") from None
        hf_model = getattr(transformers, cls_name).from_pretrained(directory, attn_implementation="eager")
        hf_model = hf_model.to({np.float64: torch.float64, np.float32: torch.float32}[dtype]).eval()
        tape = record_transformers(hf_model, px, mask, labels, grad=args.grad)
        producer = f"transformers {transformers.__version__}"
    source = (f"tape {args.inputs}" if args.inputs is not None else
              f"random seed {args.random}" if args.random is not None else f"video {args.video}")
    meta = {"producer": producer, "model_class": cls_name, "dtype": np.dtype(dtype).name,
            "grad": "true" if args.grad else "false", "inputs": source,
            "config": json.dumps(read_json_object(directory / "config.json"), sort_keys=True)}
    if mask is not None:
        meta["mask"] = (f"tube, ratio {ratio}, seed {seed}" if ratio is not None else
                        f"from the tape {args.inputs}")
    save_tape(args.out, tape, meta)
    return tape


def add_trace_arguments(p: argparse.ArgumentParser):
    p.add_argument("--model", required=True, help="a model folder (config.json + model.safetensors)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--random", type=int, metavar="SEED", help="random N(0, 1) pixels from this seed")
    src.add_argument("--video", help="a video file or folder of frames (through the image processor)")
    src.add_argument("--inputs", metavar="TAPE", help="the inputs (pixels, mask, labels) of another tape")
    p.add_argument("--mask-ratio", type=float,
                   help=f"tube-mask ratio (pretraining default {DEFAULT_MASK_RATIO}; the bare encoder: no mask)")
    p.add_argument("--seed", type=int, default=0, help="seed of the mask and labels with --video (default 0)")
    p.add_argument("--batch-size", type=int, default=1, help="clips with --random (default 1)")
    p.add_argument("--label", type=int, help="the class of every clip (a classifier; default drawn from the seed)")
    p.add_argument("--dtype", choices=("float64", "float32"), default="float64", help="default float64")
    p.add_argument("--backend", choices=("numpy", "transformers"), default="numpy",
                   help="videomae_np (default) or transformers' model from the same folder")
    p.add_argument("--model-class", choices=tuple(CLASSES),
                   help="default: config.json's architectures, else from the weights")
    p.add_argument("--grad", action="store_true", help="also the gradients of the loss")
    p.add_argument("--out", required=True, help="the tape to write (.safetensors)")
    p.set_defaults(tape_run=run_trace)


def add_compare_arguments(p: argparse.ArgumentParser):
    p.add_argument("a", help="tape A (its execution order is the table's)")
    p.add_argument("b", help="tape B")
    p.add_argument("--rtol", type=float, default=DEFAULT_RTOL, help=f"default {DEFAULT_RTOL:g}")
    p.add_argument("--atol", type=float, default=DEFAULT_ATOL, help=f"default {DEFAULT_ATOL:g}")
    p.set_defaults(tape_run=run_compare)


def run_trace(args) -> int:
    if args.batch_size < 1:
        return _fail("trace", f"--batch-size must be positive, got {args.batch_size}")
    try:
        tape = trace(args)
    except (ValueError, TypeError, KeyError, OSError, ImportError) as e:
        return _fail("trace", e)
    print(f"{args.out}: {len(tape)} tensors", flush=True)
    return EXIT_OK


def run_compare(args) -> int:
    for name in ("rtol", "atol"):
        if not getattr(args, name) >= 0:
            return _fail("compare", f"--{name} must be >= 0, got {getattr(args, name)}")
    try:
        return compare(args.a, args.b, args.rtol, args.atol)
    except (ValueError, OSError) as e:
        return _fail("compare", e)


def _fail(command, e) -> int:
    msg = e.args[0] if isinstance(e, KeyError) and e.args else e
    print(f"videomae-np {command}: {msg}", file=sys.stderr)
    return EXIT_DIFFERENT


def add_arguments(parser: argparse.ArgumentParser):
    """The two commands as sub-commands of ``parser`` (``trace ...`` and ``compare ...``)."""
    sub = parser.add_subparsers(dest="tape_command", metavar="{trace,compare}", required=True)
    add_trace_arguments(sub.add_parser("trace", help="record a model's intermediates into a tape"))
    add_compare_arguments(sub.add_parser("compare", help="compare two tapes tensor by tensor"))


def run(args) -> int:
    return args.tape_run(args)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="videomae-np", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
