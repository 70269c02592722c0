"""Pure table functions over the tidy trials frame: a frame in, a frame out, no I/O.

Only complete trials (trained to the full budget) enter accuracy comparisons; pruned, failed
and infeasible trials are listed by `excluded_trials`. The EDF of error per design choice follows
Radosavovic et al., "On Network Design Spaces for Visual Recognition" (arXiv 1905.13214).
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd

from reports import columns as C
from reports.stats import DEFAULT_RESAMPLES, DeltaCI, delta_ci

MODES = ("max", "min")
UNSET = "(unset)"  # EDF label for a conditional factor that a trial did not use


def complete_trials(trials: pd.DataFrame) -> pd.DataFrame:
    """The trials trained to the full budget: the only ones compared on accuracy."""
    return trials[trials[C.STATE] == C.COMPLETE]


def _require(trials: pd.DataFrame, *cols: str) -> None:
    missing = [c for c in cols if c not in trials.columns]
    if missing:
        raise KeyError(f"trials frame has no column(s) {missing}; it has {list(trials.columns)}")


def _first(values: pd.Series) -> float:
    values = values.dropna()
    return float(values.iloc[0]) if len(values) else float("nan")


def ablation_table(
    trials: pd.DataFrame, *, baseline: str | None, metric: str = C.VAL_ACC,
    resamples: int = DEFAULT_RESAMPLES, seed: int = 0,
) -> pd.DataFrame:
    """Per variant: seeds, params, gmacs, val/test accuracy mean and std, and the delta of
    `metric` to `baseline` with a 95% CI (`reports.stats.delta_ci`: a paired t-interval when the
    seed sets match, Welch's otherwise; NaN bounds when a side has one seed).

    Columns: variant, n_seeds, params, gmacs, val_acc_mean, val_acc_std, test_acc_mean,
    test_acc_std, [metric_mean, metric_std,] delta, delta_ci_lo, delta_ci_hi, paired, ci_method,
    few_seeds. The baseline's row comes first; its delta is 0 and its ci_method "". Std is the
    sample std (NaN for one seed).
    """
    _require(trials, C.VARIANT, C.SEED, C.STATE, metric)
    variants = list(dict.fromkeys(trials[C.VARIANT]))
    if baseline is not None and baseline not in variants:
        raise ValueError(f"baseline {baseline!r} is not a variant of these trials; variants: {variants}")
    if baseline is not None:
        variants = [baseline] + [v for v in variants if v != baseline]
    done = complete_trials(trials)
    by_variant = {v: done[done[C.VARIANT] == v] for v in variants}
    base = by_variant.get(baseline) if baseline is not None else None
    base_values = {} if base is None else dict(zip(base[C.SEED], base[metric]))
    stats_cols = list(dict.fromkeys([C.VAL_ACC, C.TEST_ACC, metric]))
    rows = []
    for variant in variants:
        group = by_variant[variant]
        every = trials[trials[C.VARIANT] == variant]  # compute is known for any state
        row: dict[str, object] = {C.VARIANT: variant, C.N_SEEDS: int(group[C.SEED].nunique()),
                                  C.PARAMS: _first(every[C.PARAMS]), C.GMACS: _first(every[C.GMACS])}
        for col in stats_cols:
            row[C.mean_col(col)] = float(group[col].mean()) if len(group) else float("nan")
            row[C.std_col(col)] = float(group[col].std(ddof=1)) if len(group) > 1 else float("nan")
        values = {s: v for s, v in zip(group[C.SEED], group[metric]) if not np.isnan(v)}
        base_ok = {s: v for s, v in base_values.items() if not np.isnan(v)}
        if values and base_ok:
            ci = delta_ci(values, base_ok, resamples=resamples, seed=seed)
            if variant == baseline:  # against itself: exactly 0, not an interval
                ci = DeltaCI(0.0, 0.0, 0.0, True, "", ci.n)
            row.update({C.DELTA: ci.delta, C.DELTA_LO: ci.lo, C.DELTA_HI: ci.hi, C.PAIRED: ci.paired,
                        C.CI_METHOD: ci.method})
        else:
            row.update({C.DELTA: float("nan"), C.DELTA_LO: float("nan"), C.DELTA_HI: float("nan"),
                        C.PAIRED: False, C.CI_METHOD: ""})
        row[C.FEW_SEEDS] = row[C.N_SEEDS] < C.MIN_SEEDS
        rows.append(row)
    table = pd.DataFrame(rows)
    table[C.N_SEEDS] = table[C.N_SEEDS].astype("int64")
    table[C.PAIRED] = table[C.PAIRED].astype(bool)
    table[C.FEW_SEEDS] = table[C.FEW_SEEDS].astype(bool)
    return table


def _check_mode(name: str, mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"objective {name!r} must have mode 'max' or 'min', but got {mode!r}")


def leaderboard(trials: pd.DataFrame, metric: str = C.VAL_ACC, *, mode: str = "max") -> pd.DataFrame:
    """Complete trials best first by `metric`, with a 1-based `rank` column in front.

    Ties keep the trials' order; trials with no value of `metric` go last.
    """
    _require(trials, C.STATE, metric)
    _check_mode(metric, mode)
    done = complete_trials(trials)
    board = done.sort_values(metric, ascending=(mode == "min"), na_position="last", kind="stable")
    board = board.drop(columns=[C.STATE, C.REASON], errors="ignore").reset_index(drop=True)
    board.insert(0, C.RANK, np.arange(1, len(board) + 1, dtype="int64"))
    return board


def non_dominated(points: np.ndarray) -> np.ndarray:
    """Mask of the rows of `points` (n, k), larger better on every column, that no other row
    dominates: no worse on every column and better on one. Equal rows are all kept."""
    ge = (points[:, None, :] >= points[None, :, :]).all(axis=2)        # (n, n): i no worse than j
    gt = (points[:, None, :] > points[None, :, :]).any(axis=2)         # (n, n): i better somewhere
    return ~(ge & gt).any(axis=0)                                      # (n,): nobody dominates j


def _front(rows: pd.DataFrame, objectives: Mapping[str, str]) -> pd.DataFrame:
    if len(objectives) < 1:
        raise ValueError("a Pareto front needs at least one objective, but got objectives={}")
    for name, mode in objectives.items():
        _check_mode(name, mode)
    _require(rows, *objectives)
    rows = rows.dropna(subset=list(objectives))
    signs = np.array([1.0 if mode == "max" else -1.0 for mode in objectives.values()])
    points = rows[list(objectives)].to_numpy(dtype=float) * signs      # (n, k), larger is better
    front = rows[non_dominated(points)]
    first, mode = next(iter(objectives.items()))
    return front.sort_values(first, ascending=(mode == "min"), kind="stable").reset_index(drop=True)


def pareto_front(trials: pd.DataFrame, objectives: Mapping[str, str]) -> pd.DataFrame:
    """The complete trials that no other complete trial dominates on `objectives`.

    `objectives` maps a column to "max" or "min", e.g. {"val_acc": "max", "gmacs": "min"}.
    A point dominates another when it is no worse on every objective and better on one;
    equal points are all kept. Sorted by the first objective, best first.
    """
    _require(trials, C.STATE)
    return _front(complete_trials(trials), objectives)


def ablation_front(table: pd.DataFrame, objectives: Mapping[str, str]) -> pd.DataFrame:
    """The rows of an `ablation_table` whose variant means no other variant's dominate.

    `objectives` name the table's columns, e.g. {"val_acc_mean": "max", "gmacs": "min"}: a
    variant is one point (its mean over seeds), not one point per seed. Variants without a mean
    are left out; sorted by the first objective, best first.
    """
    return _front(table, objectives)


def value_label(x: object) -> str:
    """A factor value as text in EDF tables and legends: yes/no for booleans (as the report
    tables write them), "(unset)" where the factor did not apply, anything else as str()."""
    if x is None or x is pd.NA or (isinstance(x, float) and np.isnan(x)):
        return UNSET
    if isinstance(x, (bool, np.bool_)):
        return "yes" if x else "no"
    return str(x)


def _order_key(x: object) -> tuple[int, float, str]:
    """Sort key of a raw factor value: unset first, then numbers in numeric order, then text."""
    label = value_label(x)
    if label == UNSET:
        return (0, 0.0, "")
    try:
        return (1, float(x), "")  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return (2, 0.0, label)


def quantile_bins(values: pd.Series, bins: int) -> tuple[pd.Series, pd.Series]:
    """Numeric `values` cut into at most `bins` quantile bins of near-equal counts.

    Returns (label, order) per value: label "[lo, hi]" spans the values that fell in the bin
    (3 significant digits); order is the bin's 0-based index; NaN values get "(unset)", -1.
    """
    if bins < 1:
        raise ValueError(f"bins must be at least 1, but got {bins=}")
    numbers = pd.to_numeric(values, errors="coerce").astype("float64")
    known = numbers.dropna()
    labels = pd.Series(UNSET, index=values.index, dtype=object)
    order = pd.Series(-1, index=values.index, dtype="int64")
    if known.empty:
        return labels, order
    q = min(bins, int(known.nunique()))
    below = known.rank(method="min") - 1                          # values smaller than each one
    codes = (q * below // len(known)).astype("int64").clip(upper=q - 1)  # equal values share a bin
    for i, code in enumerate(sorted(codes.unique())):
        members = known[codes == code]
        labels[members.index] = f"[{members.min():.3g}, {members.max():.3g}]"
        order[members.index] = i
    return labels, order


def error_edf(trials: pd.DataFrame, factor: str, metric: str = C.VAL_ACC, *, bins: int | None = None) -> pd.DataFrame:
    """Empirical distribution of error (1 - metric) of complete trials, per value of `factor`.

    Tidy: one row per trial with columns value (the factor's value as text, see `value_label`;
    "(unset)" when the factor did not apply), error, and cum_fraction = the share of that value's
    trials with an error at most this one (i/n for the i-th smallest of n). With `bins`, a
    continuous factor is cut into that many quantile bins labelled "[lo, hi]" instead. Rows are
    sorted by value (unset first, numbers in numeric order, then text), then error.
    """
    _require(trials, C.STATE, factor, metric)
    done = complete_trials(trials).dropna(subset=[metric])
    if bins is not None:
        values, order = quantile_bins(done[factor], bins)
        keys = order.map(lambda k: (0, 0.0, "") if k < 0 else (1, float(k), ""))
    else:
        values = done[factor].map(value_label)
        keys = done[factor].map(_order_key)
    frame = pd.DataFrame({C.FACTOR_VALUE: values.to_numpy(), C.ERROR: 1.0 - done[metric].to_numpy(dtype=float)})
    first: dict[str, tuple] = {}
    for label, key in zip(values.tolist(), keys.tolist()):  # one key per label keeps groups contiguous
        first[label] = min(first.get(label, key), key)
    rank_of = {label: i for i, label in enumerate(sorted(first, key=lambda lab: (first[lab], lab)))}
    frame["_order"] = [rank_of[label] for label in values.tolist()]
    frame = frame.sort_values(["_order", C.ERROR], kind="stable").drop(columns="_order").reset_index(drop=True)
    rank = frame.groupby(C.FACTOR_VALUE, sort=False).cumcount() + 1
    size = frame.groupby(C.FACTOR_VALUE, sort=False)[C.ERROR].transform("size")
    frame[C.CUM_FRACTION] = (rank / size).astype(float)
    frame.attrs["binned"] = bins is not None
    return frame


def excluded_trials(trials: pd.DataFrame) -> pd.DataFrame:
    """The pruned, failed and infeasible trials, with state, epochs reached and reason."""
    _require(trials, C.TRIAL_ID, C.VARIANT, C.SEED, C.STATE, C.EPOCHS, C.BUDGET_EPOCHS, C.REASON)
    out = trials[trials[C.STATE] != C.COMPLETE]
    order = out[C.STATE].map({s: i for i, s in enumerate(C.STATES)})
    cols = [C.TRIAL_ID, C.VARIANT, C.SEED, C.STATE, C.EPOCHS, C.BUDGET_EPOCHS, C.REASON]
    if C.RUN in trials.columns:
        cols.insert(0, C.RUN)
    return out.assign(_order=order).sort_values(["_order", C.TRIAL_ID], kind="stable")[cols].reset_index(drop=True)
