"""Figures: labelled axes with units, a legend, the baseline marked, pruned curves faint."""

from __future__ import annotations

import io

import matplotlib.image as mpimg
import pytest
from matplotlib.figure import Figure

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
    assert ax.get_xlabel() == "compute (GMACs, 10^9 multiply-accumulates / image)"
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
    assert _legend_texts(fig) == ["complete trials", "pruned (faint)", "failed (dotted)"]


def test_edf_figure_one_line_per_value(search_run):
    edf = error_edf(load_results(search_run), "gsa.heads")
    fig = F.edf_figure(edf, "gsa.heads")
    assert _legend_texts(fig) == ["gsa.heads=1 (n=2)", "gsa.heads=2 (n=2)", "gsa.heads=4 (n=2)"]
    assert fig.axes[0].get_xlabel() == "error (%, 1 - accuracy)"


def test_ablation_bars_one_bar_per_variant_with_whiskers(ablation_run):
    table = ablation_table(load_results(ablation_run), baseline="both", resamples=500)
    fig = F.ablation_bars(table, baseline="both")
    ax = fig.axes[0]
    assert len(ax.patches) == 4
    assert [t.get_text() for t in ax.get_yticklabels()] == [
        "conv (n=3)", "positional_only (n=3)", "content_only (n=2)", "both (baseline)"]
    assert ax.get_xlabel() == "Δ val_acc vs both (percentage points)"
    assert _legend_texts(fig) == ["better", "worse", "baseline"]


def test_figures_with_no_complete_trials_still_render(ablation_run):
    trials = load_results(ablation_run)
    trials[C.STATE] = "failed"
    fig = F.accuracy_vs_compute(trials, baseline="both")
    assert fig.axes[0].texts[0].get_text() == "no complete trials"
    assert _png_shape(fig)[:2] == (420, 640)
