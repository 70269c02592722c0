"""The run-directory contract: file names, results columns, trial states and run.json.

`search` writes a run directory through this module and `reports` reads it through it; no
other module spells a column, a state or a file name. results.csv holds LEADING_COLUMNS, the
run's design-space columns (run.json `space_fields`), METRIC_COLUMNS, then the trial's other
resolved fields (run.json `resolved_fields`), so that a report never re-resolves a study.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

# files of a run directory
RUN_JSON = "run.json"
ENV_JSON = "env.json"
STUDY_YAML = "study.yaml"
RESULTS_CSV = "results.csv"
RESULTS_PARQUET = "results.parquet"
CURVES_CSV = "curves.csv"
OPTUNA_DB = "optuna.db"
TUNE_DIR = "tune"

# results.csv: one row per planned trial's finished record
TRIAL_ID = "trial_id"
VARIANT = "variant"
SEED = "seed"
STATE = "state"
REASON = "reason"
EPOCHS = "epochs"
BUDGET_EPOCHS = "budget_epochs"
PARAMS = "params"
GMACS = "gmacs"
ACT_MB = "act_mb"
VAL_ACC = "val_acc"
BEST_VAL_ACC = "best_val_acc"
BEST_EPOCH = "best_epoch"
TEST_ACC = "test_acc"
WALL_S = "wall_s"
IMAGES_PER_SEC = "images_per_sec"

LEADING_COLUMNS: tuple[str, ...] = (TRIAL_ID, VARIANT, SEED, STATE, REASON, EPOCHS, BUDGET_EPOCHS)
METRIC_COLUMNS: tuple[str, ...] = (
    PARAMS, GMACS, ACT_MB, VAL_ACC, BEST_VAL_ACC, BEST_EPOCH, TEST_ACC, WALL_S, IMAGES_PER_SEC,
)
# dtypes fixed by reports.load_results; design-space columns keep what pandas infers
INT_COLUMNS: tuple[str, ...] = (SEED, EPOCHS, BUDGET_EPOCHS, PARAMS)
FLOAT_COLUMNS: tuple[str, ...] = (
    GMACS, ACT_MB, VAL_ACC, BEST_VAL_ACC, BEST_EPOCH, TEST_ACC, WALL_S, IMAGES_PER_SEC,
)
STR_COLUMNS: tuple[str, ...] = (TRIAL_ID, VARIANT, STATE, REASON)

# curves.csv: one row per (trial, epoch)
EPOCH = "epoch"
TRAIN_LOSS = "train_loss"
VAL_LOSS = "val_loss"
LR = "lr"
CURVE_COLUMNS: tuple[str, ...] = (TRIAL_ID, EPOCH, TRAIN_LOSS, VAL_LOSS, VAL_ACC, LR, IMAGES_PER_SEC)

# trial states, as a user reads them (and as the Optuna user attribute gsa_state holds them)
COMPLETE = "complete"
PRUNED = "pruned"
FAILED = "failed"
INFEASIBLE = "infeasible"
STATES: tuple[str, ...] = (COMPLETE, PRUNED, FAILED, INFEASIBLE)
INTERRUPTED = "interrupted"  # reason of a record closed by a crash; never a results row

# run.json status
RUNNING = "running"
FINISHED = "finished"
RUN_INTERRUPTED = "interrupted"
RUN_FAILED = "failed"
RUN_STATUSES: tuple[str, ...] = (RUNNING, FINISHED, RUN_INTERRUPTED, RUN_FAILED)
KINDS: tuple[str, ...] = ("ablation", "search")

# Optuna user attributes of every trial in optuna.db
ATTR_STATE = "gsa_state"
ATTR_EPOCHS = EPOCHS
ATTR_REASON = REASON
ATTR_TRIAL_KEY = "trial_key"
ATTR_VARIANT = VARIANT
ATTR_SEED = SEED
ATTR_CURVE = "curve"
ATTR_FIELDS = "fields"  # the trial's resolved design fields, recorded at launch
ATTR_BUDGET_EPOCHS = BUDGET_EPOCHS
ATTR_CONFIG_KEY = "config_key"
ATTR_TEST_ACC = TEST_ACC
ATTR_RETRY_OF = "retry_of"            # on an attempt made by --retry-failed: the failed attempt's number
ATTR_DUPLICATE_OF = "duplicate_of"    # on a sampled point rejected because that config already ran
ATTR_CHECKPOINT = "checkpoint"        # URI of the trial's latest Tune checkpoint (local path, s3://...)
ATTR_CHECKPOINT_REJECTED = "checkpoint_rejected"  # why a checkpoint was set aside (trained from epoch 0)
STUDY_SUPERSEDED_BY = "superseded_by"  # Optuna study attribute: failed attempt's number -> its retry's
STUDY_RUN_ID = "gsa_run_id"            # Optuna study attribute: the run (run.json run_id) that owns it
CURVE_KEYS: tuple[str, ...] = (EPOCH, TRAIN_LOSS, VAL_LOSS, VAL_ACC, LR, IMAGES_PER_SEC, "seconds")


def cell(value: Any) -> Any:
    """A results cell: lists and tuples are written "1-2-3", None is empty, others unchanged."""
    if isinstance(value, (list, tuple)):
        return "-".join(str(v) for v in value)
    return float("nan") if value is None else value


def results_columns(space_fields: tuple[str, ...] | list[str], resolved_fields: tuple[str, ...] | list[str] = ()
                    ) -> list[str]:
    """results.csv's columns in contract order."""
    extra = [f for f in resolved_fields if f not in space_fields]
    return [*LEADING_COLUMNS, *space_fields, *METRIC_COLUMNS, *extra]


