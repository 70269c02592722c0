"""The live progress line of a run: counts, best value, ETA and starting trials."""

from __future__ import annotations

import io
from types import SimpleNamespace

from reports.run_dir import COMPLETE, INFEASIBLE, PRUNED
from search.tune.progress import ProgressLine, Tally, count_live, fmt_seconds, progress_line


def test_progress_line_counts_best_and_eta():
    tally = Tally(planned=4, started=0.0)
    tally.add(COMPLETE, 0.8)
    tally.add(PRUNED)
    tally.add(INFEASIBLE)
    line = progress_line("demo", tally, running=2, now=60.0)
    assert line == ("[demo] 2/4 done (1 complete, 1 pruned, 0 failed, 1 infeasible) | 2 running | "
                    "best val_acc 0.800 | 1m00s, ETA 1m00s")


def test_fmt_seconds_units():
    assert (fmt_seconds(5), fmt_seconds(75), fmt_seconds(3700)) == ("5s", "1m15s", "1h01m")


def test_progress_line_trial_end_does_not_count_the_ending_trial_as_running():
    stream = io.StringIO()
    tally = Tally(planned=2)
    ending, other = SimpleNamespace(status="RUNNING"), SimpleNamespace(status="RUNNING")
    ProgressLine("demo", tally, stream=stream).on_trial_complete(1, [ending, other], ending)
    assert "| 1 running |" in stream.getvalue()


def test_progress_line_counts_pending_trials_as_starting():
    trials = [SimpleNamespace(status=s) for s in ("RUNNING", "PENDING", "TERMINATED", "RUNNING")]
    assert count_live(trials, ending=trials[3]) == (1, 1)
    line = progress_line("demo", Tally(planned=3, started=0.0), running=1, now=5.0, starting=1)
    assert line == ("[demo] 0/3 done (0 complete, 0 pruned, 0 failed, 0 infeasible) | 1 running, 1 starting | "
                    "best val_acc - | 5s, ETA ?")
    stream = io.StringIO()
    pending = [SimpleNamespace(status="PENDING"), SimpleNamespace(status="PENDING")]
    ProgressLine("demo", Tally(planned=2), stream=stream, every_s=0.0).on_step_end(1, pending)
    assert "| 0 running, 2 starting |" in stream.getvalue()


def test_progress_line_pending_beyond_capacity_waits_for_resources():
    stream = io.StringIO()
    trials = [SimpleNamespace(status="RUNNING")] + [SimpleNamespace(status="PENDING") for _ in range(3)]
    ProgressLine("demo", Tally(planned=4), stream=stream, every_s=0.0, capacity=2).on_step_end(1, trials)
    assert "| 1 running, 1 starting, 2 waiting for resources |" in stream.getvalue()
