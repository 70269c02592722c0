"""The compute ledger of a run: what training cost, and what pruning saved.

Trained trials (complete, pruned, failed) count epochs and trial-hours; infeasible trials were
never trained, so they are counted apart with no hours. Pruning's saving is measured against
training every pruned trial to its full budget.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import pandas as pd

from reports import columns as C
from reports import formatting as fmt

SECONDS_PER_HOUR = 3600.0


@dataclass(frozen=True)
class Ledger:
    """Totals over a run's trials; `saved_share` is NaN when nothing was trained."""

    trials: int
    complete: int
    pruned: int
    failed: int
    infeasible: int
    epochs_trained: int
    trial_hours: float
    pruned_epochs_saved: int
    full_budget_epochs: int
    saved_share: float

    def to_frame(self) -> pd.DataFrame:
        """Two columns, `quantity` and `value`: one row per field, in declaration order."""
        items = asdict(self)
        return pd.DataFrame({"quantity": list(items), "value": [float(v) for v in items.values()]})


def compute_ledger(trials: pd.DataFrame) -> Ledger:
    """Epochs trained, trial-hours, and the epochs and share saved by pruning.

    - epochs_trained: epochs of complete, pruned and failed trials;
    - trial_hours: their wall_s summed, in hours (infeasible trials excluded);
    - pruned_epochs_saved: sum over pruned trials of budget_epochs - epochs;
    - full_budget_epochs: epochs_trained + pruned_epochs_saved, the cost had no trial been pruned;
    - saved_share: pruned_epochs_saved / full_budget_epochs.
    """
    missing = [c for c in (C.STATE, C.EPOCHS, C.BUDGET_EPOCHS, C.WALL_S) if c not in trials.columns]
    if missing:
        raise KeyError(f"trials frame has no column(s) {missing}; it has {list(trials.columns)}")
    unknown = sorted(set(trials[C.STATE]) - set(C.STATES))
    if unknown:
        raise ValueError(f"state must be one of {C.STATES}, but got {unknown}")
    counts = trials[C.STATE].value_counts()
    trained = trials[trials[C.STATE] != C.INFEASIBLE]
    pruned = trials[trials[C.STATE] == C.PRUNED]
    epochs = int(trained[C.EPOCHS].sum())
    saved = int((pruned[C.BUDGET_EPOCHS] - pruned[C.EPOCHS]).clip(lower=0).sum())
    full = epochs + saved
    return Ledger(
        trials=int(len(trials)),
        complete=int(counts.get(C.COMPLETE, 0)),
        pruned=int(counts.get(C.PRUNED, 0)),
        failed=int(counts.get(C.FAILED, 0)),
        infeasible=int(counts.get(C.INFEASIBLE, 0)),
        epochs_trained=epochs,
        trial_hours=float(trained[C.WALL_S].fillna(0.0).sum()) / SECONDS_PER_HOUR,
        pruned_epochs_saved=saved,
        full_budget_epochs=full,
        saved_share=saved / full if full else float("nan"),
    )


def ledger_table(ledger: Ledger) -> pd.DataFrame:
    """The ledger as the report's (quantity, value) table."""
    rows = [
        ("trials (complete / pruned / failed / infeasible)",
         f"{ledger.trials} ({ledger.complete} / {ledger.pruned} / {ledger.failed} / {ledger.infeasible})"),
        ("epochs trained", str(ledger.epochs_trained)),
        ("trial-hours (infeasible trials take none)", fmt.sig3(ledger.trial_hours)),
        ("epochs saved by pruning", str(ledger.pruned_epochs_saved)),
        ("epochs had no trial been pruned", str(ledger.full_budget_epochs)),
        ("share of training saved by pruning", fmt.pct(ledger.saved_share)),
    ]
    return pd.DataFrame(rows, columns=["quantity", "value"])