@dataclass(frozen=True)
class DataRef:
    """Which data set a run trained on (`root`: the local archive, None for digits)."""

    name: str
    root: str | None = None


@dataclass(frozen=True)
class RunRecord:
    """run.json: what a run directory says about itself; `status` is one of RUN_STATUSES."""

    name: str
    kind: str
    run_id: str | None = None  # also stored with the run's Optuna study, so that runs never share one
    status: str = RUNNING
    description: str = ""
    started: str | None = None
    finished: str | None = None
    wall_s: float = 0.0
    objectives: Mapping[str, str] = field(default_factory=lambda: {VAL_ACC: "max"})
    baseline: str | None = None
    space_fields: tuple[str, ...] = ()
    resolved_fields: tuple[str, ...] = ()
    data: DataRef | None = None
    budget_epochs: int | None = None
    input_size: tuple[int, int] | None = None
    storage: str | None = None  # the Optuna storage URL, without its password
    storage_path: str | None = None  # where Ray Tune writes checkpoints (None: RUN_DIR/tune); no credentials
    optuna_study: str | None = None
    resources: Mapping[str, float] = field(default_factory=dict)
    max_concurrent: int = 1
    error: str | None = None
    report: str | None = None  # "written", "skipped (--no-report)" or "failed: <reason>"

    def to_json(self) -> dict[str, Any]:
        """The plain JSON document (tuples as lists; `error` only when there is one)."""
        doc = asdict(self)
        doc["space_fields"] = list(self.space_fields)
        doc["resolved_fields"] = list(self.resolved_fields)
        doc["input_size"] = list(self.input_size) if self.input_size else None
        for optional in ("error", "report"):
            if doc[optional] is None:
                del doc[optional]
        return doc

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> "RunRecord":
        """A record from run.json's document; unknown keys are ignored, missing ones take defaults.

        Raises ValueError naming the key when `name` or `kind` is missing or wrong.
        """
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in doc.items() if k in known}
        if values.get("kind") not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, but got kind={values.get('kind')!r}")
        if not values.get("name"):
            raise ValueError(f"name must be a non-empty string, but got name={values.get('name')!r}")
        data = values.get("data")
        if isinstance(data, Mapping):
            values["data"] = DataRef(name=str(data.get("name")), root=data.get("root"))
        for key in ("space_fields", "resolved_fields"):
            values[key] = tuple(values.get(key) or ())
        size = values.get("input_size")
        if size is not None:  # one number is a square input
            values["input_size"] = (int(size), int(size)) if isinstance(size, (int, float)) else tuple(size)
        if values.get("objectives") is None:
            values.pop("objectives", None)
        wall = values.get("wall_s")
        values["wall_s"] = float(wall) if wall is not None else 0.0
        return cls(**values)


def write_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file in the same directory and a rename."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_run_record(run_dir: Path, record: RunRecord) -> None:
    """run.json, written atomically."""
    write_atomic(Path(run_dir) / RUN_JSON, json.dumps(record.to_json(), indent=2, default=str) + "\n")


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from `path` (run.json, env.json); ValueError naming the file otherwise."""
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: unreadable JSON ({err})") from err
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: expected a JSON object, but got {type(doc).__name__}")
    return doc


def read_run_record(run_dir: Path) -> RunRecord:
    """run.json of `run_dir` (ValueError naming the file when it is unreadable or wrong)."""
    path = Path(run_dir) / RUN_JSON
    doc = read_json(path)
    doc.setdefault("name", Path(run_dir).name)  # a run is named after its directory
    try:
        return RunRecord.from_json(doc)
    except (ValueError, TypeError) as err:
        raise ValueError(f"{path}: {err}") from err
