"""Ray Tune's own logger callbacks, switched on by a study's `loggers:` key.

Each Tune trial folder (`RUN_DIR/tune/<session>/<trial>/`) gets what the chosen loggers write:
`result.json` (json) and `progress.csv` (csv), which `ray.tune.ExperimentAnalysis` reads;
TensorBoard event files (tensorboard); an MLflow run per trial (mlflow; by default in
`RUN_DIR/mlflow.db`, or wherever MLFLOW_TRACKING_URI points); a W&B run per trial (wandb; offline
in `RUN_DIR/wandb/` unless WANDB_MODE says otherwise). The results themselves still live in the
Optuna storage: these are copies for the tools people already use. The trackers' environment
defaults (W&B offline, no telemetry) are set at the process edge by `ray_env.apply_tracker_env`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

from ray.tune import Callback
from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback, TBXLoggerCallback

__all__ = ["MLFLOW_DB", "WANDB_DIRNAME", "mlflow_tracking_uri", "logger_callbacks"]

MLFLOW_DB = "mlflow.db"  # the default MLflow store; MLflow 3 refuses a plain file: store without opting in
WANDB_DIRNAME = "wandb"  # W&B writes RUN_DIR/wandb/offline-run-*/


def mlflow_tracking_uri(run_dir: Path, environ: Mapping[str, str] | None = None) -> str:
    """MLFLOW_TRACKING_URI when set, else a SQLite store inside the run directory."""
    environ = os.environ if environ is None else environ
    return environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(run_dir / MLFLOW_DB).resolve()}"


def _wandb_callback(run_dir: Path, run_name: str) -> Callback:
    import wandb
    from ray.air.integrations.wandb import WandbLoggerCallback

    # Passed to wandb.init in the logging actor (a Ray worker, which may not share our environment).
    # No system-metrics sampler: it probes cloud metadata endpoints.
    settings = wandb.Settings(silent=True, disable_code=True, disable_git=True, x_disable_machine_info=True,
                              x_disable_stats=True)
    return WandbLoggerCallback(project=os.environ.get("WANDB_PROJECT") or run_name,
                               mode=os.environ.get("WANDB_MODE", "offline"),
                               dir=os.environ.get("WANDB_DIR") or str(run_dir.resolve()), settings=settings)


def logger_callbacks(loggers: tuple[str, ...], *, run_dir: Path, run_name: str) -> list[Callback]:
    """Ray Tune logger callbacks for a study's `loggers`, in the order given.

    Example:
        >>> logger_callbacks(("json", "csv"), run_dir=Path("runs/q"), run_name="q")  # doctest: +SKIP
        [<JsonLoggerCallback>, <CSVLoggerCallback>]
    """
    out: list[Callback] = []
    for name in loggers:
        if name == "json":
            out.append(JsonLoggerCallback())
        elif name == "csv":
            out.append(CSVLoggerCallback())
        elif name == "tensorboard":
            out.append(TBXLoggerCallback())
        elif name == "mlflow":
            from ray.air.integrations.mlflow import MLflowLoggerCallback

            out.append(MLflowLoggerCallback(tracking_uri=mlflow_tracking_uri(run_dir), experiment_name=run_name))
        elif name == "wandb":
            out.append(_wandb_callback(run_dir, run_name))
        else:
            raise ValueError(f"unknown logger {name!r}; expected one of: json, csv, tensorboard, mlflow, wandb")
    return out
