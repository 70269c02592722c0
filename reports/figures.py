"""Report figures: frames in, a matplotlib `Figure` out (Agg canvas, no pyplot state, no files).

Accuracy against compute with the Pareto front (per trial, or per variant mean ± std in an
ablation), learning curves, error EDFs per design factor and the ablation's Δ chart. Only
complete trials are compared on accuracy; pruned trials appear faintly in the learning curves.
The baseline is marked, a variant keeps one colour (`variant_colors`) in every figure, and
compute and parameter axes take a unit by magnitude (MMACs / GMACs, K / M), never "x10^k".
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, ScalarFormatter

from reports import columns as C
from reports import formatting as fmt
from reports.tables import ablation_front, complete_trials, pareto_front

MAX_LEGEND = 10  # more variants (or runs) than this are drawn as one series
TOP_TRIALS = 5  # a search's learning curves colour its best trials, the rest grey
BASELINE_COLOR = "0.3"
OTHER_COLOR = "0.65"
SIZE = (6.4, 4.2)
AXIS_LABELS = {
    C.ACT_MB: "activation memory (MB / image)",
    C.WALL_S: "wall time (s)",
    C.VAL_ACC: "validation accuracy (%)",
    C.BEST_VAL_ACC: "best validation accuracy (%)",
    C.TEST_ACC: "test accuracy (%)",
}
ACCURACIES = (C.VAL_ACC, C.BEST_VAL_ACC, C.TEST_ACC)
SHORT_NAMES = {C.GMACS: "compute", C.PARAMS: "parameters"}


def _figure(size: tuple[float, float] = SIZE) -> tuple[Figure, object]:
    fig = Figure(figsize=size, dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def axis_unit(col: str, values: Sequence[float] | pd.Series) -> tuple[float, str]:
    """(multiplier, axis label) of column `col` plotted from `values`: accuracies in %, compute in
    the unit that `formatting.macs_unit` picks ("compute (MMACs / image)"), parameters in K or M."""
    if col == C.GMACS:
        divisor, unit = fmt.macs_unit(values)
        return 1.0 / divisor, f"compute ({unit} / image)"
    if col == C.PARAMS:
        divisor, suffix = fmt.params_unit(values)
        return 1.0 / divisor, f"parameters ({suffix})" if suffix else "parameters"
    return (100.0 if col in ACCURACIES else 1.0), AXIS_LABELS.get(col, col)


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


def _plain_ticks(axis) -> None:
    """At most ~6 ticks in plain numbers: values arrive in a unit that keeps them readable, so
    neither an offset nor an "x10^k" factor is ever drawn."""
    axis.set_major_locator(MaxNLocator(nbins=6))
    formatter = ScalarFormatter(useOffset=False)
    formatter.set_scientific(False)
    axis.set_major_formatter(formatter)


def colour_key(frame: pd.DataFrame, by_variant: bool) -> str | None:
    """The column that colours points and curves: variant (`by_variant`, at most MAX_LEGEND),
    else run (several runs, at most MAX_LEGEND), else None."""
    if by_variant and frame[C.VARIANT].nunique() <= MAX_LEGEND:
        return C.VARIANT
    if C.RUN in frame.columns and 1 < frame[C.RUN].nunique() <= MAX_LEGEND:
        return C.RUN
    return None


def _groups(frame: pd.DataFrame, by_variant: bool, colors: Mapping[str, str] | None,
            baseline: str | None) -> tuple[str | None, dict[str, str]]:
    """The column that colours the points or curves (`colour_key`) and its colours."""
    key = colour_key(frame, by_variant)
    if key == C.VARIANT:
        chosen = dict(colors or {})
        missing = variant_colors([v for v in dict.fromkeys(frame[C.VARIANT]) if v not in chosen], baseline)
        return C.VARIANT, {**missing, **chosen}
    if key == C.RUN:
        return C.RUN, {r: f"C{i % 10}" for i, r in enumerate(dict.fromkeys(frame[C.RUN]))}
    return None, {}


def _title(metric: str, x: str) -> str:
    return f"{AXIS_LABELS.get(metric, metric).split(' (')[0]} vs {SHORT_NAMES.get(x, x)}"


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
    xk, xlabel = axis_unit(x, done[x])
    yk, ylabel = axis_unit(metric, done[metric])
    key, palette = _groups(done, by_variant, colors, baseline)
    if key is None:
        groups = [("complete trials", done, "C0")]
    else:
        groups = [(str(g), done[done[key] == g], palette[g]) for g in dict.fromkeys(done[key])]
    for name, group, color in groups:
        ax.scatter(group[x].astype(float) * xk, group[metric] * yk, s=28, alpha=0.8, label=name, color=color)
    marked = done[baseline_mask(done, baseline)]
    if len(marked):
        ax.scatter(marked[x].astype(float) * xk, marked[metric] * yk, s=180, marker="*",
                   facecolors="none", edgecolors="black", linewidths=1.2, label=f"baseline ({baseline})")
    if len(done) >= 1:
        front = pareto_front(done, {metric: "max", x: "min"}).sort_values(x)
        ax.plot(front[x].astype(float) * xk, front[metric] * yk, drawstyle="steps-post", color="black",
                linewidth=1.0, linestyle="--", marker="o", markersize=10, fillstyle="none", label="Pareto front")
    _plain_ticks(ax.xaxis)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title or _title(metric, x))
    ax.grid(alpha=0.3)
    if len(done):
        ax.legend(fontsize=8, loc="best")
    return fig


def ablation_vs_compute(
    table: pd.DataFrame, trials: pd.DataFrame, *, x: str = C.GMACS, metric: str = C.VAL_ACC,
    baseline: str | None = None, colors: Mapping[str, str] | None = None,
) -> Figure:
    """Each variant's mean `metric` ± sample std over seeds against `x`, its seeds as faint dots,
    and the Pareto front of the variant means (from an `ablation_table` over `trials`)."""
    fig, ax = _figure()
    mean, std = C.mean_col(metric), C.std_col(metric)
    rows = table.dropna(subset=[x, mean])
    done = complete_trials(trials).dropna(subset=[x, metric])
    if rows.empty:
        _note_empty(ax, "no complete trials")
    xk, xlabel = axis_unit(x, rows[x])
    yk, ylabel = axis_unit(metric, rows[mean])
    palette = {**variant_colors(table[C.VARIANT], baseline), **dict(colors or {})}
    for _, row in rows.iterrows():
        variant, color = row[C.VARIANT], palette[row[C.VARIANT]]
        seeds = done[done[C.VARIANT] == variant]
        ax.scatter(seeds[x].astype(float) * xk, seeds[metric] * yk, s=12, alpha=0.35, color=color, linewidths=0)
        ax.errorbar([float(row[x]) * xk], [row[mean] * yk], yerr=[0.0 if pd.isna(row[std]) else row[std] * yk],
                    fmt="*" if variant == baseline else "o", markersize=13 if variant == baseline else 7,
                    color=color, ecolor=color, capsize=4, elinewidth=1.4,
                    label=f"{variant} (baseline)" if variant == baseline else f"{variant} (n={row[C.N_SEEDS]})")
    if len(rows):
        front = ablation_front(rows, {mean: "max", x: "min"}).sort_values(x)
        ax.plot(front[x].astype(float) * xk, front[mean] * yk, drawstyle="steps-post", color="black",
                linewidth=1.0, linestyle="--", marker="o", markersize=13, fillstyle="none",
                label="Pareto front of the means")
    _plain_ticks(ax.xaxis)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"{ylabel.replace(' (%)', '')}, mean ± std (%)")
    ax.set_title(f"{_title(metric, x)}: variant means ± std over seeds (dots: seeds)", fontsize=10)
    ax.grid(alpha=0.3)
    if len(rows):
        ax.legend(fontsize=8, loc="best")
    return fig


STATE_STYLE = {  # state -> (alpha, linestyle, legend text)
    C.COMPLETE: (0.9, "-", "complete trials"),
    C.PRUNED: (0.25, "-", "pruned (faint)"),
    C.FAILED: (0.9, ":", "failed (dotted)"),
}
STATE_COLOR = {C.COMPLETE: "C0", C.PRUNED: "C1", C.FAILED: "C3"}  # when nothing else colours curves


def _top_trials(trials: pd.DataFrame, metric: str, n: int) -> dict[str, str]:
    """{trial_id: colour} of the `n` best complete trials by `metric`, best first."""
    done = complete_trials(trials).dropna(subset=[metric])
    best = done.sort_values(metric, ascending=False, kind="stable").head(n)
    return {t: f"C{i}" for i, t in enumerate(best[C.TRIAL_ID])}


def learning_curves(
    curves: pd.DataFrame, trials: pd.DataFrame, *, metric: str = C.VAL_ACC, baseline: str | None = None,
    by_variant: bool = True, colors: Mapping[str, str] | None = None,
) -> Figure:
    """`metric` per epoch for every trained trial; pruned trials faint, failed dotted.

    By variant (`by_variant`, at most 10): seeds thin, each variant's mean over its complete
    seeds thick, one legend entry per variant. Else by run when there are several; else a
    search's best TOP_TRIALS trials in colour (legend: rank, name, final value) and the rest grey.
    """
    fig, ax = _figure()
    cols = [C.VARIANT, C.STATE] + ([C.RUN] if C.RUN in trials.columns else [])
    info = trials.set_index(C.TRIAL_ID)[cols]
    joined = curves.join(info, on=C.TRIAL_ID, how="inner").dropna(subset=[metric])
    if joined.empty:
        _note_empty(ax, "no per-epoch records")
    yk, ylabel = axis_unit(metric, joined[metric])
    key, palette = _groups(joined, by_variant, colors, baseline)
    top = _top_trials(trials, metric, TOP_TRIALS) if key is None else {}
    for trial, curve in joined.groupby(C.TRIAL_ID, sort=False):
        state = curve[C.STATE].iloc[0]
        alpha, style, _ = STATE_STYLE.get(state, STATE_STYLE[C.COMPLETE])
        if key is not None:
            color, width = palette[curve[key].iloc[0]], 1.0
            alpha = min(alpha, 0.4) if key == C.VARIANT else alpha  # seeds thin under the variant's mean
        elif state == C.COMPLETE:
            color, width = top.get(trial, OTHER_COLOR), 1.8 if trial in top else 1.0
        else:
            color, width = STATE_COLOR.get(state, OTHER_COLOR), 1.0
        ax.plot(curve[C.EPOCH].astype(float), curve[metric] * yk, color=color, linewidth=width, alpha=alpha,
                linestyle=style, zorder=3 if trial in top else 2)
    if key == C.VARIANT:
        _variant_means(ax, joined, metric, yk, palette, baseline)
    elif key is not None:
        for group, color in palette.items():
            if (joined[key] == group).any():
                ax.plot([], [], color=color, linewidth=1.5, label=str(group))
    else:
        final = complete_trials(trials).set_index(C.TRIAL_ID)
        for rank, (trial, color) in enumerate(top.items(), start=1):
            ax.plot([], [], color=color, linewidth=1.8,
                    label=f"#{rank} {final.loc[trial, C.VARIANT]} ({fmt.pct(final.loc[trial, metric])})")
        if joined.loc[joined[C.STATE] == C.COMPLETE, C.TRIAL_ID].nunique() > len(top):
            ax.plot([], [], color=OTHER_COLOR, linewidth=1.0, label="other complete trials")
    for state in (C.PRUNED, C.FAILED):
        if (joined[C.STATE] == state).any():  # empty proxy lines: one legend entry per state
            alpha, style, text = STATE_STYLE[state]
            color = STATE_COLOR[state] if key is None else "0.4"
            ax.plot([], [], color=color, alpha=max(alpha, 0.4), linestyle=style, label=text)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.set_title("learning curves")
    ax.grid(alpha=0.3)
    if not joined.empty:
        ax.legend(fontsize=8, loc="lower right")
    return fig


def _variant_means(ax, joined: pd.DataFrame, metric: str, yk: float, palette: Mapping[str, str],
                   baseline: str | None) -> None:
    """Thick mean curve (over complete seeds, per epoch) and one legend entry per variant."""
    done = joined[joined[C.STATE] == C.COMPLETE]
    for variant, color in palette.items():
        seeds = done[done[C.VARIANT] == variant]
        if not (joined[C.VARIANT] == variant).any():
            continue
        n = seeds[C.TRIAL_ID].nunique()
        label = f"{variant} (baseline, mean of {n})" if variant == baseline else f"{variant} (mean of {n})"
        if seeds.empty:
            ax.plot([], [], color=color, linewidth=2.2, label=label)
            continue
        mean = seeds.groupby(C.EPOCH)[metric].mean()                                  # (epochs,)
        ax.plot(mean.index.astype(float), mean.to_numpy() * yk, color=color, linewidth=2.6 if variant == baseline
                else 2.2, label=label, zorder=4)


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


def _interval_text(delta: float, lo: float, hi: float, n: int) -> str:
    if np.isnan(delta):
        return "no complete seeds"
    if np.isnan(lo) or np.isnan(hi):
        return f"{100 * delta:+.2f} pp, no interval (n={n})"
    return f"{100 * delta:+.2f} [{100 * lo:+.2f}, {100 * hi:+.2f}]"


def ablation_bars(table: pd.DataFrame, *, baseline: str | None, metric: str = C.VAL_ACC,
                  colors: Mapping[str, str] | None = None) -> Figure:
    """Δ of `metric` to the baseline per variant (percentage points) with its 95% CI whiskers,
    written out beside each bar; bars take the variant's colour (`variant_colors`), and the
    y labels name them (no legend: nothing is encoded that the labels do not say)."""
    if baseline is None:
        fig, ax = _figure()
        _note_empty(ax, "no baseline to compare against")
        return fig
    rows = table[table[C.VARIANT] != baseline].iloc[::-1]  # first variant on top; the baseline is the 0 line
    longest = max((len(str(v)) for v in table[C.VARIANT]), default=0) + 6  # " (n=3)"
    height = max(2.2, 0.45 * len(rows) + 1.4)
    fig, ax = _figure((max(SIZE[0], 3.5 + 0.08 * longest), height))  # room for long variant labels
    palette = {**variant_colors(table[C.VARIANT], baseline), **dict(colors or {})}
    y = np.arange(len(rows))
    delta = rows[C.DELTA].to_numpy(dtype=float) * 100.0                                  # (V,)
    lo_pp = rows[C.DELTA_LO].to_numpy(dtype=float) * 100.0                               # (V,)
    hi_pp = rows[C.DELTA_HI].to_numpy(dtype=float) * 100.0                               # (V,)
    whisker = np.vstack([np.nan_to_num(delta - lo_pp), np.nan_to_num(hi_pp - delta)])   # (2, V)
    ax.barh(y, np.nan_to_num(delta), xerr=whisker, capsize=4, error_kw={"elinewidth": 1.2}, height=0.6,
            color=[palette[v] for v in rows[C.VARIANT]], edgecolor="black", linewidth=0.6)
    ends = np.nanmax(np.vstack([hi_pp, delta, np.zeros_like(delta)]), axis=0)            # (V,)
    span = np.nanmax(np.abs(np.concatenate([lo_pp, hi_pp, delta, [1e-9]])))
    for yi, end, d, lo, hi, n in zip(y, ends, rows[C.DELTA], rows[C.DELTA_LO], rows[C.DELTA_HI], rows[C.N_SEEDS]):
        ax.text(end + 0.04 * span, yi, _interval_text(d, lo, hi, n), va="center", fontsize=8)
    ax.set_xlim(min(-span, np.nanmin(np.concatenate([lo_pp, [0.0]]))) * 1.15,
                max(span, np.nanmax(np.concatenate([hi_pp, [0.0]]))) * 1.15 + 0.55 * span)  # room for the text
    ax.set_yticks(y, [f"{v} (n={n})" for v, n in zip(rows[C.VARIANT], rows[C.N_SEEDS])])
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.axvline(0.0, color=BASELINE_COLOR, linewidth=1.2)
    ax.set_xlabel(f"Δ {metric} vs {baseline} (percentage points; 0 = {baseline})")
    methods = sorted({m for m in rows.get(C.CI_METHOD, pd.Series(dtype=str)) if m and m != "none"})
    how = f" ({', '.join(methods)})" if methods else ""
    ax.set_title(f"Δ {metric} vs {baseline}, 95% CI{how}", fontsize=11)
    ax.grid(axis="x", alpha=0.3)
    return fig
