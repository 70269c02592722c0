"""Run facts: the input size a run's networks were built for."""

from __future__ import annotations

from pathlib import Path

import yaml

from reports import load_run_info
from reports.header import DATA_INPUT_SIZES, input_size_text
from rundirs import build_ablation
from search.study import DATASET_SHAPES


def _edit(run: Path, *, study: dict | None = None) -> Path:
    if study:
        (run / "study.yaml").write_text(yaml.safe_dump({**yaml.safe_load((run / "study.yaml").read_text()), **study}))
    return run


def test_data_input_sizes_match_search_dataset_shapes():
    assert DATA_INPUT_SIZES == {name: shape[0] for name, shape in DATASET_SHAPES.items()}


def test_input_size_from_study_overrides(tmp_path):
    run = _edit(build_ablation(tmp_path / "a"), study={
        "model": {"variant": "gsa_resnet_tiny", "input_size": 16}, "variants": {"both": {}, "big": {"input_size": 32}}})
    assert input_size_text(load_run_info(run)) == "16, 32"
