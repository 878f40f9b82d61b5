"""VideoMAEModel, VideoMAEForPreTraining, VideoMAEForVideoClassification.

Thin classes over the functional core in ``ops/``: each holds its parameters in a flat dict under
transformers' key names (``state_dict()``), runs a forward that keeps the caches of every op, and a
backward that reads the forward in reverse (``value_and_grad``). The method's phases are free
functions, each a ``*_forward`` / ``*_backward`` pair with a named cache; the classes compose them:

    encoder:   video -> visible tubelets -> patch embed + pos -> L blocks -> [layernorm]
    pretrain:  encoder -> decoder: encoder_to_decoder, + pos  |  mask_token + pos  -> decoder blocks
               -> last Nm tokens -> norm -> head -> reconstruction loss against the masked patches
    classify:  encoder -> classifier: mean over tokens -> fc_norm  (or token 0) -> classifier -> loss

    encoder_forward / encoder_backward                            all three classes
    decoder_forward / decoder_backward,
    reconstruction_loss_forward / reconstruction_loss_backward     VideoMAEForPreTraining
    classifier_forward / classifier_backward,
    classification_loss_forward / classification_loss_backward     VideoMAEForVideoClassification
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np

from . import checkpoint as ckpt
from . import kernels
from .config import VideoMAEConfig
from .masking import visible_and_masked_indices
from .ops.dropout import Drop, drop_path_rates
from .ops.block import block_backward, block_forward, block_param_names
from .ops.layernorm import LayerNormCache, layernorm_backward, layernorm_forward
from .ops.linear import LinearCache, linear_backward, linear_forward
from .ops.losses import CLASSIFICATION_LOSSES, RECONSTRUCTION_LOSSES
from .ops.patch_embed import PatchEmbedCache, patch_embed_backward, patch_embed_forward
from .outputs import BaseModelOutput, ImageClassifierOutput, VideoMAEForPreTrainingOutput
from .params import (BASE_PREFIX, PATCH_B, PATCH_W, base_shapes, classification_shapes, init_params,
                     layer_key, pretraining_shapes, stack_qkv)
from .pixels import pixel_targets
from .positions import sinusoid_table

HEAD_NORM_EPS = 1e-5       # decoder.norm and fc_norm are nn.LayerNorm with torch's default eps
DTYPES = (np.float32, np.float64)


def _one_blas_thread(method):
    """Run a model entry point with BLAS single-threaded throughout (kernels.one_blas_thread), so
    the kernels inside do not each switch the BLAS thread count back and forth."""
    @functools.wraps(method)
    def wrapped(*args, **kwargs):
        with kernels.one_blas_thread():
            return method(*args, **kwargs)
    return wrapped


# A tape (videomae_np/tape.py) is a recorder ``tape(name, array)`` handed every intermediate under
# transformers' module path, and in backward the gradient of each under TAPE_GRAD + that path.
# It is None in ordinary use: then nothing is recorded and nothing changes.
TAPE_GRAD = "grad:"


def _sub(tape, prefix):
    """The recorder that files names under ``prefix`` (None when not recording)."""
    return None if tape is None else (lambda name, value: tape(prefix + name, value))


# ------------------------------------------------------------------------------------------------
# input checks
# ------------------------------------------------------------------------------------------------
def _check_pixels(cfg, pixel_values, dtype):
    x = np.asarray(pixel_values)
    if x.ndim != 5:
        raise ValueError(f"pixel_values must be (batch, frames, channels, height, width); got shape {x.shape}")
    B, T, C, H, W = x.shape
    if C != cfg.num_channels:
        raise ValueError(f"pixel_values has {C} channels (axis 2), the config expects {cfg.num_channels}")
    if (H, W) != cfg.image_hw:
        raise ValueError(f"pixel_values frames are {H}x{W}, the config expects {cfg.image_hw[0]}x{cfg.image_hw[1]}")
    if T != cfg.num_frames:
        raise ValueError(f"pixel_values has {T} frames (axis 1), the config expects {cfg.num_frames}")
    if B < 1:
        raise ValueError("pixel_values holds an empty batch")
    if x.dtype not in (np.float32, np.float64):
        # transformers' Conv3d refuses them too; a silent cast would feed 0..255 pixels to the model
        raise TypeError(f"pixel_values must be float32 or float64 (the image processor's output); got "
                        f"{x.dtype}; run VideoMAEImageProcessor or divide by 255")
    x = x.astype(dtype, copy=False)
    if not np.isfinite(x).all():
        raise ValueError("pixel_values contains NaN or infinite values")
    return x


def _check_mask(cfg, mask, batch):
    if mask is None:
        return None
    m = np.asarray(mask)
    if m.dtype != np.bool_:
        raise TypeError(f"bool_masked_pos must be a bool array (True = masked), got dtype {m.dtype}")
    if m.shape != (batch, cfg.num_patches):
        raise ValueError(f"bool_masked_pos must have shape (batch, num_patches) = "
                         f"({batch}, {cfg.num_patches}), got {m.shape}")
    counts = m.sum(axis=1)
    if np.any(counts != counts[0]):
        raise ValueError(f"every sample must mask the same number of tokens; counts per sample are "
                         f"{counts.tolist()}")
    if counts[0] == cfg.num_patches:
        raise ValueError("bool_masked_pos masks every token: the encoder needs at least one visible token")
    return m


def _head_mask(head_mask, num_layers, num_heads, dtype):
    if head_mask is None:
        return [None] * num_layers
    hm = np.asarray(head_mask, dtype=dtype)
    if hm.shape == (num_heads,):
        hm = np.broadcast_to(hm, (num_layers, num_heads))
    if hm.shape != (num_layers, num_heads):
        raise ValueError(f"head_mask must have shape (num_heads,) = ({num_heads},) or (num_layers, "
                         f"num_heads) = ({num_layers}, {num_heads}); got {np.shape(head_mask)}")
    return [np.ascontiguousarray(hm[i]) for i in range(num_layers)]


# ------------------------------------------------------------------------------------------------
# the phases of the method, each a forward/backward pair (MAE's forward_encoder, forward_decoder,
# forward_loss). Each forward returns its outputs and a named cache; each backward reads that cache,
# fills the parameter gradients it owns into ``grads`` and returns the gradient of its input.
#
# Flags are keyword-only and keep one name all the way down, through ops/ and kernels/ (the public
# methods translate transformers' names once, at the top):
#   keep_hidden  return every layer's hidden state            (public: output_hidden_states)
#   keep_probs   return the attention probabilities           (public: output_attentions)
#   keep_cache   keep every block's cache for backward        (set by value_and_grad)
#   need_dx      compute the gradient of a function's input;  (public: value_and_grad's input_grad)
#                here d(pixel_values), in ops/linear and ops/patch_embed d(their input)
# ------------------------------------------------------------------------------------------------
class EncoderCache(NamedTuple):
    patch_embed: PatchEmbedCache   # the embedded tubelets' columns (B Nv, C*t*p*p)
    vis_idx: object                # (B, Nv) int positions of the visible tokens | None (all N)
    blocks: list                   # one BlockCache per layer (empty unless keep_cache)
    layernorm: object              # LayerNormCache of the last hidden state (B, Nv, D) | None (mean pooling)


def encoder_forward(P, prefix, cfg, pos, x, mask, head_masks, drops=None, *, keep_hidden, keep_probs,
                    keep_cache, tape=None):
    """x: (B, T, C, H, W), mask: (B, N) bool | None, pos: (N, D) -> tokens (B, Nv, D), hidden states
    (tuple of L+1 (B, Nv, D) | None), attentions (tuple of L (B, h, Nv, Nv) | None), EncoderCache.

    head_masks: per-layer (h,) | None; drops: per-layer ops.dropout.Drop (training) or None."""
    vis_idx = None
    if mask is not None:                        # only the visible tubelets are embedded
        vis_idx, _ = visible_and_masked_indices(mask)
    tokens, c_pe = patch_embed_forward(x, P[prefix + PATCH_W], P[prefix + PATCH_B],
                                       cfg.tubelet_size, cfg.patch_size, vis_idx)  # (B, Nv, D)
    tokens += pos if vis_idx is None else pos[vis_idx]                         # each its position
    if tape is not None:
        tape(prefix + "embeddings", tokens)
    h = tokens
    hidden, attns, caches = [h], [], []
    names = block_param_names(cfg.qv_bias)
    for i in range(cfg.num_hidden_layers):
        p = {n: P[layer_key(prefix, i, n)] for n in names}
        h, probs, c = block_forward(h, p, cfg.num_attention_heads, cfg.layer_norm_eps, cfg.hidden_act,
                                    head_masks[i], drops[i] if drops else None, keep_probs=keep_probs,
                                    tape=_sub(tape, f"{prefix}encoder.layer.{i}."))
        if keep_cache:
            caches.append(c)
        if keep_hidden:
            hidden.append(h)
        if keep_probs:
            attns.append(probs)
    c_ln = None
    if not cfg.use_mean_pooling:
        h, c_ln = layernorm_forward(h, P[prefix + "layernorm.weight"], P[prefix + "layernorm.bias"],
                                    cfg.layer_norm_eps)
        if tape is not None:
            tape(prefix + "layernorm", h)
    cache = EncoderCache(c_pe, vis_idx, caches, c_ln)
    return h, (tuple(hidden) if keep_hidden else None), (tuple(attns) if keep_probs else None), cache


def encoder_backward(dh, cache, prefix, cfg, grads, *, need_dx=False, tape=None):
    """dh: (B, Nv, D) -> grads filled in place; returns d(pixel_values) (B, T, C, H, W) if need_dx,
    else None. tape: the backward recorder (names already under TAPE_GRAD) | None."""
    if cache.layernorm is not None:
        if tape is not None:
            tape(prefix + "layernorm", dh)
        dh, grads[prefix + "layernorm.weight"], grads[prefix + "layernorm.bias"] = \
            layernorm_backward(dh, cache.layernorm)
    for i in reversed(range(len(cache.blocks))):
        dh, g, _ = block_backward(dh, cache.blocks[i], tape=_sub(tape, f"{prefix}encoder.layer.{i}."))
        for n, v in g.items():
            grads[layer_key(prefix, i, n)] = v
    if tape is not None:
        tape(prefix + "embeddings", dh)
    # the position table is a constant: its gradient is dropped
    dx, grads[prefix + PATCH_W], grads[prefix + PATCH_B] = patch_embed_backward(dh, cache.patch_embed,
                                                                                need_dx=need_dx)
    return dx


class DecoderCache(NamedTuple):
    encoder_to_decoder: LinearCache  # the encoder output as rows (B Nv, D)
    blocks: list                   # one BlockCache per decoder layer (empty unless keep_cache)
    num_tokens: int                # N, visible and masked
    num_masked: int                # Nm: the decoder's last Nm tokens are the predictions
    norm: LayerNormCache           # of the last Nm tokens (B, Nm, Dd)
    head: LinearCache              # the normalised tokens as rows (B Nm, Dd)


def decoder_forward(P, cfg, pos, h, vis_idx, msk_idx, drops=None, *, keep_cache, tape=None):
    """h: (B, Nv, D) encoder output, vis_idx: (B, Nv), msk_idx: (B, Nm), pos: (N, Dd) the decoder's
    position table -> logits (B, Nm, P) of the masked tokens, DecoderCache.

    drops: per-layer ops.dropout.Drop (training) or None."""
    N = cfg.num_patches
    Nm = N - h.shape[1]
    e2d, c_e2d = linear_forward(h, P["encoder_to_decoder.weight"])                 # (B, Nv, Dd)
    if tape is not None:
        tape("encoder_to_decoder", e2d)
    # decoder input: visible tokens first, then one mask token per hidden position, each plus
    # the position it stands for (the visible order is not restored; the positions say it)
    z = np.concatenate([e2d + pos[vis_idx], P["mask_token"] + pos[msk_idx]], axis=1)  # (B, N, Dd)
    caches = []
    names = block_param_names(cfg.qv_bias)
    for i in range(cfg.decoder_num_hidden_layers):
        p = {n: P[f"decoder.decoder_layers.{i}.{n}"] for n in names}
        z, _, c = block_forward(z, p, cfg.decoder_num_attention_heads, cfg.layer_norm_eps, cfg.hidden_act,
                                None, drops[i] if drops else None, keep_probs=False,
                                tape=_sub(tape, f"decoder.decoder_layers.{i}."))
        if keep_cache:
            caches.append(c)
    zm = z[:, -Nm:]                                                                 # (B, Nm, Dd)
    zn, c_norm = layernorm_forward(zm, P["decoder.norm.weight"], P["decoder.norm.bias"], HEAD_NORM_EPS)
    logits, c_head = linear_forward(zn, P["decoder.head.weight"], P["decoder.head.bias"])  # (B, Nm, P)
    if tape is not None:
        tape("decoder.norm", zn)
        tape("decoder.head", logits)
    return logits, DecoderCache(c_e2d, caches, N, Nm, c_norm, c_head)


def decoder_backward(dlogits, cache, grads, *, tape=None):
    """dlogits: (B, Nm, P) -> d(encoder output) (B, Nv, D); the decoder's gradients (and the mask
    token's) filled into grads. tape: the backward recorder | None."""
    N, Nm = cache.num_tokens, cache.num_masked
    dzn, grads["decoder.head.weight"], grads["decoder.head.bias"] = linear_backward(dlogits, cache.head)
    if tape is not None:
        tape("decoder.head", dlogits)
        tape("decoder.norm", dzn)
    dzm, grads["decoder.norm.weight"], grads["decoder.norm.bias"] = layernorm_backward(dzn, cache.norm)
    dz = np.zeros((dzm.shape[0], N, dzm.shape[2]), dzm.dtype)
    dz[:, -Nm:] = dzm                                    # the visible slots fed no logit
    for i in reversed(range(len(cache.blocks))):
        dz, gb, _ = block_backward(dz, cache.blocks[i], tape=_sub(tape, f"decoder.decoder_layers.{i}."))
        for n, v in gb.items():
            grads[f"decoder.decoder_layers.{i}.{n}"] = v
    Nv = N - Nm
    grads["mask_token"] = dz[:, Nv:].sum(axis=(0, 1)).reshape(1, 1, -1)
    de2d = np.ascontiguousarray(dz[:, :Nv])
    if tape is not None:
        tape("encoder_to_decoder", de2d)
    dh, grads["encoder_to_decoder.weight"], _ = linear_backward(de2d, cache.encoder_to_decoder)
    return dh


