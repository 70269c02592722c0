"""The fault matrix: real Ray, Optuna and SQLite runs through the CLI with faults injected, and the
checks that cost no Ray (damaged files, careless input) against the same invariants.

Trial faults go in through the test-only epoch hook (`search.faults`, GSA_NAS_FAULTS), which also
leaves a marker per (trial key, epoch) started, so that work done twice is counted. After every
run: each planned trial key has exactly one current record in results.csv and in the Optuna
storage, no trial is left RUNNING or WAITING, no (trial key, epoch) started twice except the
epoch in progress when a process died, and run.json's status says what happened.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState

from search.faults import ENV_VAR, HOLD_FILE, Fault, FaultPlan, count_markers

ROOT = Path(__file__).resolve().parents[2]
ABLATION_SETS = ["train.epochs=2", "seeds=[0]", "max_concurrent=2"]
ABLATION_KEYS = ["both-s0", "content_only-s0", "positional_only-s0", "conv-s0"]
SEARCH_SETS = ["train.epochs=2", "num_samples=2", "constraints={}", "pruner.name=none", "max_concurrent=2"]
optuna.logging.set_verbosity(optuna.logging.WARNING)


def cli_cmd(*args: str, sets: list[str] = ()) -> list[str]:
    cmd = [sys.executable, "-m", "search.cli", *args]
    for item in sets:
        cmd += ["--set", item]
    return cmd


def cli_env(plan: FaultPlan | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != ENV_VAR}
    if plan is not None:
        env[ENV_VAR] = plan.to_json()
    return env


def cli(*args: str, sets: list[str] = (), plan: FaultPlan | None = None, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run(cli_cmd(*args, sets=sets), cwd=ROOT, env=cli_env(plan), capture_output=True, text=True,
                          timeout=timeout)


def trials(run_dir: Path) -> list[optuna.trial.FrozenTrial]:
    name = json.loads((run_dir / "run.json").read_text())["optuna_study"]
    return optuna.load_study(study_name=name, storage=f"sqlite:///{run_dir / 'optuna.db'}").trials


def current_records(run_dir: Path) -> dict[str, list[int]]:
    """Trial key -> Optuna numbers of its current records (finished, not closed as interrupted,
    not superseded by a --retry-failed attempt); one each is the invariant."""
    name = json.loads((run_dir / "run.json").read_text())["optuna_study"]
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{run_dir / 'optuna.db'}")
    superseded = {int(k) for k in study.user_attrs.get("superseded_by", {})}
    out: dict[str, list[int]] = {}
    for t in study.trials:
        if (t.state.is_finished() and "gsa_state" in t.user_attrs and t.user_attrs.get("reason") != "interrupted"
                and t.number not in superseded):
            out.setdefault(t.user_attrs["trial_key"], []).append(t.number)
    return out


def check_invariants(run_dir: Path, keys: list[str], markers: Path, *, status: str,
                     died_in: Counter | None = None) -> pd.DataFrame:
    """The fault matrix's invariants; returns results.csv for the case's own checks.

    `died_in[(key, epoch)]`: how many times a process died while that epoch was in progress;
    each death may cost that epoch one more start, nothing else may start twice.
    """
    died_in = died_in or Counter()
    results = pd.read_csv(run_dir / "results.csv")
    assert sorted(results["trial_id"]) == sorted(keys)
    assert {k: len(v) for k, v in current_records(run_dir).items()} == dict.fromkeys(keys, 1)
    assert [t.number for t in trials(run_dir) if t.state in (TrialState.RUNNING, TrialState.WAITING)] == []
    twice = {ke: n for ke, n in count_markers(markers).items() if n > 1}
    assert {ke: n for ke, n in twice.items() if n > 1 + died_in[ke]} == {}, (twice, died_in)
    assert json.loads((run_dir / "run.json").read_text())["status"] == status
    return results


def markers_plan(tmp_path: Path, *faults: Fault) -> FaultPlan:
    return FaultPlan(markers=tmp_path / "markers", faults=tuple(faults))


def in_progress(markers: Path) -> set[tuple[str, int]]:
    """(key, latest epoch started) of every trial with a marker: what a kill may interrupt."""
    latest: dict[str, int] = {}
    for key, epoch in count_markers(markers):
        latest[key] = max(latest.get(key, 0), epoch)
    return set(latest.items())


def wait_for(predicate, timeout: float = 600.0, proc: subprocess.Popen | None = None) -> None:
    """Poll `predicate`; fail at once, with its output, should `proc` end first."""
    end = time.monotonic() + timeout
    while not predicate():
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"exit {proc.returncode} before the condition held:\n{out[-1500:]}\n{err[-3000:]}")
        assert time.monotonic() < end, "timed out"
        time.sleep(0.5)


def descendants(pid: int) -> set[int]:
    """Every live process below `pid` (by /proc/<p>/stat's ppid)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, pp in parents.items() if pp in frontier} - found
        found |= frontier
    return found


def run_then_kill(cmd: list[str], env: dict[str, str], ready, timeout: float = 400) -> subprocess.Popen:
    """Start the CLI `cmd` in a session of its own; once `ready()` holds (or it exits), SIGKILL it
    and every process below it (found before the first dies). Returns the finished Popen."""
    driver = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              start_new_session=True)
    try:
        wait_for(lambda: ready() or driver.poll() is not None, timeout)
    finally:
        for pid in [driver.pid, *descendants(driver.pid)]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        driver.communicate(timeout=60)
    return driver


