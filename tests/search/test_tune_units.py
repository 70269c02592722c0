"""Unit tests of the Ray/Optuna bridge pieces on real (in-memory) Optuna studies; no Ray cluster."""

from __future__ import annotations

import math

import optuna
import pytest
from optuna.trial import TrialState

from gsa_space.space import Choice, Dimension, FloatRange, IntRange
from reports.run_dir import results_columns
from search.results import recorded_fields, results_frame, space_fields
from search.study.keys import trial_value
from search.study import load_study, resolve_trial
from search.tune.ledger import (COMPLETE, CONSTRAINTS_ATTR, FAILED, INFEASIBLE, INTERRUPTED, PRUNED, Ledger,
                                open_study)
from search.tune.plan import plan_work
from search.tune.progress import Tally
from search.tune.searcher import violations
from search.study.resolve import grid_size
from search.tune.space_compile import decode_params, encode, make_pruner, make_sampler, sample_point

optuna.logging.set_verbosity(optuna.logging.WARNING)

SPACE = (
    Dimension("gsa.positional", Choice((True, False))),
    Dimension("gsa.extent", Choice((3, "global")), when={"gsa.positional": True}),
    Dimension("gsa_stages", Choice(((1, 2, 3), (3,)))),
    Dimension("width_mult", FloatRange(0.5, 1.5, step=0.25)),
    Dimension("gsa.heads", IntRange(1, 4)),
)


def _ledger(directions=("max",)) -> Ledger:
    return Ledger(open_study("sqlite:///:memory:", "unit", list(directions)))


def _epoch(epoch: int, acc: float) -> dict:
    return {"epoch": epoch, "val_acc": acc, "train_loss": 1.0, "val_loss": 1.0, "lr": 0.1,
            "images_per_sec": 100.0, "seconds": 2.0}


def test_encode_list_choice_as_dashed_string():
    assert encode((1, 2, 3)) == "1-2-3"
    assert encode("global") == "global"
    assert encode(True) is True


def test_sample_point_skips_dimension_whose_condition_fails():
    study = optuna.create_study()
    study.enqueue_trial({"gsa.positional": False, "gsa_stages": "3", "width_mult": 0.75, "gsa.heads": 2})
    values = sample_point(study.ask(), SPACE)
    assert values == {"gsa.positional": False, "gsa_stages": (3,), "width_mult": 0.75, "gsa.heads": 2}


def test_sample_point_includes_conditional_dimension_when_active():
    study = optuna.create_study()
    study.enqueue_trial({"gsa.positional": True, "gsa.extent": "global", "gsa_stages": "1-2-3",
                         "width_mult": 1.5, "gsa.heads": 4})
    trial = study.ask()
    values = sample_point(trial, SPACE)
    assert values["gsa.extent"] == "global" and values["gsa_stages"] == (1, 2, 3)
    assert decode_params(trial.params, SPACE) == values


def test_grid_size_is_product_of_choice_counts():
    assert grid_size(SPACE[:3]) == 8


def test_make_sampler_grid_rejects_range_dimension():
    with pytest.raises(ValueError, match="'width_mult' is a range"):
        make_sampler("grid", 0, {}, SPACE)


def test_make_sampler_cmaes_rejects_choice_dimension():
    with pytest.raises(ValueError, match="'gsa.positional' is a choice"):
        make_sampler("cmaes", 0, {}, SPACE)


def test_make_pruner_hyperband_defaults_max_resource_to_budget():
    pruner = make_pruner("hyperband", {}, 12)
    assert isinstance(pruner, optuna.pruners.HyperbandPruner)
    assert pruner._max_resource == 12


def test_violations_names_metric_value_and_limit():
    cx = {"gmacs": 0.061, "params": 1000.0, "act_mb": 0.1}
    assert violations(cx, {"max_gmacs": 0.05, "max_params": 2000.0}) == ["gmacs 0.061 > max_gmacs 0.05"]