class ReconstructionLossCache(NamedTuple):
    loss_fn: str                   # the key of ops.losses.RECONSTRUCTION_LOSSES
    loss: tuple                    # that loss's own cache (ops/losses.py: DiffCache, SmoothL1Cache)


def reconstruction_loss_forward(x, logits, msk_idx, cfg, loss_fn):
    """x: (B, T, C, H, W) pixels, logits: (B, Nm, P), msk_idx: (B, Nm) -> the loss (scalar) of the
    masked tokens against their targets (pixel_targets), ReconstructionLossCache."""
    labels = pixel_targets(x, cfg, msk_idx)                                        # (B, Nm, P)
    loss, c_loss = RECONSTRUCTION_LOSSES[loss_fn][0](logits, labels)
    return loss, ReconstructionLossCache(loss_fn, c_loss)


def reconstruction_loss_backward(cache, dloss=1.0):   # -> d(logits) (B, Nm, P)
    return RECONSTRUCTION_LOSSES[cache.loss_fn][1](dloss, cache.loss)


class ClassifierCache(NamedTuple):
    num_tokens: int                # N, the mean's divisor
    fc_norm: object                # LayerNormCache of the mean token (B, D) | None (token 0 is read)
    classifier: object             # LinearCache of the pooled rows (B, D) | None (num_labels == 0)


