"""End to end: a shrunk quickstart ablation through run_from_cli, real Ray, Optuna and SQLite.

One run (module fixture, about 40 s on 2 cores) backs every test: results.csv rows, the Optuna
ledger, the run directory files, and that the data set was loaded once and put once.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path

import optuna
import pandas as pd
import pytest
import ray
import yaml
from optuna.trial import TrialState

import search.data
import search.tune.progress
from search.runner import run_from_cli

pytestmark = pytest.mark.slow

SETS = {"train.epochs": 2, "seeds": [0, 1], "max_concurrent": 2,
        "variants": {"both": {}, "conv": {"model.variant": "resnet_tiny"}}}
KEYS = ["both-s0", "both-s1", "conv-s0", "conv-s1"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    calls = {"load": 0, "put_data": 0}
    real_load, real_put = search.data.load_data, ray.put

    def counting_load(cfg):
        calls["load"] += 1
        return real_load(cfg)

    def counting_put(value, *args, **kwargs):
        if isinstance(value, search.data.DataSplits):
            calls["put_data"] += 1
        return real_put(value, *args, **kwargs)

    mp = pytest.MonkeyPatch()
    mp.setattr(search.data, "load_data", counting_load)
    mp.setattr(ray, "put", counting_put)
    mp.setattr(search.tune.progress, "LOG_EVERY_S", 5.0)  # a log's line a minute is longer than this run
    stdout = io.StringIO()
    try:
        with contextlib.redirect_stdout(stdout):
            code = run_from_cli(study="quickstart", name="abl", out=str(out), overrides=SETS, report=False)
    finally:
        mp.undo()
    return {"code": code, "dir": out / "abl", "calls": calls, "stdout": stdout.getvalue()}


def test_run_ablation_exit_code_zero(run):
    assert run["code"] == 0


def test_run_ablation_one_complete_row_per_trial(run):
    frame = pd.read_csv(run["dir"] / "results.csv")
    assert sorted(frame["trial_id"]) == KEYS
    assert list(frame["state"]) == ["complete"] * 4
    assert list(frame["epochs"]) == [2] * 4 and list(frame["budget_epochs"]) == [2] * 4
    assert frame["test_acc"].notna().sum() == 4
    assert list(frame.columns[:8]) == ["trial_id", "variant", "seed", "state", "reason", "epochs",
                                       "budget_epochs", "model.variant"]
    assert dict(zip(frame["variant"], frame["model.variant"])) == {"both": "gsa_resnet_tiny", "conv": "resnet_tiny"}


def test_run_ablation_parquet_matches_csv(run):
    csv = pd.read_csv(run["dir"] / "results.csv")
    parquet = pd.read_parquet(run["dir"] / "results.parquet")
    assert list(parquet["trial_id"]) == list(csv["trial_id"])
    assert parquet["val_acc"].tolist() == pytest.approx(csv["val_acc"].tolist())


def test_run_ablation_curves_have_every_epoch(run):
    curves = pd.read_csv(run["dir"] / "curves.csv")
    assert len(curves) == 8
    assert sorted(curves.groupby("trial_id")["epoch"].apply(list).tolist()) == [[1, 2]] * 4


def test_run_ablation_optuna_records_enqueued_trials_complete(run):
    study = optuna.load_study(study_name="abl", storage=f"sqlite:///{run['dir'] / 'optuna.db'}")
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
    assert sorted(t.user_attrs["trial_key"] for t in trials) == KEYS
    assert {t.user_attrs["gsa_state"] for t in trials} == {"complete"}
    assert [t.user_attrs["epochs"] for t in trials] == [2] * 4
    frame = pd.read_csv(run["dir"] / "results.csv").set_index("trial_id")
    for t in trials:  # what Optuna was told is the final epoch's val_acc
        assert t.value == pytest.approx(frame.loc[t.user_attrs["trial_key"], "val_acc"])
        assert sorted(t.intermediate_values) == [1, 2]


def test_run_ablation_run_json_and_env_json(run):
    meta = json.loads((run["dir"] / "run.json").read_text())
    assert (meta["status"], meta["kind"], meta["optuna_study"], meta["budget_epochs"]) == ("finished", "ablation", "abl", 2)
    assert meta["space_fields"] == ["model.variant"] and meta["baseline"] == "both"
    assert meta["storage"].startswith("sqlite:///") and meta["storage"].endswith("abl/optuna.db")
    env = json.loads((run["dir"] / "env.json").read_text())
    assert set(env["packages"]) == {"torch", "ray", "optuna", "pandas", "fvcore", "numpy"}
    assert set(env["hardware"]) == {"cpu", "cores", "gpu", "memory_gb"}


def test_run_ablation_study_yaml_reads_back(run):
    doc = yaml.safe_load((run["dir"] / "study.yaml").read_text())
    assert doc["train"]["epochs"] == 2 and sorted(doc["variants"]) == ["both", "conv"]


def test_run_ablation_loads_data_once_and_puts_it_once(run):
    assert run["calls"] == {"load": 1, "put_data": 1}


def test_run_ablation_checkpoints_per_trial_key(run):
    # Tune's checkpoints under RUN_DIR/tune (the default --storage-path), the latest one's URI in Optuna
    study = optuna.load_study(study_name="abl", storage=f"sqlite:///{run['dir'] / 'optuna.db'}")
    latest = {t.user_attrs["trial_key"]: Path(t.user_attrs["checkpoint"]) for t in study.trials}
    assert sorted(latest) == KEYS
    tune_dir = (run["dir"] / "tune" / "session_1").resolve()
    assert {k: (p.parent.parent, p.parent.name.startswith(k), p.name, (p / "trainer.pt").is_file())
            for k, p in latest.items()} == {k: (tune_dir, True, "checkpoint_000001", True) for k in KEYS}


def test_run_ablation_progress_counts_both_concurrent_trials(run):
    pattern = r"\| (\d+) running(?: \([^)]*\))?(?:, (\d+) starting)? \|"
    live = [int(m[0]) + int(m[1] or 0) for m in re.findall(pattern, run["stdout"])]
    assert max(live) == 2  # max_concurrent 2: launched trials count while their workers start


def test_run_ablation_final_line_counts_records(run):
    assert f"abl: finished; 4 records: 4 complete; results in {run['dir'] / 'results.csv'}" in run["stdout"]


def test_run_ablation_variant_is_a_categorical_optuna_param_and_val_acc_is_named(run):
    study = optuna.load_study(study_name="abl", storage=f"sqlite:///{run['dir'] / 'optuna.db'}")
    assert study.metric_names == ["val_acc"]
    variants = optuna.distributions.CategoricalDistribution(("both", "conv"))
    for t in study.get_trials():
        assert (t.params, t.distributions) == ({"variant": t.user_attrs["variant"]}, {"variant": variants})