def test_record_epoch_replaces_repeated_epoch_and_drops_later_ones():
    ledger = _ledger()
    n = ledger.study.ask().number
    for e, acc in ((1, 0.5), (2, 0.6), (3, 0.7)):
        ledger.record_epoch(n, _epoch(e, acc))
    ledger.record_epoch(n, _epoch(2, 0.65))  # a retry from the epoch-1 checkpoint
    frozen = ledger.frozen(n)
    assert [r["epoch"] for r in frozen.user_attrs["curve"]] == [1, 2]
    assert frozen.user_attrs["curve"][1]["val_acc"] == 0.65
    assert frozen.intermediate_values[2] == 0.65
    assert frozen.user_attrs["epochs"] == 2


def test_finish_pruned_keeps_intermediate_values_and_state_attr():
    ledger = _ledger()
    n = ledger.study.ask().number
    ledger.record_epoch(n, _epoch(1, 0.4))
    ledger.finish(n, PRUNED, reason="stopped by the pruner at epoch 1 of 4")
    frozen = ledger.frozen(n)
    assert frozen.state == TrialState.PRUNED
    assert frozen.intermediate_values == {1: 0.4}
    assert frozen.user_attrs["gsa_state"] == "pruned" and frozen.user_attrs["epochs"] == 1


def test_finish_infeasible_is_pruned_without_intermediate_values():
    ledger = _ledger()
    trial = ledger.study.ask()
    ledger.set_constraints(trial.number, [0.01])
    ledger.finish(trial.number, INFEASIBLE, reason="gmacs 0.06 > max_gmacs 0.05", attrs={"epochs": 0})
    frozen = ledger.frozen(trial.number)
    assert (frozen.state, frozen.intermediate_values, frozen.constraints) == (TrialState.PRUNED, {}, {"0": 0.01})
    assert frozen.user_attrs["reason"] == "gmacs 0.06 > max_gmacs 0.05"


def test_finish_complete_multi_objective_stores_both_values():
    ledger = _ledger(("max", "min"))
    n = ledger.study.ask().number
    ledger.record_epoch(n, _epoch(1, 0.9))
    ledger.finish(n, COMPLETE, values=[0.9, 0.002])
    frozen = ledger.frozen(n)
    assert frozen.values == [0.9, 0.002]
    assert frozen.intermediate_values == {}
    assert len(frozen.user_attrs["curve"]) == 1


def test_close_running_fails_with_interrupted_and_skips_finished_records():
    ledger = _ledger()
    done, running = ledger.study.ask().number, ledger.study.ask().number
    ledger.record_epoch(done, _epoch(1, 0.8))
    ledger.finish(done, COMPLETE, values=[0.8])
    closed = ledger.close_running()
    assert [t.number for t in closed] == [running]
    frozen = ledger.frozen(running)
    assert (frozen.state, frozen.user_attrs["reason"], frozen.user_attrs["gsa_state"]) == (
        TrialState.FAIL, INTERRUPTED, FAILED)
    assert [t.number for t in ledger.finished_records()] == [done]


def test_plan_ablation_enqueues_each_missing_arm_once():
    study = load_study("quickstart", {"seeds": [0, 1], "variants": {"both": {}, "conv": {"model.variant": "resnet_tiny"}}})
    ledger = _ledger()
    first = plan_work(study, ledger)
    again = plan_work(study, ledger)  # a resume before anything ran: nothing new enqueued
    waiting = ledger.study.get_trials(states=(TrialState.WAITING,))
    assert (first.to_launch, first.enqueued, again.to_launch, again.enqueued) == (4, 4, 4, 0)
    assert sorted(t.user_attrs["trial_key"] for t in waiting) == ["both-s0", "both-s1", "conv-s0", "conv-s1"]


