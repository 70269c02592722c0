"""Combine several runs into one trials frame for a comparison report.

Each run gets a short unique label (its name, else its directory, else parent/directory), so
two runs of one study compare side by side. Every run records each trial's resolved design
fields as columns, so a field one run varies and another keeps fixed is read, never resolved;
an empty value is not applicable (a GSA setting of a conv net).
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Callable, Sequence

import pandas as pd

from reports import columns as C
from reports.load import RunInfo

NAN = float("nan")

_LEVELS: tuple[Callable[[RunInfo], str], ...] = (
    lambda info: info.name,
    lambda info: info.path.name,
    lambda info: f"{info.path.parent.name}/{info.path.name}",
    lambda info: str(info.path.resolve()),
)


def run_labels(infos: Sequence[RunInfo]) -> list[str]:
    """A short unique label per run: its name; where names clash its directory name, then
    parent/directory, then the full path; the same directory given twice is numbered `#1`, `#2`."""
    level = [0] * len(infos)
    labels = [_LEVELS[0](info) for info in infos]
    while True:
        counts = Counter(labels)
        clash = [k for k, label in enumerate(labels) if counts[label] > 1 and level[k] < len(_LEVELS) - 1]
        if not clash:
            break
        for k in clash:
            level[k] += 1
            labels[k] = _LEVELS[level[k]](infos[k])
    counts, seen = Counter(labels), Counter()
    out = []
    for label in labels:
        if counts[label] > 1:
            seen[label] += 1
            label = f"{label}#{seen[label]}"
        out.append(label)
    return out


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def fill_fields(trials: pd.DataFrame, fields: Sequence[str]) -> tuple[pd.DataFrame, list[str]]:
    """`trials` with an empty column for each field of `fields` that the run did not record.

    A run records every trial's resolved design fields (run.json `resolved_fields`), so nothing
    is looked up here; a field no column holds is unknown (shown as "—" and named in the report).
    Returns the frame and those unknown fields.
    """
    out = trials.copy()
    unknown = [field for field in fields if field not in out.columns]
    for field in unknown:
        out[field] = pd.Series(NAN, index=out.index, dtype=object)
    return out, unknown


def combine_runs(infos: Sequence[RunInfo], frames: Sequence[pd.DataFrame], labels: Sequence[str],
                 fields: Sequence[str]) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    """One trials frame over runs, with a `run` column (the label) in front.

    A run whose variant names clash with another run's gets `label/variant` for all its variants;
    trial ids always get `label/`.
    Returns the frame and, per run label, the design fields that stayed unknown.
    """
    seen: dict[str, set[str]] = {}
    for label, frame in zip(labels, frames):
        for variant in set(frame[C.VARIANT]):
            seen.setdefault(variant, set()).add(label)
    clashing = {label for runs in seen.values() if len(runs) > 1 for label in runs}
    out, unknown = [], {}
    for info, label, frame in zip(infos, labels, frames):
        frame, missing = fill_fields(frame, fields)
        if missing:
            unknown[label] = missing
        frame.insert(0, C.RUN, label)
        if label in clashing:  # every variant of the run, so that one run reads one way
            frame[C.VARIANT] = f"{label}/" + frame[C.VARIANT].astype(str)
        frame[C.TRIAL_ID] = f"{label}/" + frame[C.TRIAL_ID]
        out.append(frame)
    combined = pd.concat(out, ignore_index=True)
    for field in fields:  # a column of numbers from one run and objects from another
        combined[field] = _tidy(combined[field])
    return combined, unknown


def _tidy(column: pd.Series) -> pd.Series:
    """Numbers as Int64 (all whole) or float64 when every known value is a (non-bool) number."""
    known = [v for v in column.tolist() if not _missing(v)]
    if known and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in known):
        numbers = pd.to_numeric(column, errors="coerce").astype("float64")
        return numbers.astype("Int64") if all(float(v).is_integer() for v in known) else numbers
    return column
