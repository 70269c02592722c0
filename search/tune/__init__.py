"""Ray Tune + Optuna wiring: the only package that imports Ray.

`run_session` runs one Tune experiment whose searcher and scheduler keep the Optuna ledger;
names are imported lazily so that a Tune worker loading `trainable` pays only for torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__all__ = ["run_session", "stop_ray", "SessionOutcome", "Ledger", "open_study", "GsaTrainable"]

_WHERE = {
    "run_session": "search.tune.tuner", "stop_ray": "search.tune.tuner", "SessionOutcome": "search.tune.tuner",
    "Ledger": "search.tune.ledger", "open_study": "search.tune.ledger", "GsaTrainable": "search.tune.trainable",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'search.tune' has no attribute {name!r}")
    return getattr(import_module(_WHERE[name]), name)
