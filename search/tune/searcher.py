"""The Tune searcher: Optuna ask/tell over the ledger, compute budgets before launch.

`suggest` asks Optuna for the next trial (an enqueued ablation arm, a re-run of an
interrupted trial, or a fresh sample of the compiled space), builds its `TrialSpec`, counts
its compute, and rejects an over-budget one without starting a Ray trial (its budget margins are
the Optuna trial's constraints, > 0 when broken, also on feasible ones). `on_trial_complete`
tells Optuna COMPLETE only at the full budget; anything shorter is PRUNED, errors are FAIL.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from optuna.trial import TrialState
from ray.tune.search import Searcher

from reports.run_dir import (ATTR_BUDGET_EPOCHS, ATTR_CONFIG_KEY, ATTR_DUPLICATE_OF, ATTR_EPOCHS, ATTR_FIELDS,
                             ATTR_REASON, ATTR_SEED, ATTR_TRIAL_KEY, ATTR_VARIANT, BEST_EPOCH, BEST_VAL_ACC, COMPLETE,
                             FAILED, GMACS, INFEASIBLE, INTERRUPTED, PARAMS, PRUNED, TEST_ACC, VAL_ACC)
from search.results import trial_fields
from search.study import Study, TrialSpec, resolve_trial
from search.study.keys import MODEL_VARIANT
from search.tune.ledger import Ledger
from search.tune.progress import Tally
from search.tune.space_compile import sample_point
from search.tune.trial_config import DIVERGED, RESULT_EPOCH, TrialConfig

CONSTRAINT_METRIC = {"max_gmacs": GMACS, "max_params": PARAMS}
FINAL_KEYS = (TEST_ACC, BEST_VAL_ACC, BEST_EPOCH)


def spec_keys(study: Study, variant: str | None, values: Mapping[str, Any]) -> dict[str, Any]:
    """The dotted keys a trial sets: its variant's overrides, then sampled values."""
    keys = dict(study.variant(variant).overrides) if variant is not None else {}
    keys.update(values)
    return keys


def launched_configs(ledger: Ledger) -> dict[str, str]:
    """Config key -> trial key of every configuration launched so far, except attempts closed as
    interrupted (their re-runs come back with the same configuration)."""
    out = {}
    for t in ledger.study.get_trials(deepcopy=False):
        config = t.user_attrs.get(ATTR_CONFIG_KEY)
        if config is not None and t.user_attrs.get(ATTR_REASON) != INTERRUPTED:
            out[config] = str(t.user_attrs.get(ATTR_TRIAL_KEY, config))
    return out


def violations(cx: Mapping[str, float], constraints: Mapping[str, float]) -> list[str]:
    """Human-readable broken budgets, e.g. ["gmacs 0.061 > max_gmacs 0.05"]."""
    out = []
    for key, limit in constraints.items():
        metric = CONSTRAINT_METRIC[key]
        if cx[metric] > limit:
            out.append(f"{metric} {cx[metric]:.4g} > {key} {limit:.4g}")
    return out


