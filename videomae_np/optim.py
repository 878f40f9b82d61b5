"""AdamW, its parameter groups, the warmup + cosine learning-rate schedule, gradient clipping.

The update is torch.optim.AdamW's (Loshchilov & Hutter, "Decoupled Weight Decay Regularization",
2019), step for step, including where eps and the bias corrections enter:

    p   <- p * (1 - lr * wd)                         decoupled decay, before the Adam step
    m   <- m + (1 - b1) * (g - m)                    torch's lerp form of b1 * m + (1 - b1) * g
    v   <- b2 * v + (1 - b2) * g * g
    p   <- p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)

Parameter groups follow the MAE / VideoMAE recipes: no weight decay on biases, LayerNorm weights
and the mask token; for fine-tuning, layer-wise learning-rate decay (BEiT, Bao et al. 2021) scales
the learning rate of encoder layer i by decay^(L - i), the patch embedding by decay^(L + 1) and the
heads by 1, so the layers nearest the input move least.
"""

from __future__ import annotations

import math

import numpy as np

from .params import decays, layer_id

PRETRAIN_BETAS = (0.9, 0.95)      # MAE / VideoMAE pretraining
FINETUNE_BETAS = (0.9, 0.999)     # VideoMAE fine-tuning (torch's default)
ADAM_EPS = 1e-8                   # torch.optim.AdamW default
CLIP_EPS = 1e-6                   # torch.nn.utils.clip_grad_norm_: max_norm / (total + 1e-6)
LAYER_DECAY = 0.75                # VideoMAE fine-tuning recipe (ViT-B)


# ------------------------------------------------------------------------------------------------
# parameter groups (which parameters decay and which layer each belongs to: params.py, the rule
# the models' initialisation follows too)
# ------------------------------------------------------------------------------------------------
def param_groups(names, weight_decay: float = 0.05, layer_decay: float | None = None,
                 num_layers: int | None = None) -> dict:
    """{name: (lr_scale, weight_decay)} for every parameter name.

    layer_decay=None gives every parameter lr_scale 1 (pretraining); otherwise num_layers (the
    encoder depth L) is needed and lr_scale = layer_decay ** (L + 1 - layer_id(name)).
    """
    if layer_decay is not None and num_layers is None:
        raise ValueError("layer-wise learning-rate decay needs num_layers (the encoder depth)")
    groups = {}
    for n in names:
        scale = 1.0 if layer_decay is None else float(layer_decay) ** (num_layers + 1 - layer_id(n, num_layers))
        groups[n] = (scale, float(weight_decay) if decays(n) else 0.0)
    return groups


