"""The facts about a run that a report lists (study, data, budget, sampler, hardware, packages,
wall time, states), and the facts that two runs must share to be compared like for like.

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
# The input side each data set's networks are built for, for runs whose run.json predates its
# `input_size`: a copy of search.study.DATASET_SHAPES (reports may not import search);
# tests/reports/test_header.py keeps the two equal.
DATA_INPUT_SIZES = {"digits": 8, "cifar10": 32, "cifar100": 32}


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


def _section_name(info: RunInfo, key: str) -> str:
    """`name` of a study.yaml section such as `sampler: {name: tpe, seed: 0}` ("" when absent)."""
    section = info.study.get(key)
    if isinstance(section, Mapping):
        return str(section.get("name") or "")
    return str(section or "")


def sampler_name(info: RunInfo) -> str:
    """How a search drew its trials ("tpe", "random", ...); "" for an ablation or when not recorded."""
    return _section_name(info, "sampler") if info.kind == "search" else ""


def pruner_name(info: RunInfo) -> str:
    """What could stop a trial early ("median", "asha", "none", ...); "" when not recorded."""
    return _section_name(info, "pruner")


def data_name(info: RunInfo) -> str:
    """The data set's name from run.json (else study.yaml); "" when neither says."""
    return info.data.name if info.data is not None else ""


def input_size_text(info: RunInfo) -> str:
    """The input side the run's networks were built for: run.json's `input_size`, else the study's
    model override, else the data set's default; per-variant overrides are added ("8, 16")."""
    model = info.study.get("model") or {}
    overrides = model.get("overrides") or {} if isinstance(model, Mapping) else {}
    recorded = info.run.input_size
    recorded = (recorded[0] if recorded[0] == recorded[1] else f"{recorded[0]}x{recorded[1]}") if recorded else None
    base = (recorded or (model.get("input_size") if isinstance(model, Mapping) else None)
            or overrides.get("input_size") or DATA_INPUT_SIZES.get(data_name(info)))
    sizes = [base] + [arm.get("input_size") for arm in (info.study.get("variants") or {}).values()
                      if isinstance(arm, Mapping)]
    known = list(dict.fromkeys(str(s) for s in sizes if s is not None))
    return ", ".join(known) if known else "unknown"


def like_for_like(info: RunInfo) -> dict[str, str]:
    """The facts that runs must share for their accuracies to compare: data set, budget,
    objectives and input size, as text."""
    return {
        "data set": data_name(info) or "unknown",
        "budget": f"{info.budget_epochs} epochs" if info.budget_epochs is not None else "unknown",
        "objectives": objectives_text(info.objectives),
        "input size": input_size_text(info),
    }


def mismatches(infos: Sequence[RunInfo], labels: Sequence[str]) -> list[str]:
    """One phrase per fact of `like_for_like` on which the runs differ, naming each value and
    its runs: 'data set: a has digits, b has cifar10'. Empty when the runs are like for like."""
    facts = [like_for_like(info) for info in infos]
    out = []
    for name in facts[0]:
        runs: dict[str, list[str]] = {}
        for label, fact in zip(labels, facts):
            runs.setdefault(fact[name], []).append(label)
        if len(runs) > 1:
            out.append(f"{name}: " + ", ".join(f"{', '.join(who)} {'has' if len(who) == 1 else 'have'} {value}"
                                               for value, who in runs.items()))
    return out


def run_header(info: RunInfo, trials: pd.DataFrame) -> tuple[tuple[str, str], ...]:
    """Header rows of a single-run report."""
    run, env = info.run, info.env
    budget = f"{info.budget_epochs} epochs per trial" if info.budget_epochs is not None else DASH
    rows = [
        ("study", f"{info.name} ({info.kind}, status: {info.status})"),
        ("data", data_text(info.data)),
        ("budget", budget),
        ("input size", input_size_text(info)),
        ("objectives", objectives_text(info.objectives)),
        ("baseline", str(info.baseline) if info.baseline else DASH),
        *([("sampler / pruner", f"{sampler_name(info) or DASH} / {pruner_name(info) or DASH}")]
          if info.kind == "search" else []),
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