def classifier_forward(P, cfg, h, *, tape=None):
    """h: (B, N, D) encoder output -> logits (B, K) (the pooled (B, D) when num_labels == 0),
    ClassifierCache. Pooling: fc_norm(mean over tokens) with use_mean_pooling, else token 0."""
    N = h.shape[1]
    if cfg.use_mean_pooling:
        pooled, c_pool = layernorm_forward(h.mean(axis=1), P["fc_norm.weight"], P["fc_norm.bias"],
                                           HEAD_NORM_EPS)                             # (B, D)
        if tape is not None:
            tape("fc_norm", pooled)
    else:
        pooled, c_pool = h[:, 0], None                                               # token 0
    if cfg.num_labels > 0:
        logits, c_cls = linear_forward(pooled, P["classifier.weight"], P["classifier.bias"])
        if tape is not None:
            tape("classifier", logits)
    else:
        logits, c_cls = pooled, None
    return logits, ClassifierCache(N, c_pool, c_cls)


def classifier_backward(dlogits, cache, grads, *, tape=None):
    """dlogits: (B, K) -> d(encoder output) (B, N, D); the head's gradients filled into grads."""
    if cache.classifier is not None:
        if tape is not None:
            tape("classifier", dlogits)
        dpooled, grads["classifier.weight"], grads["classifier.bias"] = linear_backward(dlogits,
                                                                                         cache.classifier)
    else:
        dpooled = dlogits
    B, D = dpooled.shape
    N = cache.num_tokens
    if cache.fc_norm is not None:
        if tape is not None:
            tape("fc_norm", dpooled)
        dmean, grads["fc_norm.weight"], grads["fc_norm.bias"] = layernorm_backward(dpooled, cache.fc_norm)
        dh = np.broadcast_to((dmean / N)[:, None, :], (B, N, D)).copy()
    else:
        dh = np.zeros((B, N, D), dpooled.dtype)
        dh[:, 0] = dpooled
    return dh


