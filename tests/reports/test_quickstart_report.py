"""A real (shrunk) quickstart run through `gsa-nas run` writes a report that a browser renders,
whose first screen (1280x800) answers the study's question and which never scrolls sideways at 700 px.

Real Ray, real Optuna, real digits training: 4 variants x 2 seeds x 2 epochs.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from test_html_browser import _check_page, check_first_screen, check_narrow_page, driver  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def quickstart_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    cmd = [sys.executable, "-m", "search.cli", "run", "quickstart", "--out", str(out),
           "--set", "train.epochs=2", "--set", "seeds=[0, 1]"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return out / "quickstart"


def test_quickstart_run_writes_report_files(quickstart_run):
    assert (quickstart_run / "report.html").is_file()
    assert (quickstart_run / "report.md").is_file()
    assert sorted(p.name for p in (quickstart_run / "figures").glob("*.png")) != []


def test_quickstart_ablation_table_has_every_variant_with_two_seeds(quickstart_run):
    table = pd.read_csv(quickstart_run / "tables" / "ablation.csv")
    assert sorted(table["variant"]) == ["both", "content_only", "conv", "positional_only"]
    assert table["n_seeds"].tolist() == [2, 2, 2, 2]


def test_quickstart_results_all_complete(quickstart_run):
    results = pd.read_csv(quickstart_run / "results.csv")
    assert len(results) == 8
    assert results["state"].tolist() == ["complete"] * 8
    assert results["epochs"].tolist() == [2] * 8


def test_quickstart_report_renders_in_chromium(driver, quickstart_run):  # noqa: F811
    _check_page(driver, quickstart_run / "report.html", n_images=5)


def test_quickstart_report_first_screen_and_narrow_page(driver, quickstart_run):  # noqa: F811
    check_first_screen(driver, quickstart_run / "report.html")
    check_narrow_page(driver, quickstart_run / "report.html")


def test_quickstart_report_finding_uses_t_intervals(quickstart_run):
    table = pd.read_csv(quickstart_run / "tables" / "ablation.csv")
    assert table["ci_method"].fillna("").tolist() == ["", "paired t", "paired t", "paired t"]
    md = (quickstart_run / "report.md").read_text()
    assert md.splitlines()[2] == "**Question:** Which branches of the GSA module matter on the embedded digits data?"
    assert md.splitlines()[4] == "## Finding"


def test_quickstart_report_cli_rewrites_it(quickstart_run, tmp_path):
    out = tmp_path / "again"
    done = subprocess.run([sys.executable, "-m", "search.cli", "report", str(quickstart_run), "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert (out / "report.html").is_file()