# --- slow: trial faults in one ablation, then --retry-failed --------------------------------------

@pytest.fixture(scope="module")
def trial_faults(tmp_path_factory):
    """One run: raise once, NaN loss, SIGKILL of the worker once, real out-of-memory every time;
    then `--resume --retry-failed` without faults."""
    tmp = tmp_path_factory.mktemp("trial_faults")
    plan = markers_plan(tmp, Fault("both-s0", 2, "raise", times=1), Fault("content_only-s0", 2, "nan"),
                        Fault("positional_only-s0", 2, "kill", times=1), Fault("conv-s0", 2, "oom"))
    first = cli("run", "quickstart", "--out", str(tmp), "--no-report", sets=ABLATION_SETS, plan=plan)
    run_dir = tmp / "quickstart"
    after_first = pd.read_csv(run_dir / "results.csv")
    markers_first = count_markers(plan.markers)
    retry = cli("run", "--resume", str(run_dir), "--retry-failed", "--no-report",
                plan=markers_plan(tmp))  # markers only
    return {"first": first, "retry": retry, "dir": run_dir, "plan": plan, "after_first": after_first,
            "markers_first": markers_first}


@pytest.mark.slow
def test_fault_matrix_trial_faults_never_stop_the_study(trial_faults):
    first, frame = trial_faults["first"], trial_faults["after_first"].set_index("trial_id")
    assert first.returncode == 0, first.stderr
    assert frame["state"].to_dict() == {"both-s0": "complete", "content_only-s0": "failed",
                                        "positional_only-s0": "complete", "conv-s0": "failed"}
    assert frame.loc["content_only-s0", "reason"].startswith("diverged: loss=nan at epoch 2")
    assert "can't allocate memory" in frame.loc["conv-s0", "reason"]
    assert pd.isna(frame.loc["both-s0", "reason"])  # recovered from its raise: no stale reason
    # the raise and the kill were retried from the epoch-1 checkpoint; OOM once per attempt (max_failures 1)
    assert trial_faults["markers_first"] == {
        ("both-s0", 1): 1, ("both-s0", 2): 2, ("content_only-s0", 1): 1, ("content_only-s0", 2): 1,
        ("positional_only-s0", 1): 1, ("positional_only-s0", 2): 2, ("conv-s0", 1): 1, ("conv-s0", 2): 2}


@pytest.mark.slow
def test_fault_matrix_retry_failed_reruns_failed_not_diverged(trial_faults):
    retry, run_dir = trial_faults["retry"], trial_faults["dir"]
    assert retry.returncode == 0, retry.stderr
    assert "1 failed trial retried" in retry.stdout
    # raise, kill, oom twice (an attempt and its retry): each time epoch 2 was in progress
    died = Counter({("both-s0", 2): 1, ("positional_only-s0", 2): 1, ("conv-s0", 2): 2})
    frame = check_invariants(run_dir, ABLATION_KEYS, trial_faults["plan"].markers, status="finished",
                             died_in=died).set_index("trial_id")
    assert frame["state"].to_dict() == {"both-s0": "complete", "content_only-s0": "failed",
                                        "positional_only-s0": "complete", "conv-s0": "complete"}
    conv = sorted((t for t in trials(run_dir) if t.user_attrs.get("trial_key") == "conv-s0"), key=lambda t: t.number)
    assert [(t.state, t.user_attrs.get("retry_of")) for t in conv] == [
        (TrialState.FAIL, None), (TrialState.COMPLETE, conv[0].number)]
    study_attrs = optuna.load_study(study_name="quickstart", storage=f"sqlite:///{run_dir / 'optuna.db'}").user_attrs
    assert study_attrs["superseded_by"] == {str(conv[0].number): conv[1].number}
    assert json.loads((run_dir / "run.json").read_text())["report"] == "skipped (--no-report)"


