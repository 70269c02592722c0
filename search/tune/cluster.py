"""Which Ray a run uses: the user's cluster, joined as Ray's own tools would, or a new local Ray.

`--address HOST:PORT` (or RAY_ADDRESS, for a plain `gsa-nas run`) names the user's cluster. It is
probed before `ray.init`: a cluster with token authentication on gets the token the way Ray's CLI
finds it (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH, then ~/.ray/auth_token), without the user having
to set RAY_AUTH_MODE (Ray turns token mode on by itself only for a cluster it finds, never for a
named address); a missing or refused token, or nobody answering, is one `ClusterError` line
instead of 20 s of retries and a traceback. Without an address a run starts its own local Ray,
listening on 127.0.0.1 only, with token authentication on; also when a cluster's address file is
found on this machine (Ray would join that one and refuse our num_cpus), and it says so. All of it
runs before the run directory is created.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import ray
from ray._private import ray_constants
from ray._private.authentication.authentication_token_setup import maybe_enable_token_auth_if_token_available
from ray._private.services import canonicalize_bootstrap_address
from ray._raylet import AuthenticationTokenLoader, GcsClient
from ray.exceptions import AuthenticationError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from search.output import say
from search.tune.ray_env import worker_env

__all__ = ["ClusterError", "RayTarget", "check_storage_reach", "choose_ray", "start_ray", "token_source"]

AUTH_MODE = "RAY_AUTH_MODE"
TOKEN_VARIABLES = "RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token"
AUTH_NOTICE_LOGGER = "ray._private.authentication.authentication_token_setup"
# Ray's single-machine switch (its default on macOS and Windows): the node's address becomes
# 127.0.0.1, and Ray's gRPC servers and agents listen on the node's address.
SINGLE_MACHINE_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
PROBE_TIMEOUT_S = 3
# A probe names no cluster id: a GCS that let the call through answers "WrongClusterID", which
# shows the token passed (or that none was needed) without the 20 s id handshake of ray.init.
PASSED_AUTH = "WrongClusterID"
REFUSED = "InvalidAuthToken"
REACH_TIMEOUT_S = 120  # a node starts a worker process for the check


class ClusterError(ValueError):
    """The Ray cluster to join cannot be used: one line naming the address and what to set."""


@dataclass(frozen=True)
class RayTarget:
    """A run's Ray: `address` to join (host:port), or None to start a local Ray; `notice` is the
    line said about the choice ("" when there is nothing to say)."""

    address: str | None
    notice: str = ""
    shown: str = ""  # the address as the user gave it (Ray may rewrite 127.0.0.1 to the node's IP)


def token_source() -> str | None:
    """Where Ray would read its token from, in Ray's order, or None when there is none."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return "RAY_AUTH_TOKEN"
    path = os.environ.get("RAY_AUTH_TOKEN_PATH")
    if path:
        return f"RAY_AUTH_TOKEN_PATH ({path})" if Path(path).expanduser().is_file() else None
    default = Path.home() / ".ray" / "auth_token"
    return str(default) if default.is_file() else None


def choose_ray(address: str | None) -> RayTarget:
    """The Ray a run with `--address` `address` (None: not given) uses, per the module docstring."""
    if address == "local":
        return RayTarget(None)
    if address:
        return RayTarget(_canonical(address, "--address"), shown=address)
    from_env = os.environ.get("RAY_ADDRESS", "")
    if from_env and from_env != "local":
        joined = _canonical(None, "RAY_ADDRESS")
        return RayTarget(joined, f"joining the Ray cluster at {from_env} (RAY_ADDRESS); run with "
                                 f"--address local to start a Ray of this run's own instead", shown=from_env)
    if from_env:
        return RayTarget(None)
    try:
        found = canonicalize_bootstrap_address(None)
    except Exception:  # an unreadable or stale address file: nothing to join
        found = None
    if found:
        return RayTarget(None, f"a Ray cluster runs on this machine at {found}; this run starts a Ray of "
                               f"its own (give --address {found} to run on that cluster)")
    return RayTarget(None)


