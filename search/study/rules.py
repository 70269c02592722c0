"""Cross-section rules of a study, checked at load before anything trains or Ray starts.

Every network a study names is built and validated (base, each variant, each value of each
space dimension); samplers, pruners and objectives are checked against each other
(cmaes and grid against the space, Optuna pruners against multi-objective studies).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Mapping

from gsa_space.space import Choice, Dimension
from search.study import keys
from search.study.readers import Where, join
from search.study.resolve import build_net, grid_size, split_overrides
from search.study.schema import OPTUNA_PRUNERS, Study
from search.study.sections import train_value

NET_ERRORS = (ValueError, KeyError, TypeError, ArithmeticError)  # ArithmeticError: width_mult .inf


def _message(err: Exception) -> str:
    text = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
    return " ".join(str(text).split())


def _build_or_blame(where: Where, study: Study, keys: Mapping[str, Any], paths: Mapping[str, str],
                    base_path: str) -> None:
    """Build base + `keys`; on failure, blame the first key whose prefix no longer builds."""
    model, net, _ = split_overrides(study, keys)
    try:
        build_net(study, model, net)
        return
    except NET_ERRORS as err:
        failure = err
    items = list(keys.items())
    for i in range(len(items)):
        model, net, _ = split_overrides(study, dict(items[: i + 1]))
        try:
            build_net(study, model, net)
        except NET_ERRORS as err:
            raise where.error(paths[items[i][0]], f"{items[i][1]!r} gives an impossible network: "
                                                  f"{_message(err)}") from None
    raise where.error(base_path, f"the network cannot be built: {_message(failure)}")


def check_base_model(where: Where, study: Study) -> None:
    """The base model alone (no variant keys): blame `model.<key>` or `model.variant`."""
    empty = replace(study, model=replace(study.model, overrides=()))
    base = {keys.MODEL_VARIANT: study.model.variant, **dict(study.model.overrides)}
    paths = {k: k if k == keys.MODEL_VARIANT else join(keys.MODEL, k) for k in base}
    _build_or_blame(where, empty, base, paths, keys.MODEL)


def check_variants(where: Where, study: Study) -> None:
    names = [v.name for v in study.variants]
    if study.baseline is not None and study.baseline not in names:
        raise where.error("baseline", f"{study.baseline!r} is not among the variants; expected one of: "
                                      f"{', '.join(names)}")
    for v in study.variants:
        net_keys = {k: val for k, val in v.overrides if keys.train_field(k) is None}
        paths = {k: join(join("variants", v.name), k) for k in net_keys}
        _build_or_blame(where, study, net_keys, paths, join("variants", v.name))


def _dimension_values(dim: Dimension) -> list[Any]:
    """Values worth building alone: every choice, or the bounds of a range."""
    return list(dim.domain.values) if isinstance(dim.domain, Choice) else [dim.domain.low, dim.domain.high]


def check_space(where: Where, study: Study) -> None:
    """Each dimension's key is one a trial can set, and each of its values builds on the base."""
    dims = {d.name: d for d in study.search.space}
    earlier: list[str] = []
    for dim in study.search.space:
        path = join("space", dim.name)
        for cond_key, cond_value in dim.when.items():
            other = dims.get(cond_key)
            if other is None or cond_key not in earlier:
                listed = ", ".join(earlier) or "none"
                raise where.error(join(path, "when"), f"{cond_key!r} is not a space key listed above {dim.name}; "
                                                      f"a condition names an earlier dimension ({listed})")
            if not other.domain.contains(cond_value):
                raise where.error(join(path, "when"), f"{cond_key}={cond_value!r} can never hold; "
                                                      f"{cond_key} takes {other.domain!r}")
        for value in _dimension_values(dim):
            field = keys.train_field(dim.name)
            if field is not None:
                train_value(where, path, field, value)
                continue
            model, net, _ = split_overrides(study, {dim.name: value})
            try:
                build_net(study, model, net)
            except NET_ERRORS as err:
                raise where.error(path, f"value {value!r} gives an impossible network: {_message(err)}") from None
        earlier.append(dim.name)


def check_sampler(where: Where, study: Study) -> Study:
    """Sampler vs space and objectives, pruner vs objectives; fills num_samples for a grid."""
    s = study.search
    categorical = [d.name for d in s.space if isinstance(d.domain, Choice)]
    if s.sampler.name == "cmaes":
        if categorical:
            raise where.error("sampler.name", f"'cmaes' handles only int and float ranges, but space.{categorical[0]} "
                                              f"is a choice; use tpe or turn it into a range")
        if s.multi_objective:
            raise where.error("sampler.name", "'cmaes' optimises one objective; use nsga2 or tpe for several")
    if s.sampler.name == "grid":
        ranges = [d.name for d in s.space if not isinstance(d.domain, Choice)]
        if ranges:
            raise where.error(join("space", ranges[0]), "is a range, but the grid sampler enumerates choices; "
                                                        "write it as {choice: [...]}")
        size = grid_size(s.space)
        if s.num_samples > size:
            raise where.error("num_samples", f"{s.num_samples} exceeds the grid's {size} points; omit num_samples "
                                             f"for a grid (it trains every point)")
        if s.num_samples == 0:
            study = replace(study, search=replace(s, num_samples=size))
    if s.multi_objective and s.pruner.name in OPTUNA_PRUNERS:
        raise where.error("pruner.name", f"{s.pruner.name!r} needs one intermediate value, but the study has "
                                         f"{len(s.objectives)} objectives; Optuna cannot prune multi-objective "
                                         f"trials: use asha (stops on val_acc) or none")
    if s.pruner.name == "asha":
        grace = s.pruner.options_dict().get("grace_period", 1)
        if not isinstance(grace, (int, float)) or not 1 <= grace < study.train.epochs:
            raise where.error("pruner.grace_period", f"{grace!r} must be at least 1 and below train.epochs "
                                                     f"({study.train.epochs})")
    return study


def check_study(where: Where, study: Study) -> Study:
    """All cross-section rules; returns the study with derived fields (grid num_samples) filled."""
    check_base_model(where, study)
    if study.kind == "ablation":
        check_variants(where, study)
        return study
    if len(study.seeds) != 1:
        raise where.error("seeds", f"{list(study.seeds)!r}: a search trains each sampled point once; "
                                   f"give one seed, e.g. seeds: [0]")
    check_space(where, study)
    return check_sampler(where, study)