def test_results_frame_column_order_and_infeasible_row():
    study = load_study("quickstart", {"seeds": [0], "variants": {"both": {}, "qn": {"gsa.query_norm": True}}})
    ledger = _ledger()
    plan_work(study, ledger)
    a, b = ledger.study.ask(), ledger.study.ask()
    ledger.set_attrs(a.number, {"params": 10, "gmacs": 0.5, "act_mb": 0.1, "budget_epochs": 2,
                                "fields": {"gsa.query_norm": False}})
    ledger.record_epoch(a.number, _epoch(1, 0.5))
    ledger.record_epoch(a.number, _epoch(2, 0.4))
    ledger.finish(a.number, COMPLETE, values=[0.4], attrs={"test_acc": 0.45})
    ledger.set_attrs(b.number, {"params": 12, "gmacs": 0.7, "act_mb": 0.1, "budget_epochs": 2})
    ledger.finish(b.number, INFEASIBLE, reason="gmacs 0.7 > max_gmacs 0.6", attrs={"epochs": 0})
    frame = results_frame(study, ledger.finished_records())
    assert list(frame.columns) == results_columns(space_fields(study), recorded_fields(study))
    assert list(frame.columns)[7:8] == ["gsa.query_norm"] and "model.variant" in frame.columns
    assert space_fields(study) == ["gsa.query_norm"]
    row_a, row_b = frame.iloc[0], frame.iloc[1]
    assert (row_a["val_acc"], row_a["best_val_acc"], row_a["best_epoch"], row_a["test_acc"]) == (0.4, 0.5, 1.0, 0.45)
    assert (row_a["wall_s"], row_a["gsa.query_norm"]) == (4.0, False)
    assert (row_b["state"], row_b["epochs"], row_b["params"], row_b["gsa.query_norm"]) == ("infeasible", 0, 12, True)
    assert math.isnan(row_b["val_acc"]) and math.isnan(row_b["test_acc"])


def test_trial_value_reads_resolved_trial():
    study = load_study("quickstart", {"seeds": [0]})
    spec = resolve_trial(study, variant="content_only", seed=0, params={"gsa_stages": [2, 3], "train.lr": 0.01})
    values = [trial_value(spec.net, spec.train, "gsa_resnet_tiny", k) for k in
              ("gsa.positional", "gsa.content", "gsa_stages", "train.lr", "model.variant", "stages.1.op")]
    assert values == [False, True, (2, 3), 0.01, "gsa_resnet_tiny", "conv3x3"]


def test_trial_value_gsa_field_of_a_conv_net_is_none():
    spec = resolve_trial(load_study("quickstart"), variant="conv", seed=0, params={})
    assert [trial_value(spec.net, spec.train, "resnet_tiny", k) for k in ("gsa.positional", "gsa.content")] == [None, None]


def _interrupted_rerun(positional: bool):
    """A search ledger whose trial 0 (key trial_0000) was interrupted and is enqueued again."""
    study = load_study("search_digits", {"constraints": {}, "num_samples": 2})
    ledger = _ledger()
    point = {"gsa.heads": 2, "gsa.dim_key": 8, "gsa.positional": positional, "gsa_stages": "2-3",
             "width_mult": 1.0, "train.lr": 0.003}
    if positional:
        point["gsa.extent"] = 3
    ledger.study.enqueue_trial(point)
    lost = ledger.study.ask()
    sample_point(lost, study.search.space)
    ledger.set_attrs(lost.number, {"trial_key": "trial_0000", "seed": 0})
    ledger.close_running()
    plan_work(study, ledger)
    return study, ledger


def test_searcher_rerun_keeps_key_as_variant_and_leaves_inactive_field_empty():
    from search.runner import measure
    from search.tune.searcher import GsaSearcher

    study, ledger = _interrupted_rerun(positional=False)
    config = GsaSearcher(study, ledger, to_launch=1, measure=measure, tally=Tally(planned=1)).suggest("tune_1")
    assert (config["optuna_number"], config["trial_key"], config["variant"]) == (1, "trial_0000", None)
    attrs = ledger.frozen(1).user_attrs
    assert (attrs["variant"], attrs["trial_key"]) == ("trial_0000", "trial_0000")
    assert (attrs["fields"]["gsa.positional"], attrs["fields"]["gsa.extent"], attrs["fields"]["gsa_stages"]) == (
        False, None, "2-3")
    ledger.record_epoch(1, _epoch(1, 0.5))
    ledger.finish(1, COMPLETE, values=[0.5])
    frame = results_frame(study, ledger.finished_records(), lambda p: decode_params(p, study.search.space))
    row = frame.iloc[0]
    assert (len(frame), row["trial_id"], row["variant"]) == (1, "trial_0000", "trial_0000")
    assert row["gsa.positional"] == False  # noqa: E712  (an object column: numpy.bool_ or bool)
    assert math.isnan(row["gsa.extent"])


