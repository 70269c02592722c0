"""Golden tests of the table math on hand-built frames: means, stds, delta intervals, Pareto
sets, EDFs and the compute ledger; pruned, failed and infeasible trials never compared."""

from __future__ import annotations

import numpy as np
import optuna
import pandas as pd
import pytest

from reports import (ablation_table, compute_ledger, error_edf, excluded_trials, leaderboard, param_importance,
                     pareto_front)
from reports import columns as C
from reports.stats import NO_INTERVAL, PAIRED_T, delta_ci
from reports.tables import ablation_front, quantile_bins
from rundirs import build_search


def _trials(rows: list[tuple]) -> pd.DataFrame:
    """rows of (variant, seed, state, val_acc, test_acc, params, gmacs, epochs)."""
    frame = pd.DataFrame(rows, columns=[C.VARIANT, C.SEED, C.STATE, C.VAL_ACC, C.TEST_ACC,
                                        C.PARAMS, C.GMACS, C.EPOCHS])
    frame.insert(0, C.TRIAL_ID, [f"t{i}" for i in range(len(frame))])
    frame[C.REASON] = ""
    frame[C.BUDGET_EPOCHS] = 10
    frame[C.WALL_S] = 60.0
    return frame


@pytest.fixture
def ablation_trials() -> pd.DataFrame:
    return _trials([
        ("base", 0, "complete", 0.90, 0.89, 100, 1.0, 10),
        ("base", 1, "complete", 0.92, 0.91, 100, 1.0, 10),
        ("base", 2, "complete", 0.91, 0.90, 100, 1.0, 10),
        ("wide", 0, "complete", 0.91, 0.90, 200, 2.0, 10),
        ("wide", 1, "complete", 0.95, 0.94, 200, 2.0, 10),
        ("wide", 2, "complete", 0.90, 0.89, 200, 2.0, 10),
        ("wide", 3, "pruned", 0.99, np.nan, 200, 2.0, 3),     # must not count
        ("thin", 0, "complete", 0.80, 0.79, 50, 0.5, 10),
        ("thin", 1, "failed", 0.99, np.nan, 50, 0.5, 2),       # must not count
        ("huge", 0, "infeasible", np.nan, np.nan, 9000, 90.0, 0),
    ])


def test_ablation_table_means_stds_and_counts(ablation_trials):
    table = ablation_table(ablation_trials, baseline="base").set_index(C.VARIANT)
    assert list(table.index) == ["base", "wide", "thin", "huge"]
    assert table.loc["base", "val_acc_mean"] == pytest.approx(0.91)
    assert table.loc["base", "val_acc_std"] == pytest.approx(0.01)
    assert table.loc["wide", "val_acc_mean"] == pytest.approx(0.92)
    assert table.loc["wide", "val_acc_std"] == pytest.approx(np.std([0.91, 0.95, 0.90], ddof=1))
    assert table.loc["wide", "test_acc_mean"] == pytest.approx(0.91)
    assert table[C.N_SEEDS].to_dict() == {"base": 3, "wide": 3, "thin": 1, "huge": 0}
    assert table[C.FEW_SEEDS].to_dict() == {"base": False, "wide": False, "thin": True, "huge": True}
    assert table.loc["thin", "val_acc_mean"] == pytest.approx(0.80)
    assert np.isnan(table.loc["thin", "val_acc_std"])
    assert np.isnan(table.loc["huge", "val_acc_mean"])
    assert table.loc["huge", C.GMACS] == 90.0  # compute is shown even for a never-trained variant


def test_ablation_table_delta_paired_when_seed_sets_match(ablation_trials):
    table = ablation_table(ablation_trials, baseline="base").set_index(C.VARIANT)
    ref = delta_ci({0: 0.91, 1: 0.95, 2: 0.90}, {0: 0.90, 1: 0.92, 2: 0.91})
    assert (table.loc["wide", C.PAIRED], table.loc["wide", C.CI_METHOD]) == (True, PAIRED_T)
    assert table.loc["wide", C.DELTA] == pytest.approx(0.01)
    assert (table.loc["wide", C.DELTA_LO], table.loc["wide", C.DELTA_HI]) == (ref.lo, ref.hi)
    assert (table.loc["base", C.DELTA], table.loc["base", C.CI_METHOD]) == (0.0, "")


