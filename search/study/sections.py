"""The sections of a study document, each read into its typed object.

`data`, `model`, `train`, `variants`, `seeds` and `resources` become the frozen objects of
`search.study.schema` here, once; the search keys are read in `search_section`, and rules
that span sections (networks that cannot be built, ...) in `rules`.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

from search.cifar import find_archive
from search.study import keys
from search.study import readers as chk
from search.study.readers import Where, join
from search.study.schema import (AMP_MODES, DATASETS, DEFAULT_LOGGERS, LOGGER_PACKAGES, LOGGERS, OPTIMIZERS,
                                 SCHEDULES, DataConfig, ModelConfig, Resources, TrainConfig, Variant, amp_mode, frozen)

COMMON_KEYS = ("name", "description", "kind", "data", "model", "train", "seeds", "resources", "max_concurrent",
               "max_failures", "loggers")
ABLATION_KEYS = ("baseline", "variants")
SEARCH_KEYS = ("space", "sampler", "num_samples", "objectives", "constraints", "pruner", "max_rejections")
TRAIN_INT = {"epochs": 1, "batch_size": 1, "warmup_epochs": 0}
TRAIN_FLOAT = {"lr": "positive", "momentum": (0.0, 1.0), "weight_decay": (0.0, None), "label_smoothing": (0.0, 0.99)}
TRAIN_BOOL = ("channels_last", "compile")
TRAIN_KEYS = tuple(TRAIN_INT) + tuple(TRAIN_FLOAT) + ("amp",) + TRAIN_BOOL + ("optimizer", "schedule")


def parse_data(where: Where, raw: Any) -> DataConfig:
    d = chk.mapping(where, "data", raw, allow_none=False)
    chk.known_keys(where, "data", d, ("name", "root", "seed", "augment"))
    name = chk.choice(where, "data.name", chk.required(where, "data", d, "name", f"one of: {', '.join(DATASETS)}"),
                      DATASETS, "data set")
    root = d.get("root")
    if name == "digits":
        if root is not None:
            raise where.error("data.root", f"{root!r} given, but digits is bundled with scikit-learn; remove data.root")
    else:
        root = chk.string(where, "data.root", chk.required(
            where, "data", d, "root", f"{name} is read from a local copy of the python archive; set data.root"))
        try:
            expanded = os.path.abspath(os.path.expanduser(root))
        except ValueError as err:  # an embedded NUL, which expanduser's user lookup refuses
            raise where.error("data.root", f"{root!r} is not a usable path ({err}); point data.root at the "
                                           f"{name} python-pickle archive") from None
        if not os.path.isdir(expanded):
            raise where.error("data.root", f"{root!r} (= {expanded}) is not an existing directory; "
                                           f"put the {name} python-pickle archive there or point data.root at it")
        try:
            find_archive(expanded, name)
        except FileNotFoundError as err:
            raise where.error("data.root", f"{root!r}: {err}") from None
        root = expanded
    seed = chk.integer(where, "data.seed", d.get("seed", 0), minimum=0)
    augment = chk.boolean(where, "data.augment", d.get("augment", True))
    return DataConfig(name=name, root=root, seed=seed, augment=augment)


def train_value(where: Where, path: str, key: str, value: Any) -> Any:
    """One `train.X` value, typed (also used for `train.X` in variants and sampled params)."""
    if key in TRAIN_INT:
        return chk.integer(where, path, value, minimum=TRAIN_INT[key])
    if key in TRAIN_FLOAT:
        rule = TRAIN_FLOAT[key]
        if rule == "positive":
            return chk.number(where, path, value, positive=True)
        return chk.number(where, path, value, minimum=rule[0], maximum=rule[1])
    if key in TRAIN_BOOL:
        return chk.boolean(where, path, value)
    if key == "amp":  # true / false as written before the three modes: bf16 / off
        return amp_mode(value) if isinstance(value, bool) else chk.choice(where, path, value, AMP_MODES, "amp mode")
    if key == "optimizer":
        return chk.choice(where, path, value, OPTIMIZERS, "optimizer")
    if key == "schedule":
        return chk.choice(where, path, value, SCHEDULES, "schedule")
    raise where.error(path, f"unknown training key {key!r}; expected one of: {', '.join(TRAIN_KEYS)}")


def parse_train(where: Where, raw: Any) -> TrainConfig:
    t = chk.mapping(where, "train", raw, allow_none=False)
    chk.known_keys(where, "train", t, TRAIN_KEYS)
    chk.required(where, "train", t, "epochs", "the full training budget, a positive integer")
    values = {k: train_value(where, join("train", k), k, v) for k, v in t.items()}
    if values.get("warmup_epochs", 0) >= values["epochs"]:
        blame = "train.epochs" if where.origin("train.epochs") and not where.origin("train.warmup_epochs") else None
        raise where.error("train.warmup_epochs", f"{values['warmup_epochs']} must be smaller than "
                                                 f"train.epochs ({values['epochs']})", set_key=blame)
    return TrainConfig(**values)


def parse_model(where: Where, raw: Any) -> ModelConfig:
    m = chk.mapping(where, "model", raw, allow_none=False)
    variant = chk.string(where, "model.variant", chk.required(
        where, "model", m, "variant", "the base network, e.g. gsa_resnet_tiny (gsa-nas variants lists them)"))
    return ModelConfig(variant=variant, overrides=tuple((k, frozen(v)) for k, v in m.items() if k != "variant"))


def variant_overrides(where: Where, path: str, raw: Any) -> tuple[tuple[str, Any], ...]:
    """A variant's keys: `model.variant`, `train.X` (typed here), or network keys (checked by building)."""
    v = chk.mapping(where, path, raw)
    out = []
    for key, value in v.items():
        kpath = join(path, key)
        if key == keys.MODEL_VARIANT:
            value = chk.string(where, kpath, value)
        elif keys.train_field(key) is not None:
            value = train_value(where, kpath, keys.train_field(key), value)
        elif keys.section(key) in (keys.DATA, keys.MODEL, keys.TRAIN) or key in COMMON_KEYS:
            raise where.error(kpath, f"a variant may set model.variant, train.<key> or network keys "
                                     f"(gsa.X, stages.N.X, width_mult, ...), not {key!r}")
        out.append((key, frozen(value)))
    return tuple(out)


