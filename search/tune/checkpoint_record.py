"""A Tune callback that writes each trial's latest checkpoint URI into its Optuna trial.

Tune knows a trial's checkpoints only inside one experiment; a resumed run starts a new one, so
the URI goes into the ledger (user attribute `checkpoint`), where the searcher finds it for the
next attempt of the same trial key (`Ledger.latest_checkpoint`).
"""

from __future__ import annotations

from typing import Any

from ray.tune import Callback

from search.checkpoints import checkpoint_uri
from search.tune.ledger import Ledger
from search.tune.trial_config import optuna_number


class CheckpointRecorder(Callback):
    """On every persisted checkpoint: `ledger.record_checkpoint(number, URI)`.

    Args:
        ledger: the run's ledger; storage_path: the Tune storage path (local path or URI),
            whose scheme and query make a checkpoint's filesystem path a URI again.
    """

    def __init__(self, ledger: Ledger, storage_path: str) -> None:
        self._ledger, self._storage_path = ledger, storage_path

    def on_checkpoint(self, iteration: int, trials: list, trial: Any, checkpoint: Any, **info: Any) -> None:
        number = optuna_number(trial.config)
        if number is not None and checkpoint is not None:
            self._ledger.record_checkpoint(number, checkpoint_uri(self._storage_path, checkpoint.path))
