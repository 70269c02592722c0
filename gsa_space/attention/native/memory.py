"""Memory for the native backend: a pool for its two largest tensors, and glibc's freed memory.

The pool holds the native GSA step's two largest tensors: the q|k|v map and its gradient.

At 64 channels on 32x32 maps (batch 32) each is 42 MB, above glibc's largest mmap threshold
(32 MB), so every step would map fresh pages and fault them in (10k faults apiece, about a third
of the module's time on 2 cores). The pool keeps a few such buffers per thread and hands out one
that nothing references any more (autograd releases a saved map after its backward), like
PyTorch's CUDA caching allocator but only for these. Per thread, because two threads may run
steps at once; at most `MAX_BUFFERS` are kept, the oldest dropped first.
`retain_freed_memory` does the same for every other large block, process-wide.
"""

from __future__ import annotations

import ctypes
import platform
import threading

import torch
from torch import Tensor

from gsa_space.attention.settings import SETTINGS, Settings

__all__ = ["MAX_BUFFERS", "clear", "retain_freed_memory", "take"]

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


def retain_freed_memory(settings: Settings = SETTINGS) -> bool:
    """Keep freed large blocks in this process (glibc) instead of handing them back to the OS.

    A GSA training step frees and reallocates tens of MB of activations and gradients; glibc
    returns such blocks to the OS and the next step takes them back as fresh pages: measured 18.6k
    page faults and 102 ms per step at 64 channels on 32x32 maps (batch 32), 1.7k and 84 ms with
    this, the conv3x3 beside it unchanged. The cost: the process keeps its peak memory (up to 1 GiB
    more), as PyTorch's CUDA caching allocator does on a GPU. `search.train_loop.Trainer` calls it
    (so trials and bench_harness do), bench_attention only with --retain-memory;
    GSA_NAS_RETAIN_MEMORY=0 opts out (`settings.retain_memory`). Returns whether it took effect.
    """
    if not settings.retain_memory or platform.system() != "Linux":
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(mallopt(m_mmap_threshold, 256 << 20) and mallopt(m_trim_threshold, 1 << 30))
