"""`gsa-nas validate`: what a study will do, without training anything or starting Ray.

Prints the resolved study (YAML), the trials it plans, and the compute of its networks:
each ablation variant's params and MACs, or for a search the range over seeded samples of
the space and how many of those samples break the study's constraints.
"""

from __future__ import annotations

import random
from typing import Any

from gsa_space.describe import format_macs
from search.resources import check_placeable, local_hardware
from search.study import DATASET_SHAPES, Study, planned_trials, resolve_trial, study_to_yaml

__all__ = ["validation_summary", "plan_line", "variant_rows", "space_summary"]

SPACE_SAMPLES = 32  # fvcore traces each distinct network once: ~0.5 s of CPU on digits


def _count(n: float) -> str:
    """12345 -> '12.3k', 2.5e6 -> '2.50M'."""
    if n >= 1e6:
        return f"{n / 1e6:.2f}M"
    if n >= 1e3:
        return f"{n / 1e3:.1f}k"
    return f"{n:.0f}"


def _gmacs(g: float) -> str:
    """A budget-comparable number in GMACs (the unit of max_gmacs)."""
    return f"{g:.4g}"


def plan_line(study: Study) -> str:
    """One line: how many trials, how long each, how many at a time."""
    res = f"{study.resources.cpu:g} cpu, {study.resources.gpu:g} gpu each"
    budget = f"{study.train.epochs} epochs each, at most {study.max_concurrent} at a time ({res})"
    if study.kind == "ablation":
        n = len(planned_trials(study))
        return f"plan: {len(study.variants)} variants x {len(study.seeds)} seeds = {n} trials, {budget}"
    s = study.search
    seed = "unseeded" if s.sampler.seed is None else f"seed {s.sampler.seed}"
    what = f"a grid of {s.num_samples} points" if s.sampler.name == "grid" else f"{s.num_samples} trials"
    objectives = ", ".join(f"{m} {d}" for m, d in s.objectives)
    return (f"plan: {what} from the {s.sampler.name} sampler ({seed}), {budget}; pruner {s.pruner.name}; "
            f"objectives: {objectives}; infeasible samples rejected up to {s.max_rejections} times")


def _violations(study: Study, params: int, gmacs: float) -> list[str]:
    limits = dict(study.search.constraints) if study.search else {}
    out = []
    if "max_gmacs" in limits and gmacs > limits["max_gmacs"]:
        out.append(f"gmacs {_gmacs(gmacs)} > max_gmacs {limits['max_gmacs']:g}")
    if "max_params" in limits and params > limits["max_params"]:
        out.append(f"params {params} > max_params {limits['max_params']:g}")
    return out


def variant_rows(study: Study) -> list[dict[str, Any]]:
    """Per ablation variant: its network name, params, gmacs and act_mb at the data set's input."""
    from gsa_space.complexity import complexity

    rows = []
    for v in study.variants:
        spec = resolve_trial(study, variant=v.name, seed=study.seeds[0], params={})
        c = complexity(spec.net)
        rows.append({"variant": v.name, "net": spec.net.name, "gsa_stages": spec.net.gsa_stages,
                     "params": c.params, "gmacs": c.gmacs, "act_mb": c.act_mb})
    return rows


def space_summary(study: Study, samples: int = SPACE_SAMPLES) -> dict[str, Any]:
    """Params/gmacs range over `samples` seeded points of the space; counts of invalid and over-budget ones."""
    from gsa_space.complexity import complexity
    from gsa_space.space import sample

    rng = random.Random(0 if study.search.sampler.seed is None else study.search.sampler.seed)
    params, gmacs, invalid, over = [], [], 0, 0
    for _ in range(samples):
        point = sample(study.search.space, rng)
        try:
            spec = resolve_trial(study, variant=None, seed=study.seeds[0], params=point)
        except (ValueError, KeyError, TypeError):
            invalid += 1
            continue
        c = complexity(spec.net)
        params.append(c.params)
        gmacs.append(c.gmacs)
        over += bool(_violations(study, c.params, c.gmacs))
    return {"samples": samples, "invalid": invalid, "over_budget": over,
            "params": (min(params), max(params)) if params else None,
            "gmacs": (min(gmacs), max(gmacs)) if gmacs else None}


