"""The environment variables that quiet Ray, applied at the edge of the driver process.

Some are read when `ray` is first imported (RAY_DEDUP_LOGS, RAY_ENABLE_UV_RUN_RUNTIME_ENV), others
when Tune runs; workers inherit them from the driver. `gsa-nas` applies them first thing in
`main`; `run_session` applies them again for library callers (setdefault: a user's value wins).
"""

from __future__ import annotations

import os
from typing import Mapping

__all__ = ["RAY_QUIET_ENV", "TRACKER_ENV", "apply_ray_env", "tracker_env", "apply_tracker_env", "worker_env"]

RAY_QUIET_ENV: dict[str, str] = {
    "RAY_AIR_NEW_OUTPUT": "0",                                    # our progress line, not Tune's table
    # Tune's default loggers stay off: a study's `loggers:` key chooses them (search.tune.trackers).
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",
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


# Per logger, defaults (a user's value wins) that keep experiment trackers local and quiet: W&B
# offline, with no code, git or error-report uploads, and no MLflow telemetry, so a run contacts
# no outside host unless the user asks for it (WANDB_MODE=online, MLFLOW_TRACKING_URI=https://...).
TRACKER_ENV: dict[str, dict[str, str]] = {
    "mlflow": {"MLFLOW_DISABLE_TELEMETRY": "true"},
    "wandb": {"WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_DISABLE_CODE": "true",
              "WANDB_DISABLE_GIT": "true", "WANDB_ERROR_REPORTING": "false"},
}


def tracker_env(loggers: tuple[str, ...], environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The variables `apply_tracker_env` sets for a study's `loggers`: those `environ` lacks."""
    environ = os.environ if environ is None else environ
    out: dict[str, str] = {}
    for name in loggers:
        out.update({k: v for k, v in TRACKER_ENV.get(name, {}).items() if k not in environ})
    return out


def apply_tracker_env(loggers: tuple[str, ...]) -> None:
    """Set the trackers' defaults before Ray starts, so that its workers (W&B's logging actors) inherit them."""
    os.environ.update(tracker_env(loggers))


# What Ray's worker processes (trials, W&B's logging actors) read from the environment. A local
# Ray's workers inherit the driver's; a joined cluster's inherit their node's, so a run passes
# these to them in its job's runtime_env.
WORKER_KEYS: tuple[str, ...] = ("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO",
                                *(key for keys in TRACKER_ENV.values() for key in keys))


def worker_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The WORKER_KEYS variables `environ` (default: this process) sets, for a joined cluster's workers."""
    environ = os.environ if environ is None else environ
    return {key: environ[key] for key in WORKER_KEYS if key in environ}