class ClassificationLossCache(NamedTuple):
    kind: str                      # transformers' problem_type, a key of ops.losses.CLASSIFICATION_LOSSES
    loss: tuple                    # that loss's own cache (ops/losses.py)


def classification_loss_forward(logits, labels, kind, dtype):
    """logits: (B, K), labels: (B,) int, (B,) / (B, K) float -> the loss (scalar) of problem type
    ``kind``, ClassificationLossCache. A one-output regression squeezes both sides: its gradient
    then comes back (B,), for the caller to reshape."""
    B, K = logits.shape
    if kind == "regression":
        y = labels.astype(dtype)
        if K == 1:          # transformers squeezes both sides when there is one output
            if y.size != B:
                raise ValueError(f"regression labels must hold one value per sample ({B}), got shape {labels.shape}")
            logits, y = logits.reshape(-1), y.reshape(-1)
        elif y.shape != logits.shape:
            raise ValueError(f"regression labels must have shape {logits.shape}, got {labels.shape}")
        target = y
    elif kind == "single_label_classification":
        if not np.issubdtype(labels.dtype, np.integer):
            raise TypeError(f"single-label classification needs integer labels, got dtype {labels.dtype}")
        if labels.size != B:
            raise ValueError(f"labels must hold one class index per sample ({B}), got shape {labels.shape}")
        target = labels.reshape(-1)
    else:
        if labels.shape != logits.shape:
            raise ValueError(f"multi-label targets must have shape {logits.shape}, got {labels.shape}")
        target = labels.astype(dtype)
    loss, c = CLASSIFICATION_LOSSES[kind][0](logits, target)
    return loss, ClassificationLossCache(kind, c)


