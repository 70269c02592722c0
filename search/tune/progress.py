"""A progress line people can plan by, instead of Tune's verbose trial table.

The searcher keeps the `Tally` of finished trials; the `ProgressLine` callback follows each running
trial's epochs (Tune's `on_trial_result`) and prints, under the run's name:
`[search_digits] 5/16 done (3 complete, 2 pruned, 0 failed, 1 infeasible) | 2 running (p1f3a-s0 3/12,
p77c0-s0 1/12), 1 starting | epochs 44/150 | best val_acc 0.912 | 1m05s, ETA 2m41s` (one line).
The ETA compares epochs trained in this session with epochs still planned: a pruned trial's
remaining epochs leave the plan. On a terminal the line is rewritten in place; in a log (not a
tty) there is one line per finished trial and at most one a minute besides.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

from ray.tune import Callback

from reports.run_dir import COMPLETE, FAILED, INFEASIBLE, PRUNED
from search.tune.trial_config import RESULT_BUDGET, RESULT_EPOCH, trial_key_of

TTY_EVERY_S = 1.0    # a terminal line is cheap to rewrite
LOG_EVERY_S = 60.0   # a log gets a line per finished trial, and otherwise at most one a minute
SHOWN_TRIALS = 4     # running trials named on the line; more read as "+N"
CLEAR_LINE = "\r\x1b[K"  # carriage return, then erase to the end of the line


@dataclass
class LiveTrial:
    """A running trial as its results tell it: the epoch it started this session from (a restored
    trial continues from its checkpoint), its latest epoch and its budget."""

    label: str
    first: int
    epoch: int
    budget: int

    @property
    def trained(self) -> int:
        return self.epoch - self.first

    @property
    def left(self) -> int:
        return max(0, self.budget - self.epoch)


@dataclass
class Tally:
    """This session's plan and progress: finished records by state, the best final val_acc, and the
    epochs of running and finished trials.

    `planned` trials will train; each not yet reporting is planned at `epochs_per_trial` epochs.
    """

    planned: int
    epochs_per_trial: int = 0
    counts: dict[str, int] = field(default_factory=lambda: {COMPLETE: 0, PRUNED: 0, FAILED: 0, INFEASIBLE: 0})
    best_val_acc: float | None = None
    started: float = field(default_factory=time.monotonic)
    live: dict[str, LiveTrial] = field(default_factory=dict)
    trained_finished: int = 0  # epochs trained in this session by trials that have ended

    def add(self, state: str, val_acc: float | None = None) -> None:
        self.counts[state] += 1
        if state == COMPLETE and val_acc is not None:
            self.best_val_acc = val_acc if self.best_val_acc is None else max(self.best_val_acc, val_acc)

    def report(self, trial_id: str, label: str, epoch: int, budget: int) -> None:
        """A running trial reported `epoch` of `budget`."""
        known = self.live.get(trial_id)
        first = epoch - 1 if known is None else known.first
        self.live[trial_id] = LiveTrial(label=label, first=first, epoch=epoch, budget=budget)

    def end(self, trial_id: str) -> None:
        """A trial ended (complete, pruned or failed): its remaining epochs leave the plan."""
        known = self.live.pop(trial_id, None)
        if known is not None:
            self.trained_finished += known.trained

    @property
    def done(self) -> int:
        """Trained trials that finished (infeasible ones do not count toward the plan)."""
        return self.counts[COMPLETE] + self.counts[PRUNED] + self.counts[FAILED]

    @property
    def epochs_trained(self) -> int:
        """Epochs trained in this session, by finished and running trials."""
        return self.trained_finished + sum(t.trained for t in self.live.values())

    @property
    def epochs_left(self) -> int:
        """Epochs still planned: the rest of each running trial's budget, and full budgets for the
        trials that have not reported yet."""
        unstarted = max(0, self.planned - self.done - len(self.live))
        return sum(t.left for t in self.live.values()) + unstarted * self.epochs_per_trial


def fmt_seconds(seconds: float) -> str:
    """`75` → "1m15s"; `3700` → "1h01m"."""
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s}s"


def eta_seconds(elapsed: float, trained: int, left: int) -> float | None:
    """Seconds until `left` more epochs are trained at the pace so far (`trained` epochs in `elapsed`
    seconds, concurrency included); None before the first epoch."""
    if trained <= 0:
        return None
    if left <= 0:
        return 0.0
    return elapsed / trained * left


def running_part(tally: Tally, running: int) -> str:
    """`2 running (both-s0 3/12, conv-s1 1/12)`: each running trial's latest epoch of its budget."""
    live = sorted(tally.live.values(), key=lambda t: t.label)
    if not running or not live:
        return f"{running} running"
    shown = ", ".join(f"{t.label} {t.epoch}/{t.budget}" for t in live[:SHOWN_TRIALS])
    more = f", +{len(live) - SHOWN_TRIALS}" if len(live) > SHOWN_TRIALS else ""
    return f"{running} running ({shown}{more})"


