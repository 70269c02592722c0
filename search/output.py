"""What the CLI prints, and a stdout that survives being closed (`gsa-nas run ... | head -2`).

`guard_stdout()` runs once at the process edge (`gsa-nas` main): when the reader goes away,
the rest of the output is dropped instead of raising BrokenPipeError into a running study, and
file descriptor 1 is pointed at /dev/null so that nothing else (Python's exit flush, Ray) fails
on it either.
"""

from __future__ import annotations

import io
import os
import sys

__all__ = ["guard_stdout", "say"]


class _GuardedStream(io.TextIOBase):
    """Writes through to `stream` until it breaks; then swallows everything."""

    def __init__(self, stream: io.TextIOBase) -> None:
        self._stream = stream
        self._broken = False

    def _break(self) -> None:
        self._broken = True
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)
        except (OSError, ValueError, io.UnsupportedOperation):
            pass

    def write(self, text: str) -> int:
        if not self._broken:
            try:
                return self._stream.write(text)
            except (BrokenPipeError, ConnectionResetError):
                self._break()
        return len(text)

    def flush(self) -> None:
        if not self._broken:
            try:
                self._stream.flush()
            except (BrokenPipeError, ConnectionResetError):
                self._break()

    def isatty(self) -> bool:
        return not self._broken and self._stream.isatty()

    def fileno(self) -> int:
        return self._stream.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._stream, "encoding", "utf-8")


def guard_stdout() -> None:
    """Replace sys.stdout by a stream that a closed reader cannot break (idempotent)."""
    if not isinstance(sys.stdout, _GuardedStream):
        sys.stdout = _GuardedStream(sys.stdout)


def say(line: str) -> None:
    """One line for the user on stdout, flushed (a progress log is read while the run goes on)."""
    print(line, flush=True)
