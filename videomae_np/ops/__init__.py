"""Pure array operations, each a ``*_forward`` returning ``(out, cache)`` and a ``*_backward``
that takes the upstream gradient and that cache. Shapes are commented on every signature."""

from .activations import ACTIVATIONS, activation_backward, activation_forward
from .attention import attention_backward, attention_forward
from .block import block_backward, block_forward
from .layernorm import layernorm_backward, layernorm_forward
from .linear import linear_backward, linear_forward
from .mlp import mlp_backward, mlp_forward
from .patch_embed import patch_embed_backward, patch_embed_forward
from .patchify import patchify, unpatchify
from .softmax import softmax_backward, softmax_forward