def test_ablation_table_one_seed_has_no_interval(ablation_trials):
    table = ablation_table(ablation_trials, baseline="base").set_index(C.VARIANT)
    assert (table.loc["thin", C.PAIRED], table.loc["thin", C.CI_METHOD]) == (False, NO_INTERVAL)
    assert table.loc["thin", C.DELTA] == pytest.approx(0.80 - 0.91)
    assert np.isnan(table.loc["thin", C.DELTA_LO]) and np.isnan(table.loc["thin", C.DELTA_HI])
    assert (np.isnan(table.loc["huge", C.DELTA]), table.loc["huge", C.CI_METHOD]) == (True, "")


def test_ablation_table_unknown_baseline_raises(ablation_trials):
    with pytest.raises(ValueError, match="baseline 'nope' is not a variant"):
        ablation_table(ablation_trials, baseline="nope")


def test_ablation_front_is_over_variant_means(ablation_trials):
    table = ablation_table(ablation_trials, baseline="base")
    # per seed, wide's 0.95 would beat everything; on means (0.92 at 2.0 GMACs) it still does not
    # dominate base (0.91 at 1.0) or thin (0.80 at 0.5), and huge has no mean
    front = ablation_front(table, {C.mean_col(C.VAL_ACC): "max", C.GMACS: "min"})
    assert front[C.VARIANT].tolist() == ["wide", "base", "thin"]
    table.loc[table[C.VARIANT] == "base", C.GMACS] = 2.5  # now wide is better and cheaper
    front = ablation_front(table, {C.mean_col(C.VAL_ACC): "max", C.GMACS: "min"})
    assert front[C.VARIANT].tolist() == ["wide", "thin"]


def test_leaderboard_ranks_complete_trials_only(ablation_trials):
    board = leaderboard(ablation_trials, C.VAL_ACC)
    assert board[C.RANK].tolist() == list(range(1, 8))
    assert board[C.TRIAL_ID].tolist()[:4] == ["t4", "t1", "t2", "t3"]  # t2, t3 tie: stable
    assert set(board[C.TRIAL_ID]) & {"t6", "t8", "t9"} == set()


def test_pareto_front_of_known_cloud():
    cloud = _trials([
        ("a", 0, "complete", 0.90, 0.0, 1, 1.0, 10),
        ("b", 0, "complete", 0.80, 0.0, 1, 0.5, 10),
        ("c", 0, "complete", 0.85, 0.0, 1, 1.2, 10),   # dominated by a
        ("d", 0, "complete", 0.70, 0.0, 1, 0.5, 10),   # dominated by b
        ("e", 0, "complete", 0.95, 0.0, 1, 2.0, 10),
        ("f", 0, "complete", 0.90, 0.0, 1, 1.0, 10),   # equal to a: kept
        ("g", 0, "pruned", 0.99, 0.0, 1, 0.1, 3),      # would dominate all; not complete
    ])
    front = pareto_front(cloud, {C.VAL_ACC: "max", C.GMACS: "min"})
    assert front[C.VARIANT].tolist() == ["e", "a", "f", "b"]


def test_pareto_front_matches_brute_force():
    rng = np.random.default_rng(1)
    rows = [(f"v{i}", 0, "complete", *rng.random(1), 0.0, 1, *rng.random(1), 10) for i in range(40)]
    cloud = _trials(rows)
    pts = cloud[[C.VAL_ACC, C.GMACS]].to_numpy()
    expected = {
        cloud[C.VARIANT][i] for i in range(40)
        if not any(pts[j, 0] >= pts[i, 0] and pts[j, 1] <= pts[i, 1] and tuple(pts[j]) != tuple(pts[i])
                   for j in range(40))
    }
    assert set(pareto_front(cloud, {C.VAL_ACC: "max", C.GMACS: "min"})[C.VARIANT]) == expected


def test_pareto_front_bad_mode_raises(ablation_trials):
    with pytest.raises(ValueError, match="objective 'gmacs' must have mode 'max' or 'min', but got 'low'"):
        pareto_front(ablation_trials, {C.VAL_ACC: "max", C.GMACS: "low"})


