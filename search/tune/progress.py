"""A compact progress line on the terminal instead of Tune's verbose trial table.

The searcher keeps the `Tally` (it is told every trial's end); the `ProgressLine` callback
prints it every few seconds and at each trial's end:
`[search_digits] 5/16 done (3 complete, 2 pruned, 0 failed, 1 infeasible) | 1 running, 1 starting |
best val_acc 0.912 | 1m05s, ETA 2m10s` (one line; "starting": launched, worker still being set up).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

from ray.tune import Callback

from reports.run_dir import COMPLETE, FAILED, INFEASIBLE, PRUNED


@dataclass
class Tally:
    """Counts of finished records in this session and the best final val_acc seen."""

    planned: int
    counts: dict[str, int] = field(default_factory=lambda: {COMPLETE: 0, PRUNED: 0, FAILED: 0, INFEASIBLE: 0})
    best_val_acc: float | None = None
    started: float = field(default_factory=time.monotonic)

    def add(self, state: str, val_acc: float | None = None) -> None:
        self.counts[state] += 1
        if state == COMPLETE and val_acc is not None:
            self.best_val_acc = val_acc if self.best_val_acc is None else max(self.best_val_acc, val_acc)

    @property
    def done(self) -> int:
        """Trained trials that finished (infeasible ones do not count toward the plan)."""
        return self.counts[COMPLETE] + self.counts[PRUNED] + self.counts[FAILED]


def fmt_seconds(seconds: float) -> str:
    """`75` → "1m15s"; `3700` → "1h01m"."""
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


def progress_line(name: str, tally: Tally, running: int, now: float | None = None, starting: int = 0,
                  waiting: int = 0) -> str:
    """The one-line summary; ETA assumes the remaining trials take as long as the finished ones.

    `starting`: launched trials whose worker is still being set up (Tune's PENDING);
    `waiting`: PENDING trials beyond what the cluster can place now (waiting for resources).
    """
    elapsed = (time.monotonic() if now is None else now) - tally.started
    c = tally.counts
    best = "-" if tally.best_val_acc is None else f"{tally.best_val_acc:.3f}"
    left = max(0, tally.planned - tally.done)
    eta = "?"
    active = (f", {starting} starting" if starting else "") + (f", {waiting} waiting for resources" if waiting else "")
    if tally.done:
        eta = fmt_seconds(elapsed / tally.done * left) if left else "0s"
    return (
        f"[{name}] {tally.done}/{tally.planned} done ({c[COMPLETE]} complete, {c[PRUNED]} pruned, "
        f"{c[FAILED]} failed, {c[INFEASIBLE]} infeasible) | {running} running{active} | best val_acc {best} | "
        f"{fmt_seconds(elapsed)}, ETA {eta}"
    )


def count_live(trials: list, ending: Any = None) -> tuple[int, int]:
    """(running, starting) Tune trials, leaving out `ending`.

    Tune marks a trial RUNNING only once its worker actor is built (torch imported, data
    fetched, network built), so a launched trial reads PENDING for its first seconds: those
    count as starting. Tune calls the end hooks while the ending trial still reads RUNNING.
    """
    live = [t for t in trials if t is not ending]
    return (sum(1 for t in live if t.status == "RUNNING"), sum(1 for t in live if t.status == "PENDING"))


class ProgressLine(Callback):
    """Prints `progress_line` at most every `every_s` seconds, and at every trial end."""

    def __init__(self, name: str, tally: Tally, *, every_s: float = 5.0, stream: TextIO | None = None,
                 capacity: int | None = None) -> None:
        self._name, self._tally, self._every, self._capacity = name, tally, every_s, capacity
        self._stream = stream  # None: sys.stdout at print time (Tune pickles callbacks)
        self._last = 0.0

    def _print(self, trials: list, force: bool, ending: Any = None) -> None:
        now = time.monotonic()
        if not force and now - self._last < self._every:
            return
        self._last = now
        running, pending = count_live(trials, ending)
        room = pending if self._capacity is None else max(0, self._capacity - running)
        starting, waiting = min(pending, room), max(0, pending - room)
        print(progress_line(self._name, self._tally, running, now, starting, waiting),
              file=self._stream or sys.stdout, flush=True)

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        self._print(trials, force=False)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._print(trials, force=True, ending=trial)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._print(trials, force=True, ending=trial)
