"""Trial checkpoints through Ray Tune's storage (`search.checkpoints`, `gsa-nas run --storage-path`).

Fast: the storage path's checks, checkpoint URIs, and a checkpoint that cannot be loaded (no Ray).
Slow, real Ray/Optuna through the CLI: an S3-compatible server (moto) on 127.0.0.1 as the storage
path, a worker SIGKILLed mid-trial (the test-only fault hook) that Tune retries from its last
epoch, then the driver killed and `--resume` continuing from the checkpoint URI in Optuna with no
checkpoint on the run's own disk; and a corrupt checkpoint that sends its trial back to epoch 0.
"""

from __future__ import annotations

import json
import signal
import sqlite3
from pathlib import Path

import pytest
import torch
from optuna.trial import TrialState

from search.checkpoints import (BAD_SUFFIX, CHECKPOINT_FILE, CheckpointRejected, check_storage_path, checkpoint_uri,
                                load_trainer, save_trainer)
from search.faults import HOLD_FILE, Fault, count_markers
from tests.search.s3_server import SECRET, s3_server  # noqa: F401  (a fixture)
from tests.search.test_faults import cli, cli_cmd, cli_env, markers_plan, run_then_kill, trials



# --- fast: no Ray ------------------------------------------------------------------------------

def test_check_storage_path_refuses_credentials_in_the_uri():
    with pytest.raises(ValueError) as err:
        check_storage_path(f"s3://bkt/runs?secret_key={SECRET}&access_key=k")
    assert str(err.value).startswith("--storage-path: the URI carries access_key, secret_key; credentials come "
                                     "only from the AWS environment variables")
    assert SECRET not in str(err.value)


