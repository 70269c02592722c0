"""Report figures: frames in, a matplotlib `Figure` out (Agg canvas, no pyplot state, no files).

Accuracy against compute with the Pareto front, learning curves, error EDFs per design
factor and ablation bars. Only complete trials are compared on accuracy; pruned trials appear
faintly in the learning curves. The baseline (by name, or by its params/gmacs) is marked.
"""

from __future__ import annotations


import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from reports import columns as C
from reports.tables import complete_trials, pareto_front

MAX_LEGEND = 10  # more variants than this are drawn as one series
SIZE = (6.4, 4.2)
AXIS_LABELS = {
    C.GMACS: "compute (GMACs, 10^9 multiply-accumulates / image)",
    C.PARAMS: "parameters (count)",
    C.ACT_MB: "activation memory (MB / image)",
    C.WALL_S: "wall time (s)",
    C.VAL_ACC: "validation accuracy (%)",
    C.BEST_VAL_ACC: "best validation accuracy (%)",
    C.TEST_ACC: "test accuracy (%)",
}
ACCURACIES = (C.VAL_ACC, C.BEST_VAL_ACC, C.TEST_ACC)


def _figure(size: tuple[float, float] = SIZE) -> tuple[Figure, object]:
    fig = Figure(figsize=size, dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _label(col: str) -> str:
    return AXIS_LABELS.get(col, col)


def _scale(col: str) -> float:
    return 100.0 if col in ACCURACIES else 1.0


def baseline_mask(trials: pd.DataFrame, baseline: str | None) -> pd.Series:
    """Rows that are the baseline: named so, or with the baseline's exact params and gmacs."""
    if baseline is None or not (trials[C.VARIANT] == baseline).any():
        return pd.Series(False, index=trials.index)
    base = trials[trials[C.VARIANT] == baseline]
    sizes = set(zip(base[C.PARAMS].astype("float64"), base[C.GMACS].astype("float64")))
    same = [(p, g) in sizes for p, g in zip(trials[C.PARAMS].astype("float64"), trials[C.GMACS].astype("float64"))]
    return (trials[C.VARIANT] == baseline) | pd.Series(same, index=trials.index)


def _note_empty(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4")


def accuracy_vs_compute(
    trials: pd.DataFrame, *, x: str = C.GMACS, metric: str = C.VAL_ACC, baseline: str | None = None,
    by_variant: bool = True, title: str | None = None,
) -> Figure:
    """Complete trials as points of `metric` against `x`, the Pareto front as a step line.

    `by_variant` colours each variant (up to 10) with a legend entry; otherwise one series.
    """
    fig, ax = _figure()
    done = complete_trials(trials).dropna(subset=[x, metric])
    if done.empty:
        _note_empty(ax, "no complete trials")
    variants = list(dict.fromkeys(done[C.VARIANT]))
    one_series = not by_variant or len(variants) > MAX_LEGEND
    groups = [("complete trials", done)] if one_series else [(v, done[done[C.VARIANT] == v]) for v in variants]
    for name, group in groups:
        ax.scatter(group[x].astype(float), group[metric] * _scale(metric), s=28, alpha=0.8, label=name)
    marked = done[baseline_mask(done, baseline)]
    if len(marked):
        ax.scatter(marked[x].astype(float), marked[metric] * _scale(metric), s=180, marker="*",
                   facecolors="none", edgecolors="black", linewidths=1.2, label=f"baseline ({baseline})")
    if len(done) >= 1:
        front = pareto_front(done, {metric: "max", x: "min"}).sort_values(x)
        ax.plot(front[x].astype(float), front[metric] * _scale(metric), drawstyle="steps-post", color="black",
                linewidth=1.0, linestyle="--", marker="o", markersize=10, fillstyle="none", label="Pareto front")
    ax.set_xlabel(_label(x))
    ax.set_ylabel(_label(metric))
    ax.set_title(title or f"{_label(metric).split(' (')[0]} vs {x}")
    ax.grid(alpha=0.3)
    if len(done):
        ax.legend(fontsize=8, loc="best")
    return fig


def learning_curves(
    curves: pd.DataFrame, trials: pd.DataFrame, *, metric: str = C.VAL_ACC, baseline: str | None = None,
    by_variant: bool = True,
) -> Figure:
    """`metric` per epoch for every trained trial, coloured by variant (when `by_variant` and at
    most 10 variants, else one colour); pruned trials faint, failed dotted."""
    fig, ax = _figure()
    info = trials.set_index(C.TRIAL_ID)[[C.VARIANT, C.STATE]]
    joined = curves.join(info, on=C.TRIAL_ID, how="inner").dropna(subset=[metric])
    if joined.empty:
        _note_empty(ax, "no per-epoch records")
    variants = list(dict.fromkeys(joined[C.VARIANT]))
    one_series = not by_variant or len(variants) > MAX_LEGEND
    colors = {v: f"C{i % 10}" for i, v in enumerate(variants)}
    labelled: set[str] = set()
    for trial_id, curve in joined.groupby(C.TRIAL_ID, sort=False):
        variant, state = curve[C.VARIANT].iloc[0], curve[C.STATE].iloc[0]
        key = "complete trials" if one_series else variant
        label = key if (state == C.COMPLETE and key not in labelled) else None
        if label:
            labelled.add(key)
        width = 2.0 if variant == baseline else 1.2
        ax.plot(curve[C.EPOCH].astype(float), curve[metric] * _scale(metric),
                color="C0" if one_series else colors[variant], linewidth=width, label=label,
                alpha=0.25 if state == C.PRUNED else 0.9, linestyle=":" if state == C.FAILED else "-")
    if (joined[C.STATE] == C.PRUNED).any():
        ax.plot([], [], color="0.5", alpha=0.25, label="pruned (faint)")
    ax.set_xlabel("epoch")
    ax.set_ylabel(_label(metric))
    ax.set_title("learning curves")
    ax.grid(alpha=0.3)
    if not joined.empty:
        ax.legend(fontsize=8, loc="lower right")
    return fig


def edf_figure(edf: pd.DataFrame, factor: str) -> Figure:
    """Step plot of the error EDF (from `tables.error_edf`), one line per value of `factor`."""
    fig, ax = _figure()
    if edf.empty:
        _note_empty(ax, "no complete trials")
    for value, group in edf.groupby(C.FACTOR_VALUE, sort=True):
        err = np.concatenate([[group[C.ERROR].iloc[0]], group[C.ERROR].to_numpy()]) * 100.0  # (n+1,)
        frac = np.concatenate([[0.0], group[C.CUM_FRACTION].to_numpy()])                    # (n+1,)
        ax.step(err, frac, where="post", label=f"{factor}={value} (n={len(group)})")
    ax.set_xlabel("error (%, 1 - accuracy)")
    ax.set_ylabel("cumulative fraction of trials")
    ax.set_ylim(0.0, 1.05)
    ax.set_title(f"error EDF by {factor}")
    ax.grid(alpha=0.3)
    if not edf.empty:
        ax.legend(fontsize=8, loc="lower right")
    return fig


def ablation_bars(table: pd.DataFrame, *, baseline: str | None, metric: str = C.VAL_ACC) -> Figure:
    """Delta of `metric` to the baseline per variant (percentage points), with 95% CI whiskers."""
    height = max(2.5, 0.5 * len(table) + 1.5)
    fig, ax = _figure((SIZE[0], height))
    rows = table.iloc[::-1]  # first row on top
    y = np.arange(len(rows))
    delta = rows[C.DELTA].to_numpy(dtype=float) * 100.0                                  # (V,)
    lo = np.nan_to_num(delta - rows[C.DELTA_LO].to_numpy(dtype=float) * 100.0)           # (V,)
    hi = np.nan_to_num(rows[C.DELTA_HI].to_numpy(dtype=float) * 100.0 - delta)           # (V,)
    colors = ["0.3" if v == baseline else ("C3" if d < 0 else "C0") for v, d in zip(rows[C.VARIANT], delta)]
    ax.barh(y, np.nan_to_num(delta), xerr=np.vstack([lo, hi]), color=colors, capsize=4,
            error_kw={"elinewidth": 1.2})
    labels = [f"{v} (baseline)" if v == baseline else f"{v} (n={n})" for v, n in zip(rows[C.VARIANT], rows[C.N_SEEDS])]
    ax.set_yticks(y, labels)
    ax.axvline(0.0, color="black", linewidth=0.8)
    ax.set_xlabel(f"Δ {metric} vs {baseline} (percentage points)")
    ax.set_title(f"ablation: change against {baseline} (whiskers: 95% bootstrap CI)")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(handles=[Patch(color="C0", label="better"), Patch(color="C3", label="worse"),
                       Patch(color="0.3", label="baseline")], fontsize=8, loc="best")
    return fig

