"""write_report / write_comparison on hand-built run directories, and `gsa-nas report` errors."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from reports import ReportError, write_comparison, write_report
from rundirs import build_ablation, build_search

ABLATION_FIGURES = ["ablation_bars.png", "acc_vs_gmacs.png", "acc_vs_params.png", "edf_variant.png",
                    "learning_curves.png"]
ABLATION_TABLES = ["ablation.csv", "edf_variant.csv", "excluded.csv", "ledger.csv", "pareto.csv"]
SEARCH_TABLES = ["edf_gsa.heads.csv", "edf_train.lr.csv", "edf_width_mult.csv", "excluded.csv", "importance.csv",
                 "leaderboard.csv", "ledger.csv", "pareto.csv"]
SECTIONS = ["Summary", "Ablation", "Pareto front", "Error EDFs", "Learning curves", "Compute ledger",
            "Excluded trials"]


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_write_report_ablation_writes_all_files(ablation_run):
    path = write_report(ablation_run)
    assert path == ablation_run / "report.html"
    assert (ablation_run / "report.md").is_file()
    assert _names(ablation_run / "figures") == ABLATION_FIGURES
    assert _names(ablation_run / "tables") == ABLATION_TABLES
    assert len(pd.read_csv(ablation_run / "tables" / "ablation.csv")) == 4


def test_write_report_sections_in_order(ablation_run):
    write_report(ablation_run)
    md = (ablation_run / "report.md").read_text()
    assert re.findall(r"^## (.+)$", md, flags=re.M) == SECTIONS


def test_write_report_markdown_links_existing_figures(ablation_run):
    write_report(ablation_run)
    links = re.findall(r"\]\((figures/[^)]+)\)", (ablation_run / "report.md").read_text())
    assert sorted(Path(link).name for link in links) == ABLATION_FIGURES
    assert all((ablation_run / link).is_file() for link in links)


def test_write_report_html_is_self_contained(ablation_run):
    html = write_report(ablation_run).read_text()
    assert re.findall(r"https?://|<script|<link|@import|url\(", html, flags=re.I) == []
    sources = re.findall(r'src="([^"]*)"', html)
    assert len(sources) == len(ABLATION_FIGURES)
    assert all(s.startswith("data:image/png;base64,") for s in sources)


def test_write_report_header_and_formats(ablation_run):
    md = (write_report(ablation_run).parent / "report.md").read_text()
    assert "| trials | 12 trials: 11 complete · 0 pruned · 1 failed · 0 infeasible |" in md
    assert "| budget | 4 epochs per trial |" in md
    assert "| both | 3 | 5.00K | 0.004 | 91.00 ± 1.00% | 90.00 ± 1.00% | baseline | — | — |  |" in md
    assert "| content_only-s2 | content_only | 2 | failed | 2 | 4 | diverged: loss is NaN at epoch 2 |" in md


def test_write_report_search_has_leaderboard_and_importance(search_run):
    write_report(search_run)
    md = (search_run / "report.md").read_text()
    assert re.findall(r"^## (.+)$", md, flags=re.M) == [
        "Summary", "Leaderboard", "Parameter importance", "Pareto front", "Error EDFs", "Learning curves",
        "Compute ledger", "Excluded trials"]
    assert _names(search_run / "tables") == SEARCH_TABLES
    importance = pd.read_csv(search_run / "tables" / "importance.csv")
    assert sorted(importance["param"]) == ["gsa.heads", "train.lr", "width_mult"]
    assert importance["val_acc"].sum() == pytest.approx(1.0)
    leaderboard = pd.read_csv(search_run / "tables" / "leaderboard.csv")
    assert leaderboard["trial_id"].tolist() == ["t003", "t001", "t007", "t009", "t005", "t000"]


def test_write_report_out_dir_leaves_run_dir_alone(ablation_run, tmp_path):
    out = tmp_path / "elsewhere"
    assert write_report(ablation_run, out=out) == out / "report.html"
    assert not (ablation_run / "report.html").exists()
    assert _names(out) == ["figures", "report.html", "report.md", "tables"]


def test_write_report_without_curves_notes_it(ablation_run):
    (ablation_run / "curves.csv").unlink()
    write_report(ablation_run)
    assert "No per-epoch records (curves.csv) in the run." in (ablation_run / "report.md").read_text()
    assert "learning_curves.png" not in _names(ablation_run / "figures")


def test_write_report_half_written_raises(ablation_run):
    (ablation_run / "results.csv").unlink()
    with pytest.raises(ReportError, match=r"no results.csv \(status: finished\)"):
        write_report(ablation_run)


def test_write_comparison_concatenates_runs(tmp_path, ablation_run):
    other = build_ablation(tmp_path / "quick2", name="quick2")
    path = write_comparison([ablation_run, other], out=tmp_path / "cmp")
    assert path == tmp_path / "cmp" / "report.html"
    table = pd.read_csv(tmp_path / "cmp" / "tables" / "ablation.csv")
    assert table["variant"].tolist()[:2] == ["quick/both", "quick/content_only"]
    assert len(table) == 8
    md = (tmp_path / "cmp" / "report.md").read_text()
    assert "| run quick | ablation, digits, 4 epochs, wall 5.0 min, status: finished |" in md


def test_write_comparison_same_named_runs_labelled_by_parent(tmp_path):
    a = build_ablation(tmp_path / "a" / "quick")
    b = build_ablation(tmp_path / "b" / "quick")
    write_comparison([a, b], out=tmp_path / "cmp")
    table = pd.read_csv(tmp_path / "cmp" / "tables" / "ablation.csv")
    assert table["variant"].tolist()[:2] == ["a/quick/both", "a/quick/content_only"]
    assert len(table) == 8
    md = (tmp_path / "cmp" / "report.md").read_text()
    assert md.splitlines()[0] == "# comparison: a/quick, b/quick"
    assert f"| run b/quick | ablation, digits, 4 epochs, wall 5.0 min, status: finished (quick in {b}) |" in md


def test_write_comparison_same_directory_twice_numbered(ablation_run, tmp_path):
    write_comparison([ablation_run, ablation_run], out=tmp_path / "cmp")
    excluded = pd.read_csv(tmp_path / "cmp" / "tables" / "excluded.csv")
    assert excluded["run"].tolist() == [f"{ablation_run}#1", f"{ablation_run}#2"]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "search.cli", *args], capture_output=True, text=True, timeout=120)


def test_cli_report_writes_report(ablation_run):
    proc = _cli("report", str(ablation_run))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"report written to {ablation_run / 'report.html'}"


def test_cli_report_running_dir_exits_2_with_one_line(ablation_run):
    run = json.loads((ablation_run / "run.json").read_text())
    (ablation_run / "run.json").write_text(json.dumps({**run, "status": "running"}))
    (ablation_run / "results.csv").unlink()
    proc = _cli("report", str(ablation_run))
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        f"gsa-nas: error: {ablation_run}: no results.csv; the run has not finished (status: running) "
        f"— resume it with gsa-nas run --resume {ablation_run}"
    ]


def test_cli_report_missing_dir_exits_2(tmp_path):
    proc = _cli("report", str(tmp_path / "missing"))
    expected = f"gsa-nas: error: {tmp_path / 'missing'}: no such run directory"
    assert (proc.returncode, proc.stderr.strip()) == (2, expected)


def test_write_report_multi_objective_search(tmp_path):
    run = build_search(tmp_path / "mo", name="mo", objectives={"val_acc": "max", "gmacs": "min"})
    write_report(run)
    importance = pd.read_csv(run / "tables" / "importance.csv")
    assert list(importance.columns) == ["param", "val_acc", "gmacs"]
    pareto = pd.read_csv(run / "tables" / "pareto.csv")
    assert pareto["trial_id"].tolist() == ["t003", "t001", "t009", "t005", "t000"]


def test_write_report_importance_note_when_storage_is_gone(search_run):
    (search_run / "optuna.db").unlink()
    write_report(search_run)
    md = (search_run / "report.md").read_text()
    note = f"Not computed: the Optuna storage sqlite:///{search_run}/optuna.db is missing."
    assert f"## Parameter importance\n\n{note}" in md
    assert not (search_run / "optuna.db").exists()  # reporting never creates a storage


def test_cli_compare_writes_one_report(tmp_path, ablation_run, search_run):
    proc = _cli("compare", str(ablation_run), str(search_run), "--out", str(tmp_path / "cmp"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"comparison written to {tmp_path / 'cmp' / 'report.html'}"
    leaderboard = pd.read_csv(tmp_path / "cmp" / "tables" / "leaderboard.csv")
    assert sorted(set(leaderboard["run"])) == ["quick", "search_small"]
    assert len(leaderboard) == 11 + 6


def test_reports_imports_neither_search_nor_ray():
    code = ("import sys, reports; reports.write_report; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'search', 'ray'}))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip() == "[]", proc.stderr


def _two_seed_ablation(path: Path) -> Path:
    run = build_ablation(path)
    results = pd.read_csv(run / "results.csv")
    results[results["seed"] < 2].to_csv(run / "results.csv", index=False)
    return run


def test_write_report_two_seeds_summary_gives_the_t_interval(tmp_path):
    run = _two_seed_ablation(tmp_path / "quick")
    md = write_report(run).with_name("report.md").read_text()
    # conv - both per seed: +3, +2 pp; a percentile bootstrap read [+2.00, +3.00], the paired
    # t-interval with 1 degree of freedom is wide and includes 0
    assert "- conv: +2.50 pp val_acc against both, 95% CI [-3.85, +8.85] pp (paired t, n=2 seeds; the interval " \
           "includes 0)." in md
    assert "| conv | 2 | 7.00K | 0.006 | 93.50 ± 0.71% | 92.50 ± 0.71% | +2.50 pp | [-3.85, +8.85] pp | paired t " \
           "| < 3 seeds |" in md


def test_write_report_three_seeds_summary_says_whether_interval_excludes_zero(ablation_run):
    md = write_report(ablation_run).with_name("report.md").read_text()
    assert re.findall(r"^- (\w+): .*\((paired t|Welch t), n=\d seeds; the interval ((?:ex|in)cludes) 0\)\.$", md,
                      flags=re.M) == [("content_only", "Welch t", "excludes"), ("positional_only", "paired t", "excludes"),
                                      ("conv", "paired t", "includes")]


def test_write_report_leaderboard_all_trials_and_short_columns(search_run):
    md = write_report(search_run).with_name("report.md").read_text()
    assert "All 6 complete trials by val_acc, best first." in md
    assert ("| rank | variant | gsa.heads | width_mult | train.lr | params | GMACs | val acc | test acc | epochs "
            "| wall time |") in md
    assert "| 1 | trial_3 | 4 | 1.5 | 0.005 | 9.00K | 0.008 | 92.00% | 91.00% | 4 | 2.4 min |" in md


def test_write_report_leaderboard_top_n_of_many(search_run):
    from reports import compose

    results = pd.read_csv(search_run / "results.csv")
    pd.concat([results] * 4, ignore_index=True).assign(trial_id=lambda f: [f"t{i}" for i in range(len(f))]) \
        .to_csv(search_run / "results.csv", index=False)
    md = write_report(search_run).with_name("report.md").read_text()
    assert f"Top {compose.LEADERBOARD_ROWS} of 24 complete trials by val_acc, best first." in md


def test_write_report_pareto_headers_for_people(ablation_run):
    md = write_report(ablation_run).with_name("report.md").read_text()
    assert ("| variant | seed | gsa.content | gsa.positional | model.variant | params | GMACs | act. memory (MB) "
            "| val acc | test acc |") in md
    pareto = pd.read_csv(ablation_run / "tables" / "pareto.csv")
    assert ["gmacs", "act_mb", "val_acc"] == [c for c in pareto.columns if c in ("gmacs", "act_mb", "val_acc")]


def test_write_report_dash_means_not_applicable(ablation_run):
    md = write_report(ablation_run).with_name("report.md").read_text()
    assert "| conv | 1 | — | — | resnet_tiny |" in md
    assert ("- “—” in a table means not applicable: a parameter that was inactive in that trial, or a GSA "
            "setting of a conv net.") in md


def test_write_report_html_tables_scroll(ablation_run):
    html = write_report(ablation_run).read_text()
    assert html.count('<div class="table-wrap"><table>') == html.count("<table>") == 4
    assert "div.table-wrap { overflow-x: auto;" in html


def test_write_report_importance_left_out_and_caveat(search_run):
    md = write_report(search_run).with_name("report.md").read_text()
    assert ("Caveat: only 6 complete trials; fANOVA shares are rough below about 20 and can reorder as "
            "trials are added. Read them as a hint.") in md
    assert "Left out" not in md  # every parameter was set and varied


def test_write_report_edf_of_float_factor_is_binned(search_run):
    write_report(search_run)
    edf = pd.read_csv(search_run / "tables" / "edf_train.lr.csv")
    assert edf["value"].drop_duplicates().tolist() == ["[0.001, 0.001]", "[0.002, 0.003]", "[0.004, 0.005]"]
    md = (search_run / "report.md").read_text()
    assert "*Error EDF by train.lr (train.lr continuous: 3 quantile bins): the share" in md
