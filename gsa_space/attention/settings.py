"""The environment variables of gsa_space.attention, read once at import into a frozen `SETTINGS`.

GSA_NAS_NATIVE=0 turns the native CPU kernels off ("auto" then always picks torch_ops);
GSA_NAS_CACHE is where the kernels' shared object is cached (default $XDG_CACHE_HOME/gsa-nas or
~/.cache/gsa-nas); CC names the C compiler (default cc, then gcc, on PATH);
GSA_NAS_RETAIN_MEMORY=0 stops `retain_freed_memory` from changing glibc's allocator settings.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

__all__ = ["SETTINGS", "Settings"]


@dataclass(frozen=True)
class Settings:
    """What the environment says about the native backend; tests build their own."""

    native: bool
    cache_dir: Path
    compiler: str | None
    retain_memory: bool

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Settings:
        cache = environ.get("GSA_NAS_CACHE") or os.path.join(
            environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "gsa-nas")
        return cls(
            native=environ.get("GSA_NAS_NATIVE", "1") != "0",
            cache_dir=Path(cache),
            compiler=environ.get("CC") or shutil.which("cc") or shutil.which("gcc"),
            retain_memory=environ.get("GSA_NAS_RETAIN_MEMORY", "1") != "0",
        )


SETTINGS = Settings.from_environ(os.environ)
