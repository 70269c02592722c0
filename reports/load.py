"""Read a run directory (run.json, env.json, study.yaml, results.csv, curves.csv) into frames.

The run directory is written by `search`; reports only read it. A missing or half-written
directory raises `ReportError` with one line that names the path, what is missing and the fix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import pandas as pd
import yaml

from reports import columns as C
from reports.run_dir import (CURVES_CSV, ENV_JSON, RESULTS_CSV, RUN_JSON, STUDY_YAML, DataRef, RunRecord,
                             read_json, read_run_record, results_columns)


class ReportError(ValueError):
    """A run directory that cannot be reported on; the message is one line for the user."""


@dataclass(frozen=True)
class RunInfo:
    """A run directory as reports see it: its run.json record, env.json and resolved study."""

    path: Path
    run: RunRecord
    env: Mapping[str, Any] = field(default_factory=dict)
    study: Mapping[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.run.name

    @property
    def kind(self) -> str:
        return self.run.kind

    @property
    def status(self) -> str:
        return self.run.status

    @property
    def description(self) -> str:
        return self.run.description or str(self.study.get("description") or "")

    @property
    def objectives(self) -> Mapping[str, str]:
        return self.run.objectives

    @property
    def baseline(self) -> str | None:
        return self.run.baseline

    @property
    def space_fields(self) -> tuple[str, ...]:
        return self.run.space_fields

    @property
    def budget_epochs(self) -> int | None:
        return self.run.budget_epochs

    @property
    def wall_s(self) -> float | None:
        wall = self.run.wall_s
        return None if wall is None or math.isnan(wall) else wall

    @property
    def data(self) -> DataRef | None:
        """The data set: run.json's, else the resolved study's `data` section."""
        if self.run.data is not None:
            return self.run.data
        data = self.study.get("data")
        return DataRef(name=str(data.get("name")), root=data.get("root")) if isinstance(data, Mapping) else None


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
    try:
        run = read_run_record(run_dir)
    except ValueError as err:
        raise ReportError(str(err)) from None
    try:
        env = read_json(run_dir / ENV_JSON) if (run_dir / ENV_JSON).is_file() else {}
    except ValueError as err:
        raise ReportError(str(err)) from None
    study: dict[str, Any] = {}
    if (run_dir / STUDY_YAML).is_file():
        try:
            study = yaml.safe_load((run_dir / STUDY_YAML).read_text()) or {}
        except yaml.YAMLError as err:
            raise ReportError(f"{run_dir / STUDY_YAML}: unreadable YAML ({err})") from err
    return RunInfo(path=run_dir, run=run, env=env, study=study)


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
    """One row per finished trial: the contract's columns (`reports.run_dir`), the design-space
    columns, then the trial's other resolved fields where the run recorded them.

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
    required = results_columns(info.space_fields)
    missing = [col for col in required if col not in frame.columns]
    expected = [*required, *(c for c in info.run.resolved_fields if c in frame.columns and c not in required)]
    if missing:
        raise ReportError(f"{path}: missing column(s) {missing}; expected columns {required}")
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
