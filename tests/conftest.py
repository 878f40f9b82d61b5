"""Shared fixtures: tiny configs, transformers oracle models saved to temp dirs, a parity ledger.

Oracle values always come from transformers/torch computed in the test run; the ledger only
records the measured max differences and prints them at the end of the session.
"""

import os
from collections import defaultdict

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")          # never reach for the hub
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

TINY = dict(image_size=16, patch_size=8, num_frames=4, tubelet_size=2, hidden_size=12,
            num_hidden_layers=2, num_attention_heads=3, intermediate_size=20,
            decoder_hidden_size=8, decoder_num_hidden_layers=1, decoder_num_attention_heads=2,
            decoder_intermediate_size=12, num_labels=3)

_ledger = defaultdict(float)


def record(kind, value):
    """Keep the worst difference seen per kind (e.g. 'float64 forward')."""
    _ledger[kind] = max(_ledger[kind], float(value))


def pytest_terminal_summary(terminalreporter):
    if _ledger:
        terminalreporter.section("parity with transformers (worst over the run)")
        for k in sorted(_ledger):
            terminalreporter.write_line(f"{k:<40s} {_ledger[k]:.3e}")


@pytest.fixture(scope="session")
def hf():
    """(torch, transformers) or skip when the test extra is not installed."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    torch.set_num_threads(1)
    return torch, transformers


def make_hf_model(hf, cls_name, tmp_path, seed=0, **overrides):
    """A random transformers model of class cls_name (eager attention, eval mode, float64),
    saved with save_pretrained to tmp_path. Returns (model, directory)."""
    torch, transformers = hf
    kw = dict(TINY)
    kw.update(overrides)
    cfg = transformers.VideoMAEConfig(**kw)
    cfg._attn_implementation = "eager"
    torch.manual_seed(seed)
    model = getattr(transformers, cls_name)(cfg).eval()
    # make every parameter non-trivial, so a mixed-up LayerNorm or bias cannot hide
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or "norm" in name or name == "mask_token":
                p.add_(0.1 * torch.randn_like(p))
    d = tmp_path / f"{cls_name}_{seed}"
    model.save_pretrained(d)
    return model.double(), d


def rel_err(ours, ref):
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    scale = max(np.abs(ref).max(), 1e-30)
    return np.abs(ours - ref).max() / scale


def max_abs(ours, ref):
    return float(np.abs(np.asarray(ours, np.float64) - np.asarray(ref, np.float64)).max())
