"""Run facts: what two runs must share to be compared (`like_for_like`) and how they differ."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from reports import load_run_info
from reports.header import DATA_INPUT_SIZES, input_size_text, like_for_like, mismatches
from rundirs import build_ablation
from search.study import DATASET_SHAPES


def _edit(run: Path, *, run_json: dict | None = None, study: dict | None = None) -> Path:
    if run_json:
        (run / "run.json").write_text(json.dumps({**json.loads((run / "run.json").read_text()), **run_json}))
    if study:
        (run / "study.yaml").write_text(yaml.safe_dump({**yaml.safe_load((run / "study.yaml").read_text()), **study}))
    return run


def test_data_input_sizes_match_search_dataset_shapes():
    assert DATA_INPUT_SIZES == {name: shape[0] for name, shape in DATASET_SHAPES.items()}


def test_like_for_like_facts_of_a_run(ablation_run):
    assert like_for_like(load_run_info(ablation_run)) == {
        "data set": "digits", "budget": "4 epochs", "objectives": "val_acc (max)", "input size": "8"}


def test_input_size_from_study_overrides(tmp_path):
    run = _edit(build_ablation(tmp_path / "a"), study={
        "model": {"variant": "gsa_resnet_tiny", "input_size": 16}, "variants": {"both": {}, "big": {"input_size": 32}}})
    assert input_size_text(load_run_info(run)) == "16, 32"


def test_mismatches_empty_for_like_runs(tmp_path):
    infos = [load_run_info(build_ablation(tmp_path / n, name=n)) for n in ("a", "b")]
    assert mismatches(infos, ["a", "b"]) == []


def test_mismatches_name_field_and_values_grouped_by_value(tmp_path):
    a, b = build_ablation(tmp_path / "a", name="a"), build_ablation(tmp_path / "b", name="b")
    c = _edit(build_ablation(tmp_path / "c", name="c"), run_json={"data": {"name": "cifar10", "root": "/d"},
                                                                  "budget_epochs": 30})
    infos = [load_run_info(p) for p in (a, b, c)]
    assert mismatches(infos, ["a", "b", "c"]) == ["data set: a, b have digits, c has cifar10",
                                                  "budget: a, b have 4 epochs, c has 30 epochs",
                                                  "input size: a, b have 8, c has 32"]
