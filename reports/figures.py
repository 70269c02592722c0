"""Report figures: frames in, a matplotlib `Figure` out (Agg canvas, no pyplot state, no files).

Accuracy against compute with the Pareto front, learning curves, error EDFs per design
factor and ablation bars. Only complete trials are compared on accuracy; pruned trials appear
faintly in the learning curves. The baseline (by name, or by its params/gmacs) is marked, and a
variant keeps one colour (`variant_colors`) in every figure.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator, ScalarFormatter

from reports import columns as C
from reports.formatting import HEADERS
from reports.tables import complete_trials, pareto_front

MAX_LEGEND = 10  # more variants (or runs) than this are drawn as one series
BASELINE_COLOR = "0.3"
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


def variant_colors(variants: Sequence[str], baseline: str | None = None) -> dict[str, str]:
    """One colour per variant, the same in every figure: tab10 in first-seen order; the baseline
    is always dark grey (and drawn with a star / a thicker line / a grey bar)."""
    colors, i = {}, 0
    for variant in dict.fromkeys(variants):
        if variant == baseline:
            colors[variant] = BASELINE_COLOR
        else:
            colors[variant] = f"C{i % 10}"
            i += 1
    return colors


def _compact_ticks(axis) -> None:
    """At most ~6 ticks; tiny or huge values in scientific notation (x10^k), never an offset."""
    axis.set_major_locator(MaxNLocator(nbins=6))
    formatter = ScalarFormatter(useMathText=True, useOffset=False)
    formatter.set_powerlimits((-2, 5))
    axis.set_major_formatter(formatter)


def _groups(frame: pd.DataFrame, by_variant: bool, colors: Mapping[str, str] | None,
            baseline: str | None) -> tuple[str | None, dict[str, str]]:
    """The column that colours the points or curves (variant, run, or none) and its colours."""
    variants = list(dict.fromkeys(frame[C.VARIANT]))
    if by_variant and len(variants) <= MAX_LEGEND:
        chosen = dict(colors or {})
        missing = variant_colors([v for v in variants if v not in chosen], baseline)
        return C.VARIANT, {**missing, **chosen}
    if C.RUN in frame.columns and 1 < frame[C.RUN].nunique() <= MAX_LEGEND:
        return C.RUN, {r: f"C{i % 10}" for i, r in enumerate(dict.fromkeys(frame[C.RUN]))}
    return None, {}


def accuracy_vs_compute(
    trials: pd.DataFrame, *, x: str = C.GMACS, metric: str = C.VAL_ACC, baseline: str | None = None,
    by_variant: bool = True, title: str | None = None, colors: Mapping[str, str] | None = None,
) -> Figure:
    """Complete trials as points of `metric` against `x`, the Pareto front as a step line.

    `by_variant` colours each variant (up to 10; `colors` fixes them) with a legend entry;
    otherwise trials of several runs (a `run` column) are coloured by run, else one series.
    """
    fig, ax = _figure()
    done = complete_trials(trials).dropna(subset=[x, metric])
    if done.empty:
        _note_empty(ax, "no complete trials")
    key, palette = _groups(done, by_variant, colors, baseline)
    if key is None:
        groups = [("complete trials", done, "C0")]
    else:
        groups = [(str(g), done[done[key] == g], palette[g]) for g in dict.fromkeys(done[key])]
    for name, group, color in groups:
        ax.scatter(group[x].astype(float), group[metric] * _scale(metric), s=28, alpha=0.8, label=name,
                   color=color)
    marked = done[baseline_mask(done, baseline)]
    if len(marked):
        ax.scatter(marked[x].astype(float), marked[metric] * _scale(metric), s=180, marker="*",
                   facecolors="none", edgecolors="black", linewidths=1.2, label=f"baseline ({baseline})")
    if len(done) >= 1:
        front = pareto_front(done, {metric: "max", x: "min"}).sort_values(x)
        ax.plot(front[x].astype(float), front[metric] * _scale(metric), drawstyle="steps-post", color="black",
                linewidth=1.0, linestyle="--", marker="o", markersize=10, fillstyle="none", label="Pareto front")
    _compact_ticks(ax.xaxis)
    ax.set_xlabel(_label(x))
    ax.set_ylabel(_label(metric))
    ax.set_title(title or f"{_label(metric).split(' (')[0]} vs {HEADERS.get(x, x)}")
    ax.grid(alpha=0.3)
    if len(done):
        ax.legend(fontsize=8, loc="best")
    return fig


STATE_STYLE = {  # state -> (alpha, linestyle, legend text)
    C.COMPLETE: (0.9, "-", "complete trials"),
    C.PRUNED: (0.25, "-", "pruned (faint)"),
    C.FAILED: (0.9, ":", "failed (dotted)"),
}
STATE_COLOR = {C.COMPLETE: "C0", C.PRUNED: "C1", C.FAILED: "C3"}  # when nothing else colours curves


def learning_curves(
    curves: pd.DataFrame, trials: pd.DataFrame, *, metric: str = C.VAL_ACC, baseline: str | None = None,
    by_variant: bool = True, colors: Mapping[str, str] | None = None,
) -> Figure:
    """`metric` per epoch for every trained trial: coloured by variant (`by_variant`, at most 10),
    else by run (several runs), else by state; pruned trials faint, failed dotted; integer epochs."""
    fig, ax = _figure()
    cols = [C.VARIANT, C.STATE] + ([C.RUN] if C.RUN in trials.columns else [])
    info = trials.set_index(C.TRIAL_ID)[cols]
    joined = curves.join(info, on=C.TRIAL_ID, how="inner").dropna(subset=[metric])
    if joined.empty:
        _note_empty(ax, "no per-epoch records")
    key, palette = _groups(joined, by_variant, colors, baseline)
    for _, curve in joined.groupby(C.TRIAL_ID, sort=False):
        variant, state = curve[C.VARIANT].iloc[0], curve[C.STATE].iloc[0]
        alpha, style, _ = STATE_STYLE.get(state, STATE_STYLE[C.COMPLETE])
        color = STATE_COLOR.get(state, "C0") if key is None else palette[curve[key].iloc[0]]
        width = 2.0 if variant == baseline else 1.2
        ax.plot(curve[C.EPOCH].astype(float), curve[metric] * _scale(metric), color=color, linewidth=width,
                alpha=alpha, linestyle=style)
    for group, color in palette.items():  # legend: groups in palette order, then states (empty proxies)
        if key is not None and (joined[key] == group).any():
            ax.plot([], [], color=color, linewidth=2.0 if group == baseline else 1.2, label=str(group))
    for state in ((C.COMPLETE,) if key is None else ()) + (C.PRUNED, C.FAILED):
        if (joined[C.STATE] == state).any():  # empty proxy lines: one legend entry per state
            alpha, style, text = STATE_STYLE[state]
            color = STATE_COLOR[state] if key is None else "0.4"
            ax.plot([], [], color=color, alpha=max(alpha, 0.4), linestyle=style, label=text)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(_label(metric))
    ax.set_title("learning curves")
    ax.grid(alpha=0.3)
    if not joined.empty:
        ax.legend(fontsize=8, loc="lower right")
    return fig


def edf_figure(edf: pd.DataFrame, factor: str, *, colors: Mapping[str, str] | None = None) -> Figure:
    """Step plot of the error EDF (from `tables.error_edf`), one line per value of `factor`, in
    the table's order (numeric where the values are numbers); `colors` maps values to colours."""
    fig, ax = _figure()
    if edf.empty:
        _note_empty(ax, "no complete trials")
    joiner = " in " if edf.attrs.get("binned") else "="
    for i, (value, group) in enumerate(edf.groupby(C.FACTOR_VALUE, sort=False)):
        err = np.concatenate([[group[C.ERROR].iloc[0]], group[C.ERROR].to_numpy()]) * 100.0  # (n+1,)
        frac = np.concatenate([[0.0], group[C.CUM_FRACTION].to_numpy()])                    # (n+1,)
        ax.step(err, frac, where="post", label=f"{factor}{joiner}{value} (n={len(group)})",
                color=(colors or {}).get(value, f"C{i % 10}"))
    ax.set_xlabel("error (%, 1 - accuracy)")
    ax.set_ylabel("cumulative fraction of trials")
    ax.set_ylim(0.0, 1.05)
    ax.set_title(f"error EDF by {factor}")
    ax.grid(alpha=0.3)
    if not edf.empty:
        ax.legend(fontsize=8, loc="lower right")
    return fig