def test_error_edf_values_per_factor():
    trials = _trials([
        ("x", 0, "complete", 0.8, 0.0, 1, 1.0, 10),
        ("x", 1, "complete", 0.9, 0.0, 1, 1.0, 10),
        ("y", 0, "complete", 0.7, 0.0, 1, 1.0, 10),
        ("y", 1, "pruned", 0.1, 0.0, 1, 1.0, 2),
    ])
    trials["gsa.heads"] = [1, 1, 2, 2]
    edf = error_edf(trials, "gsa.heads", C.VAL_ACC)
    assert edf[C.FACTOR_VALUE].tolist() == ["1", "1", "2"]
    assert edf[C.ERROR].tolist() == pytest.approx([0.1, 0.2, 0.3])
    assert edf[C.CUM_FRACTION].tolist() == [0.5, 1.0, 1.0]


def test_error_edf_unset_factor_is_labelled():
    trials = _trials([("x", 0, "complete", 0.8, 0.0, 1, 1.0, 10), ("y", 0, "complete", 0.6, 0.0, 1, 1.0, 10)])
    trials["gsa.extent"] = [3, np.nan]
    assert error_edf(trials, "gsa.extent")[C.FACTOR_VALUE].tolist() == ["(unset)", "3.0"]


def test_compute_ledger_golden():
    trials = _trials([
        ("a", 0, "complete", 0.9, 0.9, 1, 1.0, 10),
        ("a", 1, "complete", 0.9, 0.9, 1, 1.0, 10),
        ("b", 0, "pruned", 0.5, np.nan, 1, 1.0, 3),
        ("b", 1, "pruned", 0.6, np.nan, 1, 1.0, 5),
        ("c", 0, "failed", 0.1, np.nan, 1, 1.0, 2),
        ("d", 0, "infeasible", np.nan, np.nan, 1, 9.0, 0),
    ])
    trials[C.WALL_S] = [3600.0, 3600.0, 1800.0, 1800.0, 360.0, 5.0]
    ledger = compute_ledger(trials)
    assert (ledger.trials, ledger.complete, ledger.pruned, ledger.failed, ledger.infeasible) == (6, 2, 2, 1, 1)
    assert ledger.epochs_trained == 30
    assert ledger.pruned_epochs_saved == 12
    assert ledger.full_budget_epochs == 42
    assert ledger.saved_share == pytest.approx(12 / 42)
    assert ledger.trial_hours == pytest.approx(3.1)
    assert ledger.to_frame()["quantity"].tolist()[:2] == ["trials", "complete"]


def test_excluded_trials_lists_non_complete_with_reason(ablation_trials):
    frame = ablation_trials.copy()
    frame.loc[frame[C.TRIAL_ID] == "t8", C.REASON] = "diverged"
    out = excluded_trials(frame)
    assert out[C.TRIAL_ID].tolist() == ["t6", "t8", "t9"]
    assert out[C.STATE].tolist() == ["pruned", "failed", "infeasible"]
    assert out[C.EPOCHS].tolist() == [3, 2, 0]
    assert out[C.REASON].tolist() == ["", "diverged", ""]


def test_param_importance_one_column_per_objective(tmp_path):
    run = build_search(tmp_path / "mo", name="mo", objectives={"val_acc": "max", "gmacs": "min"})
    frame = param_importance(f"sqlite:///{run / 'optuna.db'}", "mo", objective_names=["val_acc", "gmacs"])
    assert list(frame.columns) == ["val_acc", "gmacs"]
    assert sorted(frame.index) == ["gsa.heads", "train.lr", "width_mult"]
    assert frame.sum().tolist() == pytest.approx([1.0, 1.0])
    assert frame.attrs["note"] == "fANOVA over 6 complete trials"


def _tiny_study(tmp_path, values_and_heads: list[tuple[float, int]]) -> str:
    url = f"sqlite:///{tmp_path / 'tiny.db'}"
    study = optuna.create_study(storage=url, study_name="tiny", direction="maximize")
    dist = {"gsa.heads": optuna.distributions.CategoricalDistribution([1, 2, 4])}
    for value, heads in values_and_heads:
        study.add_trial(optuna.trial.create_trial(value=value, params={"gsa.heads": heads}, distributions=dist))
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.PRUNED, params={"gsa.heads": 4},
                                              distributions=dist, intermediate_values={1: 0.9}))
    return url


def test_param_importance_too_few_complete_trials_is_empty_with_note(tmp_path):
    frame = param_importance(_tiny_study(tmp_path, [(0.8, 1)]), "tiny", objective_names=["val_acc"])
    assert (frame.empty, list(frame.columns)) == (True, ["val_acc"])
    assert frame.attrs["note"] == "needs at least 2 complete trials; the study has 1"