def _canonical(address: str | None, origin: str) -> str:
    try:
        canonical = canonicalize_bootstrap_address(address)
    except Exception as err:
        raise ClusterError(f"{origin} {address or os.environ.get('RAY_ADDRESS')!r}: not a Ray address "
                           f"({err}); give HOST:PORT of the cluster's head (ray start --head prints it)") from None
    if canonical is None:
        raise ClusterError(f"{origin} {address!r}: no running Ray cluster was found to join; give HOST:PORT "
                           f"of the cluster's head, or leave --address out to start a local Ray")
    return canonical


def _probe(address: str) -> str:
    """"passed", "refused" or "unreachable: <why>" for one call to the GCS at `address` now."""
    host, _, port = address.rpartition(":")
    try:  # a plain connect first: Ray's client would wait 13 s and log from C++ about a closed port
        socket.create_connection((host.strip("[]"), int(port)), timeout=PROBE_TIMEOUT_S).close()
    except (OSError, ValueError) as err:
        return f"unreachable: {err}"
    try:
        client = GcsClient(address=address, cluster_id="00" * 28)
        client.internal_kv_get(b"gsa-nas-probe", b"gsa-nas", timeout=PROBE_TIMEOUT_S)
        return "passed"
    except AuthenticationError as err:
        message = str(err)
        if PASSED_AUTH in message:
            return "passed"
        if REFUSED in message:
            return "refused"
        return f"unreachable: {message.splitlines()[0][:200]}"
    except Exception as err:
        return f"unreachable: {' '.join(str(err).split())[:200]}"


def _check_joinable(target: RayTarget) -> None:
    """Probe the target; turn Ray's token mode on when the cluster wants it and a token is at hand."""
    assert target.address is not None
    status, address = _probe(target.address), target.shown or target.address
    if status == "refused" and AUTH_MODE not in os.environ:
        source = token_source()
        if source is None:
            raise ClusterError(f"the Ray cluster at {address} has token authentication on, and no token was "
                               f"found: set RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH, or put the cluster's token "
                               f"in ~/.ray/auth_token (`ray get-auth-token` on the head prints it)")
        _enable_token_mode()
        status = _probe(target.address)
        if status == "refused":
            raise ClusterError(f"the Ray cluster at {address} refused the token from {source}; give the head's "
                               f"token through {TOKEN_VARIABLES} (`ray get-auth-token` on the head prints it)")
    if status == "refused":
        raise ClusterError(f"the Ray cluster at {address} refused this driver ({AUTH_MODE}="
                           f"{os.environ[AUTH_MODE]}); give the head's token through {TOKEN_VARIABLES}")
    if status != "passed":
        raise ClusterError(f"no Ray cluster answers at {address} ({status.removeprefix('unreachable: ')}); "
                           f"check the address and that the head runs (ray status --address {address})")


@contextlib.contextmanager
def _auth_notice_muted() -> Iterator[None]:
    """Ray's warning that it turned token authentication on, muted while the block runs: it comes
    on every run that starts a local Ray, and when we turn token mode on we say why ourselves."""
    notice = logging.getLogger(AUTH_NOTICE_LOGGER)
    level = notice.level
    notice.setLevel(logging.ERROR)
    try:
        yield
    finally:
        notice.setLevel(level)


def _enable_token_mode() -> None:
    """RAY_AUTH_MODE=token for this process and its children, as Ray does for a cluster it finds."""
    with _auth_notice_muted():
        maybe_enable_token_auth_if_token_available(warn_if_disabled=False)
    AuthenticationTokenLoader.instance().reset_cache()