# --- slow: the driver stopped with SIGTERM, then SIGKILL, a second driver refused -----------------

@pytest.fixture(scope="module")
def driver_faults(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("driver_faults")
    # Every trial waits in epoch 2 while markers/hold exists, so the signals below always find the
    # run mid-epoch, however fast the trials are; the final resume runs without the gate.
    plan = markers_plan(tmp, *(Fault(key, 2, "hold") for key in ABLATION_KEYS))
    plan.markers.mkdir()
    (plan.markers / HOLD_FILE).touch()
    run_dir = tmp / "quickstart"
    out = {"dir": run_dir, "plan": plan, "died": Counter()}
    sets = ["train.epochs=3", "seeds=[0]", "max_concurrent=2"]
    proc = subprocess.Popen(cli_cmd("run", "quickstart", "--out", str(tmp), "--no-report", sets=sets), cwd=ROOT,
                            env=cli_env(plan), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: len(count_markers(plan.markers)) >= 2, proc=proc)
    second = cli("run", "--resume", str(run_dir), "--no-report")
    out["second"] = second
    stopped = in_progress(plan.markers)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=300)
    out["died"].update(stopped | in_progress(plan.markers))
    out["sigterm"] = (proc.returncode, stdout, stderr, json.loads((run_dir / "run.json").read_text()))
    # resume, then SIGKILL the driver and everything it started once an epoch is under way
    before = count_markers(plan.markers)
    proc = subprocess.Popen(cli_cmd("run", "--resume", str(run_dir), "--no-report"), cwd=ROOT, env=cli_env(plan),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: sum(count_markers(plan.markers).values()) > sum(before.values()), proc=proc)
    killed = in_progress(plan.markers)
    family = descendants(proc.pid) | {proc.pid}
    for pid in family:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.communicate(timeout=60)
    out["died"].update(killed | in_progress(plan.markers))
    out["killed_status"] = json.loads((run_dir / "run.json").read_text())["status"]
    (plan.markers / HOLD_FILE).unlink()
    out["final"] = cli("run", "--resume", str(run_dir), "--no-report")
    return out


@pytest.mark.slow
def test_fault_matrix_second_driver_is_refused_while_the_first_runs(driver_faults):
    second = driver_faults["second"]
    assert second.returncode == 2
    assert second.stderr.startswith(f"gsa-nas: error: {driver_faults['dir']}: in use by gsa-nas PID ")
    assert second.stderr.count("\n") == 1 and "Traceback" not in second.stderr


@pytest.mark.slow
def test_fault_matrix_sigterm_is_an_interruption_with_exit_143(driver_faults):
    code, stdout, stderr, meta = driver_faults["sigterm"]
    assert (code, meta["status"]) == (143, "interrupted"), stderr
    assert f"continue with: gsa-nas run --resume {driver_faults['dir']}" in stdout


@pytest.mark.slow
def test_fault_matrix_sigkill_then_resume_loses_nothing(driver_faults):
    assert driver_faults["killed_status"] == "running"  # a SIGKILLed driver cannot say more
    final = driver_faults["final"]
    assert final.returncode == 0, final.stderr
    check_invariants(driver_faults["dir"], ABLATION_KEYS, driver_faults["plan"].markers, status="finished",
                     died_in=driver_faults["died"])


# --- slow: extending a search never trains a configuration twice; a closed stdout ------------------

@pytest.mark.slow
def test_fault_matrix_extended_search_never_repeats_and_survives_a_closed_stdout(tmp_path):
    plan = markers_plan(tmp_path)
    first = cli("run", "search_digits", "--out", str(tmp_path), "--no-report", sets=SEARCH_SETS, plan=plan)
    assert first.returncode == 0, first.stderr
    run_dir = tmp_path / "search_digits"
    first_keys = pd.read_csv(run_dir / "results.csv")["trial_id"].tolist()
    assert len(first_keys) == 2
    # the extension's stdout is a pipe whose reader leaves after one line, as `| head -1` does
    cmd = " ".join(f"'{c}'" for c in cli_cmd("run", "--resume", str(run_dir), "--no-report",
                                               sets=["num_samples=4"])) + " | head -1"
    piped = subprocess.run(["bash", "-c", f"set -o pipefail; {cmd}"], cwd=ROOT, env=cli_env(plan),
                           capture_output=True, text=True, timeout=900)
    assert piped.returncode == 0 and piped.stdout.startswith("resuming search_digits in "), piped.stderr
    assert piped.stdout.count("\n") == 1
    keys = sorted(current_records(run_dir))
    assert len(keys) == 4 and set(first_keys) <= set(keys)
    results = check_invariants(run_dir, keys, plan.markers, status="finished")
    configs = [t.user_attrs["config_key"] for t in trials(run_dir) if t.user_attrs.get("gsa_state")]
    assert len(configs) == len(set(configs)) == 4
    assert results["state"].tolist() == ["complete"] * 4


