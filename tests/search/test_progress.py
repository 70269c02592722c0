"""The live progress line of a run: counts, each running trial's epoch k/n, an ETA from epochs
done against epochs planned (fake clock), terminal rewrites and the pace of a log."""

from __future__ import annotations

import fcntl
import io
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import time as real_time
from pathlib import Path
from types import SimpleNamespace

import pytest

from reports.run_dir import COMPLETE, INFEASIBLE, PRUNED
from search.tune import progress
from search.tune.progress import (CLEAR_LINE, ProgressLine, Tally, count_live, eta_seconds, fmt_seconds,
                                  progress_line)


class TtyStream(io.StringIO):
    def isatty(self) -> bool:
        return True


def trial(trial_id: str, status: str = "RUNNING", key: str | None = None) -> SimpleNamespace:
    return SimpleNamespace(trial_id=trial_id, status=status, config={"trial_key": key or trial_id})


def result(epoch: int, budget: int) -> dict:
    return {"epoch": epoch, "budget_epochs": budget, "val_acc": 0.5}


def train(tally: Tally, trial_id: str, label: str, epochs: int, budget: int) -> None:
    """`trial_id` reports epochs 1..`epochs` of `budget`, as a trial that starts fresh does."""
    for epoch in range(1, epochs + 1):
        tally.report(trial_id, label, epoch, budget)


def test_progress_line_counts_best_and_eta():
    tally = Tally(planned=4, epochs_per_trial=10, started=0.0)
    train(tally, "a", "both-s0", 10, 10)
    tally.end("a")
    tally.add(COMPLETE, 0.8)
    train(tally, "b", "pos-s0", 4, 10)
    tally.end("b")
    tally.add(PRUNED)
    tally.add(INFEASIBLE)
    line = progress_line("demo", tally, running=0, now=70.0)
    # 14 epochs trained in 70 s; left: two unstarted trials of 10 epochs -> 20 epochs, 100 s
    assert line == ("[demo] 2/4 done (1 complete, 1 pruned, 0 failed, 1 infeasible) | 0 running | "
                    "epochs 14/34 | best val_acc 0.800 | 1m10s, ETA 1m40s")


def test_fmt_seconds_units():
    assert (fmt_seconds(5), fmt_seconds(75), fmt_seconds(3700)) == ("5s", "1m15s", "1h01m")


def test_eta_seconds_unknown_before_the_first_epoch_and_zero_when_nothing_is_left():
    assert eta_seconds(30.0, 0, 10) is None
    assert eta_seconds(30.0, 0, 0) is None
    assert eta_seconds(30.0, 5, 0) == 0.0
    assert eta_seconds(30.0, 5, 10) == pytest.approx(60.0)


def test_tally_plan_is_the_sum_of_epochs_over_planned_trials():
    tally = Tally(planned=3, epochs_per_trial=12)
    assert (tally.epochs_trained, tally.epochs_left) == (0, 36)
    train(tally, "t1", "a", 1, 12)
    train(tally, "t2", "b", 3, 12)
    assert (tally.epochs_trained, tally.epochs_left) == (4, 11 + 9 + 12)


def test_tally_pruned_trial_drops_its_remaining_epochs():
    tally = Tally(planned=2, epochs_per_trial=10)
    train(tally, "t1", "a", 3, 10)
    planned_before = tally.epochs_trained + tally.epochs_left
    tally.add(PRUNED)  # the searcher records the state, then Tune's end hook runs
    tally.end("t1")
    assert planned_before == 20
    assert (tally.epochs_trained, tally.epochs_left) == (3, 10)


def test_tally_restored_trial_counts_only_epochs_trained_this_session():
    tally = Tally(planned=1, epochs_per_trial=10)
    tally.report("t1", "a", 7, 10)  # resumed from a checkpoint at epoch 6
    tally.report("t1", "a", 8, 10)
    assert (tally.epochs_trained, tally.epochs_left) == (2, 2)


def test_progress_eta_with_a_fake_clock_follows_the_pace():
    tally = Tally(planned=2, epochs_per_trial=4, started=100.0)
    cb = ProgressLine("run-a", tally, stream=io.StringIO(), every_s=0.0)
    t1, t2 = trial("1", key="both-s0"), trial("2", key="conv-s0")
    for epoch in (1, 2):
        cb.on_trial_result(1, [t1, t2], t1, result(epoch, 4))
        cb.on_trial_result(1, [t1, t2], t2, result(epoch, 4))
    # 4 epochs in 40 s, 4 left -> 40 s
    line = progress_line("run-a", tally, running=2, now=140.0)
    assert "| 2 running (both-s0 2/4, conv-s0 2/4) | epochs 4/8 |" in line
    assert line.endswith("| 40s, ETA 40s")


def test_progress_line_names_at_most_four_running_trials():
    tally = Tally(planned=6, epochs_per_trial=3, started=0.0)
    for i in range(6):
        tally.report(str(i), f"t{i}", 1, 3)
    line = progress_line("demo", tally, running=6, now=6.0)
    assert "| 6 running (t0 1/3, t1 1/3, t2 1/3, t3 1/3, +2) |" in line


