"""Figures: labelled axes with units chosen by magnitude, a legend that matches what is drawn,
the baseline marked, pruned curves faint, ablation points as variant means ± std."""

from __future__ import annotations

import io

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_hex
from matplotlib.container import ErrorbarContainer
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from reports import ablation_table, error_edf, load_curves, load_results
from reports import columns as C
from reports import figures as F


def _legend_texts(fig: Figure) -> list[str]:
    legend = fig.axes[0].get_legend()
    return [t.get_text() for t in legend.get_texts()] if legend else []


def _png_shape(fig: Figure) -> tuple[int, ...]:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    buf.seek(0)
    return mpimg.imread(buf).shape


def test_accuracy_vs_compute_marks_baseline_and_front(ablation_run):
    fig = F.accuracy_vs_compute(load_results(ablation_run), x=C.GMACS, baseline="both")
    ax = fig.axes[0]
    assert ax.get_xlabel() == "compute (MMACs / image)"
    assert ax.get_ylabel() == "validation accuracy (%)"
    assert _legend_texts(fig) == ["both", "content_only", "positional_only", "conv", "baseline (both)", "Pareto front"]
    assert _png_shape(fig)[:2] == (420, 640)


def test_accuracy_vs_compute_plots_complete_trials_only(ablation_run):
    trials = load_results(ablation_run)
    fig = F.accuracy_vs_compute(trials, x=C.PARAMS, baseline=None, by_variant=False)
    points = fig.axes[0].collections[0].get_offsets()
    assert len(points) == 11  # the failed trial is not a point
    assert max(points[:, 1]) == pytest.approx(94.0)
    assert _legend_texts(fig) == ["complete trials", "Pareto front"]


def test_baseline_mask_matches_name_or_size(ablation_run):
    trials = load_results(ablation_run)
    trials.loc[trials[C.VARIANT] == "conv", [C.PARAMS, C.GMACS]] = [5000, 0.004]  # same size as both
    mask = F.baseline_mask(trials, "both")
    assert trials.loc[mask, C.VARIANT].unique().tolist() == ["both", "conv"]


def test_learning_curves_pruned_faint(search_run):
    fig = F.learning_curves(load_curves(search_run), load_results(search_run), by_variant=False)
    ax = fig.axes[0]
    alphas = sorted({line.get_alpha() for line in ax.get_lines() if line.get_xydata().size})
    assert alphas == [0.25, 0.9]
    assert ax.get_xlabel() == "epoch"


def test_learning_curves_search_colours_best_trials_with_legend(search_run):
    fig = F.learning_curves(load_curves(search_run), load_results(search_run), by_variant=False)
    assert _legend_texts(fig) == ["#1 trial_3 (92.00%)", "#2 trial_1 (90.00%)", "#3 trial_7 (88.00%)",
                                  "#4 trial_9 (86.00%)", "#5 trial_5 (85.00%)", "other complete trials",
                                  "pruned (faint)", "failed (dotted)"]
    handles = fig.axes[0].get_legend().legend_handles
    assert [to_hex(h.get_color()) for h in handles[:F.TOP_TRIALS]] == [to_hex(f"C{i}") for i in range(5)]
    drawn = {to_hex(line.get_color()) for line in fig.axes[0].get_lines() if line.get_xydata().size}
    assert {to_hex(f"C{i}") for i in range(5)} | {to_hex(F.OTHER_COLOR)} <= drawn


def test_edf_figure_one_line_per_value(search_run):
    edf = error_edf(load_results(search_run), "gsa.heads")
    fig = F.edf_figure(edf, "gsa.heads")
    assert _legend_texts(fig) == ["gsa.heads=1 (n=2)", "gsa.heads=2 (n=2)", "gsa.heads=4 (n=2)"]
    assert fig.axes[0].get_xlabel() == "error (%, 1 - accuracy)"


def test_ablation_bars_one_bar_per_variant_with_whiskers(ablation_run):
    table = ablation_table(load_results(ablation_run), baseline="both")
    fig = F.ablation_bars(table, baseline="both")
    ax = fig.axes[0]
    assert len(ax.patches) == 3  # the baseline is the 0 line, not a bar
    assert [t.get_text() for t in ax.get_yticklabels()] == [
        "conv (n=3)", "positional_only (n=3)", "content_only (n=2)"]
    assert ax.get_xlabel() == "Δ val_acc vs both (percentage points; 0 = both)"
    assert ax.get_legend() is None  # the labels name the bars; no legend to disagree with them
    whiskers = [c for c in ax.containers if isinstance(c, ErrorbarContainer)][0].lines[2][0]
    assert len(whiskers.get_segments()) == 3


