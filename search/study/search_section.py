"""The search half of a study file: space, sampler, pruner, objectives, constraints.

A space entry is `key: {choice: [...]}`, `{int: [lo, hi], step, log}` or
`{float: [lo, hi], step, log}`, optionally with `when: {other_key: value}`; it becomes a
`gsa_space.space.Dimension`. Options of samplers and pruners are checked against the
constructors they will be passed to, so a typo fails at load, not inside a Ray worker.
"""

from __future__ import annotations

import inspect
from typing import Any

from gsa_space.space import Choice, Dimension, FloatRange, IntRange
from search.study import readers as chk
from search.study.readers import Where, join
from search.study.schema import (CONSTRAINT_KEYS, DIRECTIONS, PRUNERS, SAMPLERS, PrunerConfig, SamplerConfig,
                                 SearchConfig, frozen)

# Metrics a study may optimise; test accuracy is reported, never used for selection.
OBJECTIVE_METRICS: tuple[str, ...] = ("val_acc", "best_val_acc", "val_loss", "gmacs", "params", "act_mb")
SAMPLER_CLASSES = {"tpe": "TPESampler", "random": "RandomSampler", "grid": "GridSampler",
                   "cmaes": "CmaEsSampler", "nsga2": "NSGAIISampler"}
OPTUNA_PRUNER_CLASSES = {"median": "MedianPruner", "percentile": "PercentilePruner",
                         "successive_halving": "SuccessiveHalvingPruner", "hyperband": "HyperbandPruner"}
# Ray Tune's ASHAScheduler arguments a study may set (metric, mode and time_attr are ours).
ASHA_OPTIONS: tuple[str, ...] = ("grace_period", "reduction_factor", "brackets", "max_t", "stop_last_trials")
# Set by the harness itself, so a study may not pass them.
_RESERVED = ("seed", "search_space", "constraints_func", "self")
DIMENSION_KEYS = ("choice", "int", "float", "step", "log", "when")


def _constructor_options(module: Any, class_name: str) -> tuple[str, ...]:
    params = inspect.signature(getattr(module, class_name)).parameters
    return tuple(p for p in params if p not in _RESERVED and params[p].kind is not inspect.Parameter.VAR_KEYWORD)


def parse_dimension(where: Where, path: str, key: str, raw: Any) -> Dimension:
    """One `space` entry as a Dimension (domain checked here, key checked when networks are built)."""
    spec = chk.mapping(where, path, raw, allow_none=False)
    chk.known_keys(where, path, spec, DIMENSION_KEYS)
    kinds = [k for k in ("choice", "int", "float") if k in spec]
    if len(kinds) != 1:
        raise where.error(path, f"{raw!r} must give exactly one of choice: [...], int: [lo, hi], float: [lo, hi]")
    kind = kinds[0]
    when = chk.mapping(where, join(path, "when"), spec.get("when"))
    if kind == "choice":
        values = spec["choice"]
        if not isinstance(values, list) or not values:
            raise where.error(join(path, "choice"), f"{values!r} must be a non-empty list of values")
        if "step" in spec or "log" in spec:
            raise where.error(path, "step and log apply to int and float ranges, not to choice")
        values = [tuple(v) if isinstance(v, list) else v for v in values]
        if len(set(map(repr, values))) != len(values):
            raise where.error(join(path, "choice"), f"{spec['choice']!r} repeats a value")
        domain = Choice(tuple(values))
    else:
        bounds = spec[kind]
        bpath = join(path, kind)
        if not isinstance(bounds, list) or len(bounds) != 2:
            raise where.error(bpath, f"{bounds!r} must be a [low, high] pair (inclusive bounds)")
        log = chk.boolean(where, join(path, "log"), spec.get("log", False))
        if kind == "int":
            low, high = (chk.integer(where, bpath, b) for b in bounds)
            step = chk.integer(where, join(path, "step"), spec.get("step", 1), minimum=1)
        else:
            low, high = (chk.number(where, bpath, b) for b in bounds)
            step = None if spec.get("step") is None else chk.number(where, join(path, "step"), spec["step"],
                                                                      positive=True)
        if low >= high:
            raise where.error(bpath, f"{bounds!r} must have low < high")
        if log and low <= 0:
            raise where.error(bpath, f"{bounds!r} must be positive for log: true")
        if log and step is not None and not (kind == "int" and step == 1):  # a float range has no step 1 either
            raise where.error(join(path, "step"), f"{step!r} cannot be combined with log: true (Optuna's rule)")
        try:
            domain = (IntRange(low, high, step=step, log=log) if kind == "int"
                      else FloatRange(low, high, step=step, log=log))
        except ValueError as err:
            raise where.error(path, f"{raw!r}: {err}") from None
    try:
        return Dimension(key, domain, {k: frozen(v) for k, v in when.items()})
    except ValueError as err:
        raise where.error(join(path, "when"), f"{when!r}: {err}") from None