def test_searcher_active_conditional_field_is_recorded():
    from search.runner import measure
    from search.tune.searcher import GsaSearcher

    study, ledger = _interrupted_rerun(positional=True)
    GsaSearcher(study, ledger, to_launch=1, measure=measure, tally=Tally(planned=1)).suggest("tune_1")
    assert ledger.frozen(1).user_attrs["fields"]["gsa.extent"] == 3


def test_results_frame_search_variant_from_key_and_inactive_field_empty_for_old_records():
    study = load_study("search_digits", {"constraints": {}})
    ledger = _ledger()
    rec = ledger.study.ask()
    rec.suggest_categorical("gsa.positional", [True, False])  # gsa.extent never sampled after False
    # as an older searcher stored them: a label from another Optuna number, the network's fallback extent
    ledger.set_attrs(rec.number, {"trial_key": "trial_0005", "variant": "trial_6",
                                  "fields": {"gsa.positional": False, "gsa.extent": "global"}})
    ledger.finish(rec.number, INFEASIBLE, reason="gmacs 0.1 > max_gmacs 0.05", attrs={"epochs": 0})
    row = results_frame(study, ledger.finished_records()).iloc[0]
    assert (row["trial_id"], row["variant"]) == ("trial_0005", "trial_0005")
    assert math.isnan(row["gsa.extent"]) and math.isnan(row["width_mult"])


def test_records_summary_counts_in_fixed_order():
    from search.results import records_summary

    assert records_summary(["complete"] * 6 + ["infeasible"] * 2) == "8 records: 6 complete, 2 infeasible"
    assert records_summary(["infeasible", "failed", "pruned", "complete"]) == (
        "4 records: 1 complete, 1 pruned, 1 failed, 1 infeasible")
    assert (records_summary(["failed"]), records_summary([])) == ("1 record: 1 failed", "0 records")


def test_trial_config_round_trips_through_the_tune_dict():
    from search.tune.trial_config import TrialConfig, optuna_number

    cfg = TrialConfig(optuna_number=3, trial_key="both-s1", variant="both", seed=1,
                      params=(("gsa.heads", 2), ("gsa_stages", (2, 3))), complexity=(("gmacs", 0.5),))
    config = cfg.to_config()
    assert (TrialConfig.from_config(config), optuna_number(config), optuna_number({})) == (cfg, 3, None)


def test_trial_config_from_a_foreign_dict_names_the_missing_keys():
    from search.tune.trial_config import TrialConfig

    with pytest.raises(KeyError, match=r"needs \['optuna_number', 'seed'\]"):
        TrialConfig.from_config({"trial_key": "k", "variant": None})


def test_open_study_names_the_objectives_also_on_a_study_from_before_names():
    storage = optuna.storages.InMemoryStorage()
    old = optuna.create_study(storage=storage, study_name="old", directions=["maximize", "minimize"])
    assert old.metric_names is None
    study = open_study(storage, "old", ["max", "min"], metric_names=["val_acc", "gmacs"])
    study.tell(study.ask(), [0.9, 0.002])
    assert study.metric_names == ["val_acc", "gmacs"]
    assert list(study.trials_dataframe(multi_index=True)["values"].columns) == ["val_acc", "gmacs"]
    assert open_study(storage, "new", ["max"], metric_names=["val_acc"]).metric_names == ["val_acc"]