# --- fast: damaged files and careless input (no Ray) ---------------------------------------------

def stored_run(tmp_path: Path) -> Path:
    """A run directory as `gsa-nas run` leaves it: study.yaml, run.json and a real optuna.db."""
    from reports.run_dir import write_run_record
    from search.runner import open_ledger, run_record
    from search.study import load_study, study_to_yaml

    st = load_study("quickstart", {"train.epochs": 2, "seeds": [0]})
    run_dir = tmp_path / "quickstart"
    run_dir.mkdir()
    (run_dir / "study.yaml").write_text(study_to_yaml(st))
    url = f"sqlite:///{run_dir / 'optuna.db'}"
    record = run_record(st, name="quickstart", storage=url, started="2026-01-01", run_id="r1")
    write_run_record(run_dir, record)
    open_ledger(st, record, url, create=True)
    return run_dir


def snapshot(run_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("damage, says", [
    (lambda p: p.write_bytes(b""), "optuna.db: is empty"),
    (lambda p: p.write_bytes(b"not a database at all" * 50), "optuna.db: is not an SQLite database"),
    (lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]), "the SQLite file is damaged"),
])
def test_fault_matrix_damaged_optuna_db_refuses_resume_and_rewrites_nothing(tmp_path, damage, says):
    run_dir = stored_run(tmp_path)
    damage(run_dir / "optuna.db")
    before = snapshot(run_dir)
    done = cli("run", "--resume", str(run_dir), "--no-report")
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.startswith("gsa-nas: error: ") and says in done.stderr and done.stderr.count("\n") == 1
    assert snapshot(run_dir) == before


def test_fault_matrix_half_written_run_json_refuses_resume(tmp_path):
    run_dir = stored_run(tmp_path)
    text = (run_dir / "run.json").read_text()
    (run_dir / "run.json").write_text(text[: len(text) // 2])
    before = snapshot(run_dir)
    done = cli("run", "--resume", str(run_dir), "--no-report")
    assert done.returncode == 2 and done.stderr.startswith(f"gsa-nas: error: {run_dir / 'run.json'}: unreadable JSON")
    assert done.stderr.count("\n") == 1 and snapshot(run_dir) == before


@pytest.mark.parametrize("args, says", [
    (["--set", "train.epochs=[1,"], "--set train.epochs=[1,: the value is not valid YAML"),
    (["--storage", "garbage://x"], "--storage garbage://x: not a database URL SQLAlchemy can use"),
    (["--name", "../../x"], "--name: '../../x' must use only letters, digits, '_', '-' and '.'"),
    (["--name", "/abs"], "--name: '/abs' must use only letters, digits"),
])
def test_fault_matrix_careless_input_is_one_line_and_leaves_nothing(tmp_path, args, says):
    out = tmp_path / "runs"
    done = cli("run", "quickstart", "--out", str(out), "--no-report", *args)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.startswith(f"gsa-nas: error: {says}") and done.stderr.count("\n") == 1, done.stderr
    assert not out.exists() and not (tmp_path / "x").exists()


def test_fault_matrix_wrong_sqlite_storage_refuses_before_creating_the_run(tmp_path):
    bad = tmp_path / "no_such_dir" / "optuna.db"  # SQLite cannot create a file in a missing directory
    done = cli("run", "quickstart", "--out", str(tmp_path / "runs"), "--storage", f"sqlite:///{bad}")
    assert done.returncode == 2 and "cannot open the database" in done.stderr and done.stderr.count("\n") == 1
    assert not (tmp_path / "runs" / "quickstart").exists()


def test_fault_matrix_lock_of_a_dead_driver_is_free(tmp_path):
    from search.run_lock import RunLock, RunLockedError

    run_dir = tmp_path / "quickstart"
    code = ("import sys, time; from search.run_lock import RunLock; RunLock(__import__('pathlib').Path(sys.argv[1]))"
            ".acquire(); print('held', flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(run_dir)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline() == "held\n"
    with pytest.raises(RunLockedError, match=rf"in use by gsa-nas PID {holder.pid} on host "):
        RunLock(run_dir).acquire()
    holder.kill()
    holder.wait()
    with RunLock(run_dir):
        assert json.loads((tmp_path / ".quickstart.lock").read_text())["pid"] == os.getpid()
