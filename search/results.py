"""results.csv / results.parquet / curves.csv of a run, built from the Optuna ledger alone.

One row per finished record (complete, pruned, failed, infeasible); trials closed as
"interrupted" are not rows (their re-runs are). Column order is the run directory contract:
leading columns, then the run's design-space fields, then compute and accuracy.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import pandas as pd

LEADING = ("trial_id", "variant", "seed", "state", "reason", "epochs", "budget_epochs")
METRICS = ("params", "gmacs", "act_mb", "val_acc", "best_val_acc", "best_epoch", "test_acc", "wall_s",
           "images_per_sec")
CURVE_COLUMNS = ("trial_id", "epoch", "train_loss", "val_loss", "val_acc", "lr", "images_per_sec")
NAN = float("nan")


def flat(value: Any) -> Any:
    """A cell value: lists and tuples become "2-3" (as in the contract), others unchanged."""
    if isinstance(value, (list, tuple)):
        return "-".join(str(v) for v in value)
    return value


def space_fields(study: Any) -> list[str]:
    """Dotted keys that become columns: the search space, or every key any variant overrides."""
    if study.kind == "search":
        return [d.name for d in study.search.space]
    keys: list[str] = []
    for variant in study.variants:
        for key, _ in variant.overrides:
            if key not in keys:
                keys.append(key)
    return keys


def spec_value(spec: Any, key: str, model_variant: str) -> Any:
    """The value of dotted `key` in a built trial (`gsa.X`: the first GSA stage's; None without one)."""
    net, parts = spec.net, key.split(".")
    if key == "model.variant":
        return model_variant
    if parts[0] == "train" and len(parts) == 2:
        return getattr(spec.train, parts[1])
    if parts[0] == "gsa" and len(parts) == 2:
        stages = [s for s in net.stages if s.op == "gsa"]
        return getattr(stages[0], parts[1]) if stages else None  # a conv net has no GSA setting
    if parts[0] == "stages" and len(parts) == 3:
        return getattr(net.stages[int(parts[1]) - 1], parts[2])
    if key == "depths":
        return tuple(s.depth for s in net.stages)
    return getattr(net, key, NAN)


def inactive(study: Any, key: str, params: Mapping[str, Any]) -> bool:
    """Whether `key` is a search dimension the trial did not sample (its `when` failed)."""
    return study.kind == "search" and key not in params and any(d.name == key for d in study.search.space)


def _field_value(study: Any, attrs: dict, params: dict, key: str) -> Any:
    """The value a trial used for `key`: as resolved at launch, sampled, from its variant, or the base.

    An inactive search dimension is empty (NaN), whatever the network falls back to.
    """
    if inactive(study, key, params):
        return NAN
    if key in attrs.get("fields", {}):
        return attrs["fields"][key]
    if key in params:
        return flat(params[key])
    if study.kind == "ablation":
        try:
            overrides = dict(study.variant(attrs.get("variant", "")).overrides)
        except KeyError:
            overrides = {}
        if key in overrides:
            return flat(overrides[key])
        if key == "model.variant":
            return study.model.variant
        base = dict(study.model.overrides)
        if key in base:
            return flat(base[key])
        if key.startswith("train."):
            return getattr(study.train, key[len("train."):], NAN)
    return NAN


def trial_row(study: Any, frozen: Any, fields: Sequence[str], decode: Any = None) -> dict[str, Any]:
    """One results row from a finished Optuna trial (`decode` maps stored params to values)."""
    attrs = dict(frozen.user_attrs)
    params = decode(frozen.params) if decode else dict(frozen.params)
    curve = attrs.get("curve", [])
    state = attrs.get("gsa_state", "failed")
    accs = [r.get("val_acc") for r in curve if r.get("val_acc") is not None]
    best = max(range(len(accs)), key=lambda i: accs[i]) if accs else None
    trial_id = str(attrs.get("trial_key", f"trial_{frozen.number:04d}"))
    row: dict[str, Any] = {
        "trial_id": trial_id,
        # a search trial's label is its key (a re-run of an interrupted trial has a new Optuna number)
        "variant": trial_id if study.kind == "search" else str(attrs.get("variant", trial_id)),
        "seed": int(attrs.get("seed", 0)),
        "state": state,
        "reason": str(attrs.get("reason", "")),
        "epochs": int(attrs.get("epochs", 0)),
        "budget_epochs": int(attrs.get("budget_epochs", study.train.epochs)),
    }
    for key in fields:
        value = _field_value(study, attrs, params, key)
        row[key] = NAN if value is None else value  # None (no GSA stage, inactive) is an empty cell
    ips = [r["images_per_sec"] for r in curve if r.get("images_per_sec") is not None]
    row.update({
        "params": int(attrs["params"]) if "params" in attrs else pd.NA,
        "gmacs": float(attrs.get("gmacs", NAN)),
        "act_mb": float(attrs.get("act_mb", NAN)),
        "val_acc": float(accs[-1]) if accs else NAN,
        "best_val_acc": float(accs[best]) if best is not None else NAN,
        "best_epoch": float(curve[best]["epoch"]) if best is not None else NAN,
        "test_acc": float(attrs["test_acc"]) if state == "complete" and "test_acc" in attrs else NAN,
        "wall_s": float(sum(r.get("seconds") or 0.0 for r in curve)) if curve else NAN,
        "images_per_sec": float(sum(ips) / len(ips)) if ips else NAN,
    })
    if state == "infeasible":
        row["epochs"] = 0
    return row


def results_frame(study: Any, trials: Iterable[Any], decode: Any = None) -> pd.DataFrame:
    """The results table, in contract column order, trials in Optuna number order."""
    fields = space_fields(study)
    rows = [trial_row(study, t, fields, decode) for t in sorted(trials, key=lambda t: t.number)]
    columns = [*LEADING, *fields, *METRICS]
    frame = pd.DataFrame(rows, columns=columns)
    frame["params"] = frame["params"].astype("Int64")
    for key in fields:  # mixed design-space columns (3, 5, "global") are stored as strings
        kinds = {type(v) for v in frame[key] if not (isinstance(v, float) and math.isnan(v))}
        if len(kinds) > 1:
            frame[key] = frame[key].map(lambda v: v if isinstance(v, float) and math.isnan(v) else str(v))
    return frame


def records_summary(states: Iterable[str]) -> str:
    """`8 records: 6 complete, 2 infeasible` (states in a fixed order, zero counts left out)."""
    states = list(states)
    order = ["complete", "pruned", "failed", "infeasible"]
    order += sorted(set(states) - set(order))
    parts = [f"{states.count(s)} {s}" for s in order if states.count(s)]
    head = f"{len(states)} record{'' if len(states) == 1 else 's'}"
    return f"{head}: {', '.join(parts)}" if parts else head


def curves_frame(trials: Iterable[Any]) -> pd.DataFrame:
    """One row per (trial, epoch) of every trained finished record."""
    rows = []
    for t in sorted(trials, key=lambda t: t.number):
        key = str(t.user_attrs.get("trial_key", f"trial_{t.number:04d}"))
        for r in t.user_attrs.get("curve", []):
            rows.append({"trial_id": key, **{c: r.get(c, NAN) for c in CURVE_COLUMNS[1:]}})
    return pd.DataFrame(rows, columns=list(CURVE_COLUMNS))


def write_results(run_dir: Path, study: Any, trials: Sequence[Any], decode: Any = None) -> pd.DataFrame:
    """Write results.csv, results.parquet and curves.csv into `run_dir`; returns the results frame."""
    frame = results_frame(study, trials, decode)
    frame.to_csv(run_dir / "results.csv", index=False)
    frame.to_parquet(run_dir / "results.parquet", index=False)
    curves_frame(trials).to_csv(run_dir / "curves.csv", index=False)
    return frame