def test_progress_line_trial_end_does_not_count_the_ending_trial_as_running():
    stream = io.StringIO()
    tally = Tally(planned=2)
    ending, other = trial("1"), trial("2")
    ProgressLine("demo", tally, stream=stream).on_trial_complete(1, [ending, other], ending)
    assert "| 1 running |" in stream.getvalue()


def test_progress_line_counts_pending_trials_as_starting():
    trials = [SimpleNamespace(status=s) for s in ("RUNNING", "PENDING", "TERMINATED", "RUNNING")]
    assert count_live(trials, ending=trials[3]) == (1, 1)
    line = progress_line("demo", Tally(planned=3, started=0.0), running=1, now=5.0, starting=1)
    assert line == ("[demo] 0/3 done (0 complete, 0 pruned, 0 failed, 0 infeasible) | 1 running, 1 starting | "
                    "epochs 0/0 | best val_acc - | 5s, ETA ?")
    stream = io.StringIO()
    pending = [SimpleNamespace(status="PENDING"), SimpleNamespace(status="PENDING")]
    ProgressLine("demo", Tally(planned=2), stream=stream, every_s=0.0).on_step_end(1, pending)
    assert "| 0 running, 2 starting |" in stream.getvalue()


def test_progress_line_pending_beyond_capacity_waits_for_resources():
    stream = io.StringIO()
    trials = [SimpleNamespace(status="RUNNING")] + [SimpleNamespace(status="PENDING") for _ in range(3)]
    ProgressLine("demo", Tally(planned=4), stream=stream, every_s=0.0, capacity=2).on_step_end(1, trials)
    assert "| 1 running, 1 starting, 2 waiting for resources |" in stream.getvalue()


def test_progress_log_prints_each_trial_end_and_at_most_one_line_a_minute(monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    stream = io.StringIO()
    cb = ProgressLine("demo", Tally(planned=3, epochs_per_trial=2, started=1000.0), stream=stream)
    t1 = trial("1")
    for _ in range(30):  # steps every 1.5 s for 45 s: no periodic line yet
        clock[0] += 1.5
        cb.on_step_end(1, [t1])
    assert stream.getvalue() == ""
    cb.on_trial_complete(1, [t1], t1)  # a finished trial always gets its line
    for _ in range(50):  # 75 s more: one periodic line, a minute after the last line
        clock[0] += 1.5
        cb.on_step_end(1, [t1])
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2 and "\r" not in stream.getvalue()
    assert all(line.startswith("[demo] ") for line in lines)


def test_progress_terminal_rewrites_one_line_in_place(monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    stream = TtyStream()
    cb = ProgressLine("demo", Tally(planned=1, epochs_per_trial=3, started=0.0), stream=stream)
    t1 = trial("1", key="both-s0")
    for epoch in (1, 2):
        clock[0] += 2.0
        cb.on_trial_result(1, [t1], t1, result(epoch, 3))
        cb.on_step_end(1, [t1])
    cb.close()
    text = stream.getvalue()
    assert text.count(CLEAR_LINE) == 2 and text.count("\n") == 1 and text.endswith("\n")
    assert "both-s0 1/3" in text and "both-s0 2/3" in text


def test_progress_terminal_line_fits_the_terminal_width(monkeypatch):
    monkeypatch.setattr(progress, "terminal_width", lambda stream, default=120: 40)
    stream = TtyStream()
    ProgressLine("demo", Tally(planned=1), stream=stream, every_s=0.0).on_step_end(1, [])
    shown = stream.getvalue()[len(CLEAR_LINE):]
    assert len(shown) == 39 and shown.endswith("…")


def run_on_a_terminal(out: Path, name: str, sets: list[str], columns: int = 200, timeout: float = 420) -> str:
    """`gsa-nas run` with its stdout on a pseudo-terminal of `columns` columns; what the terminal got."""
    repo = Path(__file__).resolve().parents[2]
    main, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    cmd = [sys.executable, "-m", "search.cli", "run", "quickstart", "--out", str(out), "--name", name, "--no-report"]
    for item in sets:
        cmd += ["--set", item]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(repo), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen(cmd, stdout=child, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, env=env, cwd=out)
    os.close(child)
    chunks, deadline = [], real_time.monotonic() + timeout
    try:
        while real_time.monotonic() < deadline:
            try:
                data = os.read(main, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(main)
        proc.wait(timeout=60)
    assert proc.returncode == 0, b"".join(chunks).decode(errors="replace")[-2000:]
    return b"".join(chunks).decode(errors="replace")


@pytest.mark.slow
def test_progress_on_a_terminal_rewrites_one_line_with_each_trial_epoch(tmp_path):
    text = run_on_a_terminal(tmp_path, "onpty", ["train.epochs=3", "seeds=[0]", "variants={both: {}}"])
    rewrites = text.split(CLEAR_LINE)[1:]
    assert len(rewrites) >= 2  # the line is redrawn in place
    assert all(r.startswith("[onpty] ") for r in rewrites)
    assert any(re.search(r"\| 1 running \(both-s0 [123]/3\) \| epochs \d/3 \|", r) for r in rewrites)
    last = rewrites[-1].split("\r\n")
    assert last[0].startswith("[onpty] 1/1 done (1 complete") and "| epochs 3/3 |" in last[0]
    assert last[1].startswith("onpty: finished; 1 record: 1 complete")  # the runner's line starts on its own