def parse_variants(where: Where, raw: Any) -> tuple[Variant, ...]:
    v = chk.mapping(where, "variants", raw)
    if not v:
        raise where.error("variants", "an ablation needs at least one variant; e.g. variants: {both: {}}")
    return tuple(Variant(name=chk.name(where, join("variants", k), k),
                         overrides=variant_overrides(where, join("variants", k), body)) for k, body in v.items())


def parse_seeds(where: Where, raw: Any) -> tuple[int, ...]:
    seeds = [raw] if isinstance(raw, int) and not isinstance(raw, bool) else raw
    if not isinstance(seeds, list) or not seeds:
        example = '--set "seeds=[0, 1]"' if where.origin("seeds") else "[0, 1, 2]"
        raise where.error("seeds", f"{raw!r} must be a non-empty list of integers, e.g. {example}")
    out = tuple(chk.integer(where, f"seeds[{i}]", s, minimum=0) for i, s in enumerate(seeds))
    if len(set(out)) != len(out):
        raise where.error("seeds", f"{list(out)!r} repeats a seed; each seed must appear once")
    return out


def parse_resources(where: Where, raw: Any) -> Resources:
    r = chk.mapping(where, "resources", raw)
    chk.known_keys(where, "resources", r, ("cpu", "gpu"))
    return Resources(cpu=chk.number(where, "resources.cpu", r.get("cpu", 1), positive=True),
                     gpu=chk.number(where, "resources.gpu", r.get("gpu", 0), minimum=0.0))


def installed(module: str) -> bool:
    """Whether `module` can be imported here (found, not imported: loading a study stays fast)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def parse_loggers(where: Where, raw: Any) -> tuple[str, ...]:
    """`loggers: [csv, tensorboard]`: Ray Tune logger callbacks, each known, once, and installed."""
    if raw is None:
        return DEFAULT_LOGGERS
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list):
        raise where.error("loggers", f"{raw!r} must be a list of logger names from: {', '.join(LOGGERS)}; "
                                     f"e.g. [json, csv, tensorboard]")
    out = tuple(chk.choice(where, f"loggers[{i}]", item, LOGGERS, "logger") for i, item in enumerate(items))
    if len(set(out)) != len(out):
        raise where.error("loggers", f"{list(out)!r} repeats a logger; list each once")
    for i, item in enumerate(out):
        module, install = LOGGER_PACKAGES.get(item, (None, ""))
        if module is not None and not installed(module):
            raise where.error(f"loggers[{i}]", f"{item!r} needs the {module} package, which is not installed; "
                                               f"{install}, or remove {item} from loggers")
    return out
