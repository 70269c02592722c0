"""Tune schedulers that write every epoch into the Optuna ledger and apply the study's pruner.

Tune asks the scheduler before the searcher about each result, so the scheduler is where the
epoch's value is reported to Optuna and the pruner consulted (`OptunaPrunerScheduler`), or
where Ray's ASHA decides (`LedgerASHA`), with the epoch recorded first either way.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler, TrialScheduler

from reports.run_dir import ATTR_CHECKPOINT_REJECTED, ATTR_REASON
from search.tune.ledger import OBJECTIVE_METRIC, Ledger
from search.tune.trial_config import CHECKPOINT_REJECTED, RESTORED_HISTORY, RESULT_EPOCH, optuna_number



def record(ledger: Ledger, trial: Any, result: Mapping[str, Any]) -> None:
    """Write `result` (and any history a restored trainer carried) into the trial's record."""
    number = optuna_number(trial.config)
    if number is None:
        return
    if result.get(RESTORED_HISTORY):
        rows = json.loads(result[RESTORED_HISTORY])
        for row in rows:
            ledger.record_epoch(number, row)
        ledger.set_attrs(number, {"restored_epochs": len(rows)})
    if result.get(CHECKPOINT_REJECTED):
        ledger.set_attrs(number, {ATTR_CHECKPOINT_REJECTED: str(result[CHECKPOINT_REJECTED])})
    ledger.record_epoch(number, result)


def error_reason(trial: Any) -> str:
    """The last line of the trial's error (e.g. "RuntimeError: boom"), or a generic reason."""
    path = getattr(trial, "error_file", None)
    text = Path(path).read_text(errors="replace") if path and Path(path).exists() else ""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("Failure #")]
    for line in reversed(lines):
        if not line.startswith(("File ", "^", "~")):
            return f"error: {line}"[:500]
    return "error: the trial raised (see the Tune experiment's error.txt)"


class OptunaPrunerScheduler(FIFOScheduler):
    """FIFO scheduling; per epoch: report to Optuna, then STOP when the study's pruner says so.

    With `prune=False` (ablations, `pruner: none`, multi-objective) it only records.
    """

    def __init__(self, ledger: Ledger, *, prune: bool) -> None:
        super().__init__()
        self._ledger = ledger
        self._prune = prune and not ledger.multi_objective

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        record(self._ledger, trial, result)
        number = optuna_number(trial.config)
        if self._prune and number is not None and self._ledger.should_prune(number):
            return TrialScheduler.STOP
        return TrialScheduler.CONTINUE

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict) -> None:
        record(self._ledger, trial, result)

    def on_trial_error(self, tune_controller: Any, trial: Any) -> None:
        number = optuna_number(trial.config)
        if number is not None:
            self._ledger.set_attrs(number, {ATTR_REASON: error_reason(trial)})


class LedgerASHA(AsyncHyperBandScheduler):
    """Ray's ASHA on val_acc over epochs, recording each epoch in the ledger before deciding."""

    def __init__(self, ledger: Ledger, *, max_t: int, options: Mapping[str, Any]) -> None:
        opts = {"grace_period": 1, "reduction_factor": 3, "brackets": 1}
        opts.update(options)
        super().__init__(time_attr=RESULT_EPOCH, metric=OBJECTIVE_METRIC, mode="max", max_t=max_t, **opts)
        self._ledger = ledger

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        record(self._ledger, trial, result)
        return super().on_trial_result(tune_controller, trial, result)

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict) -> None:
        record(self._ledger, trial, result)
        if trial.trial_id in self._trial_info:
            super().on_trial_complete(tune_controller, trial, result)

    def on_trial_error(self, tune_controller: Any, trial: Any) -> None:
        number = optuna_number(trial.config)
        if number is not None:
            self._ledger.set_attrs(number, {ATTR_REASON: error_reason(trial)})
        super().on_trial_error(tune_controller, trial)


def make_scheduler(ledger: Ledger, *, pruner: str, options: Mapping[str, Any], max_t: int) -> TrialScheduler:
    """`asha` → LedgerASHA; any other name → OptunaPrunerScheduler (pruning unless `none`)."""
    if pruner == "asha":
        return LedgerASHA(ledger, max_t=max_t, options=options)
    return OptunaPrunerScheduler(ledger, prune=pruner != "none")
