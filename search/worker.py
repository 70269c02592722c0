"""Process-wide settings of a training process, applied once where it starts.

A Ray Tune worker (`GsaTrainable.setup`) or a bare training loop (`run_trial_bare`) calls
`configure_process` before its first trial: torch's thread count, the allocator keeping freed
blocks, and cuDNN's autotuner are settings of the whole process, so no class sets them.
"""

from __future__ import annotations

import torch

from gsa_space.attention.native import retain_freed_memory

__all__ = ["configure_process"]


def configure_process(*, threads: int | None, device: str | torch.device) -> None:
    """Set this process up for training on `device` with `threads` intra-op threads (None: as is)."""
    if threads is not None:
        torch.set_num_threads(int(threads))
    retain_freed_memory()  # steps reuse freed activations instead of page-faulting them back in
    if torch.device(device).type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest kernels
