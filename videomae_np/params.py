"""The parameters of the three models: their names, shapes and initial values, and the one rule
that says what each name is (a LayerNorm's, a bias, decayed or not, which encoder layer).

Names are transformers' state-dict keys. The bare encoder (VideoMAEModel) keeps its keys at the
top level; the two head models put the same keys under ``videomae.`` (BASE_PREFIX) beside their
heads' (HEAD_KEYS). The models (models.py) build and update their parameters from here, the
checkpoint policy (checkpoint.py) sorts a checkpoint's keys with it, and the optimizer (optim.py)
groups the parameters by it, so initialisation, loading and weight decay can never disagree.
"""

from __future__ import annotations

import re

import numpy as np

from .config import VideoMAEConfig
from .ops.attention import stacked_base
from .ops.block import block_param_names

PATCH_W = "embeddings.patch_embeddings.projection.weight"
PATCH_B = "embeddings.patch_embeddings.projection.bias"
EMBEDDINGS = "embeddings."          # the patch embedding's module (layer id 0)
ENCODER_LAYERS = "encoder.layer."   # encoder layer i is the module encoder.layer.{i}
BASE_PREFIX = "videomae."
# key prefixes of the heads; a checkpoint of one head loads into another without them
HEAD_KEYS = ("mask_token", "encoder_to_decoder.", "decoder.", "fc_norm.", "classifier.")


def layer_key(prefix, i, name):
    """The key of parameter ``name`` (ops.block.block_param_names) of encoder layer i."""
    return f"{prefix}{ENCODER_LAYERS}{i}.{name}"


# ------------------------------------------------------------------------------------------------
# what a name is: one rule for the initialisation (LayerNorm weight 1 / bias 0), the weight decay
# (none on LayerNorms, biases and the mask token) and the layer-wise learning-rate decay
# ------------------------------------------------------------------------------------------------
# A LayerNorm's parameters, by the name of the module that holds them: transformers' VideoMAE
# names them layernorm, layernorm_before/after, norm (decoder.norm) and fc_norm; any module
# whose name ends in "norm" or "_ln" counts.
_NORM_MODULE = re.compile(r"(?:^|\.)(?:\w*norm\w*|\w+_ln)\.(?:weight|bias)$")


def is_norm(name: str) -> bool:
    """Whether the parameter `name` (transformers key) belongs to a LayerNorm."""
    return _NORM_MODULE.search(name) is not None


def decays(name: str) -> bool:
    """Whether weight decay applies to the parameter `name` (transformers key).

    Biases, LayerNorm parameters (is_norm) and the mask token are exempt, as in MAE's
    ``param_groups_weight_decay`` (which exempts every 1-D tensor).
    """
    if name.endswith(".bias") or name == "mask_token":
        return False
    return not is_norm(name)


def layer_id(name: str, num_layers: int) -> int:
    """0 for the patch embedding, i + 1 for encoder layer i, num_layers + 1 for everything else."""
    key = name[len(BASE_PREFIX):] if name.startswith(BASE_PREFIX) else name
    if key.startswith(EMBEDDINGS):
        return 0
    if key.startswith(ENCODER_LAYERS):
        return int(key.split(".")[2]) + 1
    return num_layers + 1


# ------------------------------------------------------------------------------------------------
# shapes, per class
# ------------------------------------------------------------------------------------------------
def encoder_shapes(cfg: VideoMAEConfig, prefix: str) -> dict:
    D, I, t, p, C = cfg.hidden_size, cfg.intermediate_size, cfg.tubelet_size, cfg.patch_size, cfg.num_channels
    shapes = {prefix + PATCH_W: (D, C, t, p, p), prefix + PATCH_B: (D,)}
    for i in range(cfg.num_hidden_layers):
        shapes.update(block_shapes(f"{prefix}{ENCODER_LAYERS}{i}.", D, I, cfg.qv_bias))
    if not cfg.use_mean_pooling:
        shapes[prefix + "layernorm.weight"] = (D,)
        shapes[prefix + "layernorm.bias"] = (D,)
    return shapes


