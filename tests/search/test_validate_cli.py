"""Tests of `gsa-nas validate` and search.validate: the printed plan, compute, YAML; no Ray, no training."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from search.study import load_study, resolve_trial
from search.validate import plan_line, space_summary, validation_summary, variant_rows

REPO = Path(__file__).resolve().parents[2]

GRID = """
name: tiny_grid
kind: search
data: {name: digits}
model: {variant: gsa_resnet_tiny}
train: {epochs: 2}
space:
  gsa.heads: {choice: [1, 2]}
  gsa.extent: {choice: [3, global]}
sampler: {name: grid}
constraints: {max_gmacs: LIMIT}
"""


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "search.cli", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=300)


def _grid(tmp_path: Path, limit: float):
    path = tmp_path / "grid.yaml"
    path.write_text(GRID.replace("LIMIT", repr(limit)))
    return load_study(str(path))


def test_validate_cli_quickstart_prints_plan_and_variants() -> None:
    proc = _cli("validate", "quickstart", "--set", "train.epochs=2", "--set", "train.lr=1e-4")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "plan: 4 variants x 3 seeds = 12 trials, 2 epochs each, at most 2 at a time" in out
    for name in ("both (baseline)", "content_only", "positional_only", "conv"):
        assert f"\n  {name} " in out
    doc = yaml.safe_load(out.split("\n\n")[0])
    assert doc["train"]["epochs"] == 2
    assert doc["train"]["lr"] == 1e-4
    assert doc["name"] == "quickstart"


def test_validate_cli_output_yaml_loads_back(tmp_path: Path) -> None:
    proc = _cli("validate", "quickstart")
    path = tmp_path / "resolved.yaml"
    path.write_text(proc.stdout.split("\n\n")[0] + "\n")
    assert load_study(str(path)).variants == load_study("quickstart").variants


def test_validate_imports_no_ray() -> None:
    code = ("import sys; from search.study import load_study; from search.validate import validation_summary; "
            "validation_summary(load_study('quickstart')); print('ray' in sys.modules, 'optuna' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.stdout.split() == ["False", "False"], proc.stderr


def test_variant_rows_match_built_networks() -> None:
    from gsa_space.networks import build_net

    study = load_study("quickstart")
    rows = variant_rows(study)
    assert [r["variant"] for r in rows] == ["both", "content_only", "positional_only", "conv"]
    assert [r["gsa_stages"] for r in rows] == [(1, 2, 3)] * 3 + [()]
    for row in rows:
        net = build_net(resolve_trial(study, variant=row["variant"], seed=0, params={}).net)
        assert row["params"] == sum(p.numel() for p in net.parameters())
    both, content, positional, conv = (r["gmacs"] for r in rows)
    assert content < both and positional < both
    assert conv > 0


def test_plan_line_grid_counts_points(tmp_path: Path) -> None:
    study = _grid(tmp_path, 1.0)
    assert plan_line(study).startswith("plan: a grid of 4 points from the grid sampler (unseeded), 2 epochs each")


@pytest.mark.parametrize("limit, over", [(1e-9, 4), (1.0, 0)])
def test_space_summary_counts_samples_over_budget(tmp_path: Path, limit: float, over: int) -> None:
    info = space_summary(_grid(tmp_path, limit), samples=4)
    assert (info["samples"], info["over_budget"], info["invalid"]) == (4, over, 0)
    lo, hi = info["params"]
    assert 0 < lo <= hi


def test_validation_summary_search_reports_budget_line(tmp_path: Path) -> None:
    text = validation_summary(_grid(tmp_path, 1.0), samples=3)
    assert "constraints (max_gmacs 1): 0 of 3 samples over budget, 0 impossible networks" in text
    assert "study 'tiny_grid' (search) is valid" in text


def test_validation_summary_refuses_a_space_nearly_all_over_budget(tmp_path: Path) -> None:
    study = _grid(tmp_path, 1e-9)
    with pytest.raises(ValueError) as err:
        validation_summary(study, samples=10)
    assert str(err.value) == (f"{study.source}: constraints: 10 of 10 sampled points are over budget (max_gmacs "
                              f"1e-09); at least 90% is too many to search: relax the constraints or shrink the space")


def test_validate_cli_over_budget_space_exits_2_with_one_line(tmp_path: Path) -> None:
    proc = _cli("validate", str(_grid(tmp_path, 1e-9).source))
    assert (proc.returncode, proc.stdout, proc.stderr.count("\n")) == (2, "", 1)
    assert "sampled points are over budget (max_gmacs 1e-09)" in proc.stderr


def test_validate_cli_missing_path_says_no_such_study_file() -> None:
    proc = _cli("validate", "studies/nope.yaml")
    assert proc.returncode == 2
    assert proc.stderr.startswith("gsa-nas: error: no such study file studies/nope.yaml (or give a study name: ")
    assert "studies/studies" not in proc.stderr and ".yaml.yaml" not in proc.stderr


def test_validate_cli_network_shorthand_set_is_applied() -> None:
    proc = _cli("validate", "quickstart", "--set", "gsa.heads=2", "--set", "train.epochs=2")
    assert proc.returncode == 0, proc.stderr
    doc = yaml.safe_load(proc.stdout.split("\n\n")[0])
    assert doc["model"] == {"variant": "gsa_resnet_tiny", "gsa.heads": 2}


def test_validation_summary_ablation_macs_column_shares_one_unit() -> None:
    text = validation_summary(load_study("quickstart"))
    header = next(line for line in text.splitlines() if line.lstrip().startswith("variant "))
    assert header.split()[-2:] == ["MACs", "act_mb"]
    rows = text.splitlines()[-4:]
    macs = [row.split()[-2] for row in rows]
    assert all(re.fullmatch(r"\d\.\d{3}M", m) for m in macs), macs


def test_validation_summary_search_range_in_the_budget_unit(tmp_path: Path) -> None:
    text = validation_summary(_grid(tmp_path, 0.002), samples=4)
    line = next(line for line in text.splitlines() if line.startswith("  params "))
    assert re.fullmatch(r"  params \S+ \.\. \S+; MACs \d\.\d{3}M \.\. \d\.\d{3}M \(max_gmacs 0\.002 = 2\.000M\)", line), line


def test_validate_cli_unknown_logger_exits_2_with_one_line() -> None:
    proc = _cli("validate", "quickstart", "--set", "loggers=[csv, tensorflow]")
    assert (proc.returncode, proc.stdout, proc.stderr.count("\n")) == (2, "", 1)
    assert "loggers[1]: unknown logger 'tensorflow'; expected one of: json, csv, tensorboard, mlflow, wandb" in proc.stderr
