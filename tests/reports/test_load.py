"""Loading run directories: columns, dtypes, run info, and one-line errors for broken dirs."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from reports import ReportError, load_curves, load_results, load_run_info
from reports import columns as C


def test_load_results_columns_in_contract_order(ablation_run):
    trials = load_results(ablation_run)
    assert list(trials.columns) == [*C.LEADING_COLUMNS, "gsa.content", "gsa.positional", "model.variant",
                                    *C.METRIC_COLUMNS, "gsa.heads", "width_mult", "train.lr"]
    assert len(trials) == 12


def test_load_results_dtypes_fixed(ablation_run):
    trials = load_results(ablation_run)
    assert trials[C.SEED].dtype == "int64"
    assert trials[C.EPOCHS].dtype == "int64"
    assert trials[C.BUDGET_EPOCHS].dtype == "int64"
    assert str(trials[C.PARAMS].dtype) == "Int64"
    assert trials[C.VAL_ACC].dtype == "float64"
    assert trials[C.TEST_ACC].dtype == "float64"
    assert pd.api.types.is_string_dtype(trials[C.TRIAL_ID])
    assert trials[C.REASON].tolist().count("") == 11  # an empty reason is "", not NaN


def test_load_results_reads_numeric_looking_trial_ids_as_text(search_run):
    frame = pd.read_csv(search_run / "results.csv")
    frame[C.TRIAL_ID] = [f"{i:03d}" for i in range(len(frame))]
    frame.to_csv(search_run / "results.csv", index=False)
    assert load_results(search_run)[C.TRIAL_ID].tolist()[:2] == ["000", "001"]


def test_load_results_infeasible_row_has_size_but_no_accuracy(search_run):
    row = load_results(search_run).set_index(C.TRIAL_ID).loc["t004"]
    assert (row[C.STATE], row[C.EPOCHS], row[C.PARAMS], row[C.GMACS]) == ("infeasible", 0, 12000, 0.02)
    assert pd.isna(row[C.VAL_ACC]) and pd.isna(row[C.TEST_ACC])


def test_load_run_info_reads_all_three_files(ablation_run):
    info = load_run_info(ablation_run)
    assert (info.name, info.kind, info.status, info.baseline) == ("quick", "ablation", "finished", "both")
    assert info.space_fields == ("gsa.content", "gsa.positional", "model.variant")
    assert info.budget_epochs == 4
    assert info.env["packages"]["torch"] == "2.13.0"
    assert info.study["name"] == "quick"


def test_load_curves_one_row_per_trial_epoch(ablation_run):
    curves = load_curves(ablation_run)
    assert list(curves.columns) == list(C.CURVE_COLUMNS)
    assert len(curves) == 11 * 4 + 2  # 11 complete trials x 4 epochs, one failed trial x 2
    assert curves.duplicated([C.TRIAL_ID, C.EPOCH]).sum() == 0


def test_load_results_missing_dir_raises(tmp_path):
    with pytest.raises(ReportError, match=r"nope: no such run directory$"):
        load_results(tmp_path / "nope")


def test_load_results_no_run_json_raises(tmp_path):
    (tmp_path / "x").mkdir()
    with pytest.raises(ReportError, match=r"x: no run.json; not a gsa-nas run directory"):
        load_results(tmp_path / "x")


def test_load_results_running_without_results_says_resume(ablation_run):
    run = json.loads((ablation_run / "run.json").read_text())
    (ablation_run / "run.json").write_text(json.dumps({**run, "status": "running", "finished": None}))
    (ablation_run / "results.csv").unlink()
    with pytest.raises(ReportError) as err:
        load_results(ablation_run)
    assert str(err.value) == (
        f"{ablation_run}: no results.csv; the run has not finished (status: running) "
        f"— resume it with gsa-nas run --resume {ablation_run}"
    )


def test_load_results_running_with_header_only_says_resume(ablation_run):
    run = json.loads((ablation_run / "run.json").read_text())
    (ablation_run / "run.json").write_text(json.dumps({**run, "status": "interrupted"}))
    header = (ablation_run / "results.csv").read_text().splitlines()[0]
    (ablation_run / "results.csv").write_text(header + "\n")
    with pytest.raises(ReportError, match=r"the run has not finished \(status: interrupted\)"):
        load_results(ablation_run)


def test_load_results_unreadable_csv_raises(ablation_run):
    (ablation_run / "results.csv").write_bytes(b'trial_id,variant\n"unterminated,\x00\n')
    with pytest.raises(ReportError, match=r"results.csv: (unreadable CSV|missing column)"):
        load_results(ablation_run)


def test_load_results_empty_csv_file_raises(ablation_run):
    (ablation_run / "results.csv").write_text("")
    with pytest.raises(ReportError, match=r"results.csv: unreadable CSV"):
        load_results(ablation_run)


def test_load_results_missing_space_column_raises(ablation_run):
    frame = pd.read_csv(ablation_run / "results.csv").drop(columns=["gsa.content"])
    frame.to_csv(ablation_run / "results.csv", index=False)
    with pytest.raises(ReportError, match=r"missing column\(s\) \['gsa.content'\]"):
        load_results(ablation_run)


def test_load_results_unknown_state_raises(ablation_run):
    frame = pd.read_csv(ablation_run / "results.csv")
    frame.loc[0, C.STATE] = "RUNNING"
    frame.to_csv(ablation_run / "results.csv", index=False)
    with pytest.raises(ReportError, match=r"unknown trial state\(s\) \['RUNNING'\]"):
        load_results(ablation_run)


def test_load_run_info_bad_kind_raises(ablation_run):
    run = json.loads((ablation_run / "run.json").read_text())
    (ablation_run / "run.json").write_text(json.dumps({**run, "kind": "sweep"}))
    with pytest.raises(ReportError, match=r"kind must be one of \('ablation', 'search'\), but got kind='sweep'"):
        load_run_info(ablation_run)


def test_load_run_info_truncated_json_raises(ablation_run):
    (ablation_run / "run.json").write_text('{"name": "quick", "kind"')
    with pytest.raises(ReportError, match=r"run.json: unreadable JSON"):
        load_run_info(ablation_run)


def test_report_error_is_a_value_error():
    assert issubclass(ReportError, ValueError)


def test_load_results_finished_without_rows_raises(ablation_run):
    header = (ablation_run / "results.csv").read_text().splitlines()[0]
    (ablation_run / "results.csv").write_text(header + "\n")
    with pytest.raises(ReportError, match=r"results.csv: no trials \(status: finished\); there is nothing to report"):
        load_results(ablation_run)
