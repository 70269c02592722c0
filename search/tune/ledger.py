"""The Optuna storage as the run's ledger: every trial's state, epochs, curve and reason.

Per-epoch values go in as intermediate values (single objective) and as a `curve` user
attribute (always), so results.csv and a resume can be rebuilt from the storage alone.
Trials are found by their Optuna number, stored in the Tune trial's config. What Optuna's own
tools show is written here too: the objectives' metric names, each trial's compute-budget
margins (the `constraints` system attribute) and an ablation trial's variant (a parameter).
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Mapping, Sequence

import optuna
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState

from reports.run_dir import (ATTR_CHECKPOINT, ATTR_CURVE, ATTR_EPOCHS, ATTR_REASON, ATTR_RETRY_OF, ATTR_SEED,
                             ATTR_STATE, ATTR_TRIAL_KEY, ATTR_VARIANT, COMPLETE, CURVE_KEYS, FAILED, INFEASIBLE, INTERRUPTED, PRUNED,
                             STUDY_RUN_ID, STUDY_SUPERSEDED_BY, VAL_ACC)

OBJECTIVE_METRIC = VAL_ACC  # what pruners and ASHA watch, and what Optuna is told per epoch
# The trial system attribute that Optuna (`FrozenTrial.constraints`, its samplers and plots) and
# optuna-dashboard both read: a list of floats, one per budget, > 0 where the budget is broken.
# (Optuna's `Trial.set_constraint` writes "constraints:<name>" keys instead, which the dashboard
# does not read; writing both would count each budget twice.)
CONSTRAINTS_ATTR = "constraints"
VARIANT_PARAM = ATTR_VARIANT  # an ablation trial's variant, as an Optuna parameter


class Ledger:
    """Reads and writes one Optuna study's trials by trial number (no Ray here)."""

    def __init__(self, study: optuna.Study) -> None:
        self.study = study
        self._storage = study._storage
        self._study_id = study._study_id
        self._ids: dict[int, int] = {}

    def __reduce__(self) -> tuple:
        # Tune pickles searchers and schedulers (and so this ledger) into its experiment state;
        # the storage, with any password in its URL, must not go with them. gsa-nas never
        # restores a Tune experiment: a resume opens the storage anew.
        return (DetachedLedger, ())

    @property
    def multi_objective(self) -> bool:
        return len(self.study.directions) > 1

    def trial_id(self, number: int) -> int:
        """Storage id of trial `number` (numbers are what travel with Tune trials)."""
        if number not in self._ids:
            self._ids[number] = self._storage.get_trial_id_from_study_id_trial_number(self._study_id, number)
        return self._ids[number]

    def frozen(self, number: int) -> optuna.trial.FrozenTrial:
        return self._storage.get_trial(self.trial_id(number))

    def set_attrs(self, number: int, attrs: Mapping[str, Any]) -> None:
        tid = self.trial_id(number)
        for key, value in attrs.items():
            self._storage.set_trial_user_attr(tid, key, value)

    def set_constraints(self, number: int, values: Sequence[float]) -> None:
        """Store the trial's constraint values (value - limit per budget, in the study's order)."""
        self._storage.set_trial_system_attr(self.trial_id(number), CONSTRAINTS_ATTR, [float(v) for v in values])

    def set_variant(self, number: int, variant: str, names: Sequence[str]) -> None:
        """Record an ablation trial's variant as the categorical parameter `variant` over `names`,
        so that Optuna's plots and the dashboard slice by it (an enqueued arm samples nothing)."""
        dist = CategoricalDistribution(tuple(names))
        self._storage.set_trial_param(self.trial_id(number), VARIANT_PARAM, dist.to_internal_repr(variant), dist)

    def record_epoch(self, number: int, result: Mapping[str, Any]) -> bool:
        """Add one epoch's metrics to the trial's curve (idempotent per epoch).

        Returns whether the epoch was new. A retried or resumed trial that reports an epoch
        again replaces it and drops any later ones.
        """
        if OBJECTIVE_METRIC not in result or "epoch" not in result:
            return False
        epoch = int(result["epoch"])
        tid = self.trial_id(number)
        frozen = self._storage.get_trial(tid)
        if frozen.state.is_finished():
            return False
        curve = [row for row in frozen.user_attrs.get(ATTR_CURVE, []) if row["epoch"] < epoch]
        known = any(row["epoch"] == epoch for row in frozen.user_attrs.get(ATTR_CURVE, []))
        curve.append({k: _plain(result[k]) for k in CURVE_KEYS if k in result})
        self._storage.set_trial_user_attr(tid, ATTR_CURVE, curve)
        self._storage.set_trial_user_attr(tid, ATTR_EPOCHS, epoch)
        value = float(result[OBJECTIVE_METRIC])
        if not self.multi_objective and math.isfinite(value):
            self._storage.set_trial_intermediate_value(tid, epoch, value)
        return not known

    def record_checkpoint(self, number: int, uri: str) -> None:
        """Remember the trial's latest checkpoint URI (ignored once the trial is finished)."""
        tid = self.trial_id(number)
        if not self._storage.get_trial(tid).state.is_finished():
            self._storage.set_trial_user_attr(tid, ATTR_CHECKPOINT, uri)

    def latest_checkpoint(self, trial_key: str) -> str | None:
        """The checkpoint URI the latest attempt of `trial_key` recorded (an interrupted or failed
        attempt, continued by a resume or `--retry-failed`); None when no attempt saved one."""
        found = [t for t in self.study.get_trials(deepcopy=False)
                 if t.user_attrs.get(ATTR_TRIAL_KEY) == trial_key and t.user_attrs.get(ATTR_CHECKPOINT)]
        return max(found, key=lambda t: t.number).user_attrs[ATTR_CHECKPOINT] if found else None

    def should_prune(self, number: int) -> bool:
        """Ask the study's pruner about the trial's intermediate values so far."""
        if self.multi_objective:
            return False
        trial = optuna.trial.Trial(self.study, self.trial_id(number))
        return trial.should_prune()

    def finish(self, number: int, state: str, *, values: Sequence[float] | None = None,
               reason: str = "", attrs: Mapping[str, Any] | None = None) -> None:
        """Close the trial: complete → COMPLETE(values); pruned/infeasible → PRUNED; failed → FAIL."""
        frozen = self.frozen(number)
        if frozen.state.is_finished():
            return
        extra = dict(attrs or {})
        extra[ATTR_STATE] = state
        extra.setdefault(ATTR_EPOCHS, int(frozen.user_attrs.get(ATTR_EPOCHS, 0)))
        if reason or state == COMPLETE:  # a complete trial keeps no error of an attempt it recovered from
            extra[ATTR_REASON] = reason
        self.set_attrs(number, extra)
        if state == COMPLETE:
            self.study.tell(number, values=list(values or ()), state=TrialState.COMPLETE)
        elif state in (PRUNED, INFEASIBLE):
            self.study.tell(number, state=TrialState.PRUNED)
        elif state == FAILED:
            self.study.tell(number, state=TrialState.FAIL)
        else:
            raise ValueError(f"state must be one of complete, pruned, failed, infeasible, but got state={state!r}")

    def close_running(self, reason: str = INTERRUPTED) -> list[optuna.trial.FrozenTrial]:
        """Close every RUNNING trial as FAIL with `reason` (after a crash or Ctrl-C)."""
        running = self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        for frozen in running:
            self._storage.set_trial_user_attr(frozen._trial_id, ATTR_STATE, FAILED)
            self._storage.set_trial_user_attr(frozen._trial_id, ATTR_REASON, reason)
            self.study.tell(frozen.number, state=TrialState.FAIL)
        return running

    def finished_records(self) -> list[optuna.trial.FrozenTrial]:
        """The current record of each trial key: its latest finished attempt that was not closed as
        interrupted (an attempt `--retry-failed` started supersedes the failed one once it finishes)."""
        latest: dict[Any, optuna.trial.FrozenTrial] = {}
        for t in self.study.get_trials(deepcopy=False):
            if t.state.is_finished() and t.user_attrs.get(ATTR_REASON) != INTERRUPTED and ATTR_STATE in t.user_attrs:
                key = t.user_attrs.get(ATTR_TRIAL_KEY, ("number", t.number))
                if key not in latest or t.number > latest[key].number:
                    latest[key] = t
        return sorted(latest.values(), key=lambda t: t.number)

    def superseded(self) -> dict[int, int]:
        """Failed attempt's Optuna number -> the number of the attempt `--retry-failed` made of it."""
        return {int(k): int(v) for k, v in self.study.user_attrs.get(STUDY_SUPERSEDED_BY, {}).items()}

    def retry(self, record: optuna.trial.FrozenTrial) -> int:
        """Enqueue a new attempt of a finished record (same params, key, variant and seed); returns
        its Optuna number. Optuna cannot reopen a finished trial, so the old one stays, superseded."""
        attrs = {k: record.user_attrs[k] for k in (ATTR_TRIAL_KEY, ATTR_VARIANT, ATTR_SEED) if k in record.user_attrs}
        self.study.enqueue_trial(dict(record.params), user_attrs={**attrs, ATTR_RETRY_OF: record.number},
                                 skip_if_exists=False)
        number = max(t.number for t in self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))
        self.study.set_user_attr(STUDY_SUPERSEDED_BY, {**{str(k): v for k, v in self.superseded().items()},
                                                       str(record.number): number})
        return number


