"""Shared fixtures: tiny configs, transformers oracle models saved to temp dirs, a parity ledger,
and the ``oracle`` marker on every test that needs torch or transformers.

Oracle values always come from transformers/torch computed in the test run; the ledger only
records the measured max differences and prints them at the end of the session.

``pytest -m "not oracle"`` runs everything that needs neither torch nor transformers (and works
where they are not installed). The marker is applied here, at collection, to every test that
reaches them: through a fixture that imports them (``hf`` below, or a module's own), by importing
them or calling ``pytest.importorskip`` on them in its body, or by living in a module that does so
at module level. Test modules import torch only inside tests and fixtures, never at the top.
"""

import functools
import inspect
import os
import re
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


# import torch / from transformers import ... / pytest.importorskip("torch"), in any source text
_ORACLE_USE = re.compile(r"""^[ \t]*(?:import|from)[ \t]+(?:torch|transformers)\b"""
                         r"""|importorskip\(\s*["'](?:torch|transformers)["']""", re.M)
# the same at module level: in column 0 (an import, or `name = pytest.importorskip(...)`)
_ORACLE_USE_AT_TOP = re.compile(r"""^(?:(?:import|from)[ \t]+(?:torch|transformers)\b"""
                                r"""|(?:\w+[ \t]*=[ \t]*)?pytest\.importorskip\("""
                                r"""\s*["'](?:torch|transformers)["'])""", re.M)


def _source(obj) -> str:
    try:
        return inspect.getsource(obj)
    except (OSError, TypeError):
        return ""


@functools.cache
def _module_uses_oracle(module) -> bool:
    return bool(_ORACLE_USE_AT_TOP.search(_source(module)))


def _needs_oracle(item) -> bool:
    module = getattr(item, "module", None)
    if module is not None and _module_uses_oracle(module):
        return True
    if _ORACLE_USE.search(_source(getattr(item, "function", None))):
        return True
    fixtures = getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", {})
    return any(_ORACLE_USE.search(_source(d.func))
               for name in getattr(item, "fixturenames", ()) for d in fixtures.get(name, ()))


def pytest_collection_modifyitems(config, items):
    """Mark `oracle` every test that needs torch or transformers (see the module docstring)."""
    for item in items:
        if _needs_oracle(item):
            item.add_marker(pytest.mark.oracle)


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