def test_ablation_bars_colours_and_labels_match_the_table(ablation_run):
    table = ablation_table(load_results(ablation_run), baseline="both")
    colors = F.variant_colors(table[C.VARIANT], "both")
    fig = F.ablation_bars(table, baseline="both", colors=colors)
    ax = fig.axes[0]
    assert [to_hex(p.get_facecolor()) for p in ax.patches] == [to_hex(colors[v])
                                                               for v in ("conv", "positional_only", "content_only")]
    rows = table.set_index(C.VARIANT)
    conv = rows.loc["conv"]
    expected = f"{100 * conv[C.DELTA]:+.2f} [{100 * conv[C.DELTA_LO]:+.2f}, {100 * conv[C.DELTA_HI]:+.2f}]"
    assert [t.get_text() for t in ax.texts][0] == expected


def test_ablation_bars_one_seed_says_no_interval(ablation_run):
    trials = load_results(ablation_run)
    trials = trials[~((trials[C.VARIANT] == "conv") & (trials[C.SEED] > 0))]
    fig = F.ablation_bars(ablation_table(trials, baseline="both"), baseline="both")
    assert fig.axes[0].texts[0].get_text() == "+2.00 pp, no interval (n=1)"


def test_ablation_vs_compute_plots_variant_means_with_std(ablation_run):
    trials = load_results(ablation_run)
    table = ablation_table(trials, baseline="both")
    fig = F.ablation_vs_compute(table, trials, baseline="both")
    ax = fig.axes[0]
    assert ax.get_xlabel() == "compute (MMACs / image)"
    assert _legend_texts(fig) == ["Pareto front of the means", "both (baseline)", "content_only (n=2)",
                                  "positional_only (n=3)", "conv (n=3)"]
    means = np.array([c.lines[0].get_xydata()[0] for c in ax.containers])                   # (V, 2)
    assert means.ravel().tolist() == pytest.approx([4.0, 91.0, 3.0, 85.5, 3.5, 88.0, 6.0, 93.0])
    bars = [c.lines[2][0].get_segments()[0][:, 1] for c in ax.containers]  # the ± std whiskers
    assert [b[1] - b[0] for b in bars] == pytest.approx([2.0, 2 * 0.7071068, 2.0, 2.0])
    front = [line for line in ax.get_lines() if line.get_label() == "Pareto front of the means"][0]
    assert front.get_xydata().ravel().tolist() == pytest.approx([3.0, 85.5, 3.5, 88.0, 4.0, 91.0, 6.0, 93.0])


def test_figures_with_no_complete_trials_still_render(ablation_run):
    trials = load_results(ablation_run)
    trials[C.STATE] = "failed"
    fig = F.accuracy_vs_compute(trials, baseline="both")
    assert fig.axes[0].texts[0].get_text() == "no complete trials"
    assert _png_shape(fig)[:2] == (420, 640)


def test_learning_curves_integer_epoch_ticks(ablation_run):
    fig = F.learning_curves(load_curves(ablation_run), load_results(ablation_run), baseline="both")
    ax = fig.axes[0]
    locator = ax.xaxis.get_major_locator()
    assert isinstance(locator, MaxNLocator)
    assert [float(t).is_integer() for t in locator()] == [True] * len(locator())


def test_learning_curves_by_variant_colours_match_scatter(ablation_run):
    trials = load_results(ablation_run)
    colors = F.variant_colors(trials[C.VARIANT], "both")
    assert colors == {"both": F.BASELINE_COLOR, "content_only": "C0", "positional_only": "C1", "conv": "C2"}
    curves = F.learning_curves(load_curves(ablation_run), trials, baseline="both", colors=colors)
    scatter = F.accuracy_vs_compute(trials, baseline="both", colors=colors)
    line_colors = {t.get_text().split(" (")[0]: to_hex(h.get_color()) for t, h in
                   zip(curves.axes[0].get_legend().get_texts(), curves.axes[0].get_legend().legend_handles)}
    dot_colors = {c.get_label(): to_hex(c.get_facecolor()[0]) for c in scatter.axes[0].collections[:4]}
    assert line_colors["conv"] == dot_colors["conv"] == to_hex("C2")
    assert line_colors["both"] == dot_colors["both"] == to_hex(F.BASELINE_COLOR)
    assert _legend_texts(curves) == ["both (baseline, mean of 3)", "content_only (mean of 2)",
                                     "positional_only (mean of 3)", "conv (mean of 3)", "failed (dotted)"]


