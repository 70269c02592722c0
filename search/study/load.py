"""`load_study`: a study file (or a shipped study's name) plus `--set` overrides, read and checked.

The one entry point that ties the readers together: file -> YAML -> overrides -> sections ->
search keys -> cross-section rules. Every problem is one `StudyError` line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from search.study import readers as chk
from search.study.files import find_study_file, read_yaml
from search.study.overrides import apply_sets, command_line_sets
from search.study.readers import Where
from search.study.rules import check_study
from search.study.schema import KINDS, Study
from search.study.search_section import parse_search
from search.study.sections import (ABLATION_KEYS, COMMON_KEYS, SEARCH_KEYS, TRAIN_KEYS, parse_data, parse_loggers,
                                   parse_model, parse_resources, parse_seeds, parse_train, parse_variants)


def parse_document(where: Where, doc: dict[str, Any], source: str) -> Study:
    """Every section of the document, typed; then the cross-section rules."""
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
        max_failures=chk.integer(where, "max_failures", doc.get("max_failures", 1), minimum=0),
        loggers=parse_loggers(where, doc.get("loggers")),
    )
    return check_study(where, study)


def load_study(path_or_name: str, overrides: Mapping[str, Any] | None = None) -> Study:
    """Read, override (`--set` dotted keys into the document) and check a study file.

    Example: `load_study("quickstart", {"train.epochs": 2}).train.epochs == 2`.
    """
    path = find_study_file(path_or_name)
    values, texts = command_line_sets(overrides or {})
    where = Where(str(path), sets=texts)
    doc = apply_sets(where, read_yaml(path), values, top_keys=COMMON_KEYS + ABLATION_KEYS + SEARCH_KEYS,
                     train_keys=TRAIN_KEYS)
    return parse_document(where, doc, str(path))
