"""Hand-built run directories following the run-directory contract (DESIGN.md §6, reports brief).

`build_ablation`: a 4-variant x 3-seed ablation with one failed trial; `build_search`: a search of
10 trials (complete, pruned, failed, infeasible) with a real SQLite Optuna storage.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import yaml

BUDGET = 4
ENV = {
    "python": "3.11.9", "platform": "Linux-x86_64",
    "packages": {"torch": "2.13.0", "ray": "2.60.0", "optuna": "5.0.0", "pandas": "3.1.1",
                 "fvcore": "0.1.5", "numpy": "2.3.0"},
    "git_revision": "abc1234", "hardware": {"cpu": "Test CPU", "cores": 2, "gpu": None, "memory_gb": 24},
}


def _run_json(name: str, kind: str, space_fields: list[str], **extra) -> dict:
    run = {
        "name": name, "description": f"hand-built {kind} run", "kind": kind, "status": "finished",
        "started": "2025-01-01T10:00:00", "finished": "2025-01-01T10:05:00", "wall_s": 300.0,
        "objectives": {"val_acc": "max"}, "baseline": None, "space_fields": space_fields,
        "data": {"name": "digits", "root": None}, "budget_epochs": BUDGET,
        "storage": "sqlite:///nowhere/optuna.db", "optuna_study": name,
        "resources": {"cpu": 1, "gpu": 0}, "max_concurrent": 2,
    }
    run.update(extra)
    return run


def _row(trial_id, variant, seed, state, epochs, fields, params, gmacs, acc, *, reason="", test=None, resolved=None):
    trained = state != "infeasible"
    return {"trial_id": trial_id, "variant": variant, "seed": seed, "state": state, "reason": reason,
            "epochs": epochs, "budget_epochs": BUDGET, **fields, "params": params, "gmacs": gmacs,
            "act_mb": 0.5, "val_acc": acc if trained else np.nan,
            "best_val_acc": acc if trained else np.nan, "best_epoch": epochs if trained else np.nan,
            "test_acc": (test if test is not None else acc - 0.01) if state == "complete" else np.nan,
            "wall_s": 36.0 * epochs, "images_per_sec": 500.0 if trained else np.nan, **(resolved or {})}


def _curves(rows: list[dict]) -> pd.DataFrame:
    out = []
    for row in rows:
        for epoch in range(1, row["epochs"] + 1):
            acc = row["val_acc"] * epoch / row["epochs"] if row["state"] != "failed" else 0.1
            out.append({"trial_id": row["trial_id"], "epoch": epoch, "train_loss": 2.0 / epoch,
                        "val_loss": 2.1 / epoch, "val_acc": acc, "lr": 1e-3, "images_per_sec": 500.0})
    return pd.DataFrame(out)


def write_run(path: Path, run: dict, rows: list[dict]) -> Path:
    """Write run.json, env.json, study.yaml, results.csv/.parquet and curves.csv under `path`."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "run.json").write_text(json.dumps(run))
    (path / "env.json").write_text(json.dumps(ENV))
    (path / "study.yaml").write_text(yaml.safe_dump({"name": run["name"], "kind": run["kind"],
                                                     "description": run["description"]}))
    frame = pd.DataFrame(rows)
    frame.to_csv(path / "results.csv", index=False)
    frame.to_parquet(path / "results.parquet", index=False)
    _curves(rows).to_csv(path / "curves.csv", index=False)
    return path


ABLATION_ACC = {  # variant -> val_acc per seed 0, 1, 2 (None: the trial failed)
    "both": [0.90, 0.92, 0.91], "content_only": [0.85, 0.86, None],
    "positional_only": [0.88, 0.89, 0.87], "conv": [0.93, 0.94, 0.92],
}
ABLATION_SIZE = {"both": (5000, 0.004), "content_only": (4500, 0.003),
                 "positional_only": (4800, 0.0035), "conv": (7000, 0.006)}


def build_ablation(path: Path, name: str = "quick", *, resolved: bool = True) -> Path:
    """`resolved=False`: a run written before results carried each trial's resolved fields."""
    fields = ["gsa.content", "gsa.positional", "model.variant"]
    values = {"both": (True, True, "gsa_resnet_tiny"), "content_only": (True, False, "gsa_resnet_tiny"),
              "positional_only": (False, True, "gsa_resnet_tiny"), "conv": (np.nan, np.nan, "resnet_tiny")}
    rows = []
    for variant, accs in ABLATION_ACC.items():
        for seed, acc in enumerate(accs):
            params, gmacs = ABLATION_SIZE[variant]
            f = dict(zip(fields, values[variant]))
            extra = {"gsa.heads": np.nan if variant == "conv" else 2, "width_mult": 1.0, "train.lr": 0.003}
            extra = extra if resolved else {}
            if acc is None:
                rows.append(_row(f"{variant}-s{seed}", variant, seed, "failed", 2, f, params, gmacs, 0.1,
                                 reason="diverged: loss is NaN at epoch 2", resolved=extra))
            else:
                rows.append(_row(f"{variant}-s{seed}", variant, seed, "complete", BUDGET, f, params, gmacs, acc,
                                 resolved=extra))
    run = _run_json(name, "ablation", fields, baseline="both",
                    resolved_fields=["gsa.heads", "width_mult", "train.lr"] if resolved else [])
    return write_run(path, run, rows)


