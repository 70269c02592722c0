"""A local run's Ray listens on loopback only and keeps token authentication on (issue 11, item 5).

The run is the real CLI starting its own Ray; while it trains, the test reads every listening TCP
socket and every unconnected bound UDP socket of the driver and each process below it (GCS,
raylets, agents, trial workers) from /proc, and afterwards asserts each is on 127.0.0.1 / ::1 or
on ALLOWED with its reason. An exposed Ray runs anyone's code (ShadowRay, CVE-2023-48022).
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.search.ray_nodes import clean_env
from tests.search.test_faults import ROOT, cli_cmd, descendants

# (process name fragment, address) -> why that socket may listen off loopback. Empty while Ray
# puts every socket of a single-machine node on 127.0.0.1; an entry needs its reason here.
ALLOWED: dict[tuple[str, str], str] = {}
SETS = ["train.epochs=2", "seeds=[0]", "variants={both: {}, conv: {}}", "max_concurrent=2"]
TCP_LISTEN = "0A"


@dataclass(frozen=True)
class Listener:
    process: str   # the process's command line, shortened
    proto: str     # tcp, tcp6, udp, udp6
    address: str
    port: int

    @property
    def on_loopback(self) -> bool:
        ip = ipaddress.ip_address(self.address)
        mapped = getattr(ip, "ipv4_mapped", None)
        return (mapped or ip).is_loopback


def _address(hex_address: str) -> tuple[str, int]:
    """/proc/net's "0100007F:1F90" (little-endian words) as ("127.0.0.1", 8080)."""
    host, port = hex_address.split(":")
    raw = bytes.fromhex(host)
    raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    return str(ipaddress.ip_address(raw)), int(port, 16)


def listening_inodes() -> dict[str, tuple[str, str, int]]:
    """Socket inode -> (proto, address, port) for listening TCP and unconnected bound UDP sockets."""
    out = {}
    for proto in ("tcp", "tcp6", "udp", "udp6"):
        for line in Path(f"/proc/net/{proto}").read_text().splitlines()[1:]:
            fields = line.split()
            local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
            listening = state == TCP_LISTEN if proto.startswith("tcp") else _address(remote)[1] == 0
            if listening:
                out[inode] = (proto, *_address(local))
    return out


def listeners_of(pids: set[int]) -> set[Listener]:
    sockets, found = listening_inodes(), set()
    for pid in pids:
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
            links = [os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()]
        except OSError:  # the process ended meanwhile
            continue
        # The program's file name, not its path: a long checkout path would cut "gcs_server" off.
        name = " ".join([Path(argv[0]).name, *argv[1:]]).strip()[:80]
        for link in links:
            if link.startswith("socket:[") and link[8:-1] in sockets:
                found.add(Listener(name, *sockets[link[8:-1]]))
    return found


def gcs_refuses_a_driver_without_token(port: int, home: Path) -> str:
    """What the GCS at 127.0.0.1:`port` says to a process with no token anywhere."""
    code = f"from search.tune.cluster import _probe; print(_probe('127.0.0.1:{port}'))"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env=clean_env(home))
    return proc.stdout.strip() or proc.stderr[-500:]


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("loopback")
    home, stranger = tmp / "home", tmp / "stranger"
    home.mkdir(), stranger.mkdir()
    driver = subprocess.Popen(cli_cmd("run", "quickstart", "--out", str(tmp), "--no-report", sets=SETS), cwd=ROOT,
                              env=clean_env(home),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen: set[Listener] = set()
    probe = ""
    deadline = time.monotonic() + 600
    while driver.poll() is None and time.monotonic() < deadline:
        seen |= listeners_of(descendants(driver.pid) | {driver.pid})
        gcs = [s.port for s in seen if "gcs_server" in s.process and s.proto.startswith("tcp")]
        if gcs and not probe:
            probe = gcs_refuses_a_driver_without_token(gcs[0], stranger)
        time.sleep(0.2)
    out, err = driver.communicate(timeout=60)
    return {"returncode": driver.returncode, "stderr": err, "seen": seen, "probe": probe}


@pytest.mark.slow
def test_local_ray_listens_on_loopback_only(local_run):
    assert local_run["returncode"] == 0, local_run["stderr"][-3000:]
    seen = local_run["seen"]
    names = " ".join(s.process for s in seen)
    for part in ("gcs_server", "raylet", "search.cli", "ray::"):  # the driver, GCS, raylet, workers were seen
        assert part in names, sorted(seen, key=str)
    exposed = [s for s in seen if not s.on_loopback
               and not any(frag in s.process and addr == s.address for frag, addr in ALLOWED)]
    assert exposed == [], "\n".join(map(str, sorted(exposed, key=str)))


@pytest.mark.slow
def test_local_ray_keeps_token_authentication_on(local_run):
    assert local_run["probe"] == "refused"
