"""Read a run directory (run.json, env.json, study.yaml, results.csv, curves.csv) into frames.

The run directory is written by `search`; reports only read it. A missing or half-written
directory raises `ReportError` with one line that names the path, what is missing and the fix.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import pandas as pd
import yaml

from reports import columns as C

RESULTS_CSV = "results.csv"
CURVES_CSV = "curves.csv"
RUN_JSON = "run.json"
ENV_JSON = "env.json"
STUDY_YAML = "study.yaml"
KINDS = ("ablation", "search")


class ReportError(ValueError):
    """A run directory that cannot be reported on; the message is one line for the user."""


@dataclass(frozen=True)
class RunInfo:
    """What a run directory says about itself: run.json, env.json and the resolved study."""

    path: Path
    name: str
    kind: str
    status: str
    description: str = ""
    objectives: Mapping[str, str] = field(default_factory=dict)
    baseline: str | None = None
    space_fields: tuple[str, ...] = ()
    budget_epochs: int | None = None
    wall_s: float | None = None
    run: Mapping[str, Any] = field(default_factory=dict)
    env: Mapping[str, Any] = field(default_factory=dict)
    study: Mapping[str, Any] = field(default_factory=dict)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ReportError(f"{path}: unreadable JSON ({err})") from err
    if not isinstance(data, dict):
        raise ReportError(f"{path}: expected a JSON object, but got {type(data).__name__}")
    return data


def _check_dir(run_dir: Path) -> None:
    if not run_dir.is_dir():
        raise ReportError(f"{run_dir}: no such run directory")
    if not (run_dir / RUN_JSON).is_file():
        raise ReportError(
            f"{run_dir}: no {RUN_JSON}; not a gsa-nas run directory (start one with gsa-nas run STUDY)"
        )


def load_run_info(run_dir: str | Path) -> RunInfo:
    """Read run.json (required), env.json and study.yaml (optional) of a run directory.

    Example: `load_run_info("runs/quickstart").kind == "ablation"`.
    """
    run_dir = Path(run_dir)
    _check_dir(run_dir)
    run = _read_json(run_dir / RUN_JSON)
    kind = run.get("kind")
    if kind not in KINDS:
        raise ReportError(f"{run_dir / RUN_JSON}: kind must be one of {KINDS}, but got kind={kind!r}")
    env = _read_json(run_dir / ENV_JSON) if (run_dir / ENV_JSON).is_file() else {}
    study: dict[str, Any] = {}
    if (run_dir / STUDY_YAML).is_file():
        try:
            study = yaml.safe_load((run_dir / STUDY_YAML).read_text()) or {}
        except yaml.YAMLError as err:
            raise ReportError(f"{run_dir / STUDY_YAML}: unreadable YAML ({err})") from err
    budget = run.get("budget_epochs")
    wall = run.get("wall_s")
    return RunInfo(
        path=run_dir,
        name=str(run.get("name") or run_dir.name),
        kind=kind,
        status=str(run.get("status", "unknown")),
        description=str(run.get("description") or study.get("description") or ""),
        objectives=dict(run.get("objectives") or {C.VAL_ACC: "max"}),
        baseline=run.get("baseline"),
        space_fields=tuple(run.get("space_fields") or ()),
        budget_epochs=int(budget) if budget is not None else None,
        wall_s=float(wall) if wall is not None and not math.isnan(float(wall)) else None,
        run=run,
        env=env,
        study=study,
    )


def _missing_results(run_dir: Path, status: str) -> ReportError:
    if status in ("running", "interrupted"):
        return ReportError(
            f"{run_dir}: no {RESULTS_CSV}; the run has not finished (status: {status}) "
            f"— resume it with gsa-nas run --resume {run_dir}"
        )
    return ReportError(f"{run_dir}: no {RESULTS_CSV} (status: {status}); the run directory is incomplete")


def _read_csv(path: Path, dtype: Mapping[str, Any]) -> pd.DataFrame:
    try:
        return pd.read_csv(path, dtype=dict(dtype), keep_default_na=True)
    except (OSError, ValueError, pd.errors.ParserError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ReportError(f"{path}: unreadable CSV ({first})") from err


def _fix_dtypes(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    frame = frame.copy()
    for col in C.STR_COLUMNS:
        frame[col] = frame[col].fillna("").astype(str)
    for col in C.FLOAT_COLUMNS:
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype("float64")
    for col in C.INT_COLUMNS:
        values = pd.to_numeric(frame[col], errors="coerce")
        if col == C.PARAMS:  # a trial that failed before it was built has no size
            frame[col] = values.round().astype("Int64")
            continue
        if values.isna().any():
            bad = frame.loc[values.isna(), C.TRIAL_ID].tolist()
            raise ReportError(f"{path}: column {col!r} must be an integer in every row, but is empty for {bad}")
        frame[col] = values.astype("int64")
    unknown = sorted(set(frame[C.STATE]) - set(C.STATES))
    if unknown:
        raise ReportError(f"{path}: unknown trial state(s) {unknown}; expected one of {C.STATES}")
    return frame


def load_results(run_dir: str | Path) -> pd.DataFrame:
    """One row per finished trial: the columns of `reports.columns` plus the design-space columns.

    Dtypes: trial_id, variant, state, reason are str ("" for no reason); seed, epochs and
    budget_epochs int64; params nullable Int64; accuracies, gmacs, act_mb, wall_s, images_per_sec
    float64 (NaN where a trial has none). Design-space columns keep the type pandas reads.

    Example: `load_results("runs/quickstart").groupby("variant")["val_acc"].mean()`.
    """
    info = load_run_info(run_dir)
    path = info.path / RESULTS_CSV
    if not path.is_file():
        raise _missing_results(info.path, info.status)
    frame = _read_csv(path, {col: str for col in C.STR_COLUMNS})
    expected = [*C.LEADING_COLUMNS, *info.space_fields, *C.METRIC_COLUMNS]
    missing = [col for col in expected if col not in frame.columns]
    if missing:
        raise ReportError(f"{path}: missing column(s) {missing}; expected columns {expected}")
    if frame.empty and info.status in ("running", "interrupted"):
        raise _missing_results(info.path, info.status)
    if frame.empty:
        raise ReportError(f"{path}: no trials (status: {info.status}); there is nothing to report")
    return _fix_dtypes(frame[expected], path).reset_index(drop=True)


def load_curves(run_dir: str | Path) -> pd.DataFrame:
    """One row per (trial, epoch): trial_id, epoch, train_loss, val_loss, val_acc, lr, images_per_sec."""
    run_dir = Path(run_dir)
    _check_dir(run_dir)
    path = run_dir / CURVES_CSV
    if not path.is_file():
        raise ReportError(f"{run_dir}: no {CURVES_CSV}; the run wrote no per-epoch records")
    frame = _read_csv(path, {C.TRIAL_ID: str})
    missing = [col for col in C.CURVE_COLUMNS if col not in frame.columns]
    if missing:
        raise ReportError(f"{path}: missing column(s) {missing}; expected columns {list(C.CURVE_COLUMNS)}")
    frame = frame[list(C.CURVE_COLUMNS)].copy()
    frame[C.TRIAL_ID] = frame[C.TRIAL_ID].fillna("").astype(str)
    frame[C.EPOCH] = pd.to_numeric(frame[C.EPOCH], errors="coerce").astype("Int64")
    for col in C.CURVE_COLUMNS[2:]:
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype("float64")
    return frame.sort_values([C.TRIAL_ID, C.EPOCH], kind="stable").reset_index(drop=True)
