"""Process-wide settings of a training process, applied once where it starts.

A Ray Tune worker (`GsaTrainable.setup`) or a bare training loop (`run_trial_bare`) calls
`configure_process` before its first trial: torch's thread count, the allocator keeping freed
blocks, cuDNN's autotuner and dynamo's recompile limit are settings of the whole process, so no
class sets them.
"""

from __future__ import annotations

import torch

from gsa_space.attention.native import retain_freed_memory

__all__ = ["allow_recompiles", "configure_process"]

# A Tune worker trains trial after trial (reuse_actors); with `train.compile` each new architecture
# is one more compiled version of ResNet.forward. Past dynamo's default of 8 it would fall back to
# eager without a word, so a worker keeps up to this many (each a few MB of code).
RECOMPILE_LIMIT = 64


def configure_process(*, threads: int | None, device: str | torch.device) -> None:
    """Set this process up for training on `device` with `threads` intra-op threads (None: as is)."""
    if threads is not None:
        torch.set_num_threads(int(threads))
    retain_freed_memory()  # steps reuse freed activations instead of page-faulting them back in
    if torch.device(device).type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest kernels


def allow_recompiles() -> None:
    """Raise dynamo's per-function recompile limit to RECOMPILE_LIMIT (a trainer with `train.compile`
    calls it; torch._dynamo costs 2 s to import, so workers that do not compile never load it)."""
    import torch._dynamo.config as dynamo_config

    dynamo_config.recompile_limit = max(dynamo_config.recompile_limit, RECOMPILE_LIMIT)