def _table(rows: list[dict[str, Any]], baseline: str | None) -> list[str]:
    names = [r["variant"] + (" (baseline)" if r["variant"] == baseline else "") for r in rows]
    width = max(len(n) for n in names + ["variant"])
    net_w = max(len(r["net"]) for r in rows + [{"net": "network"}])
    macs = format_macs(*(r["gmacs"] for r in rows))  # one unit and precision for the column
    lines = [f"  {'variant':<{width}}  {'network':<{net_w}}  {'gsa stages':<10}  {'params':>8}  {'MACs':>9}  "
             f"{'act_mb':>7}"]
    for name, r, m in zip(names, rows, macs):
        stages = ",".join(map(str, r["gsa_stages"])) or "-"
        lines.append(f"  {name:<{width}}  {r['net']:<{net_w}}  {stages:<10}  {_count(r['params']):>8}  "
                     f"{m:>9}  {r['act_mb']:>7.3f}")
    return lines


OVER_BUDGET_LIMIT = 0.9  # validate fails when at least this share of sampled points is over budget


def check_feasible(study: Study, info: dict[str, Any]) -> None:
    """Refuse a search whose budget rules out nearly every point (ValueError, one line)."""
    if info["samples"] and info["over_budget"] >= OVER_BUDGET_LIMIT * info["samples"]:
        limits = ", ".join(f"{k} {v:g}" for k, v in study.search.constraints)
        raise ValueError(f"{study.source}: constraints: {info['over_budget']} of {info['samples']} sampled points are "
                         f"over budget ({limits}); at least {OVER_BUDGET_LIMIT:.0%} is too many to search: relax "
                         f"the constraints or shrink the space")


def validation_summary(study: Study, *, samples: int = SPACE_SAMPLES) -> str:
    """The text `gsa-nas validate` prints: resolved YAML, the plan, and the compute of the networks.

    Example: `print(validation_summary(load_study("quickstart")))`.
    """
    size, chans, classes = DATASET_SHAPES[study.data.name]
    lines = [study_to_yaml(study).rstrip(), "", f"study {study.name!r} ({study.kind}) is valid",
             f"data: {study.data.name}, {chans}x{size}x{size} images, {classes} classes", plan_line(study)]
    hardware = local_hardware()
    lines.append(f"resources per trial: {study.resources.cpu:g} CPU, {study.resources.gpu:g} GPU; "
                 f"{hardware.where} has {hardware.cpu:g} CPUs, {hardware.gpu:g} GPUs (checked without Ray)")
    check_placeable(study, hardware)
    if study.kind == "ablation":
        lines.append(f"compute at batch 1, {size}x{size} input:")
        lines.extend(_table(variant_rows(study), study.baseline))
    else:
        info = space_summary(study, samples)
        lines.append(f"compute over {info['samples']} seeded samples of the space ({size}x{size} input):")
        if info["params"] is None:
            lines.append("  no sample builds a valid network; check the space")
        else:
            (p_lo, p_hi), (g_lo, g_hi) = info["params"], info["gmacs"]
            limit = dict(study.search.constraints).get("max_gmacs")
            lo, hi, *cap = format_macs(g_lo, g_hi, *([] if limit is None else [limit]))
            budget = f" (max_gmacs {limit:g} = {cap[0]})" if cap else ""
            lines.append(f"  params {_count(p_lo)} .. {_count(p_hi)}; MACs {lo} .. {hi}{budget}")
        limits = ", ".join(f"{k} {v:g}" for k, v in study.search.constraints) or "none"
        lines.append(f"  constraints ({limits}): {info['over_budget']} of {info['samples']} samples over budget, "
                     f"{info['invalid']} impossible networks")
    text = "\n".join(lines)
    if study.kind == "search":
        check_feasible(study, info)
    return text
