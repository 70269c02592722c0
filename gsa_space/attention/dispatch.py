"""Which backend runs a GSA module: one choice, made in `resolve` (docs/gsa.md §7).

"auto" (the default) takes, on the CPU, native for a non-empty float32 or float64 input when the C
kernels are loaded (not with GSA_NAS_NATIVE=0, see gsa_space.attention.settings) and autocast is
off, else torch_ops; on every other device (cuda, meta, ...) batched, whose few large ops over all
heads and the whole batch suit a GPU (and let the meta device count a GPU's launches). All give the
same numbers. Under autocast, torch_ops and batched run the products in autocast's dtype, as the
rest of the network and as CUDA do; native, when chosen, computes in float32.
`attention_backend` chooses for a block of code, per thread (a threading.local, which
torch.compile reads and guards on; it cannot trace a ContextVar).
TorchScript tracing always runs torch_ops: fvcore's MAC count (gsa_space.complexity) traces the
module and counts the PyTorch ops it sees, where a native operator would count zero.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Iterator

import torch
from torch import Tensor

import gsa_space.attention.batched as batched
import gsa_space.attention.native as native
import gsa_space.attention.torch_ops as torch_ops
from gsa_space.attention.params import GSAParams

__all__ = ["BACKENDS", "attention_backend", "current_backend", "gsa_forward", "resolve"]

BACKENDS: tuple[str, ...] = ("auto", "torch_ops", "native", "batched")


class _Choice(threading.local):
    """The backend chosen by the innermost `attention_backend` block of this thread."""

    def __init__(self) -> None:
        self.name = "auto"


_CHOICE = _Choice()


@contextlib.contextmanager
def attention_backend(name: str) -> Iterator[None]:
    """Run the GSA modules called in this block on backend `name`: "auto", "torch_ops", "native" or
    "batched".

    Example:
        >>> from gsa_space.attention import GlobalSelfAttention
        >>> m = GlobalSelfAttention(8, 8, heads=2, dim_key=4, max_size=6)
        >>> with attention_backend("torch_ops"):
        ...     out = m(torch.randn(2, 8, 6, 6))
        >>> out.shape
        torch.Size([2, 8, 6, 6])
    """
    if name not in BACKENDS:
        raise ValueError(f"unknown attention backend {name!r}; expected one of: {', '.join(BACKENDS)}")
    outer, _CHOICE.name = _CHOICE.name, name
    try:
        yield
    finally:
        _CHOICE.name = outer


def current_backend() -> str:
    """The choice in force here: "auto" unless an `attention_backend` block says otherwise."""
    return _CHOICE.name


def resolve(x: Tensor, weight: Tensor) -> str:
    """The backend ("torch_ops", "native" or "batched") that runs a module on x with projection
    `weight` now.

    "auto" keeps the CPU on its own backends (batched is slower there): native, or torch_ops under
    autocast and for tensors native cannot take; any other device runs batched. An empty input
    runs torch_ops whatever the choice: nothing to compute, and the native backend's BatchNorm
    call rejects an empty batch. A chosen "native" computes in float32 under autocast (its
    operators' autocast rule). Raises ValueError when "native" is chosen for tensors it cannot take.
    """
    if torch.jit.is_tracing() or not x.numel():
        return "torch_ops"
    choice = _CHOICE.name
    device = x.device.type
    autocast = torch.amp.is_autocast_available(device) and torch.is_autocast_enabled(device)
    if choice == "auto":
        if device != "cpu":
            return "batched"
        return "native" if not autocast and native.supports(x, weight) else "torch_ops"
    if choice == "native" and not native.supports(x, weight, autocast=autocast):
        raise ValueError(
            f"the native attention backend takes float32 or float64 tensors on the CPU (with the C kernels "
            f"loaded: {native.kernels_loaded()}; float16 and bfloat16 under CPU autocast) or on the meta "
            f"device, but got x {x.dtype} on {x.device}, weights {weight.dtype} on {weight.device}; "
            f"choose 'auto' or 'torch_ops' instead.")
    return choice


def gsa_forward(p: GSAParams, x: Tensor) -> Tensor:
    """F_c + F_p of `p` on x (B, C_in, H, W) -> (B, h * dv, H, W) on the backend `resolve` picks."""
    backend = resolve(x, p.to_q)
    if backend == "native":
        return native.gsa_forward(p, x)
    if backend == "batched":
        return batched.gsa_forward(p, x)
    return torch_ops.gsa_forward(p, x)
