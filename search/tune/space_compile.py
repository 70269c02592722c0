"""A study's design space compiled to an Optuna define-by-run function, plus its samplers.

Dimensions are suggested in file order, and a dimension whose `when` conditions fail is not
suggested at all (Optuna then sees a conditional space). Optuna categoricals hold only
scalars, so list choices (`gsa_stages: [[1, 2], [3]]`) travel as strings such as "1-2".
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import optuna

from gsa_space.space import Choice, Dimension, FloatRange, IntRange, active


def encode(value: Any) -> Any:
    """An Optuna-storable form of a choice value: lists and tuples become "1-2-3"."""
    if isinstance(value, (list, tuple)):
        return "-".join(str(v) for v in value)
    return value


def suggest(trial: optuna.Trial, dim: Dimension) -> Any:
    """One value of `dim` from `trial` (a fixed value when the trial was enqueued)."""
    domain = dim.domain
    if isinstance(domain, Choice):
        codes = [encode(v) for v in domain.values]
        code = trial.suggest_categorical(dim.name, codes)
        return domain.values[codes.index(code)]
    if isinstance(domain, IntRange):
        return trial.suggest_int(dim.name, domain.low, domain.high, step=domain.step, log=domain.log)
    if isinstance(domain, FloatRange):
        return trial.suggest_float(dim.name, domain.low, domain.high, step=domain.step, log=domain.log)
    raise TypeError(f"dimension {dim.name!r}: unknown domain {type(domain).__name__}; expected Choice, IntRange or FloatRange")


def sample_point(trial: optuna.Trial, space: Sequence[Dimension]) -> dict[str, Any]:
    """The define-by-run function: a value for each active dimension, in order."""
    values: dict[str, Any] = {}
    for dim in space:
        if active(dim, values):
            values[dim.name] = suggest(trial, dim)
    return values


def decode_params(params: Mapping[str, Any], space: Sequence[Dimension]) -> dict[str, Any]:
    """Optuna's stored params back to design-space values (the inverse of `encode`)."""
    by_name = {d.name: d for d in space}
    out: dict[str, Any] = {}
    for name, code in params.items():
        dim = by_name.get(name)
        if dim is not None and isinstance(dim.domain, Choice):
            codes = [encode(v) for v in dim.domain.values]
            out[name] = dim.domain.values[codes.index(code)] if code in codes else code
        else:
            out[name] = code
    return out


def make_sampler(name: str, seed: int | None, options: Mapping[str, Any],
                 space: Sequence[Dimension]) -> optuna.samplers.BaseSampler:
    """The study's sampler, seeded; `grid` enumerates the choices, `cmaes` takes numbers only."""
    opts = dict(options)
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, **opts)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed, **opts)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, **opts)
    if name == "grid":
        bad = [d.name for d in space if not isinstance(d.domain, Choice)]
        if bad:
            raise ValueError(f"sampler.name: grid needs choice dimensions only, but {bad[0]!r} is a range")
        grid = {d.name: [encode(v) for v in d.domain.values] for d in space}
        return optuna.samplers.GridSampler(grid, seed=seed, **opts)
    if name == "cmaes":
        bad = [d.name for d in space if isinstance(d.domain, Choice)]
        if bad:
            raise ValueError(f"sampler.name: cmaes handles numeric dimensions only, but {bad[0]!r} is a choice")
        return optuna.samplers.CmaEsSampler(seed=seed, **opts)
    raise ValueError(f"sampler.name={name!r} must be one of: tpe, random, grid, cmaes, nsga2")


def make_pruner(name: str, options: Mapping[str, Any], budget_epochs: int) -> optuna.pruners.BasePruner:
    """The Optuna pruner the Tune scheduler consults; `asha` and `none` need none here."""
    opts = dict(options)
    if name == "median":
        return optuna.pruners.MedianPruner(**opts)
    if name == "percentile":
        return optuna.pruners.PercentilePruner(**opts)
    if name == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(**opts)
    if name == "hyperband":
        opts.setdefault("max_resource", budget_epochs)
        return optuna.pruners.HyperbandPruner(**opts)
    if name in ("asha", "none"):
        return optuna.pruners.NopPruner()
    raise ValueError(f"pruner.name={name!r} must be one of: median, percentile, successive_halving, hyperband, asha, none")