def classification_loss_backward(cache, dloss=1.0):   # -> d(logits), (B, K) or (B,) when squeezed
    return CLASSIFICATION_LOSSES[cache.kind][1](dloss, cache.loss)


# what the heads' value_and_grad keeps between its forward and backward phases
class PreTrainingCache(NamedTuple):
    encoder: EncoderCache
    decoder: DecoderCache
    loss: ReconstructionLossCache


class ClassificationCache(NamedTuple):
    encoder: EncoderCache
    head: ClassifierCache
    loss: object                   # ClassificationLossCache | None (no labels)


# ------------------------------------------------------------------------------------------------
# the classes
# ------------------------------------------------------------------------------------------------
class VideoMAEPreTrainedModel:
    """Shared machinery: parameters, state dict, checkpoints."""

    prefix = BASE_PREFIX  # where the encoder's keys live in this class's state dict

    def __init__(self, config: VideoMAEConfig, seed: int | None = 0, dtype=np.float32):
        if not isinstance(config, VideoMAEConfig):
            raise TypeError(f"config must be a VideoMAEConfig, got {type(config).__name__}")
        dtype = np.dtype(dtype).type
        if dtype not in DTYPES:
            raise TypeError(f"dtype must be float32 or float64, got {np.dtype(dtype)}")
        self.config = config
        self.dtype = dtype
        self.training = False
        self.drop_path_rate = 0.0
        self.rng = np.random.default_rng(seed)  # draws dropout masks when training without an rng
        self.params = init_params(self._shapes(), config, seed, dtype)
        self._pos = sinusoid_table(config.num_patches, config.hidden_size, dtype)

    # --- training mode: dropout (config probabilities) and drop path -------------------------------
    def train(self, mode: bool = True, drop_path_rate: float | None = None):
        """Switch dropout / drop path on (mode=True) or off. drop_path_rate: the stochastic-depth
        probability of the last encoder block (rising linearly from 0 at the first)."""
        if drop_path_rate is not None:
            if not 0.0 <= float(drop_path_rate) < 1.0:
                raise ValueError(f"drop_path_rate must lie in [0, 1), got {drop_path_rate!r}")
            self.drop_path_rate = float(drop_path_rate)
        self.training = bool(mode)
        return self

    def eval(self):
        return self.train(False)

    def _drops(self, num_layers, rng, path_rate):
        """Per-layer Drop settings, or None when nothing random would happen."""
        cfg = self.config
        if not self.training:
            return None
        rates = drop_path_rates(path_rate, num_layers)
        if cfg.hidden_dropout_prob == 0 and cfg.attention_probs_dropout_prob == 0 and not any(rates):
            return None
        rng = self.rng if rng is None else rng
        return [Drop(rng, float(cfg.attention_probs_dropout_prob), float(cfg.hidden_dropout_prob), r)
                for r in rates]

    # --- subclasses say which tensors they have ------------------------------------------------
    def _shapes(self) -> dict:
        raise NotImplementedError

    # --- state dict -----------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """{transformers key: array}; the arrays are the model's own (not copies)."""
        return dict(self.params)

    def load_state_dict(self, state_dict: dict, strict: bool = True):
        """Replace parameters (cast to the model's dtype). Legacy q_bias/v_bias names are accepted.

        strict: every expected key must be present and no other key may be; otherwise missing keys
        keep their current values and unknown keys are reported. Shapes are always checked.
        Returns (missing, unexpected).
        """
        new, missing, unexpected = ckpt.checked_tensors(type(self).__name__, self._shapes(), state_dict,
                                                        self.dtype, strict)
        self.params.update(new)
        stack_qkv(self.params)
        return missing, unexpected

    def num_parameters(self) -> int:
        return int(sum(a.size for a in self.params.values()))

    def astype(self, dtype):
        """A copy of this model in another float dtype."""
        other = type(self)(self.config, seed=None, dtype=dtype)
        other.load_state_dict(self.params)
        return other

    # --- checkpoints ----------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, directory, dtype=np.float32, config: VideoMAEConfig | None = None):
        """Load a directory written by transformers' (or our) ``save_pretrained``.

        Like transformers, the encoder of any VideoMAE checkpoint loads into any of the three
        classes: head tensors of another class are ignored, this class's missing head tensors are
        freshly initialised (with a warning). A missing encoder tensor is an error.
        """
        return ckpt.load_pretrained(cls, directory, dtype, config)

    def save_pretrained(self, directory):
        """Write config.json + model.safetensors that transformers loads with no missing keys."""
        ckpt.save_pretrained(self, directory)

    # --- shared pieces of forward ---------------------------------------------------------------
    def _encode(self, pixel_values, bool_masked_pos, head_mask, rng=None, *, keep_hidden, keep_probs,
                keep_cache, tape=None):
        """Check the inputs and run the encoder phase -> checked pixels, checked mask, encoder output,
        hidden states, attentions, EncoderCache."""
        cfg = self.config
        x = _check_pixels(cfg, pixel_values, self.dtype)
        mask = _check_mask(cfg, bool_masked_pos, x.shape[0])
        hms = _head_mask(head_mask, cfg.num_hidden_layers, cfg.num_attention_heads, self.dtype)
        drops = self._drops(cfg.num_hidden_layers, rng, self.drop_path_rate)
        h, hidden, attns, cache = encoder_forward(self.params, self.prefix, cfg, self._pos, x, mask, hms, drops,
                                                  keep_hidden=keep_hidden, keep_probs=keep_probs,
                                                  keep_cache=keep_cache, tape=tape)
        return x, mask, h, hidden, attns, cache

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def __repr__(self):
        return (f"{type(self).__name__}({self.num_parameters():,} parameters, dtype={np.dtype(self.dtype).name}, "
                f"hidden={self.config.hidden_size}, layers={self.config.num_hidden_layers})")


