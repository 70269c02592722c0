"""results.csv / results.parquet / curves.csv of a run, built from the Optuna ledger alone.

One row per finished record (complete, pruned, failed, infeasible); trials closed as
"interrupted" are not rows (their re-runs are). Columns and their order are the run-directory
contract (`reports.run_dir`): leading columns, the run's design-space fields, compute and
accuracy, then every other field the trial resolved (`RESOLVED_KEYS`).
"""

from __future__ import annotations

import math
from dataclasses import fields as dataclass_fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

import pandas as pd

from gsa_space.config import DESIGN_KEYS
from reports import run_dir as R
from search.study import keys
from search.study.schema import TrainConfig

if TYPE_CHECKING:
    from search.study import Study, TrialSpec

NAN = float("nan")
# Fields every results row records besides the run's own design-space fields, so that a report
# comparing runs reads each trial's value instead of re-resolving its study.
RESOLVED_KEYS: tuple[str, ...] = (
    keys.MODEL_VARIANT, *DESIGN_KEYS, *(keys.train_key(f.name) for f in dataclass_fields(TrainConfig)),
)


def space_fields(study: Study) -> list[str]:
    """Dotted keys that become columns: the search space, or every key any variant overrides."""
    if study.kind == "search":
        return [d.name for d in study.search.space]
    out: list[str] = []
    for variant in study.variants:
        for key, _ in variant.overrides:
            if key not in out:
                out.append(key)
    return out


def recorded_fields(study: Study) -> list[str]:
    """Every field a trial records at launch: the space fields, then RESOLVED_KEYS."""
    return list(dict.fromkeys([*space_fields(study), *RESOLVED_KEYS]))