def block_shapes(prefix, D, I, qv_bias):
    out = {}
    for name in block_param_names(qv_bias):
        if name.startswith("attention."):
            shape = (D, D) if name.endswith("weight") else (D,)
        elif name.startswith("intermediate."):
            shape = (I, D) if name.endswith("weight") else (I,)
        elif name.startswith("output."):
            shape = (D, I) if name.endswith("weight") else (D,)
        else:
            shape = (D,)
        out[prefix + name] = shape
    return out


def base_shapes(cfg: VideoMAEConfig) -> dict:
    """VideoMAEModel: the encoder alone, its keys unprefixed."""
    return encoder_shapes(cfg, "")


def pretraining_shapes(cfg: VideoMAEConfig) -> dict:
    """VideoMAEForPreTraining: mask token, encoder under BASE_PREFIX, decoder."""
    Dd = cfg.decoder_hidden_size
    shapes = {"mask_token": (1, 1, Dd)}
    shapes.update(encoder_shapes(cfg, BASE_PREFIX))
    shapes["encoder_to_decoder.weight"] = (Dd, cfg.hidden_size)
    for i in range(cfg.decoder_num_hidden_layers):
        shapes.update(block_shapes(f"decoder.decoder_layers.{i}.", Dd, cfg.decoder_intermediate_size,
                                   cfg.qv_bias))
    shapes["decoder.norm.weight"] = (Dd,)
    shapes["decoder.norm.bias"] = (Dd,)
    shapes["decoder.head.weight"] = (cfg.pixels_per_token, Dd)
    shapes["decoder.head.bias"] = (cfg.pixels_per_token,)
    return shapes


def classification_shapes(cfg: VideoMAEConfig) -> dict:
    """VideoMAEForVideoClassification: encoder under BASE_PREFIX, fc_norm (mean pooling), classifier."""
    shapes = encoder_shapes(cfg, BASE_PREFIX)
    D = cfg.hidden_size
    if cfg.use_mean_pooling:
        shapes["fc_norm.weight"] = (D,)
        shapes["fc_norm.bias"] = (D,)
    if cfg.num_labels > 0:
        shapes["classifier.weight"] = (cfg.num_labels, D)
        shapes["classifier.bias"] = (cfg.num_labels,)
    return shapes


# ------------------------------------------------------------------------------------------------
# initialisation (transformers' _init_weights: N(0, initializer_range) for linear and conv weights,
# zero biases, LayerNorm weight 1 / bias 0; the mask token starts at zero)
# ------------------------------------------------------------------------------------------------
def init_params(shapes: dict, cfg, seed, dtype) -> dict:
    rng = np.random.default_rng(seed)
    std = cfg.initializer_range or 0.02
    params = {}
    for name, shape in shapes.items():
        leaf = name.rsplit(".", 1)[-1]
        norm = is_norm(name)
        if name == "mask_token" or leaf == "bias":
            a = np.zeros(shape)
        elif norm:
            a = np.ones(shape)
        else:
            a = rng.normal(0.0, std, size=shape)
        params[name] = a.astype(dtype)
    return stack_qkv(params)


QKV = ("query.weight", "key.weight", "value.weight")


def stack_qkv(params: dict) -> dict:
    """Make each layer's query, key and value weights the consecutive thirds of one (3C, C) array,
    in place. Attention multiplies by the stacked weight (ops/attention._qkv_weights), which then
    is that array itself instead of a 7 MB concatenation per ViT-B layer in forward and another
    in backward (33 ms of a 1.6 s pretraining step). The optimizer updates the views in place, so
    they stay stacked; anything that rebinds a weight just gets the concatenation again."""
    for name in [n for n in params if n.endswith("attention.attention." + QKV[0])]:
        stem = name[: -len(QKV[0])]
        parts = [params.get(stem + leaf) for leaf in QKV]
        if any(a is None or a.shape != parts[0].shape for a in parts) or stacked_base(*parts) is not None:
            continue             # nothing to stack, or stacked already (left as they are)
        stacked = np.concatenate(parts)
        for i, leaf in enumerate(QKV):
            params[stem + leaf] = stacked[i * len(parts[0]):(i + 1) * len(parts[0])]
    return params