class VideoMAEModel(VideoMAEPreTrainedModel):
    """The bare encoder: tokens out, no head."""

    prefix = ""

    def _shapes(self):
        return base_shapes(self.config)

    @_one_blas_thread
    def forward(self, pixel_values, bool_masked_pos=None, output_hidden_states=False,
                output_attentions=False, head_mask=None, rng=None, *, tape=None):
        _, _, h, hidden, attns, _ = self._encode(pixel_values, bool_masked_pos, head_mask, rng,
                                                 keep_hidden=output_hidden_states, keep_probs=output_attentions,
                                                 keep_cache=False, tape=tape)
        return BaseModelOutput(last_hidden_state=h, hidden_states=hidden, attentions=attns)

    @_one_blas_thread
    def value_and_grad(self, pixel_values, bool_masked_pos=None, labels=None, grad_output=None,
                       head_mask=None, input_grad=False, rng=None, *, tape=None):
        """Gradients of sum(last_hidden_state * grad_output) (grad_output defaults to ones).

        The bare encoder has no loss; ``labels`` must be None. Returns (output, grads); with
        input_grad=True grads also holds "pixel_values".
        """
        if labels is not None:
            raise ValueError("VideoMAEModel has no loss and takes no labels")
        _, _, h, _, _, cache = self._encode(pixel_values, bool_masked_pos, head_mask, rng, keep_hidden=False,
                                            keep_probs=False, keep_cache=True, tape=tape)
        if grad_output is None:
            grad_output = np.ones_like(h)
        elif np.shape(grad_output) != h.shape:
            raise ValueError(f"grad_output must have the shape of last_hidden_state {h.shape}, got "
                             f"{np.shape(grad_output)}")
        grads = {}
        dx = encoder_backward(np.asarray(grad_output, self.dtype), cache, "", self.config, grads,
                              need_dx=input_grad, tape=_sub(tape, TAPE_GRAD))
        out = BaseModelOutput(last_hidden_state=h)
        return out, _finish_grads(self, grads, dx)


