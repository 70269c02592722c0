"""From a study to trials and back to YAML.

`split_overrides` sorts a variant's or a sample's dotted keys into the network variant name,
network overrides and training settings; `resolve_trial` builds the trial's `NetConfig`
at the data set's input; `study_to_yaml` writes the resolved study in the input schema.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, fields, replace
from typing import Any, Mapping, Sequence

import yaml

from gsa_space.config import NetConfig
from gsa_space.space import Choice, Dimension, IntRange
from gsa_space.variants import build_config
from search.study.keys import split_keys
from search.study.schema import DATASET_SHAPES, Study, TrainConfig, TrialSpec


def split_overrides(study: Study, keys: Mapping[str, Any]) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(model variant, network overrides, train overrides) of the study's base model plus `keys`."""
    return split_keys(study.model.variant, study.model.overrides, keys)


def build_net(study: Study, variant: str, overrides: Mapping[str, Any]) -> NetConfig:
    """The validated NetConfig of `variant` + `overrides` at the study's data set input."""
    size, chans, classes = DATASET_SHAPES[study.data.name]
    return build_config(variant, input_size=size, in_chans=chans, num_classes=classes, overrides=dict(overrides))


def _typed_train(train: TrainConfig, changes: Mapping[str, Any]) -> TrainConfig:
    """Sampled values arrive as Optuna gives them (e.g. 12.0 for an int field); cast to the field type."""
    casts = {f.name: type(getattr(train, f.name)) for f in fields(TrainConfig)}
    return replace(train, **{k: casts[k](v) if casts[k] in (int, float) else v for k, v in changes.items()})


def grid_size(space: Sequence[Dimension]) -> int:
    """Points of the grid over every choice dimension (conditions ignored, as Optuna's grid does)."""
    return math.prod(len(d.domain.values) for d in space)


def trial_key(variant: str | None, seed: int, params: Mapping[str, Any]) -> str:
    """Stable id of a trial: `<variant>-s<seed>` for ablations, a hash of the params for a search."""
    if variant is not None and not params:
        return f"{variant}-s{seed}"
    blob = json.dumps(sorted((k, repr(v)) for k, v in params.items()))
    digest = hashlib.sha1(blob.encode()).hexdigest()[:10]
    return f"{variant}-{digest}-s{seed}" if variant is not None else f"p{digest}-s{seed}"


def resolve_trial(study: Study, *, variant: str | None, seed: int, params: Mapping[str, Any]) -> TrialSpec:
    """The trial of `study` for one variant (ablation) or one sampled point (search).

    An impossible config raises ValueError naming the field.
    Example: `resolve_trial(load_study("quickstart"), variant="both", seed=0, params={}).trial_key == "both-s0"`.
    """
    keys: dict[str, Any] = {}
    if variant is not None:
        keys.update(study.variant(variant).overrides)
    keys.update(params)
    model, net_overrides, train_changes = split_overrides(study, keys)
    net = build_net(study, model, net_overrides)
    train = _typed_train(study.train, train_changes)
    return TrialSpec(trial_key=trial_key(variant, seed, params), variant=variant, seed=seed, net=net,
                     train=train, params=tuple(sorted(params.items())))


def _plain(value: Any) -> Any:
    """Tuples to lists, recursively, so YAML stays plain (safe_load can read it back)."""
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def dimension_to_yaml(dim: Dimension) -> dict[str, Any]:
    """A Dimension in the study-file form (`{choice: [...]}` or `{int|float: [lo, hi], ...}`)."""
    domain = dim.domain
    if isinstance(domain, Choice):
        out: dict[str, Any] = {"choice": _plain(list(domain.values))}
    else:
        out = {"int" if isinstance(domain, IntRange) else "float": [domain.low, domain.high]}
        if domain.step is not None and not (isinstance(domain, IntRange) and domain.step == 1):
            out["step"] = domain.step
        if domain.log:
            out["log"] = True
    when = dict(dim.when) if dim.when else {}
    if when:
        out["when"] = _plain(when)
    return out


def study_document(study: Study) -> dict[str, Any]:
    """The study as a plain dict in the input schema, every default filled."""
    doc: dict[str, Any] = {"name": study.name, "description": study.description, "kind": study.kind}
    data = asdict(study.data)
    if data["root"] is None:
        del data["root"]
    doc["data"] = data
    doc["model"] = {"variant": study.model.variant, **_plain(dict(study.model.overrides))}
    doc["train"] = asdict(study.train)
    doc["seeds"] = list(study.seeds)
    if study.kind == "ablation":
        doc["baseline"] = study.baseline
        doc["variants"] = {v.name: _plain(dict(v.overrides)) for v in study.variants}
    else:
        s = study.search
        assert s is not None, "a search study always has a SearchConfig"
        doc["space"] = {d.name: dimension_to_yaml(d) for d in s.space}
        doc["sampler"] = {"name": s.sampler.name, "seed": s.sampler.seed, **_plain(dict(s.sampler.options))}
        doc["num_samples"] = s.num_samples
        doc["objectives"] = dict(s.objectives)
        doc["constraints"] = dict(s.constraints)
        doc["pruner"] = {"name": s.pruner.name, **_plain(dict(s.pruner.options))}
        doc["max_rejections"] = s.max_rejections
    doc["resources"] = asdict(study.resources)
    doc["max_concurrent"] = study.max_concurrent
    doc["max_failures"] = study.max_failures
    doc["loggers"] = list(study.loggers)
    return doc


def study_to_yaml(study: Study) -> str:
    """The resolved study as YAML in the input schema, readable again by `load_study`."""
    header = f"# resolved from {study.source}; read back with gsa-nas validate / load_study\n"
    return header + yaml.safe_dump(study_document(study), sort_keys=False, default_flow_style=None, width=100)