def trial_fields(study: Study, spec: TrialSpec, model_variant: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """The values a launched trial records (`fields` user attribute), as results cells.

    An inactive search dimension is None (an empty cell), whatever the network falls back to.
    """
    return {key: None if inactive(study, key, params) else
            R.cell(keys.trial_value(spec.net, spec.train, model_variant, key)) for key in recorded_fields(study)}


def inactive(study: Study, key: str, params: Mapping[str, Any]) -> bool:
    """Whether `key` is a search dimension the trial did not sample (its `when` failed)."""
    return study.kind == "search" and key not in params and any(d.name == key for d in study.search.space)


def _field_value(study: Study, attrs: dict, params: dict, key: str) -> Any:
    """The value a trial used for `key`: as resolved at launch, sampled, from its variant, or the base.

    An inactive search dimension is empty (NaN), whatever the network falls back to.
    """
    if inactive(study, key, params):
        return NAN
    if key in attrs.get(R.ATTR_FIELDS, {}):
        return attrs[R.ATTR_FIELDS][key]
    if key in params:
        return R.cell(params[key])
    if study.kind == "ablation":
        try:
            overrides = dict(study.variant(attrs.get("variant", "")).overrides)
        except KeyError:
            overrides = {}
        if key in overrides:
            return R.cell(overrides[key])
        if key == keys.MODEL_VARIANT:
            return study.model.variant
        base = dict(study.model.overrides)
        if key in base:
            return R.cell(base[key])
        if keys.train_field(key) is not None:
            return getattr(study.train, keys.train_field(key), NAN)
    return NAN


def trial_row(study: Study, frozen: Any, fields: Sequence[str], decode: Any = None) -> dict[str, Any]:
    """One results row from a finished Optuna trial (`decode` maps stored params to values)."""
    attrs = dict(frozen.user_attrs)
    params = decode(frozen.params) if decode else dict(frozen.params)
    curve = attrs.get(R.ATTR_CURVE, [])
    state = attrs.get(R.ATTR_STATE, R.FAILED)
    accs = [r.get(R.VAL_ACC) for r in curve if r.get(R.VAL_ACC) is not None]
    best = max(range(len(accs)), key=lambda i: accs[i]) if accs else None
    trial_id = str(attrs.get(R.ATTR_TRIAL_KEY, f"trial_{frozen.number:04d}"))
    row: dict[str, Any] = {
        R.TRIAL_ID: trial_id,
        # a search trial's label is its key (a re-run of an interrupted trial has a new Optuna number)
        R.VARIANT: trial_id if study.kind == "search" else str(attrs.get(R.ATTR_VARIANT, trial_id)),
        R.SEED: int(attrs.get(R.ATTR_SEED, 0)),
        R.STATE: state,
        R.REASON: str(attrs.get(R.ATTR_REASON, "")),
        R.EPOCHS: int(attrs.get(R.ATTR_EPOCHS, 0)),
        R.BUDGET_EPOCHS: int(attrs.get(R.ATTR_BUDGET_EPOCHS, study.train.epochs)),
    }
    for key in fields:
        value = _field_value(study, attrs, params, key)
        row[key] = NAN if value is None else value  # None (no GSA stage, inactive) is an empty cell
    ips = [r[R.IMAGES_PER_SEC] for r in curve if r.get(R.IMAGES_PER_SEC) is not None]
    row.update({
        R.PARAMS: int(attrs[R.PARAMS]) if R.PARAMS in attrs else pd.NA,
        R.GMACS: float(attrs.get(R.GMACS, NAN)),
        R.ACT_MB: float(attrs.get(R.ACT_MB, NAN)),
        R.VAL_ACC: float(accs[-1]) if accs else NAN,
        R.BEST_VAL_ACC: float(accs[best]) if best is not None else NAN,
        R.BEST_EPOCH: float(curve[best][R.EPOCH]) if best is not None else NAN,
        R.TEST_ACC: float(attrs[R.ATTR_TEST_ACC]) if state == R.COMPLETE and R.ATTR_TEST_ACC in attrs else NAN,
        R.WALL_S: float(sum(r.get("seconds") or 0.0 for r in curve)) if curve else NAN,
        R.IMAGES_PER_SEC: float(sum(ips) / len(ips)) if ips else NAN,
    })
    if state == R.INFEASIBLE:
        row[R.EPOCHS] = 0
    return row


def results_frame(study: Study, trials: Iterable[Any], decode: Any = None) -> pd.DataFrame:
    """The results table, in contract column order, trials in Optuna number order."""
    fields = recorded_fields(study)
    rows = [trial_row(study, t, fields, decode) for t in sorted(trials, key=lambda t: t.number)]
    frame = pd.DataFrame(rows, columns=R.results_columns(space_fields(study), fields))
    frame[R.PARAMS] = frame[R.PARAMS].astype("Int64")
    for key in fields:  # mixed design-space columns (3, 5, "global") are stored as strings
        kinds = {type(v) for v in frame[key] if not (isinstance(v, float) and math.isnan(v))}
        if len(kinds) > 1:
            frame[key] = frame[key].map(lambda v: v if isinstance(v, float) and math.isnan(v) else str(v))
    return frame


def records_summary(states: Iterable[str]) -> str:
    """`8 records: 6 complete, 2 infeasible` (states in a fixed order, zero counts left out)."""
    states = list(states)
    order = list(R.STATES)
    order += sorted(set(states) - set(order))
    parts = [f"{states.count(s)} {s}" for s in order if states.count(s)]
    head = f"{len(states)} record{'' if len(states) == 1 else 's'}"
    return f"{head}: {', '.join(parts)}" if parts else head


def curves_frame(trials: Iterable[Any]) -> pd.DataFrame:
    """One row per (trial, epoch) of every trained finished record."""
    rows = []
    for t in sorted(trials, key=lambda t: t.number):
        key = str(t.user_attrs.get(R.ATTR_TRIAL_KEY, f"trial_{t.number:04d}"))
        for r in t.user_attrs.get(R.ATTR_CURVE, []):
            rows.append({R.TRIAL_ID: key, **{c: r.get(c, NAN) for c in R.CURVE_COLUMNS[1:]}})
    return pd.DataFrame(rows, columns=list(R.CURVE_COLUMNS))


def write_results(run_dir: Path, study: Study, trials: Sequence[Any], decode: Any = None) -> pd.DataFrame:
    """Write results.csv, results.parquet and curves.csv into `run_dir`; returns the results frame."""
    frame = results_frame(study, trials, decode)
    R.write_atomic(run_dir / R.RESULTS_CSV, frame.to_csv(index=False))
    tmp = run_dir / f".{R.RESULTS_PARQUET}.tmp"
    frame.to_parquet(tmp, index=False)
    tmp.replace(run_dir / R.RESULTS_PARQUET)
    R.write_atomic(run_dir / R.CURVES_CSV, curves_frame(trials).to_csv(index=False))
    return frame