class DetachedLedger:
    """What a pickled Ledger becomes: nothing to read or write (see Ledger.__reduce__)."""


def _plain(value: Any) -> Any:
    """JSON-safe scalar (NaN kept as None)."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class RunIdentityError(ValueError):
    """The storage's study `name` belongs to another run (one line: the name, both ids, the fix)."""


def open_study(storage_url: str, name: str, directions: Sequence[str], *, run_id: str | None = None,
               create: bool = True, sampler: optuna.samplers.BaseSampler | None = None,
               pruner: optuna.pruners.BasePruner | None = None,
               metric_names: Sequence[str] | None = None) -> optuna.Study:
    """Create (`create`) or load the Optuna study `name`, owned by run `run_id`.

    One run is one study: a new run refuses a name the storage already holds, and a resumed run
    refuses a study whose stored run id is not its own (None skips the check: runs from before ids).
    `metric_names` (one per direction, e.g. ["val_acc", "gmacs"]) name the objectives in Optuna's
    plots, `trials_dataframe` and optuna-dashboard; a resumed run from before names gets them.
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    directions = ["maximize" if d == "max" else "minimize" for d in directions]
    exists = name in optuna.get_all_study_names(storage=storage_url)
    if create and exists and run_id is not None:
        owner = optuna.load_study(study_name=name, storage=storage_url).user_attrs.get(STUDY_RUN_ID)
        if owner != run_id:
            raise RunIdentityError(f"the Optuna storage already holds a study named {name!r} (run id {owner}); "
                                   f"continue that run with --resume RUN_DIR, or choose another --name")
    study = optuna.create_study(storage=storage_url, study_name=name, directions=directions, sampler=sampler,
                                pruner=pruner, load_if_exists=True)
    owner = study.user_attrs.get(STUDY_RUN_ID)
    if run_id is not None and owner is None and not exists:
        study.set_user_attr(STUDY_RUN_ID, run_id)
    elif run_id is not None and owner is not None and owner != run_id:
        raise RunIdentityError(f"the Optuna study {name!r} belongs to run {owner}, not to this run ({run_id}); "
                               f"give --storage of this run's own database")
    if metric_names is not None and study.metric_names != list(metric_names):
        with warnings.catch_warnings():  # set_metric_names is marked experimental since Optuna 3.2
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(list(metric_names))
    return study
