"""Reusable memory for the native GSA step's two largest tensors: the q|k|v map and its gradient.

At 64 channels on 32x32 maps (batch 32) each is 42 MB, above glibc's largest mmap threshold
(32 MB), so every step would map fresh pages and fault them in (10k faults apiece, about a third
of the module's time on 2 cores). The pool keeps a few such buffers per thread and hands out one
that nothing references any more (autograd releases a saved map after its backward), like
PyTorch's CUDA caching allocator but only for these. Per thread, because two threads may run
steps at once; at most `MAX_BUFFERS` are kept, the oldest dropped first.
"""

from __future__ import annotations

import threading

import torch
from torch import Tensor

MAX_BUFFERS = 8


class _Pool(threading.local):
    def __init__(self) -> None:
        self.buffers: list[Tensor] = []


_POOL = _Pool()


def _unused(buffer: Tensor) -> bool:
    # the buffer itself and the temporary storage object are the only holders of its storage
    return torch._C._storage_Use_Count(buffer.untyped_storage()._cdata) <= 2


def take(shape: tuple[int, ...], dtype: torch.dtype) -> Tensor:
    """An uninitialised contiguous CPU tensor of `shape`, in memory no live tensor uses."""
    numel = 1
    for size in shape:
        numel *= size
    fits = [b for b in _POOL.buffers if b.dtype == dtype and b.numel() >= numel and _unused(b)]
    if fits:
        return min(fits, key=Tensor.numel)[:numel].view(shape)
    buffer = torch.empty(numel, dtype=dtype)
    _POOL.buffers.append(buffer)
    del _POOL.buffers[:-MAX_BUFFERS]
    return buffer.view(shape)


def clear() -> None:
    """Drop this thread's buffers (their memory goes once no tensor uses it)."""
    _POOL.buffers.clear()