def test_accuracy_vs_compute_colours_runs(search_run, ablation_run):
    a = load_results(ablation_run).assign(run="quick")
    b = load_results(search_run).assign(run="search_small")
    fig = F.accuracy_vs_compute(pd.concat([a, b], ignore_index=True), by_variant=False)
    assert _legend_texts(fig) == ["quick", "search_small", "Pareto front"]
    faces = [to_hex(c.get_facecolor()[0]) for c in fig.axes[0].collections[:2]]
    assert faces == [to_hex("C0"), to_hex("C1")]


def test_accuracy_vs_compute_units_by_magnitude_no_offset(ablation_run):
    fig = F.accuracy_vs_compute(load_results(ablation_run), baseline="both")
    fig.canvas.draw()
    ax = fig.axes[0]
    lo, hi = ax.get_xlim()
    labels = [t.get_text() for t, x in zip(ax.get_xticklabels(), ax.get_xticks()) if lo <= x <= hi]
    assert 3 <= len(labels) <= 7
    assert [float(label.replace("\u2212", "-")) for label in labels] == pytest.approx(
        [x for x in ax.get_xticks() if lo <= x <= hi])  # plain numbers in MMACs: 3.0, 3.5, ...
    assert ax.xaxis.get_offset_text().get_text() == ""  # never "x10^-3"
    assert ax.get_xlabel() == "compute (MMACs / image)"


def test_accuracy_vs_compute_params_in_thousands(ablation_run):
    fig = F.accuracy_vs_compute(load_results(ablation_run), x=C.PARAMS, baseline="both")
    ax = fig.axes[0]
    assert ax.get_xlabel() == "parameters (K)"
    assert max(ax.collections[0].get_offsets()[:, 0]) == pytest.approx(5.0)  # 5000 params read 5 K


@pytest.mark.parametrize(("gmacs", "divisor", "unit"), [
    ([0.00143, 0.0013], 1e-3, "MMACs"), ([2.5, 0.3], 1.0, "GMACs"), ([0.0004], 1e-6, "KMACs")])
def test_axis_unit_compute_by_magnitude(gmacs, divisor, unit):
    assert F.axis_unit(C.GMACS, gmacs) == (pytest.approx(1.0 / divisor), f"compute ({unit} / image)")


def test_edf_figure_numeric_values_in_numeric_order():
    trials = pd.DataFrame({C.STATE: "complete", "gsa.dim_key": [16, 4, 8, 16], C.VAL_ACC: [0.9, 0.8, 0.7, 0.6]})
    fig = F.edf_figure(error_edf(trials, "gsa.dim_key"), "gsa.dim_key")
    assert _legend_texts(fig) == ["gsa.dim_key=4 (n=1)", "gsa.dim_key=8 (n=1)", "gsa.dim_key=16 (n=2)"]


def test_edf_figure_booleans_read_yes_no():
    trials = pd.DataFrame({C.STATE: "complete", "gsa.positional": [True, False], C.VAL_ACC: [0.9, 0.8]})
    fig = F.edf_figure(error_edf(trials, "gsa.positional"), "gsa.positional")
    assert _legend_texts(fig) == ["gsa.positional=no (n=1)", "gsa.positional=yes (n=1)"]


def test_edf_figure_float_factor_binned_legend(search_run):
    edf = error_edf(load_results(search_run), "train.lr", bins=3)
    fig = F.edf_figure(edf, "train.lr")
    assert _legend_texts(fig) == ["train.lr in [0.001, 0.001] (n=2)", "train.lr in [0.002, 0.003] (n=2)",
                                  "train.lr in [0.004, 0.005] (n=2)"]


def test_ablation_bars_title_fits_in_figure(ablation_run):
    table = ablation_table(load_results(ablation_run), baseline="both")
    fig = F.ablation_bars(table, baseline="both")
    fig.canvas.draw()
    ax = fig.axes[0]
    assert ax.get_title() == "Δ val_acc vs both, 95% CI (Welch t, paired t)"  # content_only lost a seed
    box = ax.title.get_window_extent()
    assert (box.x0 >= 0, box.x1 <= fig.bbox.x1) == (True, True)
    texts = [t.get_window_extent() for t in ax.texts]
    assert [(b.x1 <= fig.bbox.x1) for b in texts] == [True] * 3  # the interval labels fit too
