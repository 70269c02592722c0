"""Resume: the `--resume` checks (fast, no Ray), then fault injection (slow): SIGKILL the driver.

The slow part: once the Optuna DB shows a finished trial and a running one with at least one
epoch, the driver and every process it started (found through /proc, before the kill) get
SIGKILL. The resume must leave exactly one finished record per planned trial.
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

from search.cli import main
from reports.run_dir import write_run_record
from search.runner import check_resume_sets, end_summary, interrupted_note, resume_hint, run_record
from search.study import load_study, study_to_yaml
from search.tune.ledger import Ledger, open_study
from search.tune.plan import pending_reruns, plan_work

slow = pytest.mark.slow
optuna.logging.set_verbosity(optuna.logging.WARNING)

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
    """(COMPLETE trials, RUNNING trials with a recorded checkpoint) in the run's Optuna DB. A
    recorded epoch is not enough: killed between its report and its checkpoint, a trial would
    rightly restart from epoch 1, and the test could not tell."""
    if not db.exists():
        return 0, 0
    try:
        with sqlite3.connect(db, timeout=1) as con:
            done = con.execute("SELECT COUNT(*) FROM trials WHERE state='COMPLETE'").fetchone()[0]
            running = con.execute(
                "SELECT COUNT(*) FROM trials t JOIN trial_user_attributes a ON a.trial_id=t.trial_id "
                "WHERE t.state='RUNNING' AND a.key='checkpoint'").fetchone()[0]
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
    return {"dir": run_dir, "status_before": before, "stdout": proc.stdout, "done_at_kill": killed_at[0]}


@slow
def test_resume_killed_run_was_left_running(resumed):
    assert resumed["status_before"] == "running"
    assert (f"({resumed['done_at_kill']} already finished; 1 trial interrupted (closed in the Optuna storage "
            "as FAIL 'interrupted'; it is re-run in this session))") in resumed["stdout"]


@slow
def test_resume_one_finished_record_per_planned_trial_in_results(resumed):
    frame = pd.read_csv(resumed["dir"] / "results.csv")
    assert sorted(frame["trial_id"]) == KEYS
    assert list(frame["state"]) == ["complete"] * 4 and list(frame["epochs"]) == [5] * 4


@slow
def test_resume_ledger_has_no_running_and_one_record_per_key(resumed):
    study = optuna.load_study(study_name="quickstart", storage=f"sqlite:///{resumed['dir'] / 'optuna.db'}")
    trials = study.get_trials()
    assert [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)] == []
    finished = [t for t in trials if t.user_attrs.get("reason") != "interrupted"]
    interrupted = [t for t in trials if t.user_attrs.get("reason") == "interrupted"]
    assert sorted(t.user_attrs["trial_key"] for t in finished) == KEYS
    assert len(interrupted) == 1
    assert (interrupted[0].state, interrupted[0].user_attrs["gsa_state"]) == (TrialState.FAIL, "failed")


@slow
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


@slow
def test_resume_run_json_finished(resumed):
    meta = json.loads((resumed["dir"] / "run.json").read_text())
    assert meta["status"] == "finished" and meta["finished"] is not None


# --- fast: the --resume checks and the interrupted-trial bookkeeping, no Ray ---------------------

SAFE_RULE = "(a resume may change only num_samples, max_concurrent, resources.*, max_rejections, loggers)"


def stored_run(tmp_path: Path, study: str, sets: dict) -> Path:
    """A run directory as `gsa-nas run` leaves it before training: study.yaml and run.json."""
    st = load_study(study, sets)
    run_dir = tmp_path / st.name
    run_dir.mkdir()
    (run_dir / "study.yaml").write_text(study_to_yaml(st))
    write_run_record(run_dir, run_record(st, name=st.name, storage=f"sqlite:///{run_dir / 'optuna.db'}",
                                         started="2025-01-01T00:00:00"))
    return run_dir


def snapshot(run_dir: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(run_dir.iterdir())}


def test_resume_set_train_epochs_exits_2_and_writes_nothing(tmp_path, capsys):
    run_dir = stored_run(tmp_path, "quickstart", {"train.epochs": 2})
    before = snapshot(run_dir)
    assert main(["run", "--resume", str(run_dir), "--set", "train.epochs=3"]) == 2
    assert capsys.readouterr().err == (f"gsa-nas: error: --resume {run_dir}: --set train.epochs changes the planned "
                                       f"trials {SAFE_RULE}; start a new run with --name instead\n")
    assert snapshot(run_dir) == before


@pytest.mark.parametrize("study, key, value", [
    ("quickstart", "train.lr", 0.01), ("quickstart", "seeds", [5]), ("quickstart", "model.variant", "resnet_tiny"),
    ("quickstart", "data.seed", 3), ("quickstart", "variants", {"both": {}}),
    ("search_digits", "space", {"gsa.heads": {"choice": [1, 2]}}), ("search_digits", "sampler.seed", 1),
    ("search_digits", "pruner.name", "none"), ("search_digits", "objectives", {"val_acc": "min"}),
    ("search_digits", "constraints", {}),
])
def test_check_resume_sets_rejects_key_that_changes_trials(tmp_path, study, key, value):
    run_dir = stored_run(tmp_path, study, {})
    with pytest.raises(ValueError) as err:
        check_resume_sets("runs/x", run_dir / "study.yaml", {key: value})
    assert str(err.value) == (f"--resume runs/x: --set {key} changes the planned trials {SAFE_RULE}; "
                              "start a new run with --name instead")


def test_check_resume_sets_accepts_safe_keys_and_unchanged_values(tmp_path):
    run_dir = stored_run(tmp_path, "search_digits", {"train.epochs": 2})
    sets = {"num_samples": 40, "max_concurrent": 1, "resources.cpu": 2, "resources": {"cpu": 1, "gpu": 0},
            "max_rejections": 7, "train.epochs": 2, "sampler.seed": 0}
    assert check_resume_sets("runs/x", run_dir / "study.yaml", sets) is None


def test_resume_with_study_argument_exits_2(tmp_path, capsys):
    run_dir = stored_run(tmp_path, "quickstart", {})
    before = snapshot(run_dir)
    assert main(["run", "search_digits", "--resume", str(run_dir)]) == 2
    assert capsys.readouterr().err == (f"gsa-nas: error: gsa-nas run: give a study or --resume RUN_DIR, not both "
                                       f"(got 'search_digits' and --resume {run_dir}); a resumed run uses its own "
                                       "study.yaml\n")
    assert snapshot(run_dir) == before


def test_resume_with_name_or_out_exits_2(tmp_path, capsys):
    run_dir = stored_run(tmp_path, "quickstart", {})
    before = snapshot(run_dir)
    assert main(["run", "--resume", str(run_dir), "--name", "other", "--out", str(tmp_path / "elsewhere")]) == 2
    assert capsys.readouterr().err == (f"gsa-nas: error: gsa-nas run: --name and --out differ from "
                                       f"--resume {run_dir}; a resumed run keeps its directory and name\n")
    assert snapshot(run_dir) == before
    assert not (tmp_path / "elsewhere").exists()


def test_check_resume_place_accepts_the_original_name_and_out(tmp_path):
    from search.runner import _open_run

    run_dir = stored_run(tmp_path, "quickstart", {})
    study, opened, _, _ = _open_run(None, run_dir.name, str(run_dir.parent), None, {}, str(run_dir))
    assert (study.name, opened) == ("quickstart", run_dir)


def test_resume_missing_directory_says_it_does_not_exist(tmp_path, capsys):
    missing = tmp_path / "no" / "such"
    assert main(["run", "--resume", str(missing)]) == 2
    assert capsys.readouterr().err.startswith(f"gsa-nas: error: --resume {missing}: the directory does not exist;")
    assert not (tmp_path / "no").exists()


def test_resume_directory_without_run_files_names_them(tmp_path, capsys):
    assert main(["run", "--resume", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith(f"gsa-nas: error: --resume {tmp_path}: no study.yaml/run.json there;")


def test_plan_ablation_counts_interrupted_trial_as_rerun():
    study = load_study("quickstart", {"seeds": [0], "variants": {"both": {}, "conv": {"model.variant": "resnet_tiny"}}})
    ledger = Ledger(open_study("sqlite:///:memory:", "unit", ["max"]))
    assert plan_work(study, ledger).rerun == 0
    running = ledger.study.ask()  # both-s0 starts, then the session dies
    ledger.close_running()
    assert running.user_attrs["trial_key"] == "both-s0"
    assert pending_reruns(study, ledger) == {"both-s0"}
    plan = plan_work(study, ledger)
    assert (plan.to_launch, plan.finished, plan.enqueued, plan.rerun) == (2, 0, 1, 1)


def test_plan_search_reruns_interrupted_trial_within_num_samples():
    study = load_study("search_digits", {"num_samples": 2})
    ledger = Ledger(open_study("sqlite:///:memory:", "unit", ["max"]))
    lost = ledger.study.ask({"train.lr": optuna.distributions.FloatDistribution(1e-3, 1e-2, log=True)})
    ledger.set_attrs(lost.number, {"trial_key": "trial_0000", "seed": 0})
    ledger.close_running()
    plan = plan_work(study, ledger)
    assert (plan.to_launch, plan.finished, plan.enqueued, plan.rerun) == (2, 0, 1, 1)
    assert pending_reruns(study, ledger) == {"trial_0000"}
    again = ledger.study.ask()  # the re-run: a new Optuna number, the same key and params
    fixed = ledger.frozen(again.number).system_attrs["fixed_params"]
    assert (again.number, again.user_attrs["trial_key"], fixed) == (1, "trial_0000", lost.params)


def test_interrupted_note_singular_and_plural():
    assert interrupted_note(1, now=False) == (
        "1 trial interrupted (closed in the Optuna storage as FAIL 'interrupted'; it is re-run on --resume)")
    assert interrupted_note(2, now=True) == (
        "2 trials interrupted (closed in the Optuna storage as FAIL 'interrupted'; they are re-run in this session)")


def test_end_summary_and_resume_hint_name_the_interrupted_trial():
    run_dir = Path("runs/q")
    states = ["complete", "infeasible", "complete"]
    note = "1 trial interrupted (closed in the Optuna storage as FAIL 'interrupted'; it is re-run on --resume)"
    assert end_summary("q", "interrupted", states, run_dir, lost=1) == (
        f"q: interrupted; 3 records: 2 complete, 1 infeasible; {note}; results in runs/q/results.csv")
    assert resume_hint(run_dir, lost=1) == ("interrupted; continue with: gsa-nas run --resume runs/q "
                                            "(it re-runs the 1 interrupted trial)")
    assert resume_hint(run_dir, lost=0) == "interrupted; continue with: gsa-nas run --resume runs/q"
    assert end_summary("q", "finished", [], run_dir) == "q: finished; 0 records; results in runs/q/results.csv"
