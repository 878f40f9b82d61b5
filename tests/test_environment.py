"""In CI the oracle and the notebook machinery must be present: otherwise every comparison with
transformers would be skipped and the run would still look green."""

import importlib
import os

import pytest


@pytest.mark.skipif(not os.environ.get("CI"), reason="only CI must have every extra")
@pytest.mark.parametrize("module", ["torch", "transformers", "safetensors", "nbclient", "matplotlib", "ipykernel"])
def test_ci_has_the_test_extra(module):
    importlib.import_module(module)
