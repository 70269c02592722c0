"""The environment variables that quiet Ray, applied at the edge of the driver process.

Some are read when `ray` is first imported (RAY_DEDUP_LOGS, RAY_ENABLE_UV_RUN_RUNTIME_ENV), others
when Tune runs; workers inherit them from the driver. `gsa-nas` applies them first thing in
`main`; `run_session` applies them again for library callers (setdefault: a user's value wins).
"""

from __future__ import annotations

import os

__all__ = ["RAY_QUIET_ENV", "apply_ray_env"]

RAY_QUIET_ENV: dict[str, str] = {
    "RAY_AIR_NEW_OUTPUT": "0",                                    # our progress line, not Tune's table
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",                    # results live in the Optuna ledger
    "RAY_DEDUP_LOGS": "0",
    "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0",                         # never re-launch workers under uv
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "60",
    "RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "0",                    # CPU trials keep CUDA_VISIBLE_DEVICES
    # A diverged trial's last result has no val_acc; Tune's strict check would end the whole
    # experiment (and every resume) on it. Our searcher records it as failed instead.
    "TUNE_DISABLE_STRICT_METRIC_CHECKING": "1",
}


def apply_ray_env() -> None:
    """Set each RAY_QUIET_ENV variable this process has not set itself."""
    for key, value in RAY_QUIET_ENV.items():
        os.environ.setdefault(key, value)