def progress_line(name: str, tally: Tally, running: int, now: float | None = None, starting: int = 0,
                  waiting: int = 0) -> str:
    """The one-line summary under the run's `name`; the ETA is epochs left at the pace so far.

    `starting`: launched trials whose worker is still being set up (Tune's PENDING);
    `waiting`: PENDING trials beyond what the cluster can place now (waiting for resources).
    """
    elapsed = (time.monotonic() if now is None else now) - tally.started
    c = tally.counts
    best = "-" if tally.best_val_acc is None else f"{tally.best_val_acc:.3f}"
    active = (f", {starting} starting" if starting else "") + (f", {waiting} waiting for resources" if waiting else "")
    trained, left = tally.epochs_trained, tally.epochs_left
    eta = eta_seconds(elapsed, trained, left)
    return (
        f"[{name}] {tally.done}/{tally.planned} done ({c[COMPLETE]} complete, {c[PRUNED]} pruned, "
        f"{c[FAILED]} failed, {c[INFEASIBLE]} infeasible) | {running_part(tally, running)}{active} | "
        f"epochs {trained}/{trained + left} | best val_acc {best} | "
        f"{fmt_seconds(elapsed)}, ETA {'?' if eta is None else fmt_seconds(eta)}"
    )


def count_live(trials: list, ending: Any = None) -> tuple[int, int]:
    """(running, starting) Tune trials, leaving out `ending`.

    Tune marks a trial RUNNING only once its worker actor is built (torch imported, data
    fetched, network built), so a launched trial reads PENDING for its first seconds: those
    count as starting. Tune calls the end hooks while the ending trial still reads RUNNING.
    """
    live = [t for t in trials if t is not ending]
    return (sum(1 for t in live if t.status == "RUNNING"), sum(1 for t in live if t.status == "PENDING"))


def terminal_width(stream: TextIO, default: int = 120) -> int:
    """Columns of the terminal behind `stream` (a longer line would wrap and defeat `\\r`)."""
    try:
        return os.get_terminal_size(stream.fileno()).columns or default
    except (OSError, ValueError, AttributeError):
        return default


def is_terminal(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (ValueError, AttributeError):  # a closed or odd stream reads as a log
        return False


class ProgressLine(Callback):
    """Prints `progress_line`: on a terminal rewritten in place every `every_s` (default 1 s), in a
    log a new line at every trial end and at most every `every_s` (default a minute) besides.

    `name` is the run's name (its directory's), `capacity` the trials the cluster can run at once.
    """

    def __init__(self, name: str, tally: Tally, *, every_s: float | None = None, stream: TextIO | None = None,
                 capacity: int | None = None) -> None:
        self._name, self._tally, self._every, self._capacity = name, tally, every_s, capacity
        self._stream = stream  # None: sys.stdout at print time (Tune pickles callbacks)
        self._last = time.monotonic()
        self._open = False  # a terminal line is on screen without its newline

    def _out(self) -> TextIO:
        return self._stream or sys.stdout

    def _print(self, trials: list, force: bool, ending: Any = None) -> None:
        out = self._out()
        tty = is_terminal(out)
        every = self._every if self._every is not None else (TTY_EVERY_S if tty else LOG_EVERY_S)
        now = time.monotonic()
        if not force and now - self._last < every:
            return
        self._last = now
        running, pending = count_live(trials, ending)
        room = pending if self._capacity is None else max(0, self._capacity - running)
        starting, waiting = min(pending, room), max(0, pending - room)
        line = progress_line(self._name, self._tally, running, now, starting, waiting)
        if tty:
            width = terminal_width(out)
            out.write(CLEAR_LINE + (line if len(line) < width else line[: width - 2] + "…"))
            self._open = True
        else:
            out.write(line + "\n")
        out.flush()

    def close(self) -> None:
        """End a terminal line that is still open, so that what follows starts on its own line."""
        if self._open:
            self._open = False
            self._out().write("\n")
            self._out().flush()

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        if RESULT_EPOCH in result:
            budget = int(result.get(RESULT_BUDGET) or self._tally.epochs_per_trial)
            self._tally.report(trial.trial_id, trial_key_of(trial.config), int(result[RESULT_EPOCH]), budget)

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        self._print(trials, force=False)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._tally.end(trial.trial_id)
        self._print(trials, force=True, ending=trial)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._tally.end(trial.trial_id)
        self._print(trials, force=True, ending=trial)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self.close()
