"""Fault injection: SIGKILL the `gsa-nas run` driver mid-study, then `--resume` the run directory.

The driver runs in its own session; once the Optuna DB shows a finished trial and a running one
with at least one epoch, the driver and every process it started (found through /proc, before
the kill) get SIGKILL. The resume must leave exactly one finished record per planned trial.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState

pytestmark = pytest.mark.slow

SETS = ["train.epochs=5", "seeds=[0, 1]", "max_concurrent=1",
        "variants={both: {}, conv: {model.variant: resnet_tiny}}"]
KEYS = ["both-s0", "both-s1", "conv-s0", "conv-s1"]


def run_cmd(out: Path, *extra: str) -> list[str]:
    cmd = [sys.executable, "-m", "search.cli", "run", *extra, "--out", str(out), "--no-report"]
    for item in SETS:
        cmd += ["--set", item]
    return cmd


def descendants(pid: int) -> set[int]:
    """Every live process below `pid` (children by /proc/<p>/stat's ppid)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, pp in parents.items() if pp in frontier} - found
        found |= frontier
    return found


def db_progress(db: Path) -> tuple[int, int]:
    """(COMPLETE trials, RUNNING trials with a recorded epoch) in the run's Optuna DB."""
    if not db.exists():
        return 0, 0
    try:
        with sqlite3.connect(db, timeout=1) as con:
            done = con.execute("SELECT COUNT(*) FROM trials WHERE state='COMPLETE'").fetchone()[0]
            running = con.execute(
                "SELECT COUNT(*) FROM trials t JOIN trial_user_attributes a ON a.trial_id=t.trial_id "
                "WHERE t.state='RUNNING' AND a.key='epochs' AND a.value_json NOT IN ('0')").fetchone()[0]
        return done, running
    except sqlite3.Error:
        return 0, 0


@pytest.fixture(scope="module")
def resumed(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    run_dir = out / "quickstart"
    driver = subprocess.Popen(run_cmd(out, "quickstart"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    deadline, killed_at = time.monotonic() + 240, None
    try:
        while time.monotonic() < deadline and driver.poll() is None:
            done, running = db_progress(run_dir / "optuna.db")
            if done >= 1 and running >= 1:
                killed_at = (done, running)
                break
            time.sleep(0.5)
    finally:
        family = descendants(driver.pid)
        for pid in [driver.pid, *family]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        driver.wait(timeout=30)
    assert killed_at is not None, "the run finished or stalled before it could be killed mid-study"
    before = json.loads((run_dir / "run.json").read_text())["status"]
    proc = subprocess.run(run_cmd(out, "--resume", str(run_dir)), capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return {"dir": run_dir, "status_before": before, "stdout": proc.stdout}


def test_resume_killed_run_was_left_running(resumed):
    assert resumed["status_before"] == "running"
    assert "1 interrupted closed" in resumed["stdout"]


def test_resume_one_finished_record_per_planned_trial_in_results(resumed):
    frame = pd.read_csv(resumed["dir"] / "results.csv")
    assert sorted(frame["trial_id"]) == KEYS
    assert list(frame["state"]) == ["complete"] * 4 and list(frame["epochs"]) == [5] * 4


def test_resume_ledger_has_no_running_and_one_record_per_key(resumed):
    study = optuna.load_study(study_name="quickstart", storage=f"sqlite:///{resumed['dir'] / 'optuna.db'}")
    trials = study.get_trials()
    assert [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)] == []
    finished = [t for t in trials if t.user_attrs.get("reason") != "interrupted"]
    interrupted = [t for t in trials if t.user_attrs.get("reason") == "interrupted"]
    assert sorted(t.user_attrs["trial_key"] for t in finished) == KEYS
    assert len(interrupted) == 1
    assert (interrupted[0].state, interrupted[0].user_attrs["gsa_state"]) == (TrialState.FAIL, "failed")


def test_resume_interrupted_trial_continues_from_its_checkpoint(resumed):
    study = optuna.load_study(study_name="quickstart", storage=f"sqlite:///{resumed['dir'] / 'optuna.db'}")
    lost = next(t for t in study.get_trials() if t.user_attrs.get("reason") == "interrupted")
    key = lost.user_attrs["trial_key"]
    redo = next(t for t in study.get_trials() if t.user_attrs.get("trial_key") == key and t.state == TrialState.COMPLETE)
    assert redo.user_attrs["restored_epochs"] >= 1  # training went on from last.pt, not from epoch 1
    assert redo.user_attrs["restored_epochs"] >= lost.user_attrs["epochs"]
    assert next((resumed["dir"] / "tune" / "session_2").glob(f"{key}_*")).is_dir()
    assert sorted(redo.intermediate_values) == [1, 2, 3, 4, 5]
    assert [r["epoch"] for r in redo.user_attrs["curve"]] == [1, 2, 3, 4, 5]


def test_resume_run_json_finished(resumed):
    meta = json.loads((resumed["dir"] / "run.json").read_text())
    assert meta["status"] == "finished" and meta["finished"] is not None
