"""One PostgreSQL database shared by runs: each run is one Optuna study, a taken name refuses, and
the password reaches no file of the run directory (run.json, Tune's pickles, anything); a driver
killed mid-trial is resumed with the password from PGPASSWORD and continues from its checkpoint.

A real server (Debian's postgresql package) is started by the fixture as the `postgres` user on
127.0.0.1 in a temporary directory that user owns; without the package (or root) the tests skip
locally, and under CI=true they fail instead, since .ci/run installs it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import optuna
import psycopg
import pytest
from optuna.trial import TrialState

from search.faults import HOLD_FILE, Fault, count_markers
from tests.search.test_faults import cli_cmd, cli_env, markers_plan, run_then_kill

ROOT = Path(__file__).resolve().parents[2]
SECRET = "s3cr3t-pw-7Qx"
SETS = ["train.epochs=1", "train.warmup_epochs=0", "seeds=[0]", "variants={both: {}}", "max_concurrent=1"]


def _pg_bin() -> Path | None:
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return versions[-1].parent if versions else None


@pytest.fixture(scope="module")
def postgres():
    bin_dir = _pg_bin()
    missing = ("Debian's postgresql package is not installed" if bin_dir is None else
               "needs root to run the server as the postgres user" if os.geteuid() != 0 else None)
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"{missing}; .ci/run installs it")
        pytest.skip(missing)
    home = Path(tempfile.mkdtemp(prefix="gsa-nas-pg-"))
    data = home / "data"
    shutil.chown(home, user="postgres")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    def as_postgres(*cmd: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *cmd], check=True, capture_output=True, text=True)

    as_postgres(str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres")
    (data / "pg_hba.conf").write_text("local all all trust\nhost all postgres 127.0.0.1/32 trust\n"
                                      "host all all 127.0.0.1/32 scram-sha-256\n")
    as_postgres(str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(home / "log"), "-w", "start",
                "-o", f"-h 127.0.0.1 -p {port} -k {home}")
    try:
        as_postgres(str(bin_dir / "psql"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres",
                    "-c", f"CREATE USER gsa WITH PASSWORD '{SECRET}'", "-c", "CREATE DATABASE gsa OWNER gsa")
        yield {"port": port, "url": f"postgresql+psycopg://gsa:{SECRET}@127.0.0.1:{port}/gsa",
               "bare": f"postgresql+psycopg://gsa@127.0.0.1:{port}/gsa"}
    finally:
        as_postgres(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(home, ignore_errors=True)


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "search.cli", *args]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900,
                          env={**os.environ, **(env or {})})


def run_args(out: Path, name: str, storage: str, sets: list[str] = SETS) -> list[str]:
    args = ["run", "quickstart", "--out", str(out), "--name", name, "--storage", storage, "--no-report"]
    for item in sets:
        args += ["--set", item]
    return args


@pytest.fixture(scope="module")
def two_runs(postgres, tmp_path_factory):
    out = tmp_path_factory.mktemp("pg_runs")
    first = cli(*run_args(out, "shared", postgres["url"]))
    clash = cli(*run_args(tmp_path_factory.mktemp("elsewhere"), "shared", postgres["url"]))
    second = cli(*run_args(out, "other", postgres["url"]))
    return {"out": out, "first": first, "clash": clash, "second": second}


@pytest.mark.slow
def test_postgres_two_runs_in_one_database_stay_apart(postgres, two_runs):
    assert two_runs["first"].returncode == 0, two_runs["first"].stderr
    assert two_runs["second"].returncode == 0, two_runs["second"].stderr
    for name in ("shared", "other"):
        meta = json.loads((two_runs["out"] / name / "run.json").read_text())
        study = optuna.load_study(study_name=name, storage=postgres["url"])
        assert study.user_attrs["gsa_run_id"] == meta["run_id"]
        assert [t.user_attrs["trial_key"] for t in study.trials] == ["both-s0"]


@pytest.mark.slow
def test_postgres_a_taken_study_name_refuses_with_one_line(two_runs):
    clash = two_runs["clash"]
    assert clash.returncode == 2 and clash.stderr.count("\n") == 1, clash.stderr
    assert "the Optuna storage already holds a study named 'shared' (run id " in clash.stderr
    assert "continue that run with --resume RUN_DIR, or choose another --name" in clash.stderr


@pytest.mark.slow
def test_postgres_password_reaches_no_file_of_the_run(two_runs):
    run_dir = two_runs["out"] / "shared"
    leaks = [str(p) for p in run_dir.rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()]
    assert leaks == []
    assert json.loads((run_dir / "run.json").read_text())["storage"].startswith("postgresql+psycopg://gsa@127.0.0.1:")
    assert any(run_dir.rglob("*.pkl"))  # Tune's pickles exist and were searched


@pytest.mark.slow
def test_postgres_resume_takes_the_password_from_pgpassword(postgres, two_runs):
    run_dir = two_runs["out"] / "shared"
    without = cli("run", "--resume", str(run_dir), "--no-report", env={"PGPASSWORD": ""})
    assert without.returncode == 2 and without.stderr.count("\n") == 1
    assert "it has no password: give it in --storage, or set PGPASSWORD, or put it in ~/.pgpass" in without.stderr
    resumed = cli("run", "--resume", str(run_dir), "--no-report", env={"PGPASSWORD": SECRET})
    assert resumed.returncode == 0, resumed.stderr
    assert "0 trials to train (1 already finished)" in resumed.stdout


KILL_SETS = ["train.epochs=3", "seeds=[0]", "variants={both: {}}", "max_concurrent=1"]


def checkpointed_running(port: int, name: str) -> bool:
    """Whether run `name`'s trial is RUNNING in PostgreSQL with a checkpoint URI recorded. One
    connection per poll, closed after it: an Optuna storage per poll kept its pool's connections
    until garbage collection, and a slow run's polls used up the server's 100 slots."""
    try:
        with psycopg.connect(host="127.0.0.1", port=port, user="gsa", password=SECRET, dbname="gsa",
                             connect_timeout=10) as con:
            (count,) = con.execute(
                "SELECT COUNT(*) FROM trials t JOIN studies s ON s.study_id=t.study_id "
                "JOIN trial_user_attributes c ON c.trial_id=t.trial_id "
                "WHERE s.study_name=%s AND t.state='RUNNING' AND c.key='checkpoint'", (name,)).fetchone()
        return count > 0
    except psycopg.Error:  # the study's tables are not created yet
        return False


@pytest.fixture(scope="module")
def killed_run(postgres, tmp_path_factory):
    """A run into PostgreSQL (password from PGPASSWORD) whose driver and every process it started
    get SIGKILL once its trial has a checkpoint (it waits in epoch 3, so the run cannot end first);
    then `--resume`, without the wait, with the password from PGPASSWORD."""
    out = tmp_path_factory.mktemp("pg_killed")
    plan = markers_plan(out, Fault("both-s0", 3, "hold"))
    plan.markers.mkdir()
    (plan.markers / HOLD_FILE).touch()
    env = {**cli_env(plan), "PGPASSWORD": SECRET}
    driver = run_then_kill(cli_cmd(*run_args(out, "killed", postgres["bare"], KILL_SETS)), env,
                           lambda: checkpointed_running(postgres["port"], "killed"))
    assert driver.returncode == -signal.SIGKILL, "the run ended before its trial saved a checkpoint"
    (plan.markers / HOLD_FILE).unlink()
    before = count_markers(plan.markers)
    resumed = subprocess.run(cli_cmd("run", "--resume", str(out / "killed"), "--no-report"), cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=900)
    return {"dir": out / "killed", "before": before, "after": count_markers(plan.markers), "resumed": resumed}


@pytest.mark.slow
def test_postgres_killed_driver_resumes_from_the_trials_last_checkpoint(postgres, killed_run):
    resumed = killed_run["resumed"]
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "1 trial to train (0 already finished; 1 trial interrupted (closed in the Optuna storage" in resumed.stdout
    trials = optuna.load_study(study_name="killed", storage=postgres["url"]).trials
    lost, redo = trials[0], trials[-1]
    assert (lost.state, lost.user_attrs["reason"], redo.state) == (TrialState.FAIL, "interrupted", TrialState.COMPLETE)
    restored = redo.user_attrs["restored_epochs"]
    assert restored >= 1 and [r["epoch"] for r in redo.user_attrs["curve"]] == [1, 2, 3]
    # the epochs the killed driver's checkpoint held were not trained again
    assert all(killed_run["after"][("both-s0", e)] == 1 for e in range(1, restored + 1)), killed_run
    assert json.loads((killed_run["dir"] / "run.json").read_text())["status"] == "finished"
    leaks = [str(p) for p in killed_run["dir"].rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()]
    assert leaks == []
