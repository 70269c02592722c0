"""Whether one trial's `resources` can be placed anywhere, checked before anything launches.

A study that asks for more CPUs or GPUs per trial than any machine has would otherwise wait
forever ("0 running, 2 starting"); `gsa-nas run` checks against the Ray cluster it starts or
joins, `gsa-nas validate` against this machine's hardware (it starts no Ray).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from search.study import Study

__all__ = ["Available", "local_hardware", "check_placeable", "capacity"]


@dataclass(frozen=True)
class Available:
    """CPUs and GPUs of the largest place a trial can go (`where` names it in messages)."""

    cpu: float
    gpu: float
    where: str


def local_hardware() -> Available:
    """This machine's cores and CUDA devices."""
    import torch  # the study loader has imported it already; Ray is not needed to count devices

    return Available(cpu=float(os.cpu_count() or 1), gpu=float(torch.cuda.device_count()), where="this machine")


def _count(n: float, what: str) -> str:
    shown = f"{n:g}"
    return f"{shown} {what}{'' if n == 1 else 's'}"


def check_placeable(study: Study, available: Available) -> None:
    """ValueError (one line) when no trial of `study` could ever be placed on `available`."""
    res = study.resources
    short = [(key, need, have) for key, need, have in (("cpu", res.cpu, available.cpu), ("gpu", res.gpu, available.gpu))
             if need > have]
    if not short:
        return
    key, need, have = short[0]
    what = "CPU" if key == "cpu" else "GPU"
    fix = ("give a CUDA machine or join a cluster with GPU workers (--address), or set resources.gpu=0 to train "
           "on CPUs" if key == "gpu" else f"lower resources.cpu to at most {have:g}")
    raise ValueError(f"{study.source}: resources.{key}: a trial asks for {_count(need, what)}, but "
                     f"{available.where} has {_count(have, what)}, so no trial could ever start; {fix}")


def capacity(study: Study, available: Available) -> int:
    """How many trials of `study` fit on `available` at once (at least 1 once placeable)."""
    res = study.resources
    fits = [math.floor(have / need + 1e-9) for need, have in ((res.cpu, available.cpu), (res.gpu, available.gpu))
            if need > 0]
    return max(1, min(fits)) if fits else study.max_concurrent
