"""Global Self-Attention (GSA): the module, its reference math and its backends (docs/gsa.md).

Layout: module.py holds `GlobalSelfAttention` (parameters; each forward goes through one backend
choice, dispatch.py); spec.py is the math as plain NCHW code, the specification the backends are
tested against; params.py the typed weights a backend receives; torch_ops.py the PyTorch-ops
backend (CPU without the kernels, CPU autocast, TorchScript tracing); batched.py the few-large-ops
backend that CUDA runs; native/ the C-kernel CPU backend; settings.py the environment, read once.
"""

from gsa_space.attention.dispatch import attention_backend
from gsa_space.attention.module import GlobalSelfAttention
from gsa_space.attention.spec import content_attention, relative_attention_1d

__all__ = ["GlobalSelfAttention", "attention_backend", "content_attention", "relative_attention_1d"]
