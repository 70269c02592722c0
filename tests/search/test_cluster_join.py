"""Joining a Ray cluster through the real CLI: with token authentication on and off, the token
taken the way Ray takes it without RAY_AUTH_MODE, and every refusal one line with exit 2 before
the run directory exists.

Each cluster is a real `ray start --head --block` on 127.0.0.1 (`tests.search.ray_nodes`: its own
process group, --temp-dir, ports, HOME, RAY_AUTH_MODE and token file; stopped by PID).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.search.ray_nodes import RAY_VARIABLES, TOKEN, RayNode, clean_env, free_port

ROOT = Path(__file__).resolve().parents[2]
SETS = ["train.epochs=1", "train.warmup_epochs=0", "seeds=[0]", "variants={both: {}}", "max_concurrent=1"]


@pytest.fixture(scope="module")
def auth_head():
    head = RayNode(auth=True)
    yield head
    head.stop()


@pytest.fixture(scope="module")
def open_head():
    head = RayNode(auth=False)
    yield head
    head.stop()


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "search.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=900, env=env)


def run_args(out: Path, *extra: str) -> list[str]:
    args = ["run", "quickstart", "--out", str(out), "--name", "joined", "--no-report", *extra]
    for item in SETS:
        args += ["--set", item]
    return args


def one_line_refusal(proc: subprocess.CompletedProcess, out: Path, *needles: str) -> None:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert not (out / "joined").exists()                          # refused before anything was created


@pytest.mark.slow
def test_address_with_auth_on_and_no_token_is_one_line(auth_head, tmp_path):
    env = clean_env(tmp_path / "home")                            # no token anywhere, no RAY_AUTH_MODE
    proc = cli(*run_args(tmp_path, "--address", auth_head.address), env=env)
    one_line_refusal(proc, tmp_path, auth_head.address, "token authentication on", "RAY_AUTH_TOKEN",
                     "RAY_AUTH_TOKEN_PATH", "~/.ray/auth_token")


@pytest.mark.slow
def test_address_with_a_wrong_token_is_one_line(auth_head, tmp_path):
    env = clean_env(tmp_path / "home", RAY_AUTH_TOKEN="not" + TOKEN[3:])
    proc = cli(*run_args(tmp_path, "--address", auth_head.address), env=env)
    one_line_refusal(proc, tmp_path, "refused the token from RAY_AUTH_TOKEN", "ray get-auth-token")


@pytest.mark.slow
def test_an_address_nobody_answers_is_one_line(tmp_path):
    address = f"127.0.0.1:{free_port()}"
    proc = cli(*run_args(tmp_path, "--address", address), env=clean_env(tmp_path / "home"))
    one_line_refusal(proc, tmp_path, f"no Ray cluster answers at {address}")


def finished(out: Path) -> dict:
    record = json.loads((out / "joined" / "run.json").read_text())
    assert record["status"] == "finished", record
    rows = (out / "joined" / "results.csv").read_text().splitlines()
    assert len(rows) == 2 and ",complete," in rows[1], rows          # header + both-s0
    return record


@pytest.mark.slow
def test_address_with_auth_on_takes_the_token_from_ray_auth_token_path(auth_head, tmp_path):
    before = auth_head.driver_logs()
    env = clean_env(tmp_path / "home", RAY_AUTH_TOKEN_PATH=str(auth_head.token_file))
    proc = cli(*run_args(tmp_path, "--address", auth_head.address), env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    finished(tmp_path)
    assert len(auth_head.driver_logs()) == len(before) + 1         # it ran on that cluster


@pytest.mark.slow
def test_plain_run_with_ray_address_joins_an_open_cluster_and_says_so(open_head, tmp_path):
    home = tmp_path / "home"
    (home / ".ray").mkdir(parents=True)
    (home / ".ray" / "auth_token").write_text("a token of some other cluster")  # not needed: not used
    before = open_head.driver_logs()
    proc = cli(*run_args(tmp_path), env=clean_env(home, RAY_ADDRESS=open_head.address))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"joining the Ray cluster at {open_head.address} (RAY_ADDRESS)" in proc.stdout
    assert "num_cpus" not in proc.stderr
    finished(tmp_path)
    assert len(open_head.driver_logs()) == len(before) + 1


def test_a_cluster_found_on_this_machine_is_not_joined_silently(open_head, monkeypatch):
    from search.tune.cluster import choose_ray

    for name in RAY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RAY_TMPDIR", str(open_head.root))           # where `ray start` left its address file
    target = choose_ray(None)
    assert target.address is None                                  # a Ray of the run's own
    assert "a Ray cluster runs on this machine" in target.notice and "--address" in target.notice
    assert choose_ray("local").address is None
    joined = choose_ray(open_head.address)
    assert joined.address is not None and joined.shown == open_head.address


def test_a_joined_cluster_s_workers_get_the_variables_workers_read_from_the_driver(open_head, monkeypatch):
    """A joined cluster's workers inherit their node's environment, not the driver's."""
    import ray

    from search.tune.cluster import start_ray
    from search.tune.tuner import stop_ray

    for name in RAY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    monkeypatch.setenv("WANDB_MODE", "disabled")                  # no node of this head was started with it
    stop_ray()
    start_ray(open_head.address)
    try:
        read = ray.remote(num_cpus=0)(lambda: {k: os.environ.get(k) for k in ("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO",
                                                                                "WANDB_MODE")})
        assert ray.get(read.remote(), timeout=120) == {"RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "0",
                                                       "WANDB_MODE": "disabled"}
    finally:
        stop_ray()


def test_storage_reach_passes_where_every_node_sees_the_directory_and_is_one_line_when_a_node_is_silent(
        open_head, monkeypatch, tmp_path):
    """The head shares this machine's disk, so it sees the marker; a node whose check never
    answers (here: a check that hangs) is a ClusterError naming it, not a GetTimeoutError."""
    import time

    import ray

    from search.tune import cluster
    from search.tune.tuner import stop_ray

    for name in RAY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    stop_ray()
    cluster.start_ray(open_head.address)
    try:
        cluster.check_storage_reach(tmp_path / "runs" / "r1", "--out x")
        monkeypatch.setattr(cluster, "_sees", ray.remote(num_cpus=0)(lambda path: time.sleep(120)))
        monkeypatch.setattr(cluster, "REACH_TIMEOUT_S", 2)
        with pytest.raises(cluster.ClusterError) as err:
            cluster.check_storage_reach(tmp_path / "runs" / "r1", "--out x")
    finally:
        stop_ray()
    message = str(err.value)
    assert "\n" not in message and message.startswith("--out x: 1 of the cluster's 1 nodes did not say within 2 s")
    assert str(tmp_path) in message and "--storage-path" in message
    assert not list(tmp_path.glob(".gsa-nas-reach-*"))             # the marker is gone either way