# ------------------------------------------------------------------------------------------------
# learning-rate schedule
# ------------------------------------------------------------------------------------------------
def lr_at(step: int, base_lr: float, warmup_steps: int, total_steps: int, min_lr: float = 0.0) -> float:
    """Learning rate of update number `step` (0-based): linear warmup to base_lr over warmup_steps
    updates (the first update already uses base_lr / warmup_steps), then half a cosine down to
    min_lr at total_steps."""
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return min_lr + (base_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


class WarmupCosine:
    """lr_at with its settings bound: ``schedule(step)`` or ``schedule.lr_at(step)``."""

    def __init__(self, base_lr, warmup_steps, total_steps, min_lr=0.0):
        if warmup_steps < 0 or total_steps < 1:
            raise ValueError(f"need warmup_steps >= 0 and total_steps >= 1, got {warmup_steps}, {total_steps}")
        self.base_lr, self.warmup_steps, self.total_steps, self.min_lr = base_lr, warmup_steps, total_steps, min_lr

    def lr_at(self, step):
        return lr_at(step, self.base_lr, self.warmup_steps, self.total_steps, self.min_lr)

    __call__ = lr_at


# ------------------------------------------------------------------------------------------------
# gradient clipping
# ------------------------------------------------------------------------------------------------
def global_norm(grads: dict) -> float:
    """sqrt of the sum of squares of every gradient (the 2-norm of all of them concatenated)."""
    # torch takes the norm of the per-tensor norms; the same number up to rounding
    return float(np.sqrt(sum(float(np.vdot(g, g)) for g in grads.values())))


def clip_grad_norm(grads: dict, max_norm: float) -> float:
    """Scale every gradient in place so their global norm is at most max_norm, as
    torch.nn.utils.clip_grad_norm_ does (factor max_norm / (norm + 1e-6), capped at 1).
    Returns the norm before clipping; a non-finite norm leaves the gradients untouched."""
    total = global_norm(grads)
    coef = max_norm / (total + CLIP_EPS)
    if math.isfinite(total) and coef < 1.0:
        for g in grads.values():
            g *= g.dtype.type(coef)
    return total


# ------------------------------------------------------------------------------------------------
# the optimizer
# ------------------------------------------------------------------------------------------------
class AdamW:
    """AdamW over a dict of parameter arrays, updated in place.

        opt = AdamW(model.params, groups=param_groups(model.params, 0.05), betas=PRETRAIN_BETAS)
        opt.step(grads, lr=schedule(opt.step_count))

    groups: {name: (lr_scale, weight_decay)}; names not in it get (1, weight_decay).
    """

    def __init__(self, params: dict, lr: float = 1e-3, betas=PRETRAIN_BETAS, eps: float = ADAM_EPS,
                 weight_decay: float = 0.05, groups: dict | None = None):
        b1, b2 = (float(b) for b in betas)
        if not (0.0 <= b1 < 1.0 and 0.0 <= b2 < 1.0):
            raise ValueError(f"betas must lie in [0, 1), got {betas}")
        self.params = params
        self.lr, self.betas, self.eps = float(lr), (b1, b2), float(eps)
        groups = groups or {}
        self.groups = {n: groups.get(n, (1.0, float(weight_decay))) for n in params}
        self.exp_avg = {n: np.zeros_like(p) for n, p in params.items()}
        self.exp_avg_sq = {n: np.zeros_like(p) for n, p in params.items()}
        self.step_count = 0                       # updates taken so far (torch's state["step"])

    def step(self, grads: dict, lr: float | None = None):
        """One update of every parameter from grads (same keys); lr overrides the base rate.

        The gradients are checked against the parameters before anything changes, and the step
        count advances only once every parameter and moment is updated. The loop itself can still
        be cut by an exception raised from a signal handler: train.py's Ctrl-C handler therefore
        defers any interrupt that arrives during an update until the update is complete."""
        shapes = {n: np.shape(g) for n, g in grads.items()}
        missing = [n for n in self.params if n not in shapes]
        if missing:
            raise KeyError(f"AdamW.step: no gradient for {len(missing)} parameter(s), e.g. {missing[:3]}")
        for n, p in self.params.items():
            if shapes[n] != p.shape:
                raise ValueError(f"AdamW.step: the gradient of {n} has shape {shapes[n]}, the "
                                 f"parameter {p.shape}")
        lr = self.lr if lr is None else float(lr)
        b1, b2 = self.betas
        t = self.step_count + 1
        bc1 = 1.0 - b1 ** t
        bc2_sqrt = math.sqrt(1.0 - b2 ** t)
        for n, p in self.params.items():
            g = grads[n]
            scale, wd = self.groups[n]
            plr = lr * scale
            m, v = self.exp_avg[n], self.exp_avg_sq[n]
            dt = p.dtype.type
            if wd:
                p *= dt(1.0 - plr * wd)
            m += dt(1.0 - b1) * (g - m)
            v *= dt(b2)
            v += dt(1.0 - b2) * (g * g)
            denom = np.sqrt(v)
            denom /= dt(bc2_sqrt)
            denom += dt(self.eps)
            p -= dt(plr / bc1) * (m / denom)
        self.step_count = t

    # --- checkpointing --------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Flat {key: array}: "exp_avg/<name>", "exp_avg_sq/<name>" and "step" (copies)."""
        sd = {"step": np.array(self.step_count, np.int64)}
        for n in self.params:
            sd["exp_avg/" + n] = self.exp_avg[n].copy()
            sd["exp_avg_sq/" + n] = self.exp_avg_sq[n].copy()
        return sd

    def load_state_dict(self, sd: dict):
        want = {"step"} | {f"{k}/{n}" for n in self.params for k in ("exp_avg", "exp_avg_sq")}
        missing, unexpected = sorted(want - set(sd)), sorted(set(sd) - want)
        if missing or unexpected:
            raise KeyError(f"optimizer state does not match the parameters: missing {missing[:6]}, "
                           f"unexpected {unexpected[:6]}")
        for n, p in self.params.items():
            for k, store in (("exp_avg", self.exp_avg), ("exp_avg_sq", self.exp_avg_sq)):
                a = np.asarray(sd[f"{k}/{n}"])
                if a.shape != p.shape:
                    raise ValueError(f"optimizer state {k}/{n} has shape {a.shape}, the parameter {p.shape}")
                store[n] = a.astype(p.dtype, copy=True)
        self.step_count = int(sd["step"])
