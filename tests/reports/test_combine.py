"""Combining runs for a comparison: unique run labels, fields filled from each run's study."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from reports import columns as C
from reports import load_run_info, write_comparison
from reports.combine import resolved_value, run_labels
from rundirs import build_ablation

QUICK_STUDY = {  # a resolved quickstart study, as `gsa-nas run` writes it
    "name": "quick", "kind": "ablation", "model": {"variant": "gsa_resnet_tiny"},
    "train": {"epochs": 4, "lr": 0.003}, "data": {"name": "digits"},
    "variants": {"both": {}, "content_only": {"gsa.positional": False}, "positional_only": {"gsa.content": False},
                 "conv": {"model.variant": "resnet_tiny"}},
}


def _with_study(path: Path, study: dict) -> Path:
    (path / "study.yaml").write_text(yaml.safe_dump(study))
    return path


def test_run_labels_distinct_names_kept(tmp_path):
    a, b = build_ablation(tmp_path / "x", name="alpha"), build_ablation(tmp_path / "y", name="beta")
    assert run_labels([load_run_info(a), load_run_info(b)]) == ["alpha", "beta"]


def test_run_labels_same_name_uses_directory_then_parent(tmp_path):
    a = build_ablation(tmp_path / "one", name="quick")
    b = build_ablation(tmp_path / "r1" / "two", name="quick")
    c = build_ablation(tmp_path / "r2" / "two", name="quick")
    infos = [load_run_info(p) for p in (a, b, c)]
    assert run_labels(infos) == ["one", "r1/two", "r2/two"]


def test_run_labels_only_clashing_runs_change(tmp_path):
    a = build_ablation(tmp_path / "a" / "quick")
    b = build_ablation(tmp_path / "b" / "quick")
    c = build_ablation(tmp_path / "c" / "other", name="other")
    assert run_labels([load_run_info(p) for p in (a, b, c)]) == ["a/quick", "b/quick", "other"]


def test_resolved_value_train_key_from_study():
    assert resolved_value(QUICK_STUDY, {C.VARIANT: "both"}, "train.lr") == 0.003


def test_resolved_value_network_key_from_variant_config():
    assert resolved_value(QUICK_STUDY, {C.VARIANT: "both"}, "gsa.heads") == 2
    assert resolved_value(QUICK_STUDY, {C.VARIANT: "both"}, "gsa_stages") == "1-2-3"
    assert resolved_value(QUICK_STUDY, {C.VARIANT: "content_only"}, "gsa.positional") is False


def test_resolved_value_row_overrides_apply():
    row = {C.VARIANT: "trial_3", "gsa_stages": "3", "gsa.heads": 4}
    study = {"model": {"variant": "gsa_resnet_tiny"}, "train": {"lr": 0.001}}
    assert resolved_value(study, row, "gsa.content") is True
    assert resolved_value(study, row, "gsa_stages") == "3"


def test_resolved_value_gsa_key_of_conv_net_is_nan():
    assert np.isnan(resolved_value(QUICK_STUDY, {C.VARIANT: "conv"}, "gsa.heads"))
    assert resolved_value(QUICK_STUDY, {C.VARIANT: "conv"}, "model.variant") == "resnet_tiny"


def test_resolved_value_unknown_train_key_is_nan():
    assert np.isnan(resolved_value({"model": {"variant": "gsa_resnet_tiny"}}, {C.VARIANT: "x"}, "train.lr"))


def test_write_comparison_fills_fields_from_each_study(tmp_path, search_run):
    quick = _with_study(build_ablation(tmp_path / "quick"), QUICK_STUDY)
    _with_study(search_run, {"name": "search_small", "kind": "search", "model": {"variant": "gsa_resnet_tiny"}})
    write_comparison([quick, search_run], out=tmp_path / "cmp")
    board = pd.read_csv(tmp_path / "cmp" / "tables" / "leaderboard.csv")
    rows = board[board["run"] == "quick"].set_index("variant")
    assert rows.loc["both", "train.lr"].tolist() == [0.003] * 3
    assert rows.loc["both", "gsa.heads"].tolist() == [2] * 3
    assert rows.loc["conv", "gsa.heads"].isna().tolist() == [True] * 3  # a conv net: not applicable
    search = board[board["run"] == "search_small"]
    assert search["gsa.content"].tolist() == [True] * 6
    md = (tmp_path / "cmp" / "report.md").read_text()
    assert "did not record" not in md


def test_write_comparison_names_fields_it_could_not_fill(tmp_path, search_run, ablation_run):
    write_comparison([ablation_run, search_run], out=tmp_path / "cmp")  # hand-built study.yaml: no train
    md = (tmp_path / "cmp" / "report.md").read_text()
    assert ("- Run quick did not record train.lr and its study does not say: shown as \"—\" (unknown) "
            "in its rows.") in md


def test_write_comparison_continuous_edf_is_binned(tmp_path, search_run):
    quick = _with_study(build_ablation(tmp_path / "quick"), QUICK_STUDY)
    write_comparison([quick, search_run], out=tmp_path / "cmp")
    edf = pd.read_csv(tmp_path / "cmp" / "tables" / "edf_train.lr.csv")
    assert edf["value"].nunique() <= 3
    assert edf["value"].str.match(r"^\[[0-9.e-]+, [0-9.e-]+\]$").tolist() == [True] * len(edf)
    assert "(unset)" not in set(edf["value"])
    assert len(edf) == 11 + 6