def start_ray(address: str | None) -> RayTarget:
    """Join the cluster `choose_ray(address)` names, or start a local Ray with every core of this
    machine (no dashboard); says the choice when there is something to say. Idempotent."""
    target = choose_ray(address)
    if ray.is_initialized():
        return target
    if target.address:
        _check_joinable(target)
    if target.notice:
        say(target.notice)
    quiet = {"log_to_driver": False, "logging_level": logging.WARNING, "configure_logging": True}
    if target.address:  # the user's cluster: its authentication settings and Ray's warnings stand;
        # its workers inherit their node's environment, so ours that they read goes in the job's runtime_env
        try:
            ray.init(address=target.address, runtime_env={"env_vars": worker_env()}, **quiet)
        except (ConnectionError, RuntimeError) as err:
            raise ClusterError(f"cannot join the Ray cluster at {target.shown or target.address}: "
                               f"{' '.join(str(err).split())[:300]}") from None
        return target
    # A new local Ray keeps token authentication on (we never set RAY_AUTH_MODE); setting
    # RAY_AUTH_MODE=token here instead fails: Ray has already read its config at import time.
    with _auth_notice_muted(), _single_machine():
        ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, **quiet)
    return target


@contextlib.contextmanager
def _single_machine() -> Iterator[None]:
    """Ray started in the block listens on 127.0.0.1 only: nobody else can reach it (an exposed
    Ray runs anyone's code, CVE-2023-48022). Ray reads the switch at import, so the constant is
    set too; the variable reaches the processes Ray starts. Both are put back after the start, so
    a later join from this process (or a `ray start` it spawns) is a normal cluster member."""
    saved = os.environ.get(SINGLE_MACHINE_ENV), ray_constants.ENABLE_RAY_CLUSTER
    os.environ[SINGLE_MACHINE_ENV], ray_constants.ENABLE_RAY_CLUSTER = "0", False
    try:
        yield
    finally:
        if saved[0] is None:
            os.environ.pop(SINGLE_MACHINE_ENV, None)
        else:
            os.environ[SINGLE_MACHINE_ENV] = saved[0]
        ray_constants.ENABLE_RAY_CLUSTER = saved[1]


@ray.remote(num_cpus=0)
def _sees(path: str) -> bool:
    return os.path.exists(path)


def check_storage_reach(directory: Path, shown: str) -> None:
    """Refuse a joined cluster on which some node cannot see the local checkpoint storage
    `directory` (or its nearest existing parent, before the run creates it): without a shared
    filesystem, Tune's first checkpoint on such a node fails and the trial silently restarts
    elsewhere from epoch 0. A marker file is written there and looked for by a zero-CPU task
    pinned to each live node. `shown`: how the storage was given, for the message."""
    existing = next(p for p in (directory, *directory.parents) if p.is_dir())
    marker = existing / f".gsa-nas-reach-{uuid.uuid4().hex}"
    try:
        marker.touch()
    except OSError as err:
        raise ClusterError(f"{shown}: cannot write the run's checkpoints to {existing} ({err.strerror})") from None
    try:
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        checks = [_sees.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
                  .remote(str(marker)) for n in nodes]
        _, silent = ray.wait(checks, num_returns=len(checks), timeout=REACH_TIMEOUT_S)
        for ref in silent:
            ray.cancel(ref)
        seen = [] if silent else ray.get(checks)
    finally:
        marker.unlink(missing_ok=True)
    if silent:
        first = nodes[checks.index(silent[0])]
        raise ClusterError(f"{shown}: {len(silent)} of the cluster's {len(nodes)} nodes did not say within "
                           f"{REACH_TIMEOUT_S} s whether they see {existing} (node {first['NodeManagerAddress']} "
                           f"{first['NodeID'][:8]}); check that every node is up and can start a worker, or give "
                           f"--storage-path s3://BUCKET/PREFIX")
    blind = [n for n, ok in zip(nodes, seen) if not ok]
    if blind:
        first = blind[0]
        raise ClusterError(f"{shown}: {len(blind)} of the cluster's {len(nodes)} nodes cannot see {existing} (node "
                           f"{first['NodeManagerAddress']} {first['NodeID'][:8]}), so a trial there could not save or "
                           f"load its checkpoints; give --storage-path s3://BUCKET/PREFIX or a directory every node mounts")
