"""One driver per run directory: an exclusive `flock` on `<out>/.<name>.lock`, beside the run
directory so that it can be taken before the directory exists.

The kernel drops the lock when its process dies, so a lock left by a killed driver is free
again; the file itself stays (removing a lock file races with the next taker).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from pathlib import Path
from types import TracebackType

__all__ = ["RunLock", "RunLockedError", "lock_path"]


class RunLockedError(ValueError):
    """Another live driver holds the run's lock (one line: the run, the holder's PID and host)."""


def lock_path(run_dir: Path) -> Path:
    """`runs/quickstart` -> `runs/.quickstart.lock`."""
    return run_dir.parent / f".{run_dir.name}.lock"


class RunLock:
    """`with RunLock(run_dir):` holds the run's lock for the block; `acquire()` raises
    `RunLockedError` naming the holder when another process has it."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.path = lock_path(self.run_dir)
        self._fd: int | None = None

    def acquire(self) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise RunLockedError(
                f"{self.run_dir}: in use by gsa-nas {holder} (lock {self.path}); wait for that driver "
                f"to finish or stop it, then run again") from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode())
        os.fsync(fd)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "RunLock":
        return self if self._fd is not None else self.acquire()

    def __exit__(self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None) -> None:
        self.release()


def _holder(fd: int) -> str:
    """`PID 1234 on host h` from the lock file (the holder wrote it when it took the lock)."""
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
        return f"PID {info['pid']} on host {info['host']}"
    except (ValueError, KeyError, OSError):
        return "another process"
