"""write_report / write_comparison on hand-built run directories, and `gsa-nas report` errors."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from reports import ReportError, write_comparison, write_report
from rundirs import build_ablation, build_search

ABLATION_FIGURES = ["ablation_bars.png", "acc_vs_gmacs.png", "acc_vs_params.png", "edf_variant.png",
                    "learning_curves.png"]
ABLATION_TABLES = ["ablation.csv", "edf_variant.csv", "excluded.csv", "ledger.csv", "pareto.csv"]
SEARCH_TABLES = ["edf_gsa.heads.csv", "edf_train.lr.csv", "edf_width_mult.csv", "excluded.csv", "importance.csv",
                 "leaderboard.csv", "ledger.csv", "pareto.csv"]
SECTIONS = ["Finding", "Ablation", "Pareto front", "Error EDFs", "Learning curves", "Compute ledger",
            "Excluded trials", "Run details"]


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
    assert ("| variant | seeds | val acc | test acc | Δ val_acc | 95% CI | interval | MMACs | params (K) |\n"
            "|---|---|---|---|---|---|---|---|---|\n"
            "| both | 3 | 91.00 ± 1.00% | 90.00 ± 1.00% | baseline | — | — | 4.00 | 5.00 |") in md
    assert "| content_only-s2 | content_only | 2 | failed | 2 | 4 | diverged: loss is NaN at epoch 2 |" in md


def test_write_report_search_has_leaderboard_and_importance(search_run):
    write_report(search_run)
    md = (search_run / "report.md").read_text()
    assert re.findall(r"^## (.+)$", md, flags=re.M) == [
        "Finding", "Leaderboard", "Parameter importance", "Pareto front", "Error EDFs", "Learning curves",
        "Compute ledger", "Excluded trials", "Run details"]
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


def _edited(run: Path, **changes) -> Path:
    """`run` with run.json keys replaced by `changes`."""
    (run / "run.json").write_text(json.dumps({**json.loads((run / "run.json").read_text()), **changes}))
    return run


MISMATCH_FIX = "compare runs of one set-up, or pass --allow-mismatch (allow_mismatch=True) to compare them anyway"


def test_cli_compare_refuses_runs_on_other_data_with_one_line(tmp_path, ablation_run):
    cifar = _edited(build_ablation(tmp_path / "cifar", name="cifar"), data={"name": "cifar10", "root": "/data/c"})
    proc = _cli("compare", str(ablation_run), str(cifar), "--out", str(tmp_path / "cmp"))
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "gsa-nas: error: runs are not like for like: data set: quick has digits, cifar has cifar10; input size: "
        f"quick has 8, cifar has 32; {MISMATCH_FIX}"]
    assert proc.stdout == ""
    assert not (tmp_path / "cmp").exists()


def test_cli_compare_allow_mismatch_says_so_at_the_top(tmp_path, ablation_run):
    longer = _edited(build_ablation(tmp_path / "long", name="long"), budget_epochs=30)
    proc = _cli("compare", str(ablation_run), str(longer), "--out", str(tmp_path / "cmp"), "--allow-mismatch")
    assert proc.returncode == 0, proc.stderr
    md = (tmp_path / "cmp" / "report.md").read_text().splitlines()
    assert md[2] == ("> **Warning:** These runs are not like for like (budget: quick has 4 epochs, long has 30 "
                     "epochs): their accuracies, and any delta between them, compare different set-ups.")
    html = (tmp_path / "cmp" / "report.html").read_text()
    assert html.index('<div class="warning" role="alert">') < html.index('<section id="finding"')


@pytest.mark.parametrize(("changes", "phrase"), [
    ({"budget_epochs": 8}, "budget: quick has 4 epochs, other has 8 epochs"),
    ({"objectives": {"val_acc": "max", "gmacs": "min"}},
     "objectives: quick has val_acc (max), other has val_acc (max), gmacs (min)"),
    ({"input_size": 16}, "input size: quick has 8, other has 16"),
])
def test_write_comparison_refuses_each_mismatched_field(tmp_path, ablation_run, changes, phrase):
    other = _edited(build_ablation(tmp_path / "other", name="other"), **changes)
    with pytest.raises(ReportError) as err:
        write_comparison([ablation_run, other], out=tmp_path / "cmp")
    assert str(err.value) == f"runs are not like for like: {phrase}; {MISMATCH_FIX}"


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


def test_write_report_two_seeds_finding_follows_the_t_interval(tmp_path):
    run = _two_seed_ablation(tmp_path / "quick")
    md = write_report(run).with_name("report.md").read_text()
    # conv - both per seed: +3, +2 pp; with 1 degree of freedom the interval is wide and includes 0
    assert "- conv: no clear difference from both: +2.50 pp val_acc, 95% CI [-3.85, +8.85] pp includes 0 " \
           "(paired t over 2 seeds)." in md
    assert "| conv | 2 | 93.50 ± 0.71% | 92.50 ± 0.71% | +2.50 pp | [-3.85, +8.85] pp | paired t | 6.00 | 7.00 |" in md
    assert "Fewer than 3 complete seeds: both, content_only, positional_only, conv;" in md


def test_write_report_finding_says_higher_or_lower_only_when_the_interval_excludes_0(ablation_run):
    md = write_report(ablation_run).with_name("report.md").read_text()
    finding = md.split("## Finding")[1].split("## ")[0]
    assert re.findall(r"^- (\w+): (val_acc (?:higher|lower) than|no clear difference from) both", finding,
                      flags=re.M) == [("content_only", "val_acc lower than"), ("positional_only", "val_acc lower than"),
                                      ("conv", "no clear difference from")]
    assert ("- Clear differences from both at 95%: content_only (lower), positional_only (lower); no clear "
            "difference for conv. With 3 intervals at 95% each, about one in 20 would exclude 0 by chance even with no "
            "real difference.") in finding
    assert "(95% CI [-7.99, -3.01] pp; Welch t, 2 vs 3 seeds)" in finding  # content_only lost seed 2


def test_write_report_finding_no_clear_difference_names_what_is_unresolved(tmp_path):
    run = build_ablation(tmp_path / "quick")
    results = pd.read_csv(run / "results.csv")
    results.loc[results["variant"] != "both", "val_acc"] = [0.91, 0.90, 0.92, 0.85, 0.86, 0.10, 0.92, 0.91, 0.90]
    results.to_csv(run / "results.csv", index=False)
    md = write_report(run).with_name("report.md").read_text()
    assert re.search(r"^- No variant differs clearly from both: every 95% interval includes 0, and they reach "
                     r"±\d\.\d\d to ±\d+\.\d\d pp, so differences smaller than that are not resolved by these seeds\.$",
                     md, flags=re.M)


def test_write_report_search_finding_first_with_best_trial(search_run):
    md = write_report(search_run).with_name("report.md").read_text()
    finding = md.split("## Finding\n\n")[1].split("\n## ")[0]
    assert finding.splitlines()[0] == ("- Best val_acc: 92.00%, by trial_3 (test 91.00%; 8.00 MMACs, 9.00K params): "
                                       "gsa.heads=4, width_mult=1.5, train.lr=0.005.")
    assert "- Not compared: 2 pruned, 1 failed, 1 infeasible of 10 trials (see Excluded trials)" in finding
    assert "![val_acc against compute; dashed, circled: the Pareto front.](figures/acc_vs_gmacs.png)" in finding


def test_write_report_run_details_last_and_folded(ablation_run):
    html = write_report(ablation_run).read_text()
    assert html.index('<section id="finding" class="lead">') < html.index('<section id="ablation">')
    assert html.index('<section id="excluded-trials">') < html.index('<details class="run"><summary>Run details')
    assert html.index("<h1>") < html.index('<p class="question"><strong>Question:</strong> hand-built ablation run')
    md = (ablation_run / "report.md").read_text()
    assert md.index("## Run details") > md.index("## Excluded trials")
    assert md.splitlines()[2] == "**Question:** hand-built ablation run"


def test_write_report_edf_says_how_trials_were_sampled(search_run):
    study = yaml.safe_load((search_run / "study.yaml").read_text())
    (search_run / "study.yaml").write_text(yaml.safe_dump({**study, "sampler": {"name": "tpe", "seed": 0},
                                                           "pruner": {"name": "median"}}))
    md = write_report(search_run).with_name("report.md").read_text()
    edf = md.split("## Error EDFs")[1].split("## ")[0]
    assert "Their EDFs assume trials drawn uniformly at random from the design space." in edf
    assert "These trials were not: TPE draws more trials near those that scored well." in edf
    assert ("Only complete trials enter the curves; 2 pruned trial(s) (stopped early by the median pruner) and 1 "
            "infeasible trial(s) (over the compute budget, never trained) are left out.") in edf
    assert "| sampler / pruner | tpe / median |" in md


def test_write_report_edf_of_random_search_is_uniform(search_run):
    study = yaml.safe_load((search_run / "study.yaml").read_text())
    (search_run / "study.yaml").write_text(yaml.safe_dump({**study, "sampler": {"name": "random"}}))
    md = write_report(search_run).with_name("report.md").read_text()
    assert "These trials were drawn uniformly at random, as the method assumes." in md


def test_write_report_edf_of_ablation_is_seed_spread(ablation_run):
    md = write_report(ablation_run).with_name("report.md").read_text()
    assert ("each curve is one variant's seeds: it shows seed-to-seed spread around that variant, not a sample of a "
            "design space.") in md


def test_write_report_leaderboard_top_n_of_many(search_run):
    from reports import compose

    results = pd.read_csv(search_run / "results.csv")
    pd.concat([results] * 4, ignore_index=True).assign(trial_id=lambda f: [f"t{i}" for i in range(len(f))]) \
        .to_csv(search_run / "results.csv", index=False)
    md = write_report(search_run).with_name("report.md").read_text()
    assert f"Top {compose.LEADERBOARD_ROWS} of 24 complete trials by val_acc, best first." in md


def test_write_report_pareto_headers_for_people(search_run):
    md = write_report(search_run).with_name("report.md").read_text()
    assert ("| variant | val acc | test acc | MMACs | params (K) | act. memory (MB) | gsa.heads | width_mult "
            "| train.lr |") in md
    pareto = pd.read_csv(search_run / "tables" / "pareto.csv")
    assert ["gmacs", "act_mb", "val_acc"] == [c for c in pareto.columns if c in ("gmacs", "act_mb", "val_acc")]


def test_write_report_ablation_pareto_is_on_variant_means(ablation_run):
    md = write_report(ablation_run).with_name("report.md").read_text()
    assert ("| variant | seeds | val acc | test acc | MMACs | params (K) |\n|---|---|---|---|---|---|\n"
            "| conv | 3 | 93.00 ± 1.00% | 92.00 ± 1.00% | 6.00 | 7.00 |") in md
    pareto = pd.read_csv(ablation_run / "tables" / "pareto.csv")
    assert pareto["variant"].tolist() == ["conv", "both", "positional_only", "content_only"]


def test_write_report_dash_means_not_applicable(search_run):
    md = write_report(search_run).with_name("report.md").read_text()
    assert ("“—” in a table means not applicable: a parameter that was inactive in that trial, or a GSA "
            "setting of a conv net.") in md.split("## Leaderboard")[1].split("## ")[0]


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
