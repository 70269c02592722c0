"""A two-node Ray cluster on this machine, a study run on it with `--address`, and its worker node
killed mid-trial: the trial continues on the head node from its last epoch (issue 11).

Each node is a real `ray start --block` (`tests.search.ray_nodes`: own --temp-dir, ports, HOME,
RAY_AUTH_MODE and token file; stopped by PID) with one CPU, so the study's two trials run one on
each node. Each node's workers leave their epoch markers (the test-only fault hook, through the
node's own environment: a joined cluster's workers inherit it from their raylet, not from the
driver) in a directory of their own, so the markers say which epochs ran on which node.

A trial on the worker node waits in epoch 3 (the fault hook's "hold") until the node is killed.

- Shared filesystem, token authentication on: checkpoints in the run directory.
- No shared filesystem, authentication off: the worker node runs under `unshare -m` with a tmpfs
  over the runs directory (it sees none of the driver's files), checkpoints in an S3-compatible
  server (moto's) on 127.0.0.1 given with --storage-path.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from search.faults import ENV_VAR, HOLD_FILE, Fault, FaultPlan, count_markers
from tests.search.ray_nodes import RayNode, can_unshare, clean_env
from tests.search.s3_server import CREDENTIALS, s3_server  # noqa: F401  (a fixture)
from tests.search.test_faults import ROOT, cli_cmd, wait_for

EPOCHS = 5
SETS = [f"train.epochs={EPOCHS}", "seeds=[0, 1]", "variants={both: {}}", "max_concurrent=2"]
KILL_AT_EPOCH = 3  # the worker node dies once its trial has started this epoch (epochs before it are checkpointed)


def need_private_view() -> None:
    """Skip without `unshare -m` and a tmpfs mount (root here); under CI that is a failure."""
    why_not = can_unshare()
    if why_not and os.environ.get("CI"):
        pytest.fail(f"CI must run the private-view tests: {why_not}")
    if why_not:
        pytest.skip(why_not)


def tmpfs_over(pid: int, path: Path) -> bool:
    """Whether process `pid` sees a tmpfs mounted at `path` (its mount namespace's view)."""
    for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines():
        fields = line.split()
        if fields[4] == str(path) and fields[fields.index("-") + 1] == "tmpfs":
            return True
    return False


def run_losing_a_node(tmp: Path, *, auth: bool, private: bool, storage: list[str],
                      env: dict[str, str] | None = None) -> dict:
    """Head and worker node, the study through the CLI with --address, the worker node SIGKILLed
    once its trial starts epoch KILL_AT_EPOCH; returns what the checks need."""
    out, markers = tmp / "runs", {role: tmp / f"markers-{role}" for role in ("head", "worker")}
    out.mkdir()
    # On the worker node a trial waits in epoch KILL_AT_EPOCH until the node dies: the kill always
    # lands mid-trial however fast the epochs are. The head has no such wait.
    holds = {"head": (), "worker": tuple(Fault(f"both-s{seed}", KILL_AT_EPOCH, "hold") for seed in (0, 1))}
    markers["worker"].mkdir()
    (markers["worker"] / HOLD_FILE).touch()
    node_env = lambda role: {ENV_VAR: FaultPlan(markers[role], holds[role]).to_json(), **(env or {})}  # noqa: E731
    head = RayNode(auth=auth, num_cpus=1, env=node_env("head"))
    worker = driver = None
    try:
        worker = RayNode(auth=auth, head=head, num_cpus=1, env=node_env("worker"), private=out if private else None)
        token = {"RAY_AUTH_TOKEN_PATH": str(head.token_file)} if auth else {}
        driver = subprocess.Popen(cli_cmd("run", "quickstart", "--out", str(out), "--name", "nodes", "--no-report",
                                          "--address", head.address, *storage, sets=SETS),
                                  cwd=ROOT, env=clean_env(tmp / "home", **token, **(env or {})),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_for(lambda: any(e >= KILL_AT_EPOCH for _, e in count_markers(markers["worker"]))
                 or driver.poll() is not None, 400)
        private_view = tmpfs_over(worker.proc.pid, out)
        worker.stop()
        stdout, stderr = driver.communicate(timeout=600)
    finally:
        if driver is not None and driver.poll() is None:
            driver.kill()
        if worker is not None:
            worker.stop()
        head.stop()
    return {"returncode": driver.returncode, "stdout": stdout, "stderr": stderr, "run_dir": out / "nodes",
            "head": count_markers(markers["head"]), "worker": count_markers(markers["worker"]),
            "private_view": private_view, "driver_logs": len(head.driver_logs())}


def continued_from_its_last_epoch(run: dict) -> tuple[str, int]:
    """Check the run; return the lost trial's key and how many of its epochs ran twice."""
    assert run["returncode"] == 0, run["stderr"][-3000:]
    assert run["driver_logs"] == 1                                   # the driver joined that cluster
    results = pd.read_csv(run["run_dir"] / "results.csv")
    assert sorted(results["trial_id"]) == ["both-s0", "both-s1"] and set(results["state"]) == {"complete"}
    assert set(results["epochs"]) == {EPOCHS}
    on_worker = {key for key, _ in run["worker"]}
    assert len(on_worker) == 1, run                                  # one trial ran on the worker node
    lost = on_worker.pop()
    worker_epochs = sorted(e for k, e in run["worker"] if k == lost)
    head_epochs = sorted(e for k, e in run["head"] if k == lost)
    assert worker_epochs == list(range(1, worker_epochs[-1] + 1)) and worker_epochs[-1] >= KILL_AT_EPOCH
    # on the head from the epoch it was in when its node died (or the next one, had that epoch's
    # checkpoint been saved just before the kill), each later epoch once: not from epoch 1
    assert head_epochs[0] in (worker_epochs[-1], worker_epochs[-1] + 1), run
    assert head_epochs == list(range(head_epochs[0], EPOCHS + 1)), run
    assert all(n == 1 for n in run["head"].values()) and all(n == 1 for n in run["worker"].values())
    return lost, len(set(worker_epochs) & set(head_epochs))


@pytest.mark.slow
def test_worker_node_lost_with_a_shared_filesystem_continues_on_the_head_with_auth_on(tmp_path):
    run = run_losing_a_node(tmp_path, auth=True, private=False, storage=[])
    lost, retrained = continued_from_its_last_epoch(run)
    assert retrained <= 1                                            # at most the epoch in progress
    checkpoints = sorted(p.name for p in (run["run_dir"] / "tune" / "session_1").glob(f"{lost}_*/checkpoint_*"))
    assert checkpoints == [f"checkpoint_{EPOCHS - 2:06d}", f"checkpoint_{EPOCHS - 1:06d}"]  # the last two kept


@pytest.mark.slow
def test_worker_node_lost_without_a_shared_filesystem_continues_from_s3_with_auth_off(tmp_path, s3_server):
    need_private_view()
    # a prefix of its own: moto keeps its buckets per process, and other test files use s3://gsa/runs
    uri = s3_server["uri"].replace("s3://gsa/runs?", "s3://gsa/two-nodes?")
    run = run_losing_a_node(tmp_path, auth=False, private=True, storage=["--storage-path", uri], env=CREDENTIALS)
    assert run["private_view"]                                       # the worker saw a tmpfs, not the runs
    lost, retrained = continued_from_its_last_epoch(run)
    assert retrained <= 1
    assert list(run["run_dir"].rglob("checkpoint_*")) == []          # no checkpoint on the driver's disk
    listing = s3_server["client"].list_objects_v2(Bucket="gsa", Prefix="two-nodes/session_1/")
    keys = [o["Key"] for o in listing["Contents"]]
    assert any(f"/{lost}_" in k and "/checkpoint_" in k for k in keys)
    record = json.loads((run["run_dir"] / "run.json").read_text())
    assert (record["status"], record["storage_path"]) == ("finished", uri)


@pytest.mark.slow
def test_no_shared_filesystem_and_no_storage_path_is_refused_in_one_line(tmp_path):
    """Before: the worker node's trial failed at its first checkpoint (Tune's storage check) and
    trained again from epoch 0 on the head, saying nothing; every trial ended up on the head."""
    need_private_view()
    out = tmp_path / "runs"
    out.mkdir()
    head = RayNode(auth=True, num_cpus=1)
    try:
        worker = RayNode(auth=True, head=head, num_cpus=1, private=out)
        try:
            env = clean_env(tmp_path / "home", RAY_AUTH_TOKEN_PATH=str(head.token_file))
            proc = subprocess.run(cli_cmd("run", "quickstart", "--out", str(out), "--name", "nodes", "--no-report",
                                          "--address", head.address, sets=SETS),
                                  cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        finally:
            worker.stop()
    finally:
        head.stop()
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert lines[0].startswith(f"gsa-nas: error: checkpoints in {out.resolve() / 'nodes' / 'tune'} (no --storage-path): "
                               f"1 of the cluster's 2 nodes cannot see {out.resolve()} (node "), lines[0]
    assert "give --storage-path s3://BUCKET/PREFIX or a directory every node mounts" in lines[0]
    # no run directory, and the check's marker removed (the run lock beside it stays, as after every run)
    assert [p.name for p in out.iterdir()] == [".nodes.lock"]