def _finish_grads(model, grads, dx):
    out = {k: grads[k] for k in model.params}      # exactly the state dict's keys, in its order
    if dx is not None:
        out["pixel_values"] = dx
    return out


class VideoMAEForPreTraining(VideoMAEPreTrainedModel):
    """Encoder + decoder that reconstructs the masked tubelets (the self-supervised objective)."""

    def __init__(self, config, seed=0, dtype=np.float32):
        super().__init__(config, seed, dtype)
        self._dec_pos = sinusoid_table(config.num_patches, config.decoder_hidden_size, dtype)

    def _shapes(self):
        return pretraining_shapes(self.config)

    def targets(self, pixel_values):
        """The reconstruction target of every token: (B, N, P), P = t*p*p*C channel-last.

        RGB input is first un-normalised with the ImageNet statistics (whatever the processor
        used, as transformers does); with norm_pix_loss each token is standardised per channel
        over its t*p*p pixels with the unbiased std (pixels.pixel_targets).
        """
        cfg = self.config
        x = _check_pixels(cfg, pixel_values, self.dtype)
        return pixel_targets(x, cfg)

    @_one_blas_thread
    def forward(self, pixel_values, bool_masked_pos=None, output_hidden_states=False,
                output_attentions=False, head_mask=None, rng=None, *, loss_fn="mse", tape=None):
        """loss_fn: the reconstruction loss, a key of ops.losses.RECONSTRUCTION_LOSSES ("mse" is
        transformers'; "l1" and "smooth_l1" are the alternatives of the paper's Table 1f).
        tape: a recorder of the intermediates (videomae_np/tape.py) | None."""
        out, _ = self._run(pixel_values, bool_masked_pos, head_mask, rng, keep_hidden=output_hidden_states,
                           keep_probs=output_attentions, keep_cache=False, loss_fn=loss_fn, tape=tape)
        return out

    def _run(self, pixel_values, bool_masked_pos, head_mask, rng=None, *, keep_hidden, keep_probs, keep_cache,
             loss_fn="mse", tape=None):
        """The forward phases: encoder (visible tokens) -> decoder (logits of the masked tokens) -> loss.
        Returns the output and a PreTrainingCache."""
        cfg = self.config
        if loss_fn not in RECONSTRUCTION_LOSSES:
            raise ValueError(f"loss_fn must be one of {', '.join(RECONSTRUCTION_LOSSES)}; got {loss_fn!r}")
        if bool_masked_pos is None:
            raise ValueError("VideoMAEForPreTraining needs bool_masked_pos (B, N): which tokens to hide "
                             "(see videomae_np.masking.tube_mask)")
        x, mask, h, hidden, attns, c_enc = self._encode(pixel_values, bool_masked_pos, head_mask, rng,
                                                        keep_hidden=keep_hidden, keep_probs=keep_probs,
                                                        keep_cache=keep_cache, tape=tape)
        if h.shape[1] == cfg.num_patches:
            raise ValueError("bool_masked_pos masks no token: there is nothing to reconstruct")
        vis_idx, msk_idx = visible_and_masked_indices(mask)
        drops = self._drops(cfg.decoder_num_hidden_layers, rng, 0.0)  # no drop path in the decoder
        logits, c_dec = decoder_forward(self.params, cfg, self._dec_pos, h, vis_idx, msk_idx, drops,
                                        keep_cache=keep_cache, tape=tape)
        loss, c_loss = reconstruction_loss_forward(x, logits, msk_idx, cfg, loss_fn)
        out = VideoMAEForPreTrainingOutput(loss=loss, logits=logits, hidden_states=hidden, attentions=attns)
        return out, PreTrainingCache(c_enc, c_dec, c_loss)

    @_one_blas_thread
    def value_and_grad(self, pixel_values, bool_masked_pos=None, labels=None, head_mask=None,
                       input_grad=False, rng=None, *, loss_fn="mse", tape=None):
        """(output, grads) of the reconstruction loss; grads has exactly state_dict()'s keys.
        The forward phases, then their backward in reverse: loss, decoder, encoder."""
        if labels is not None:
            raise ValueError("VideoMAEForPreTraining builds its own targets from pixel_values; pass labels=None")
        out, cache = self._run(pixel_values, bool_masked_pos, head_mask, rng, keep_hidden=False, keep_probs=False,
                               keep_cache=True, loss_fn=loss_fn, tape=tape)
        grads, gtape = {}, _sub(tape, TAPE_GRAD)
        dlogits = reconstruction_loss_backward(cache.loss)
        dh = decoder_backward(dlogits, cache.decoder, grads, tape=gtape)
        dx = encoder_backward(dh, cache.encoder, BASE_PREFIX, self.config, grads, need_dx=input_grad, tape=gtape)
        return out, _finish_grads(self, grads, dx)


