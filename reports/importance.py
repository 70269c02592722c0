"""Hyper-parameter importance of a search study, read from its Optuna storage.

Uses `optuna.importance.get_param_importances` (fANOVA, seeded) per objective, over COMPLETE
trials only (pruned and infeasible trials are PRUNED in storage, failed ones FAIL). Too few
trials or no parameter that varies gives an empty frame whose `attrs["note"]` says why;
`attrs["left_out"]` names the parameters left out (inactive in some trials, or constant).
"""

from __future__ import annotations

from typing import Sequence

import optuna
import pandas as pd

from reports import columns as C

MIN_TRIALS = 2


def _empty(objectives: Sequence[str], note: str) -> pd.DataFrame:
    frame = pd.DataFrame({name: pd.Series(dtype="float64") for name in objectives})
    frame.index.name = C.PARAM
    frame.attrs["note"] = note
    return frame


def _varying_params(trials: Sequence[optuna.trial.FrozenTrial]) -> tuple[list[str], dict[str, str]]:
    """Parameters set in every complete trial and taking at least two distinct values, and the
    others with the reason each is left out (fANOVA needs a value in every trial, and variance)."""
    every = sorted(set.union(*(set(t.params) for t in trials)))
    common = set.intersection(*(set(t.params) for t in trials))
    kept, left_out = [], {}
    for p in every:
        if p not in common:
            n = sum(p in t.params for t in trials)
            left_out[p] = f"inactive in {len(trials) - n} of {len(trials)} complete trials"
        elif len({repr(t.params[p]) for t in trials}) < 2:
            left_out[p] = "constant across the complete trials"
        else:
            kept.append(p)
    return kept, left_out


def param_importance(
    storage_url: str, study_name: str, *, objective_names: Sequence[str] | None = None, seed: int = 0,
) -> pd.DataFrame:
    """Importance of each varying parameter for each objective: index `param`, one column per objective.

    Columns are named by `objective_names`, else by the study's metric names, else
    objective_0, objective_1, ... Values per column sum to 1 (normalised by Optuna).

    Example: `param_importance("sqlite:///runs/search_digits/optuna.db", "search_digits")`.
    """
    try:
        study = optuna.load_study(study_name=study_name, storage=storage_url)
    except KeyError as err:
        raise ValueError(f"{storage_url}: no Optuna study named {study_name!r}") from err
    n_obj = len(study.directions)
    names = list(objective_names or study.metric_names or [f"objective_{i}" for i in range(n_obj)])
    if len(names) != n_obj:
        raise ValueError(
            f"objective_names must name the study's {n_obj} objective(s), but got {list(names)}"
        )
    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(done) < MIN_TRIALS:
        return _empty(names, f"needs at least {MIN_TRIALS} complete trials; the study has {len(done)}")
    params, left_out = _varying_params(done)
    if not params:
        frame = _empty(names, "no parameter took two or more values across the complete trials")
        frame.attrs.update(left_out=left_out, n_trials=len(done))
        return frame
    columns = {}
    for i, name in enumerate(names):
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=seed)
        target = (lambda t, i=i: t.values[i]) if n_obj > 1 else None
        scores = optuna.importance.get_param_importances(study, evaluator=evaluator, params=params, target=target)
        columns[name] = pd.Series(scores, dtype="float64")
    frame = pd.DataFrame(columns).reindex(params)
    frame = frame.sort_values(names[0], ascending=False, kind="stable")
    frame.index.name = C.PARAM
    frame.attrs["note"] = f"fANOVA over {len(done)} complete trials"
    frame.attrs["left_out"] = left_out  # {param: why}, e.g. a conditional parameter not always active
    frame.attrs["n_trials"] = len(done)
    return frame
