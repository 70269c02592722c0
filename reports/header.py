"""The facts at the top of a report: study, data, budget, hardware, packages, wall time, states.

Built from `RunInfo` (run.json, env.json, study.yaml) and the trials frame; one (label, value)
pair per line, values already formatted as text.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import pandas as pd

from reports import columns as C
from reports.formatting import DASH, seconds
from reports.load import RunInfo
from reports.run_dir import DataRef

PACKAGES = ("torch", "ray", "optuna", "pandas", "numpy", "fvcore")


def state_counts(trials: pd.DataFrame) -> str:
    """'12 trials: 9 complete · 2 pruned · 0 failed · 1 infeasible'."""
    counts = trials[C.STATE].value_counts()
    parts = " · ".join(f"{int(counts.get(s, 0))} {s}" for s in C.STATES)
    return f"{len(trials)} trials: {parts}"


def data_text(data: DataRef | None) -> str:
    """'digits' or 'cifar10 (/data/cifar)' from run.json's data entry."""
    if data is None:
        return DASH
    return f"{data.name} ({data.root})" if data.root else data.name


def hardware_text(env: Mapping[str, Any]) -> str:
    """'Intel Xeon, 2 cores, 24 GB RAM, no GPU' from env.json's hardware entry."""
    hw = env.get("hardware") or {}
    if not hw:
        return DASH
    parts = [str(hw.get("cpu") or "unknown CPU")]
    if hw.get("cores"):
        parts.append(f"{hw['cores']} cores")
    if hw.get("memory_gb"):
        parts.append(f"{float(hw['memory_gb']):.0f} GB RAM")
    parts.append(f"GPU: {hw['gpu']}" if hw.get("gpu") else "no GPU")
    return ", ".join(parts)


def packages_text(env: Mapping[str, Any]) -> str:
    """'python 3.11.9 · torch 2.13.0 · ray 2.60.0 · ...' in a fixed order, others after."""
    pkgs = dict(env.get("packages") or {})
    order = [p for p in PACKAGES if p in pkgs] + sorted(p for p in pkgs if p not in PACKAGES)
    items = ([f"python {env['python']}"] if env.get("python") else []) + [f"{p} {pkgs[p]}" for p in order]
    return " · ".join(items) if items else DASH


def objectives_text(objectives: Mapping[str, str]) -> str:
    """'val_acc (max), gmacs (min)'."""
    return ", ".join(f"{k} ({v})" for k, v in objectives.items()) or DASH


def run_header(info: RunInfo, trials: pd.DataFrame) -> tuple[tuple[str, str], ...]:
    """Header rows of a single-run report."""
    run, env = info.run, info.env
    budget = f"{info.budget_epochs} epochs per trial" if info.budget_epochs is not None else DASH
    rows = [
        ("study", f"{info.name} ({info.kind}, status: {info.status})"),
        ("data", data_text(info.data)),
        ("budget", budget),
        ("objectives", objectives_text(info.objectives)),
        ("baseline", str(info.baseline) if info.baseline else DASH),
        ("trials", state_counts(trials)),
        ("wall time", seconds(info.wall_s)),
        ("started / finished", f"{run.started or DASH} / {run.finished or DASH}"),
        ("hardware", hardware_text(env)),
        ("packages", packages_text(env)),
        ("platform", str(env.get("platform") or DASH)),
        ("git revision", str(env.get("git_revision") or DASH)),
        ("run directory", str(info.path)),
    ]
    return tuple(rows)


def comparison_header(infos: Sequence[RunInfo], trials: pd.DataFrame,
                      labels: Sequence[str] | None = None) -> tuple[tuple[str, str], ...]:
    """Header rows of a report over several runs: one line per run (by `labels`, default the run
    names; a label other than the name also shows the directory), then shared facts."""
    rows = []
    for info, label in zip(infos, labels or [i.name for i in infos]):
        budget = f"{info.budget_epochs} epochs" if info.budget_epochs is not None else "budget unknown"
        data = data_text(info.data)
        where = "" if label == info.name else f" ({info.name} in {info.path})"
        rows.append((f"run {label}", f"{info.kind}, {data}, {budget}, wall {seconds(info.wall_s)}, "
                                     f"status: {info.status}{where}"))
    walls = [i.wall_s for i in infos if i.wall_s is not None]
    rows += [
        ("trials", state_counts(trials)),
        ("total wall time", seconds(sum(walls)) if walls else DASH),
        ("hardware", hardware_text(infos[0].env)),
        ("packages", packages_text(infos[0].env)),
    ]
    return tuple(rows)
