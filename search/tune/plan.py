"""The work still to do, read from the Optuna ledger (the same code for a new run and a resume).

Ablations: every variant x seed without a finished record is enqueued once (by trial key).
Searches: num_samples minus the feasible finished records; trials closed as "interrupted"
are re-enqueued with their params and trial key, so they continue from their checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from optuna.trial import FrozenTrial, TrialState

from reports.run_dir import (ATTR_REASON, ATTR_RETRY_OF, ATTR_SEED, ATTR_STATE, ATTR_TRIAL_KEY, ATTR_VARIANT, FAILED,
                             INFEASIBLE, INTERRUPTED)
from search.study import Study, planned_trials, trial_key
from search.study.resolve import grid_size
from search.tune.ledger import Ledger


@dataclass(frozen=True)
class Plan:
    """`to_launch` trainable trials for this session; `finished` records already in the ledger."""

    to_launch: int
    finished: int
    enqueued: int
    rerun: int = 0  # trials closed as FAIL "interrupted" that this session trains again
    retried: int = 0  # failed trials that --retry-failed gave a new attempt


def pending_reruns(study: Study, ledger: Ledger) -> set[str]:
    """Trial keys closed as FAIL "interrupted" with no finished record yet: a resume re-runs them.

    An ablation re-runs every such key its plan still holds; a search re-runs them first (see
    `plan_search`), within num_samples.
    """
    done = _keys(ledger.finished_records())
    lost = {t.user_attrs.get(ATTR_TRIAL_KEY) for t in ledger.study.get_trials(deepcopy=False)
            if t.state == TrialState.FAIL and t.user_attrs.get(ATTR_REASON) == INTERRUPTED} - {None} - done
    if study.kind == "ablation":
        lost &= {trial_key(variant, seed, {}) for variant, seed in planned_trials(study)}
    return lost


def _keys(trials: list, state: TrialState | None = None) -> set[str]:
    return {t.user_attrs.get(ATTR_TRIAL_KEY) for t in trials if state is None or t.state == state} - {None}


def plan_ablation(study: Study, ledger: Ledger) -> Plan:
    trials = ledger.study.get_trials(deepcopy=False)
    done = _keys(ledger.finished_records())
    waiting = _keys(trials, TrialState.WAITING)
    enqueued = 0
    for variant, seed in planned_trials(study):
        key = trial_key(variant, seed, {})
        if key in done or key in waiting:
            continue
        ledger.study.enqueue_trial({}, user_attrs={ATTR_TRIAL_KEY: key, ATTR_VARIANT: variant, ATTR_SEED: seed})
        enqueued += 1
    rerun = len(pending_reruns(study, ledger))
    return Plan(to_launch=len(waiting) + enqueued, finished=len(done), enqueued=enqueued, rerun=rerun)


def plan_search(study: Study, ledger: Ledger) -> Plan:
    trials = ledger.study.get_trials(deepcopy=False)
    records = ledger.finished_records()
    remaining = _search_remaining(study, records)
    done = _keys(records)
    waiting = [t for t in trials if t.state == TrialState.WAITING and ATTR_RETRY_OF not in t.user_attrs]
    retries = [t for t in trials if t.state == TrialState.WAITING and ATTR_RETRY_OF in t.user_attrs]
    waiting_keys = _keys(waiting) | _keys(retries)
    enqueued = 0
    for t in trials:  # re-run interrupted trials first, with the same params and key
        key = t.user_attrs.get(ATTR_TRIAL_KEY)
        if t.user_attrs.get(ATTR_REASON) != INTERRUPTED or key is None or key in done or key in waiting_keys:
            continue
        if len(waiting) + enqueued >= remaining:
            break
        ledger.study.enqueue_trial(dict(t.params), user_attrs={ATTR_TRIAL_KEY: key, ATTR_SEED: t.user_attrs.get(ATTR_SEED, 0)})
        waiting_keys.add(key)
        enqueued += 1
    rerun = len(pending_reruns(study, ledger) & waiting_keys)
    return Plan(to_launch=remaining + len(retries), finished=len(records), enqueued=enqueued, rerun=rerun,
                retried=len(retries))


def retryable(record: FrozenTrial) -> bool:
    """A failed record that another attempt may fix: it raised or lost its worker; a diverged
    configuration diverges again, so it is not retried."""
    reason = str(record.user_attrs.get(ATTR_REASON, ""))
    return record.user_attrs.get(ATTR_STATE) == FAILED and not reason.startswith("diverged")


def enqueue_retries(ledger: Ledger) -> int:
    """`--retry-failed`: a new attempt of every retryable current record not already waiting for one."""
    waiting = _keys(ledger.study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))
    retried = 0
    for record in ledger.finished_records():
        if retryable(record) and record.user_attrs.get(ATTR_TRIAL_KEY) not in waiting:
            ledger.retry(record)
            retried += 1
    return retried


def plan_work(study: Study, ledger: Ledger, *, retry_failed: bool = False) -> Plan:
    """Enqueue what must be (re-)run and say how many trials this session trains."""
    if retry_failed:
        enqueue_retries(ledger)
    if study.kind == "ablation":
        plan = plan_ablation(study, ledger)
        waiting = ledger.study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
        return replace(plan, retried=sum(ATTR_RETRY_OF in t.user_attrs for t in waiting))
    return plan_search(study, ledger)


def remaining_work(study: Study, ledger: Ledger) -> int:
    """Planned trials without a finished record: 0 when the run is finished."""
    records = ledger.finished_records()
    if study.kind == "ablation":
        done = _keys(records)
        return sum(trial_key(v, s, {}) not in done for v, s in planned_trials(study))
    return _search_remaining(study, records)


def _search_remaining(study: Study, records: list[FrozenTrial]) -> int:
    """Trained (feasible) records a search still needs: num_samples (at most the grid's size) minus done."""
    target = study.search.num_samples
    if study.search.sampler.name == "grid":
        target = min(target, grid_size(study.search.space))
    return max(0, target - sum(t.user_attrs.get(ATTR_STATE) != INFEASIBLE for t in records))
