"""Test-only fault injection: an epoch hook that raises, poisons the weights, runs out of memory
or kills its worker, and leaves a marker per (trial key, epoch) trained.

Off unless the environment variable GSA_NAS_FAULTS holds a JSON document (read once, here):
`{"markers": DIR, "faults": [{"trial": KEY, "epoch": N, "kind": KIND, "times": T}, ...]}` with
KIND one of raise | nan | oom | kill | hold and T how often the fault fires (default: every time; a
file in DIR remembers across worker processes). It exists so that tests can fail real trials
in real Ray workers and count epochs trained twice; users never set it.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

__all__ = ["ENV_VAR", "FAULT_KINDS", "HOLD_FILE", "Fault", "FaultPlan", "before_epoch", "count_markers"]

ENV_VAR = "GSA_NAS_FAULTS"
FAULT_KINDS: tuple[str, ...] = ("raise", "nan", "oom", "kill", "hold")
HOLD_FILE = "hold"  # while DIR/hold exists, a "hold" fault keeps its trial in its epoch
_OOM_HEADROOM = 64 << 20   # bytes of address space left to a trial running out of memory
_OOM_REQUEST = 8 << 30     # what it then asks for


@dataclass(frozen=True)
class Fault:
    """Fire `kind` when trial `trial` starts epoch `epoch`, at most `times` times
    (None: every time it starts that epoch again, e.g. after each retry)."""

    trial: str
    epoch: int
    kind: str
    times: int | None = None


@dataclass(frozen=True)
class FaultPlan:
    """Where markers go and which faults fire."""

    markers: Path
    faults: tuple[Fault, ...] = ()

    @classmethod
    def from_json(cls, text: str) -> "FaultPlan":
        doc = json.loads(text)
        faults = tuple(Fault(**f) for f in doc.get("faults", ()))
        bad = [f.kind for f in faults if f.kind not in FAULT_KINDS]
        if bad:
            raise ValueError(f"{ENV_VAR}: fault kind {bad[0]!r} is not one of {FAULT_KINDS}")
        return cls(markers=Path(doc["markers"]), faults=faults)

    def to_json(self) -> str:
        return json.dumps({"markers": str(self.markers),
                           "faults": [f.__dict__ for f in self.faults]})


_PLAN = FaultPlan.from_json(os.environ[ENV_VAR]) if os.environ.get(ENV_VAR) else None


def _fires(plan: FaultPlan, fault: Fault) -> bool:
    """Whether `fault` fires now; a fired fault leaves a file, so `times` holds across processes."""
    stem = f"{fault.trial}__e{fault.epoch}__{fault.kind}"
    fired = sum(1 for _ in plan.markers.glob(f"{stem}.fired.*"))
    if fault.times is not None and fired >= fault.times:
        return False
    (plan.markers / f"{stem}.fired.{uuid.uuid4().hex}").touch()
    return True


def _address_space_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    raise OSError("no VmSize in /proc/self/status")


def _run_out_of_memory() -> None:
    """A real failed allocation: lower the soft address-space limit, allocate, restore the limit
    (workers are reused, so the next trial must find the limit as it was)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = _address_space_bytes() + _OOM_HEADROOM
    resource.setrlimit(resource.RLIMIT_AS, (limit if hard == resource.RLIM_INFINITY else min(limit, hard), hard))
    try:
        block = torch.empty(_OOM_REQUEST, dtype=torch.uint8)
        block.fill_(1)  # touch it, should the allocator have reserved lazily
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    raise AssertionError("the injected out-of-memory allocation succeeded; raise _OOM_REQUEST")


def before_epoch(trial_key: str, epoch: int, model: nn.Module) -> None:
    """Record that `trial_key` starts training `epoch`, then fire any fault planned for it."""
    if _PLAN is None:
        return
    _PLAN.markers.mkdir(parents=True, exist_ok=True)
    (_PLAN.markers / f"{trial_key}__e{epoch}__trained.{uuid.uuid4().hex}").touch()
    for fault in _PLAN.faults:
        if fault.trial != trial_key or fault.epoch != epoch or not _fires(_PLAN, fault):
            continue
        if fault.kind == "raise":
            raise RuntimeError(f"injected fault at epoch {epoch}")
        if fault.kind == "nan":
            with torch.no_grad():
                for p in model.parameters():
                    p.fill_(float("nan"))  # the loss goes NaN through the real divergence check
        elif fault.kind == "oom":
            _run_out_of_memory()
        elif fault.kind == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        elif fault.kind == "hold":  # a test stops or kills the run mid-epoch without racing a fast trial
            while (_PLAN.markers / HOLD_FILE).exists():
                time.sleep(0.1)


def count_markers(markers: Path) -> dict[tuple[str, int], int]:
    """How many times each (trial key, epoch) started training, from the markers in `markers`."""
    counts: dict[tuple[str, int], int] = {}
    for path in markers.glob("*__trained.*"):
        key, epoch, _ = path.name.split("__", 2)
        counts[(key, int(epoch[1:]))] = counts.get((key, int(epoch[1:])), 0) + 1
    return counts