def test_run_with_credentials_in_storage_path_exits_2_and_creates_nothing(tmp_path, capsys):
    from search.cli import main

    uri = f"s3://bkt/runs?endpoint_override=127.0.0.1:9&scheme=http&secret_key={SECRET}"
    assert main(["run", "quickstart", "--out", str(tmp_path / "runs"), "--storage-path", uri]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gsa-nas: error: --storage-path: the URI carries secret_key;") and SECRET not in err
    assert list(tmp_path.iterdir()) == []


def test_check_storage_path_makes_a_local_path_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert check_storage_path("ckpts") == str(tmp_path / "ckpts")


def test_checkpoint_uri_keeps_the_storage_scheme_and_query():
    storage = "s3://bkt/runs?endpoint_override=127.0.0.1:9000&scheme=http"
    assert checkpoint_uri(storage, "bkt/runs/session_1/t_1/checkpoint_000002") == (
        "s3://bkt/runs/session_1/t_1/checkpoint_000002?endpoint_override=127.0.0.1:9000&scheme=http")
    assert checkpoint_uri("/data/ckpt", "/data/ckpt/session_1/t/checkpoint_000000") == (
        "/data/ckpt/session_1/t/checkpoint_000000")


def tiny_trainer(epochs: int = 2):
    from search.data import load_data
    from search.study import load_study, resolve_trial
    from search.study.schema import DataConfig
    from search.train_loop import Trainer

    study = load_study("quickstart", {"train.epochs": epochs, "seeds": [0]})
    spec = resolve_trial(study, variant="conv", seed=0, params={})
    return Trainer(spec, load_data(DataConfig("digits")))


@pytest.mark.parametrize("damage, says", [
    (lambda p: p.write_bytes(b"\x00not a checkpoint" * 10), "checkpoint rejected: "),
    (lambda p: torch.save({"model": Path("/tmp")}, p), "WeightsUnpickler error"),
])
def test_load_trainer_sets_aside_a_checkpoint_that_cannot_be_loaded(tmp_path, damage, says):
    first = tiny_trainer()
    first.train_epoch()
    save_trainer(first, tmp_path)
    damage(tmp_path / CHECKPOINT_FILE)
    with pytest.raises(CheckpointRejected) as err:
        load_trainer(tiny_trainer(), tmp_path)
    assert says in str(err.value) and str(err.value).endswith("set aside as trainer.pt.bad, trained from epoch 0")
    assert sorted(p.name for p in tmp_path.iterdir()) == [CHECKPOINT_FILE + BAD_SUFFIX]


def test_load_trainer_restores_the_epochs_saved(tmp_path):
    first = tiny_trainer(epochs=3)
    first.train_epoch()
    first.train_epoch()
    save_trainer(first, tmp_path)
    resumed = load_trainer(tiny_trainer(epochs=3), tmp_path)
    assert [r.epoch for r in resumed.history] == [1, 2] and resumed.step == first.step


# --- slow: S3 (moto) as the storage path ------------------------------------------------------

def checkpointed_running(db: Path, key: str) -> bool:
    """Whether trial `key` is RUNNING with a checkpoint URI recorded in the Optuna DB."""
    if not db.exists():
        return False
    try:
        with sqlite3.connect(db, timeout=1) as con:
            rows = con.execute(
                "SELECT COUNT(*) FROM trials t JOIN trial_user_attributes k ON k.trial_id=t.trial_id "
                "JOIN trial_user_attributes c ON c.trial_id=t.trial_id WHERE t.state='RUNNING' "
                "AND k.key='trial_key' AND k.value_json=? AND c.key='checkpoint'", (json.dumps(key),)).fetchone()
        return rows[0] > 0
    except sqlite3.Error:
        return False


S3_SETS = ["train.epochs=3", "seeds=[0]", "max_concurrent=1", "variants={both: {}, conv: {model.variant: resnet_tiny}}"]


@pytest.fixture(scope="module")
def s3_run(s3_server, tmp_path_factory):
    """both-s0's worker is SIGKILLed as it starts epoch 3 (Tune retries it); once conv-s0 has a
    checkpoint in S3 (it waits in epoch 3, so the run cannot end first) the driver and everything
    it started get SIGKILL; then `--resume`, without the wait."""
    tmp = tmp_path_factory.mktemp("s3")
    plan = markers_plan(tmp, Fault("both-s0", 3, "kill", times=1), Fault("conv-s0", 3, "hold"))
    plan.markers.mkdir()
    (plan.markers / HOLD_FILE).touch()
    run_dir = tmp / "quickstart"
    driver = run_then_kill(cli_cmd("run", "quickstart", "--out", str(tmp), "--no-report", "--storage-path",
                                   s3_server["uri"], sets=S3_SETS), cli_env(plan),
                           lambda: checkpointed_running(run_dir / "optuna.db", "conv-s0"))
    assert driver.returncode == -signal.SIGKILL, "the run ended before conv-s0 saved a checkpoint"
    first = count_markers(plan.markers)
    local = sorted(str(p.relative_to(run_dir)) for p in run_dir.rglob("*") if "checkpoint" in p.name)
    resumed = cli("run", "--resume", str(run_dir), "--no-report", plan=markers_plan(tmp))
    return {"dir": run_dir, "tmp": tmp, "first": first, "local": local, "resumed": resumed,
            "markers": count_markers(plan.markers), "server": s3_server}


@pytest.mark.slow
def test_s3_killed_worker_continues_from_its_last_epoch(s3_run):
    # epoch 3 began twice (the kill, then Tune's retry from the epoch-2 checkpoint in S3); 1 and 2 once
    assert {k: n for k, n in s3_run["first"].items() if k[0] == "both-s0"} == {
        ("both-s0", 1): 1, ("both-s0", 2): 1, ("both-s0", 3): 2}


@pytest.mark.slow
def test_s3_resume_continues_from_the_checkpoint_uri_in_optuna(s3_run):
    assert s3_run["resumed"].returncode == 0, s3_run["resumed"].stderr[-3000:]
    assert s3_run["local"] == []  # no checkpoint on the run directory's disk: S3 is the only copy
    run_dir = s3_run["dir"]
    conv = sorted((t for t in trials(run_dir) if t.user_attrs.get("trial_key") == "conv-s0"), key=lambda t: t.number)
    lost, redo = conv[0], conv[-1]
    assert (lost.state, lost.user_attrs["reason"], redo.state) == (TrialState.FAIL, "interrupted", TrialState.COMPLETE)
    assert lost.user_attrs["checkpoint"].startswith("s3://gsa/runs/session_1/conv-s0_")
    assert redo.user_attrs["checkpoint"].startswith("s3://gsa/runs/session_2/conv-s0_")
    assert redo.user_attrs["restored_epochs"] >= 1
    assert [r["epoch"] for r in redo.user_attrs["curve"]] == [1, 2, 3]
    # epochs the killed session finished were not trained again
    assert all(s3_run["markers"].get(("conv-s0", e), 0) == 1 for e in range(1, redo.user_attrs["restored_epochs"] + 1))
    meta = json.loads((run_dir / "run.json").read_text())
    assert (meta["status"], meta["storage_path"]) == ("finished", s3_run["server"]["uri"])


@pytest.mark.slow
def test_s3_secret_key_is_in_no_file_of_the_run_or_the_storage(s3_run):
    files = [p for p in s3_run["tmp"].rglob("*") if p.is_file()]
    assert len(files) > 5
    assert [str(p) for p in files if SECRET.encode() in p.read_bytes()] == []
    client = s3_run["server"]["client"]
    keys = [o["Key"] for o in client.list_objects_v2(Bucket="gsa")["Contents"]]
    assert any(k.endswith("tuner.pkl") for k in keys) and any(k.endswith(CHECKPOINT_FILE) for k in keys)
    assert [k for k in keys if SECRET.encode() in client.get_object(Bucket="gsa", Key=k)["Body"].read()] == []


# --- slow: a corrupt checkpoint, local storage path outside the run directory ------------------

@pytest.mark.slow
def test_corrupt_checkpoint_restarts_its_trial_from_epoch_0_and_says_why(tmp_path):
    storage = tmp_path / "ckpt-store"
    plan = markers_plan(tmp_path, Fault("both-s0", 3, "raise", times=1))
    sets = ["train.epochs=3", "seeds=[0]", "max_concurrent=1", "max_failures=0", "variants={both: {}}"]
    first = cli("run", "quickstart", "--out", str(tmp_path), "--no-report", "--storage-path", str(storage),
                sets=sets, plan=plan)
    assert first.returncode == 0, first.stderr[-3000:]
    run_dir = tmp_path / "quickstart"
    failed = trials(run_dir)[0]
    assert (failed.state, failed.user_attrs["epochs"]) == (TrialState.FAIL, 2)
    uri = Path(failed.user_attrs["checkpoint"])
    assert uri.parent.parent.parent == storage and not (run_dir / "tune").exists()
    (uri / CHECKPOINT_FILE).write_bytes(b"truncated")
    retry = cli("run", "--resume", str(run_dir), "--retry-failed", "--no-report", plan=plan)
    assert retry.returncode == 0, retry.stderr[-3000:]
    redo = trials(run_dir)[-1]
    assert redo.state == TrialState.COMPLETE and "restored_epochs" not in redo.user_attrs
    assert redo.user_attrs["checkpoint_rejected"].startswith(
        f"checkpoint rejected: {uri / CHECKPOINT_FILE} could not be loaded (")
    assert sorted(p.name for p in uri.iterdir()) == [CHECKPOINT_FILE + BAD_SUFFIX]
    # trained again from epoch 1: each epoch started once per attempt (epoch 3 also by the raise)
    assert count_markers(plan.markers) == {("both-s0", 1): 2, ("both-s0", 2): 2, ("both-s0", 3): 2}