class VideoMAEForVideoClassification(VideoMAEPreTrainedModel):
    """Encoder + pooled linear classifier (mean over tokens + fc_norm, or token 0)."""

    def _shapes(self):
        return classification_shapes(self.config)

    @_one_blas_thread
    def forward(self, pixel_values, labels=None, output_hidden_states=False, output_attentions=False,
                head_mask=None, rng=None, *, tape=None):
        out, _ = self._run(pixel_values, labels, head_mask, rng, keep_hidden=output_hidden_states,
                           keep_probs=output_attentions, keep_cache=False, tape=tape)
        return out

    def _problem_type(self, labels):
        cfg = self.config
        if cfg.problem_type is not None:
            return cfg.problem_type
        if cfg.num_labels == 1:
            return "regression"
        if np.issubdtype(labels.dtype, np.integer):
            return "single_label_classification"
        return "multi_label_classification"

    def _run(self, pixel_values, labels, head_mask, rng=None, *, keep_hidden, keep_probs, keep_cache,
             tape=None):
        """The forward phases: encoder (every token) -> classifier head -> loss (when labels are given).
        Returns the output and a ClassificationCache."""
        x, _, h, hidden, attns, c_enc = self._encode(pixel_values, None, head_mask, rng, keep_hidden=keep_hidden,
                                                     keep_probs=keep_probs, keep_cache=keep_cache, tape=tape)
        logits, c_head = classifier_forward(self.params, self.config, h, tape=tape)
        loss, c_loss = None, None
        if labels is not None:
            labels = np.asarray(labels)
            loss, c_loss = classification_loss_forward(logits, labels, self._problem_type(labels), self.dtype)
        out = ImageClassifierOutput(loss=loss, logits=logits, hidden_states=hidden, attentions=attns)
        return out, ClassificationCache(c_enc, c_head, c_loss)

    @_one_blas_thread
    def value_and_grad(self, pixel_values, bool_masked_pos=None, labels=None, head_mask=None,
                       input_grad=False, rng=None, *, tape=None):
        """(output, grads) of the classification loss; grads has exactly state_dict()'s keys.
        The forward phases, then their backward in reverse: loss, classifier head, encoder."""
        if bool_masked_pos is not None:
            raise ValueError("VideoMAEForVideoClassification sees every token; pass bool_masked_pos=None")
        if labels is None:
            raise ValueError("value_and_grad of a classifier needs labels")
        out, cache = self._run(pixel_values, labels, head_mask, rng, keep_hidden=False, keep_probs=False,
                               keep_cache=True, tape=tape)
        grads, gtape = {}, _sub(tape, TAPE_GRAD)
        dlogits = classification_loss_backward(cache.loss).reshape(out.logits.shape)
        dh = classifier_backward(dlogits, cache.head, grads, tape=gtape)
        dx = encoder_backward(dh, cache.encoder, BASE_PREFIX, self.config, grads, need_dx=input_grad, tape=gtape)
        return out, _finish_grads(self, grads, dx)
