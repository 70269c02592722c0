"""The work still to do, read from the Optuna ledger (the same code for a new run and a resume).

Ablations: every variant x seed without a finished record is enqueued once (by trial key).
Searches: num_samples minus the feasible finished records; trials closed as "interrupted"
are re-enqueued with their params and trial key, so they continue from their checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass

from optuna.trial import TrialState

from reports.run_dir import ATTR_REASON, ATTR_SEED, ATTR_STATE, ATTR_TRIAL_KEY, ATTR_VARIANT, INFEASIBLE, INTERRUPTED
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
    feasible = [t for t in records if t.user_attrs.get(ATTR_STATE) != INFEASIBLE]
    target = study.search.num_samples
    if study.search.sampler.name == "grid":
        target = min(target, grid_size(study.search.space))
    remaining = max(0, target - len(feasible))
    done = _keys(records)
    waiting = [t for t in trials if t.state == TrialState.WAITING]
    waiting_keys = _keys(waiting)
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
    return Plan(to_launch=remaining, finished=len(records), enqueued=enqueued, rerun=rerun)


def plan_work(study: Study, ledger: Ledger) -> Plan:
    """Enqueue what must be (re-)run and say how many trials this session trains."""
    return plan_ablation(study, ledger) if study.kind == "ablation" else plan_search(study, ledger)
