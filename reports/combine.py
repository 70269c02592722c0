"""Combine several runs into one trials frame for a comparison report.

Each run gets a short unique label (its name, else its directory, else parent/directory), so
two runs of one study compare side by side. Design fields that a run did not record are filled
from its resolved study (study.yaml) and, for network fields, from its variant's config in
`gsa_space`; a value that stays empty is not applicable (a GSA setting of a conv net).
"""

from __future__ import annotations

from collections import Counter
from functools import lru_cache
from typing import Any, Callable, Mapping, Sequence

import pandas as pd

from reports import columns as C
from reports.load import RunInfo

NAN = float("nan")
STUDY_SECTIONS = ("train", "data")  # `train.lr` reads study["train"]["lr"]
MODEL_VARIANT = "model.variant"

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


LIST_KEYS = ("gsa_stages", "depths")  # results.csv writes these lists as "1-2-3" (one item: "3")


def _as_override(name: str, value: Any) -> Any:
    """A results cell back as a config value: "1-2-3" -> [1, 2, 3], "5" -> 5, others unchanged."""
    if name in LIST_KEYS and not isinstance(value, str):
        value = str(int(value))
    if isinstance(value, str):
        parts = value.split("-")
        if all(p.isdigit() for p in parts):
            return [int(p) for p in parts] if len(parts) > 1 or name in LIST_KEYS else int(parts[0])
    if hasattr(value, "item"):  # numpy scalar
        return value.item()
    return value


@lru_cache(maxsize=256)
def _net_value(variant: str, overrides: tuple[tuple[str, Any], ...], key: str) -> Any:
    """The value of network key `key` in variant `variant` with `overrides`; NaN when unknown."""
    from gsa_space.variants import build_config  # lazily: torch is heavy and only needed here

    try:
        cfg = build_config(variant, overrides=dict(overrides))
    except (ValueError, KeyError, TypeError):
        return NAN
    parts = key.split(".")
    if parts[0] == "gsa" and len(parts) == 2:
        stages = [s for s in cfg.stages if s.op == "gsa"]
        return getattr(stages[0], parts[1], NAN) if stages else NAN  # a conv net: not applicable
    if parts[0] == "stages" and len(parts) == 3 and parts[1].isdigit() and 1 <= int(parts[1]) <= len(cfg.stages):
        return getattr(cfg.stages[int(parts[1]) - 1], parts[2], NAN)
    if key == "gsa_stages":
        return "-".join(str(i) for i in cfg.gsa_stages) if cfg.gsa_stages else NAN
    if key == "depths":
        return "-".join(str(s.depth) for s in cfg.stages)
    return getattr(cfg, key, NAN)


def _hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def resolved_value(study: Mapping[str, Any], row: Mapping[str, Any], key: str) -> Any:
    """The value trial `row` of a run with resolved `study` used for `key`; NaN when unknown.

    `train.X` / `data.X` come from the study, `model.variant` from the row or the study, and
    network keys from the variant's config with the study's, the ablation variant's and the
    row's own known overrides applied.
    """
    parts = key.split(".")
    if len(parts) == 2 and parts[0] in STUDY_SECTIONS:
        section = study.get(parts[0]) or {}
        value = section.get(parts[1], NAN) if isinstance(section, Mapping) else NAN
        return NAN if _missing(value) else value
    model = dict(study.get("model") or {})
    arm = dict((study.get("variants") or {}).get(str(row.get(C.VARIANT)), {}) or {})
    variant = row.get(MODEL_VARIANT)
    if _missing(variant):
        variant = arm.get(MODEL_VARIANT, model.get("variant"))
    if key == MODEL_VARIANT:
        return NAN if _missing(variant) else variant
    if _missing(variant):
        return NAN
    overrides: dict[str, Any] = {k: v for k, v in model.items() if k not in ("variant", "overrides")}
    overrides.update(model.get("overrides") or {})
    overrides.update({k: v for k, v in arm.items() if k != MODEL_VARIANT and not k.startswith(STUDY_SECTIONS)})
    for name, value in row.items():  # the row's recorded network fields
        if "." in name and name.split(".")[0] in (*STUDY_SECTIONS, "model"):
            continue
        if name in (*C.LEADING_COLUMNS, *C.METRIC_COLUMNS, C.RUN) or _missing(value):
            continue
        overrides[name] = _as_override(name, value)
    frozen = tuple(sorted((k, _hashable(v)) for k, v in overrides.items()))
    return _net_value(str(variant), frozen, key)


def fill_fields(info: RunInfo, trials: pd.DataFrame, fields: Sequence[str]) -> tuple[pd.DataFrame, list[str]]:
    """`trials` of run `info` with every field of `fields` it lacks added from its resolved study.

    Returns the frame and the fields that it lacked and that stayed empty in every row (neither
    recorded nor resolvable: shown as "—" and named in the report).
    """
    out = trials.copy()
    unresolved = []
    known = [f for f in info.space_fields if f in out.columns]
    for field in fields:
        if field in out.columns:
            continue
        values = [resolved_value(info.study, {C.VARIANT: r[C.VARIANT], **{k: r[k] for k in known}}, field)
                  for _, r in out.iterrows()]
        out[field] = pd.Series(values, index=out.index, dtype=object)
        if all(_missing(v) for v in values):
            unresolved.append(field)
    return out, unresolved


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
        frame, unresolved = fill_fields(info, frame, fields)
        if unresolved:
            unknown[label] = unresolved
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
