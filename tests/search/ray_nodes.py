"""Real Ray nodes for the cluster tests: `ray start --block` on 127.0.0.1, each in a process group
of its own with its own --temp-dir, ports and HOME, RAY_AUTH_MODE and the token file set
explicitly (Ray 2.60 decides authentication from both), and stopped by PID (never `ray stop`,
which would stop every Ray on the machine).

A worker node can be given a private view of one directory (`private=`): it runs under
`unshare -m` with a tmpfs mounted over that directory, as a node of a cluster without a shared
filesystem sees the driver's run directory.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.search.test_faults import descendants

RAY = Path(sys.executable).with_name("ray")
TOKEN = "gsa0nas0test0token0" + "7" * 13
# Variables that would make a node or a driver join, authenticate or place itself otherwise.
RAY_VARIABLES = ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_TMPDIR",
                 "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in RAY_VARIABLES}
    return {**env, "HOME": str(home), "RAY_USAGE_STATS_ENABLED": "0", **extra}


def can_unshare() -> str:
    """"" when this process may run `unshare -m` and mount a tmpfs, else why not."""
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs tmpfs /mnt"], capture_output=True, text=True)
    return "" if probe.returncode == 0 else f"unshare -m with a tmpfs mount is not allowed here: {probe.stderr.strip()}"


class RayNode:
    """One `ray start --block` node: the head (`head=None`) or a worker joining `head`."""

    def __init__(self, *, auth: bool, head: "RayNode | None" = None, num_cpus: int = 2,
                 env: dict[str, str] | None = None, private: Path | None = None) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="gsa-ray-", dir="/tmp"))
        self.home = self.root / "home"
        (self.home / ".ray").mkdir(parents=True)
        self.token_file = (head.token_file if head else self.root / "token")
        if head is None:
            self.token_file.write_text(TOKEN)
        self.port = free_port() if head is None else head.port
        self.address = f"127.0.0.1:{self.port}"
        auth_env = ({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(self.token_file)} if auth
                    else {"RAY_AUTH_MODE": "disabled"})
        role = (["--head", f"--port={self.port}", "--include-dashboard=false"] if head is None
                else [f"--address={head.address}"])
        cmd = [str(RAY), "start", *role, "--block", "--node-ip-address=127.0.0.1", f"--temp-dir={self.root / 'ray'}",
               f"--num-cpus={num_cpus}", "--num-gpus=0", "--disable-usage-stats",
               f"--node-manager-port={free_port()}", f"--object-manager-port={free_port()}",
               f"--runtime-env-agent-port={free_port()}", f"--metrics-export-port={free_port()}",
               f"--dashboard-agent-listen-port={free_port()}", f"--dashboard-agent-grpc-port={free_port()}"]
        if private is not None:  # the node's own mount namespace: a tmpfs hides the directory's contents
            cmd = ["unshare", "-m", "sh", "-c", 'mount -t tmpfs gsa-private "$0" && exec "$@"', str(private), *cmd]
        self.proc = subprocess.Popen(cmd, env=clean_env(self.home, **auth_env, **(env or {})), stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, start_new_session=True)
        deadline, seen = time.monotonic() + 180, []
        for line in self.proc.stdout:  # --block prints this once every process of the node is up
            seen.append(line)
            if "Ray runtime started" in line or time.monotonic() > deadline:
                break
        else:
            self.stop()
            pytest.fail("ray start exited:\n" + "".join(seen[-20:]))

    def driver_logs(self) -> list[Path]:
        """Core-driver logs in this head's session: one per driver that joined it."""
        return sorted((self.root / "ray" / "session_latest" / "logs").glob("python-core-driver-*"))

    def pids(self) -> set[int]:
        """The node's processes: the `ray start` group, Ray's daemons named by the temp dir, and
        every process below them (the workers, whose command lines Ray rewrites)."""
        found = subprocess.run(["pgrep", "-g", str(self.proc.pid)], capture_output=True, text=True).stdout.split()
        named = subprocess.run(["pgrep", "-f", str(self.root / "ray")], capture_output=True, text=True).stdout.split()
        pids = {int(p) for p in found + named}
        return pids | {child for pid in pids for child in descendants(pid)}

    def stop(self) -> None:
        """SIGKILL to every process of the node, found before the first dies: a worker whose raylet
        died first would be re-parented out of reach (and an actor serves its owner directly, so
        it would go on training until the GCS declares the node dead)."""
        pids = self.pids()
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        for pid in pids | self.pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(timeout=30)