def test_param_importance_single_valued_param_is_empty_with_note(tmp_path):
    frame = param_importance(_tiny_study(tmp_path, [(0.8, 2), (0.7, 2)]), "tiny")
    assert frame.empty
    assert frame.attrs["note"] == "no parameter took two or more values across the complete trials"


def test_param_importance_unknown_study_raises(tmp_path):
    with pytest.raises(ValueError, match="no Optuna study named 'other'"):
        param_importance(_tiny_study(tmp_path, [(0.8, 1)]), "other")


def test_error_edf_numbers_sorted_numerically():
    trials = _trials([("x", i, "complete", acc, 0.0, 1, 1.0, 10) for i, acc in enumerate([0.9, 0.8, 0.7])])
    trials["gsa.dim_key"] = [16, 4, 8]
    assert error_edf(trials, "gsa.dim_key")[C.FACTOR_VALUE].tolist() == ["4", "8", "16"]


def test_error_edf_numbers_before_text():
    trials = _trials([("x", i, "complete", 0.9, 0.0, 1, 1.0, 10) for i in range(3)])
    trials["gsa.extent"] = ["global", "5", "3"]
    assert error_edf(trials, "gsa.extent")[C.FACTOR_VALUE].tolist() == ["3", "5", "global"]


def test_error_edf_booleans_read_yes_no():
    trials = _trials([("x", 0, "complete", 0.8, 0.0, 1, 1.0, 10), ("y", 0, "complete", 0.6, 0.0, 1, 1.0, 10)])
    trials["gsa.positional"] = [True, False]
    assert error_edf(trials, "gsa.positional")[C.FACTOR_VALUE].tolist() == ["no", "yes"]


def test_error_edf_continuous_factor_in_quantile_bins():
    accs = [0.90, 0.85, 0.80, 0.75, 0.70, 0.65]
    trials = _trials([("x", i, "complete", acc, 0.0, 1, 1.0, 10) for i, acc in enumerate(accs)])
    trials["train.lr"] = [0.0011, 0.0052, 0.0023, 0.0094, 0.0031, 0.0077]
    edf = error_edf(trials, "train.lr", bins=3)
    assert edf[C.FACTOR_VALUE].tolist() == ["[0.0011, 0.0023]"] * 2 + ["[0.0031, 0.0052]"] * 2 + \
        ["[0.0077, 0.0094]"] * 2
    assert edf[C.CUM_FRACTION].tolist() == [0.5, 1.0] * 3
    assert edf[C.ERROR].tolist() == pytest.approx([0.10, 0.20, 0.15, 0.30, 0.25, 0.35])


def test_quantile_bins_nan_is_unset_and_few_values_fewer_bins():
    labels, order = quantile_bins(pd.Series([1.0, np.nan, 2.0, 1.0]), 3)
    assert labels.tolist() == ["[1, 1]", "(unset)", "[2, 2]", "[1, 1]"]
    assert order.tolist() == [0, -1, 1, 0]


def test_quantile_bins_zero_bins_raises():
    with pytest.raises(ValueError, match="bins must be at least 1, but got bins=0"):
        quantile_bins(pd.Series([1.0]), 0)


def test_param_importance_names_left_out_parameters(tmp_path):
    url = f"sqlite:///{tmp_path / 'cond.db'}"
    study = optuna.create_study(storage=url, study_name="cond", direction="maximize")
    dists = {"gsa.heads": optuna.distributions.CategoricalDistribution([1, 2, 4]),
             "gsa.extent": optuna.distributions.CategoricalDistribution([3, 5]),
             "gsa.dim_key": optuna.distributions.CategoricalDistribution([8])}
    for i, (value, heads) in enumerate([(0.8, 1), (0.7, 2), (0.9, 4), (0.6, 2)]):
        params = {"gsa.heads": heads, "gsa.dim_key": 8, **({"gsa.extent": 3} if i % 2 else {})}
        study.add_trial(optuna.trial.create_trial(value=value, params=params,
                                                  distributions={k: dists[k] for k in params}))
    frame = param_importance(url, "cond")
    assert list(frame.index) == ["gsa.heads"]
    assert frame.attrs["left_out"] == {"gsa.dim_key": "constant across the complete trials",
                                       "gsa.extent": "inactive in 2 of 4 complete trials"}
    assert frame.attrs["n_trials"] == 4