def ablation_bars(table: pd.DataFrame, *, baseline: str | None, metric: str = C.VAL_ACC,
                  colors: Mapping[str, str] | None = None) -> Figure:
    """Delta of `metric` to the baseline per variant (percentage points), with 95% CI whiskers.

    Bars take the variant's colour (`variant_colors`); a worse variant's bar is hatched."""
    longest = max((len(str(v)) for v in table[C.VARIANT]), default=0) + 8  # "(n=3)" or "(baseline)"
    height = max(2.5, 0.5 * len(table) + 1.5)
    fig, ax = _figure((max(SIZE[0], 3.5 + 0.08 * longest), height))  # room for long variant labels
    rows = table.iloc[::-1]  # first row on top
    palette = {**variant_colors(table[C.VARIANT], baseline), **dict(colors or {})}
    y = np.arange(len(rows))
    delta = rows[C.DELTA].to_numpy(dtype=float) * 100.0                                  # (V,)
    lo = np.nan_to_num(delta - rows[C.DELTA_LO].to_numpy(dtype=float) * 100.0)           # (V,)
    hi = np.nan_to_num(rows[C.DELTA_HI].to_numpy(dtype=float) * 100.0 - delta)           # (V,)
    bars = ax.barh(y, np.nan_to_num(delta), xerr=np.vstack([lo, hi]), capsize=4, error_kw={"elinewidth": 1.2},
                   color=[palette[v] for v in rows[C.VARIANT]], edgecolor="black", linewidth=0.6)
    for bar, d in zip(bars, delta):
        if d < 0:
            bar.set_hatch("//")
    labels = [f"{v} (baseline)" if v == baseline else f"{v} (n={n})" for v, n in zip(rows[C.VARIANT], rows[C.N_SEEDS])]
    ax.set_yticks(y, labels)
    ax.axvline(0.0, color="black", linewidth=0.8)
    ax.set_xlabel(f"Δ {metric} vs {baseline} (percentage points)")
    ax.set_title(f"Δ {metric} vs {baseline}, 95% CI", fontsize=11)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(handles=[Patch(facecolor="white", edgecolor="black", label="better"),
                       Patch(facecolor="white", edgecolor="black", hatch="//", label="worse"),
                       Patch(color=BASELINE_COLOR, label="baseline")], fontsize=8, loc="best")
    return fig
