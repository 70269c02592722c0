"""Read a study file into a `Study`: YAML in, `--set` overrides applied, every section checked.

Sections become typed objects here, once; cross-section rules (networks that cannot be built,
samplers that cannot handle the space, pruners that cannot see a multi-objective value)
live in `search.study_rules`.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any, Mapping

import yaml

from search import study_checks as chk
from search.study import (DATASETS, KINDS, OPTIMIZERS, SCHEDULES, DataConfig, ModelConfig, Resources,
                          Study, StudyError, TrainConfig, Variant)
from search.study_checks import Where, join
from search.study_sets import apply_sets, command_line_sets

STUDIES_DIR = Path(__file__).resolve().parents[1] / "studies"
COMMON_KEYS = ("name", "description", "kind", "data", "model", "train", "seeds", "resources", "max_concurrent")
ABLATION_KEYS = ("baseline", "variants")
SEARCH_KEYS = ("space", "sampler", "num_samples", "objectives", "constraints", "pruner", "max_rejections")
TRAIN_INT = {"epochs": 1, "batch_size": 1, "warmup_epochs": 0}
TRAIN_FLOAT = {"lr": "positive", "momentum": (0.0, 1.0), "weight_decay": (0.0, None), "label_smoothing": (0.0, 0.99)}
TRAIN_BOOL = ("amp", "channels_last")
TRAIN_KEYS = tuple(TRAIN_INT) + tuple(TRAIN_FLOAT) + TRAIN_BOOL + ("optimizer", "schedule")


def frozen(value: Any) -> Any:
    """Lists become tuples, so that studies stay immutable and hashable."""
    return tuple(frozen(v) for v in value) if isinstance(value, list) else value


def _looks_like_path(text: str) -> bool:
    return "/" in text or os.sep in text or text.endswith((".yaml", ".yml"))


def find_study_file(path_or_name: str) -> Path:
    """A path to an existing file, or the name of a file in the repository's studies/ folder.

    A missing path (it has a `/` or ends in .yaml/.yml) is named as given; a missing name
    gets a did-you-mean among the shipped studies.
    """
    text = str(path_or_name)
    path = Path(os.path.expanduser(text))
    if path.is_file():
        return path
    known = sorted(p.stem for p in STUDIES_DIR.glob("*.yaml"))
    if not _looks_like_path(text):
        if (STUDIES_DIR / f"{text}.yaml").is_file():
            return STUDIES_DIR / f"{text}.yaml"
        close = difflib.get_close_matches(text, known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise StudyError(f"{text}: no such study file, and no study named {text!r} in studies/{hint} "
                         f"(studies/ holds: {', '.join(known)})")
    if "/" not in text and os.sep not in text and (STUDIES_DIR / text).is_file():
        return STUDIES_DIR / text
    if path.is_dir():
        raise StudyError(f"{text} is a directory, not a study file; give a .yaml file or a study name")
    siblings = sorted(p.name for p in path.parent.glob("*.y*ml")) if path.parent.is_dir() else []
    close = difflib.get_close_matches(path.name, siblings, n=1)
    if close:
        hint = f"; did you mean {str(path.parent / close[0])!r}?"
    else:  # a bare file name may be a shipped study's, misspelt or with the wrong suffix
        named = difflib.get_close_matches(path.stem, known, n=1) if path.parent == Path(".") else []
        hint = f"; did you mean {named[0]!r}?" if named else ""
    raise StudyError(f"no such study file {text}{hint} (or give a study name: {', '.join(known)})")


def read_yaml(path: Path) -> dict[str, Any]:
    """safe_load the file; a syntax error becomes one line with its position."""
    where = Where(str(path))
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise where.error("", f"cannot read the file ({err.__class__.__name__}: {err})") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = " ".join(str(getattr(err, "problem", None) or err).split())
        raise where.error("", f"unreadable YAML{at}: {problem}; fix the syntax (YAML is read with safe_load)") from None
    if not isinstance(doc, dict):
        raise where.error("", f"the document must be a mapping of study keys, but it is {type(doc).__name__}")
    return doc


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
        expanded = os.path.abspath(os.path.expanduser(root))
        if not os.path.isdir(expanded):
            raise where.error("data.root", f"{root!r} (= {expanded}) is not an existing directory; "
                                           f"put the {name} python-pickle archive there or point data.root at it")
        try:
            from search.cifar import find_archive

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
        if key == "model.variant":
            value = chk.string(where, kpath, value)
        elif key.startswith("train."):
            value = train_value(where, kpath, key[len("train."):], value)
        elif key.startswith(("data.", "model.")) or key in COMMON_KEYS:
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


def parse_document(where: Where, doc: dict[str, Any], source: str) -> Study:
    """Every section of the document, typed; then the cross-section rules."""
    from search.study_rules import check_study
    from search.study_search import parse_search

    chk.known_keys(where, "", doc, COMMON_KEYS + ABLATION_KEYS + SEARCH_KEYS)
    kind = chk.choice(where, "kind", chk.required(where, "", doc, "kind", "ablation or search"), KINDS, "kind")
    foreign = [k for k in (SEARCH_KEYS if kind == "ablation" else ABLATION_KEYS) if k in doc]
    if foreign:
        raise where.error(foreign[0], f"given, but only {'a search' if kind == 'ablation' else 'an ablation'} study "
                                      f"has it and kind is {kind!r}; remove it or change kind")
    name = chk.name(where, "name", doc.get("name", Path(source).stem))
    description = doc.get("description") or ""
    if not isinstance(description, str):
        raise where.error("description", f"{description!r} must be text")
    seeds = parse_seeds(where, doc.get("seeds", [0]))
    study = Study(
        name=name, description=description.strip(), kind=kind, source=source,
        data=parse_data(where, chk.required(where, "", doc, "data", "e.g. data: {name: digits}")),
        model=parse_model(where, chk.required(where, "", doc, "model", "e.g. model: {variant: gsa_resnet_tiny}")),
        train=parse_train(where, chk.required(where, "", doc, "train", "e.g. train: {epochs: 10}")),
        seeds=seeds,
        baseline=None if doc.get("baseline") is None else chk.name(where, "baseline", doc["baseline"]),
        variants=parse_variants(where, doc.get("variants")) if kind == "ablation" else (),
        search=parse_search(where, doc) if kind == "search" else None,
        resources=parse_resources(where, doc.get("resources")),
        max_concurrent=chk.integer(where, "max_concurrent", doc.get("max_concurrent", 1), minimum=1),
    )
    return check_study(where, study)


def load_study(path_or_name: str, overrides: Mapping[str, Any] | None = None) -> Study:
    """See `search.study.load_study`."""
    path = find_study_file(path_or_name)
    values, texts = command_line_sets(overrides or {})
    where = Where(str(path), sets=texts)
    doc = apply_sets(where, read_yaml(path), values, top_keys=COMMON_KEYS + ABLATION_KEYS + SEARCH_KEYS,
                     train_keys=TRAIN_KEYS)
    return parse_document(where, doc, str(path))