class GsaSearcher(Searcher):
    """Feeds Tune `to_launch` trainable trials, then FINISHED; infeasible ones do not count.

    Args:
        study: the `Study`; ledger: its Optuna study wrapper; to_launch: trials to start now.
        measure: `TrialSpec -> {"params", "gmacs", "act_mb"}` (gsa_space.complexity, in the driver).
        tally: counts for the progress line.
    """

    def __init__(self, study: Study, ledger: Ledger, *, to_launch: int,
                 measure: Callable[[TrialSpec], Mapping[str, float]], tally: Tally) -> None:
        super().__init__(metric=VAL_ACC, mode="max")
        self._study, self._ledger, self._measure, self._tally = study, ledger, measure, tally
        self._left = to_launch
        self._numbers: dict[str, int] = {}
        self._budgets: dict[int, int] = {}
        self._launched = launched_configs(ledger)
        self.error: Exception | None = None
        search = study.search
        self._constraints = search.constraints_dict() if search is not None else {}
        self._objectives = tuple(search.objectives) if search is not None else ((VAL_ACC, "max"),)
        self._max_rejections = search.max_rejections if search is not None else 1

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        return True

    def suggest(self, trial_id: str) -> dict | None:
        if self.error is not None or self._left <= 0:
            return Searcher.FINISHED
        try:
            config = self._next_feasible()
        except ValueError as err:  # too many rejections in a row: stop launching, the runner reports it
            self.error = err
            return Searcher.FINISHED
        self._left -= 1
        self._numbers[trial_id] = config.optuna_number
        return config.to_config()

    def _next_feasible(self) -> TrialConfig:
        rejected: list[str] = []
        while True:
            config, broken = self._ask()
            if not broken:
                return config
            rejected.append(broken)
            if len(rejected) >= self._max_rejections:
                raise ValueError(
                    f"{self._study.source}: constraints: {len(rejected)} sampled configurations in a row "
                    f"were over budget (last: {broken}); relax constraints ({self._constraints}) or "
                    f"shrink the space, or raise max_rejections={self._max_rejections}"
                )

    def _ask(self) -> tuple[TrialConfig | None, str]:
        """One Optuna trial: (Tune config, "") when feasible, (None, reason) when rejected."""
        trial = self._ledger.study.ask()
        attrs = trial.user_attrs
        if self._study.kind == "ablation":
            variant, values = attrs[ATTR_VARIANT], {}
            names = [v.name for v in self._study.variants]
            if variant in names:
                self._ledger.set_variant(trial.number, variant, names)
        else:
            variant, values = None, sample_point(trial, self._study.search.space)
        fresh = self._study.kind == "search" and ATTR_TRIAL_KEY not in attrs  # not a re-run or a retry
        seed = int(attrs.get(ATTR_SEED, self._study.seeds[0]))
        key = attrs.get(ATTR_TRIAL_KEY) or f"trial_{trial.number:04d}"
        name = variant or key  # a search trial's label is its key, also when it re-runs under a new number
        base = {ATTR_TRIAL_KEY: key, ATTR_VARIANT: name, ATTR_SEED: seed}
        try:
            spec = resolve_trial(self._study, variant=variant, seed=seed, params=values)
        except ValueError as err:
            reason = f"invalid: {err}"
            self._reject(trial, base, reason, [1.0])  # one violated constraint: the config itself
            return None, reason
        if fresh and spec.trial_key in self._launched:
            # A resumed or extended search never trains a configuration twice. Not a record:
            # closed as FAIL without a gsa state, so results and plans never count it.
            self._ledger.set_attrs(trial.number, {ATTR_DUPLICATE_OF: self._launched[spec.trial_key]})
            self._ledger.study.tell(trial.number, state=TrialState.FAIL)
            return None, f"duplicate of {self._launched[spec.trial_key]}"
        self._launched[spec.trial_key] = key
        cx = {k: float(v) for k, v in self._measure(spec).items()}
        model = spec_keys(self._study, variant, values).get(MODEL_VARIANT, self._study.model.variant)
        attrs_out = {**base, **cx, ATTR_CONFIG_KEY: spec.trial_key, ATTR_BUDGET_EPOCHS: int(spec.train.epochs),
                     ATTR_FIELDS: trial_fields(self._study, spec, model, values)}
        margins = [cx[CONSTRAINT_METRIC[k]] - lim for k, lim in self._constraints.items()]  # > 0: over budget
        broken = violations(cx, self._constraints)
        if broken:
            reason = "; ".join(broken)
            self._reject(trial, attrs_out, reason, margins)
            return None, reason
        if margins:
            self._ledger.set_constraints(trial.number, margins)
        self._ledger.set_attrs(trial.number, {**attrs_out, ATTR_EPOCHS: 0})
        self._budgets[trial.number] = int(spec.train.epochs)
        config = TrialConfig(optuna_number=trial.number, trial_key=key, variant=variant, seed=seed,
                             params=tuple(values.items()), complexity=tuple(cx.items()),
                             restore_from=None if fresh else self._ledger.latest_checkpoint(key))
        return config, ""

    def _reject(self, trial: Any, attrs: dict, reason: str, margins: list[float]) -> None:
        self._ledger.set_constraints(trial.number, margins)
        self._ledger.finish(trial.number, INFEASIBLE, reason=reason, attrs={**attrs, ATTR_EPOCHS: 0})
        self._tally.add(INFEASIBLE)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        number = self._numbers.pop(trial_id, None)
        if number is None:
            return
        frozen = self._ledger.frozen(number)
        if frozen.state.is_finished():
            return
        if result is None and not error:
            return  # stopped before it ran (shutdown): the runner closes it as interrupted
        result = result or {}
        epochs = int(result.get(RESULT_EPOCH, frozen.user_attrs.get(ATTR_EPOCHS, 0)) or 0)
        budget = self._budgets.pop(number, int(frozen.user_attrs.get(ATTR_BUDGET_EPOCHS, 0)))
        attrs = {ATTR_EPOCHS: epochs, **{k: result[k] for k in FINAL_KEYS if result.get(k) is not None}}
        if error or result.get(DIVERGED):
            reason = result.get(DIVERGED) or frozen.user_attrs.get(ATTR_REASON) or "error"
            self._ledger.finish(number, FAILED, reason=reason, attrs=attrs)
            self._tally.add(FAILED)
        elif epochs >= budget:
            values = [self._objective_value(m, result, frozen.user_attrs) for m, _ in self._objectives]
            self._ledger.finish(number, COMPLETE, values=values, attrs=attrs)
            self._tally.add(COMPLETE, result.get(VAL_ACC))
        else:
            reason = f"stopped by the pruner at epoch {epochs} of {budget}"
            self._ledger.finish(number, PRUNED, reason=reason, attrs=attrs)
            self._tally.add(PRUNED)

    @staticmethod
    def _objective_value(metric: str, result: Mapping[str, Any], attrs: Mapping[str, Any]) -> float:
        if metric in result:
            return float(result[metric])
        if metric in attrs:
            return float(attrs[metric])
        raise KeyError(f"objective {metric!r} is neither reported by the trial nor known before it ran")
