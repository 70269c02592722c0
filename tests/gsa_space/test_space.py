"""The design space (domains, conditions, sampling) and the validity rules of configs."""

from __future__ import annotations

import random

import pytest

from gsa_space.space import (
    DESIGN_SPACE, Choice, Dimension, FloatRange, IntRange, active, active_dims, design_space, sample,
    split_values,
)
from gsa_space.variants import build_config, get_variant, list_variants


def test_design_space_names_are_the_override_keys():
    names = [d.name for d in DESIGN_SPACE]
    assert names == [
        "gsa.heads", "gsa.dim_key", "gsa.positional", "gsa.content", "gsa.extent", "gsa.axial_order",
        "gsa.query_norm", "gsa_stages", "width_mult", "depths",
        "train.lr", "train.weight_decay", "train.label_smoothing", "train.epochs",
    ]


def test_design_space_three_stages_names_only_stages_1_to_3():
    dims = {d.name: d for d in design_space(3)}
    assert dims["gsa_stages"].domain.values == ((1, 2, 3), (2, 3), (3,))
    assert {len(v) for v in dims["depths"].domain.values} == {3}


def test_sample_is_reproducible_for_a_seed():
    assert sample(DESIGN_SPACE, random.Random(7)) == sample(DESIGN_SPACE, random.Random(7))


def test_sample_conditional_dims_only_when_positional():
    rng = random.Random(0)
    seen = set()
    for _ in range(200):
        values = sample(DESIGN_SPACE, rng)
        on = values["gsa.positional"]
        seen.add(on)
        for key in ("gsa.extent", "gsa.content", "gsa.axial_order"):
            assert (key in values) == on
    assert seen == {True, False}


def test_sample_values_lie_in_their_domains():
    rng = random.Random(1)
    for _ in range(200):
        values = sample(DESIGN_SPACE, rng)
        for dim in active_dims(DESIGN_SPACE, values):
            assert dim.domain.contains(values[dim.name]), (dim.name, values[dim.name])


def test_sample_condition_on_later_dimension_raises():
    dims = [Dimension("gsa.extent", Choice((3,)), when={"gsa.positional": True}),
            Dimension("gsa.positional", Choice((True,)))]
    with pytest.raises(ValueError, match="condition on 'gsa.positional', which must come earlier"):
        sample(dims, random.Random(0))


def test_active_condition_absent_or_different_is_inactive():
    dim = Dimension("gsa.extent", Choice((3, 5)), when={"gsa.positional": True})
    assert active(dim, {"gsa.positional": True}) is True
    assert active(dim, {"gsa.positional": False}) is False
    assert active(dim, {}) is False
    assert active(dim, {"gsa.positional": 1}) is False  # 1 is not True in a study


def test_active_list_and_tuple_values_compare_by_items():
    dim = Dimension("gsa.heads", Choice((2,)), when={"gsa_stages": (2, 3)})
    assert active(dim, {"gsa_stages": [2, 3]}) is True


def test_int_range_log_and_step_stay_on_grid():
    rng = random.Random(0)
    stepped = IntRange(4, 20, step=4)
    logged = IntRange(1, 1000, log=True)
    for _ in range(300):
        assert stepped.sample(rng) in {4, 8, 12, 16, 20}
        assert 1 <= logged.sample(rng) <= 1000


def test_float_range_step_grid_and_log_bounds():
    rng = random.Random(0)
    grid = {FloatRange(0.5, 1.5, step=0.25).sample(rng) for _ in range(300)}
    assert grid == {0.5, 0.75, 1.0, 1.25, 1.5}
    logged = [FloatRange(1e-4, 1e-1, log=True).sample(rng) for _ in range(300)]
    assert min(logged) >= 1e-4 and max(logged) <= 1e-1


def test_domains_reject_bad_bounds():
    with pytest.raises(ValueError, match=r"IntRange\(low=5, high=1\): low must not exceed high"):
        IntRange(5, 1)
    with pytest.raises(ValueError, match=r"FloatRange\(low=0.0, log=True\): a log range needs low > 0"):
        FloatRange(0.0, 1.0, log=True)
    with pytest.raises(ValueError, match="Choice.values=\\(\\) must hold at least one value"):
        Choice(())


def test_choice_contains_distinguishes_bool_from_int():
    assert Choice((1, 2)).contains(True) is False
    assert Choice((True, False)).contains(True) is True
    assert Choice(((2, 3), (3,))).contains([2, 3]) is True


def test_split_values_separates_training_knobs():
    net, train = split_values({"gsa.heads": 2, "train.lr": 0.01, "width_mult": 0.5})
    assert net == {"gsa.heads": 2, "width_mult": 0.5}
    assert train == {"lr": 0.01}


def test_validate_every_variant_is_valid():
    for name in list_variants():
        assert build_config(name) == get_variant(name)


@pytest.mark.parametrize("overrides, message", [
    ({"stages.2.heads": 3}, "stages.2.heads=3 must divide stages.2.width=32"),
    ({"gsa.content": False, "gsa.positional": False},
     "stages.1.content=False and stages.1.positional=False: at least one branch must be on"),
    ({"gsa.extent": 4}, "stages.1.extent=4 must be an odd int >= 1 or 'global'"),
    ({"stages.3.extent": -1}, "stages.3.extent=-1 must be an odd int >= 1 or 'global'"),
    ({"gsa.extent": "local"}, "stages.1.extent='local' must be an odd int >= 1 or 'global'"),
    ({"stages.1.op": "conv5x5"}, "stages.1.op='conv5x5' must be one of: gsa, conv3x3"),
    ({"gsa.axial_order": "diag"}, "stages.1.axial_order='diag' must be one of: col_row, row_col"),
    ({"stages.2.depth": 0}, "stages.2.depth=0 must be a positive int"),
    ({"stages.3.width": -8}, "stages.3.width=-8 must be a positive int"),
    ({"gsa.dim_key": 0}, "stages.1.dim_key=0 must be a positive int"),
    ({"num_classes": 0}, "num_classes=0 must be a positive int"),
])
def test_validate_invalid_config_names_field_value_rule(overrides, message):
    with pytest.raises(ValueError) as err:
        build_config("gsa_resnet_tiny", overrides=overrides)
    assert str(err.value) == message


def test_validate_gsa_fields_of_conv_stages_are_inert():
    cfg = build_config("gsa_resnet_tiny", overrides={"gsa_stages": [3], "stages.1.heads": 3, "stages.1.extent": 4})
    assert cfg.gsa_stages == (3,)


def test_build_config_unknown_variant_suggests_closest():
    with pytest.raises(ValueError, match=r"^unknown variant 'gsa_resnet62'; did you mean 'gsa_resnet26'"):
        build_config("gsa_resnet62")


def test_build_config_unknown_variant_without_close_name():
    with pytest.raises(ValueError) as err:
        build_config("vit_base")
    assert str(err.value) == "unknown variant 'vit_base'; (gsa-nas variants lists them)"


def test_build_config_input_size_int_and_pair():
    assert build_config("gsa_resnet_tiny", input_size=12).input_size == (12, 12)
    assert build_config("gsa_resnet_tiny", input_size=(8, 12)).input_size == (8, 12)
    with pytest.raises(ValueError, match=r"input_size=0 must be a positive int or an \(H, W\) pair"):
        build_config("gsa_resnet_tiny", input_size=0)


def test_build_config_width_mult_rounds_to_heads():
    cfg = build_config("gsa_resnet_tiny", overrides={"width_mult": 0.75, "gsa.heads": 8})
    assert [s.width for s in cfg.stages] == [16, 24, 48]