def test_ledger_constraints_are_the_list_optuna_and_optuna_dashboard_read():
    from optuna.study._constrained_optimization import _CONSTRAINTS_KEY

    ledger = _ledger()
    n = ledger.study.ask().number
    ledger.set_constraints(n, [0.01, -0.5])
    ledger.finish(n, INFEASIBLE, reason="gmacs 0.06 > max_gmacs 0.05")
    frozen = ledger.frozen(n)
    assert CONSTRAINTS_ATTR == _CONSTRAINTS_KEY == "constraints"  # optuna-dashboard reads system_attrs["constraints"]
    assert frozen.system_attrs[CONSTRAINTS_ATTR] == [0.01, -0.5]
    assert frozen.constraints == {"0": 0.01, "1": -0.5}


@pytest.mark.parametrize("sampler", ["tpe", "nsga2"])
def test_ledger_constraints_leave_the_proposals_of_set_constraint(sampler):
    """The same margins stored as the list propose the same points as Optuna's `set_constraint`.

    Every trial is told COMPLETE (also the infeasible ones: NSGA-II learns only from those), so
    that the constraints steer the sampler: without them it proposes other points.
    """
    def proposals(store) -> list[dict]:
        make = {"tpe": lambda: optuna.samplers.TPESampler(seed=3, n_startup_trials=4),
                "nsga2": lambda: optuna.samplers.NSGAIISampler(seed=3, population_size=4)}[sampler]
        ledger = Ledger(open_study("sqlite:///:memory:", "eq", ["max"], sampler=make()))
        for _ in range(14):
            trial = ledger.study.ask()
            x, heads = trial.suggest_float("x", 0.0, 1.0), trial.suggest_int("heads", 1, 4)
            store(ledger, trial, x + heads / 10 - 0.8)  # over budget when > 0
            ledger.finish(trial.number, COMPLETE, values=[x * heads])
        return [t.params for t in ledger.study.get_trials()]

    plain = proposals(lambda ledger, trial, margin: trial.set_constraint("gmacs", margin))
    ours = proposals(lambda ledger, trial, margin: ledger.set_constraints(trial.number, [margin]))
    unconstrained = proposals(lambda ledger, trial, margin: None)
    assert ours == plain
    assert unconstrained != plain


def _searcher(study, ledger, gmacs: list[float]):
    from search.tune.searcher import GsaSearcher

    values = iter(gmacs)
    return GsaSearcher(study, ledger, to_launch=1, tally=Tally(planned=1),
                       measure=lambda spec: {"params": 1000.0, "gmacs": next(values), "act_mb": 0.1})


def test_searcher_constraints_positive_when_infeasible_and_not_when_feasible():
    study = load_study("search_digits", {"constraints": {"max_gmacs": 0.002}, "num_samples": 1})
    ledger = _ledger()
    config = _searcher(study, ledger, [0.003, 0.0015]).suggest("tune_1")
    rejected, launched = ledger.frozen(0), ledger.frozen(1)
    assert config["optuna_number"] == 1
    assert (rejected.state, rejected.user_attrs["gsa_state"]) == (TrialState.PRUNED, "infeasible")
    assert rejected.system_attrs["constraints"] == [pytest.approx(0.001)]
    assert launched.system_attrs["constraints"] == [pytest.approx(-0.0005)]


def test_searcher_ablation_variant_is_a_categorical_param():
    study = load_study("quickstart", {"seeds": [0]})
    ledger = _ledger()
    plan_work(study, ledger)
    names = ("both", "content_only", "positional_only", "conv")
    searcher = _searcher(study, ledger, [0.001] * 4)
    searcher._left = 4
    configs = [searcher.suggest(f"tune_{i}") for i in range(4)]
    trials = ledger.study.get_trials()
    assert [c["variant"] for c in configs] == [t.params["variant"] for t in trials] == list(names)
    assert {t.distributions["variant"] for t in trials} == {optuna.distributions.CategoricalDistribution(names)}