def parse_objectives(where: Where, raw: Any) -> tuple[tuple[str, str], ...]:
    if raw is None:
        return (("val_acc", "max"),)
    if isinstance(raw, (list, str)):
        first = raw[0] if isinstance(raw, list) and raw else raw
        raise where.error("objectives", f"{raw!r} gives no direction; write a mapping like {{{first}: max}}")
    obj = chk.mapping(where, "objectives", raw)
    if not obj:
        raise where.error("objectives", "empty; name at least one metric with its direction, e.g. {val_acc: max}")
    out = []
    for metric, direction in obj.items():
        path = join("objectives", metric)
        if metric == "test_acc":
            raise where.error(path, "test accuracy is reported, never used for selection; optimise val_acc")
        chk.choice(where, path, metric, OBJECTIVE_METRICS, "objective metric")
        if direction is None:
            raise where.error(path, f"no direction; write {metric}: max or {metric}: min")
        out.append((metric, chk.choice(where, path, direction, DIRECTIONS, "direction")))
    return tuple(out)


def parse_sampler(where: Where, raw: Any) -> SamplerConfig:
    import optuna  # here, not at the top: Tune workers import this package and need no Optuna

    s = chk.mapping(where, "sampler", raw)
    name = chk.choice(where, "sampler.name", s.get("name", "tpe"), SAMPLERS, "sampler")
    seed = None if s.get("seed") is None else chk.integer(where, "sampler.seed", s["seed"], minimum=0)
    rest = {k: v for k, v in s.items() if k not in ("name", "seed")}
    allowed = _constructor_options(optuna.samplers, SAMPLER_CLASSES[name])
    return SamplerConfig(name=name, seed=seed, options=chk.options(where, "sampler", rest, allowed))


def parse_pruner(where: Where, raw: Any) -> PrunerConfig:
    import optuna  # see parse_sampler

    p = chk.mapping(where, "pruner", raw)
    name = chk.choice(where, "pruner.name", p.get("name", "none"), PRUNERS, "pruner")
    rest = {k: v for k, v in p.items() if k != "name"}
    if name == "none":
        allowed: tuple[str, ...] = ()
    elif name == "asha":
        allowed = ASHA_OPTIONS
    else:
        allowed = _constructor_options(optuna.pruners, OPTUNA_PRUNER_CLASSES[name])
    return PrunerConfig(name=name, options=chk.options(where, "pruner", rest, allowed))


def parse_constraints(where: Where, raw: Any) -> tuple[tuple[str, float], ...]:
    c = chk.mapping(where, "constraints", raw)
    chk.known_keys(where, "constraints", c, CONSTRAINT_KEYS)
    return tuple((k, chk.number(where, join("constraints", k), v, positive=True)) for k, v in c.items())


def parse_search(where: Where, doc: dict[str, Any]) -> SearchConfig:
    """The search keys of a `kind: search` document, typed (cross-checks in study_rules)."""
    space = chk.mapping(where, "space", doc.get("space"))
    if not space:
        raise where.error("space", "a search needs at least one dimension, e.g. space: {gsa.heads: {choice: [2, 4]}}")
    dims = tuple(parse_dimension(where, join("space", k), k, v) for k, v in space.items())
    sampler = parse_sampler(where, doc.get("sampler"))
    num = doc.get("num_samples")
    if num is None and sampler.name != "grid":
        raise where.error("num_samples", "missing; how many trials to train, a positive integer")
    return SearchConfig(
        space=dims, sampler=sampler,
        num_samples=0 if num is None else chk.integer(where, "num_samples", num, minimum=1),
        objectives=parse_objectives(where, doc.get("objectives")),
        constraints=parse_constraints(where, doc.get("constraints")),
        pruner=parse_pruner(where, doc.get("pruner")),
        max_rejections=chk.integer(where, "max_rejections", doc.get("max_rejections", 200), minimum=1),
    )
