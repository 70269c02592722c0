"""Combining runs for a comparison: unique run labels, fields read from each run's resolved columns."""

from __future__ import annotations

import pandas as pd

from reports import columns as C
from reports import load_run_info, write_comparison
from reports.combine import fill_fields, run_labels
from rundirs import build_ablation


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


def test_fill_fields_adds_unrecorded_field_as_empty_and_names_it():
    frame = pd.DataFrame({C.VARIANT: ["a", "b"], "gsa.heads": [2, 4]})
    out, unknown = fill_fields(frame, ["gsa.heads", "train.lr"])
    assert (unknown, out["gsa.heads"].tolist(), out["train.lr"].isna().tolist()) == (["train.lr"], [2, 4], [True, True])


def test_write_comparison_reads_fields_from_each_runs_resolved_columns(tmp_path, search_run):
    quick = build_ablation(tmp_path / "quick")
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


def test_write_comparison_names_fields_a_run_did_not_record(tmp_path, search_run):
    old = build_ablation(tmp_path / "quick", resolved=False)
    write_comparison([old, search_run], out=tmp_path / "cmp")
    md = (tmp_path / "cmp" / "report.md").read_text()
    assert "- Run quick did not record gsa.heads, width_mult, train.lr: shown as \"—\" (unknown) in its rows." in md


def test_write_comparison_continuous_edf_is_binned(tmp_path, search_run):
    quick = build_ablation(tmp_path / "quick")
    write_comparison([quick, search_run], out=tmp_path / "cmp")
    edf = pd.read_csv(tmp_path / "cmp" / "tables" / "edf_train.lr.csv")
    assert edf["value"].nunique() <= 3
    assert edf["value"].str.match(r"^\[[0-9.e-]+, [0-9.e-]+\]$").tolist() == [True] * len(edf)
    assert "(unset)" not in set(edf["value"])
    assert len(edf) == 11 + 6
