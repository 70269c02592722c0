"""End to end through the `gsa-nas run` CLI: searches with the median pruner, with ASHA, and a
multi-objective search under a compute budget (infeasible points never start a Ray trial).

Each run is a subprocess on digits with shrunk budgets (30-60 s on 2 cores); max_concurrent 1
makes the pruning decisions deterministic given the seeded sampler.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import optuna
import pandas as pd
import pytest
from optuna.study import StudyDirection
from optuna.trial import TrialState

pytestmark = pytest.mark.slow

BASE = ["max_concurrent=1", "sampler.seed=0", "train.batch_size=64"]


def gsa_nas_run(out: Path, name: str, sets: list[str], timeout: int = 300) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "search.cli", "run", "search_digits", "--out", str(out), "--name", name,
           "--no-report"]
    for item in BASE + sets:
        cmd += ["--set", item]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    (out / f"{name}.stdout").write_text(proc.stdout)  # beside the run directory, for the output tests
    (out / f"{name}.stderr").write_text(proc.stderr)
    return proc


def ledger(run_dir: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{run_dir / 'optuna.db'}")


@pytest.fixture(scope="module")
def median_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    gsa_nas_run(out, "med", ["num_samples=6", "train.epochs=4", "constraints={}",
                             "pruner={name: median, n_startup_trials: 2, n_warmup_steps: 1}"])
    return out / "med"


@pytest.fixture(scope="module")
def asha_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    gsa_nas_run(out, "asha", ["num_samples=5", "train.epochs=3", "constraints={}",
                              "pruner={name: asha, grace_period: 1, reduction_factor: 2}"])
    return out / "asha"


MULTI = "my-search"  # the run README.md's load_study snippet opens, runs/my-search


@pytest.fixture(scope="module")
def multi_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("multi") / "runs"
    out.mkdir()
    gsa_nas_run(out, MULTI, ["num_samples=3", "train.epochs=2", "objectives={val_acc: max, gmacs: min}",
                             "sampler={name: nsga2, seed: 0}", "pruner={name: none}",
                             "constraints={max_gmacs: 0.0012}"])
    return out / MULTI


def test_run_search_median_prunes_some_trials(median_run):
    states = [t.state for t in ledger(median_run, "med").get_trials()]
    assert states.count(TrialState.PRUNED) >= 1
    assert states.count(TrialState.COMPLETE) + states.count(TrialState.PRUNED) == 6


def test_run_search_median_complete_only_at_full_budget(median_run):
    for t in ledger(median_run, "med").get_trials():
        assert t.user_attrs["gsa_state"] in ("complete", "pruned")
        assert t.user_attrs["epochs"] == len(t.intermediate_values) == len(t.user_attrs["curve"])
        if t.state == TrialState.COMPLETE:
            assert t.user_attrs["epochs"] == 4
            assert t.value == t.intermediate_values[4]
        else:
            assert t.user_attrs["epochs"] < 4
            assert t.user_attrs["reason"] == f"stopped by the pruner at epoch {t.user_attrs['epochs']} of 4"


def test_run_search_median_results_match_ledger(median_run):
    frame = pd.read_csv(median_run / "results.csv")
    study = ledger(median_run, "med")
    assert len(frame) == 6
    assert list(frame["variant"]) == list(frame["trial_id"])
    assert list(frame["trial_id"]) == [t.user_attrs["trial_key"] for t in study.get_trials()]
    off = frame["gsa.positional"].astype(str) == "False"  # gsa.extent is sampled only when positional
    assert frame.loc[off, "gsa.extent"].isna().all() and frame.loc[~off, "gsa.extent"].notna().all()
    assert list(frame["epochs"]) == [t.user_attrs["epochs"] for t in study.get_trials()]
    assert frame.loc[frame["state"] == "pruned", "test_acc"].isna().all()
    meta = json.loads((median_run / "run.json").read_text())
    assert meta["space_fields"] == list(frame.columns[7:7 + len(meta["space_fields"])])


def test_run_search_asha_stops_trials_as_pruned_with_values(asha_run):
    trials = ledger(asha_run, "asha").get_trials()
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert len(pruned) >= 1 and len(trials) == 5
    for t in trials:
        assert t.user_attrs["epochs"] == len(t.intermediate_values)
        assert (t.state == TrialState.COMPLETE) == (t.user_attrs["epochs"] == 3)


def test_run_search_multi_objective_stores_two_directions_and_values(multi_run):
    study = ledger(multi_run, MULTI)
    assert study.directions == [StudyDirection.MAXIMIZE, StudyDirection.MINIMIZE]
    complete = [t for t in study.get_trials() if t.state == TrialState.COMPLETE]
    assert len(complete) == 3
    for t in complete:
        assert t.values[1] == pytest.approx(t.user_attrs["gmacs"])
        assert t.values[0] == t.user_attrs["curve"][-1]["val_acc"]
        assert t.intermediate_values == {}


def test_run_search_infeasible_points_start_no_ray_trial(multi_run):
    study = ledger(multi_run, MULTI)
    infeasible = [t for t in study.get_trials() if t.user_attrs["gsa_state"] == "infeasible"]
    assert len(infeasible) >= 1
    for t in infeasible:
        assert (t.state, t.intermediate_values, t.user_attrs["epochs"]) == (TrialState.PRUNED, {}, 0)
        assert len(t.system_attrs["constraints"]) == 1 and t.system_attrs["constraints"][0] > 0
        assert t.user_attrs["reason"].startswith("gmacs ") and "> max_gmacs 0.0012" in t.user_attrs["reason"]
    tune_trials = [p for p in (multi_run / "tune" / "session_1").iterdir() if p.is_dir()]
    assert len(tune_trials) == 3  # only the trained ones became Ray trials
    frame = pd.read_csv(multi_run / "results.csv")
    assert (frame["state"] == "infeasible").sum() == len(infeasible)
    assert frame.loc[frame["state"] == "infeasible", "val_acc"].isna().all()


def test_run_search_output_lines_are_plain_and_quiet(median_run):
    stdout = (median_run.parent / "med.stdout").read_text()
    stderr = (median_run.parent / "med.stderr").read_text()
    states = pd.read_csv(median_run / "results.csv")["state"].value_counts()
    counts = ", ".join(f"{states[s]} {s}" for s in ("complete", "pruned") if s in states)
    assert f"med: finished; 6 records: {counts}; results in" in stdout
    assert "Token authentication" not in stdout + stderr  # the local cluster's auth notice is muted


def test_run_search_names_metrics_and_stores_feasible_margins_as_constraints(multi_run):
    study = ledger(multi_run, MULTI)
    assert study.metric_names == ["val_acc", "gmacs"]
    for t in study.get_trials():
        margin = t.user_attrs["gmacs"] - 0.0012
        assert t.system_attrs["constraints"] == [pytest.approx(margin)]
        assert (margin > 0) == (t.user_attrs["gsa_state"] == "infeasible")


def readme_snippet(marker: str) -> str:
    """The ```python block of README.md that contains `marker`."""
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    found = [b for b in blocks if marker in b]
    assert len(found) == 1, f"README.md has {len(found)} python blocks with {marker!r}"
    return found[0]


def test_readme_load_study_snippet_runs_as_written(multi_run):
    snippet = readme_snippet("optuna.load_study")
    assert f'Path("runs/{MULTI}")' in snippet
    proc = subprocess.run([sys.executable, "-c", snippet], cwd=multi_run.parents[1], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert lines[0] == "['val_acc', 'gmacs']"
    assert "user_attrs_gsa_state" in lines[1] and len(lines) == 2 + len(ledger(multi_run, MULTI).trials)
