"""Ray Tune + Optuna wiring: the only package that imports Ray.

`tuner.run_session` runs one Tune experiment; `searcher` (Optuna ask/tell, budgets) and
`scheduler` (pruning) keep the Optuna `ledger`; `trainable` trains a trial named by a
`trial_config.TrialConfig`; `plan` decides what a session launches; `space_compile` turns a
study's space into Optuna suggestions; `ray_env` quiets Ray at the process edge; `cluster`
joins the user's Ray or starts one. Names are imported lazily (by importlib, declared in
tests/test_architecture.py) so that a Tune worker loading `trainable` pays only for torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__all__ = ["run_session", "start_ray", "check_storage_reach", "stop_ray", "cluster_resources", "SessionOutcome",
           "Ledger", "open_study", "GsaTrainable"]

_WHERE = {
    "run_session": "search.tune.tuner", "start_ray": "search.tune.cluster", "stop_ray": "search.tune.tuner",
    "check_storage_reach": "search.tune.cluster",
    "cluster_resources": "search.tune.tuner", "SessionOutcome": "search.tune.tuner",
    "Ledger": "search.tune.ledger", "open_study": "search.tune.ledger", "GsaTrainable": "search.tune.trainable",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'search.tune' has no attribute {name!r}")
    return getattr(import_module(_WHERE[name]), name)