SEARCH_TRIALS = [  # number, state, epochs, heads, width_mult, lr, params, gmacs, val_acc
    (0, "complete", 4, 1, 0.5, 1e-3, 3000, 0.002, 0.80),
    (1, "complete", 4, 2, 1.0, 3e-3, 5000, 0.004, 0.90),
    (2, "pruned", 2, 4, 0.75, 2e-3, 4000, 0.003, 0.50),
    (3, "complete", 4, 4, 1.5, 5e-3, 9000, 0.008, 0.92),
    (4, "infeasible", 0, 4, 1.5, 8e-3, 12000, 0.020, None),
    (5, "complete", 4, 2, 0.5, 1e-3, 3200, 0.0025, 0.85),
    (6, "failed", 1, 1, 1.0, 9e-3, 5000, 0.004, 0.10),
    (7, "complete", 4, 1, 1.25, 4e-3, 7000, 0.006, 0.88),
    (8, "pruned", 1, 2, 0.75, 2e-3, 4100, 0.0031, 0.40),
    (9, "complete", 4, 4, 0.75, 2e-3, 4200, 0.0032, 0.86),
]


def _storage(path: Path, name: str, objectives: dict[str, str]) -> str:
    url = f"sqlite:///{path / 'optuna.db'}"
    directions = ["maximize" if mode == "max" else "minimize" for mode in objectives.values()]
    study = optuna.create_study(storage=url, study_name=name, directions=directions)
    dists = {"gsa.heads": optuna.distributions.CategoricalDistribution([1, 2, 4]),
             "width_mult": optuna.distributions.FloatDistribution(0.5, 1.5, step=0.25),
             "train.lr": optuna.distributions.FloatDistribution(1e-3, 1e-2, log=True)}
    state_map = {"complete": optuna.trial.TrialState.COMPLETE, "pruned": optuna.trial.TrialState.PRUNED,
                 "infeasible": optuna.trial.TrialState.PRUNED, "failed": optuna.trial.TrialState.FAIL}
    for number, state, epochs, heads, mult, lr, _, gmacs, acc in SEARCH_TRIALS:
        inter = {e: (acc or 0.0) * e / max(epochs, 1) for e in range(1, epochs + 1)} if state != "infeasible" else {}
        if len(directions) == 1:
            inter_ok, values = inter, [acc]
        else:  # Optuna takes no intermediate values in a multi-objective study
            inter_ok, values = {}, [acc, gmacs]
        study.add_trial(optuna.trial.create_trial(
            state=state_map[state], values=values if state == "complete" else None,
            params={"gsa.heads": heads, "width_mult": mult, "train.lr": lr}, distributions=dists,
            intermediate_values=inter_ok,
            user_attrs={"gsa_state": state, "epochs": epochs, "trial_key": f"k{number}",
                        "variant": f"trial_{number}", "seed": 0}))
    return url


def build_search(path: Path, name: str = "search_small", objectives: dict[str, str] | None = None) -> Path:
    objectives = objectives or {"val_acc": "max"}
    fields = ["gsa.heads", "width_mult", "train.lr"]
    rows = []
    for number, state, epochs, heads, mult, lr, params, gmacs, acc in SEARCH_TRIALS:
        reason = {"failed": "worker lost after 2 retries", "infeasible": "gmacs 0.02 > max_gmacs 0.01"}.get(state, "")
        rows.append(_row(f"t{number:03d}", f"trial_{number}", 0, state, epochs,
                         dict(zip(fields, (heads, mult, lr))), params, gmacs, acc, reason=reason,
                         resolved={"model.variant": "gsa_resnet_tiny", "gsa.content": True, "gsa.positional": True}))
    path.mkdir(parents=True, exist_ok=True)
    url = _storage(path, name, objectives)
    run = _run_json(name, "search", fields, storage=url, objectives=objectives,
                    resolved_fields=["model.variant", "gsa.content", "gsa.positional"])
    return write_run(path, run, rows)
