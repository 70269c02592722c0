"""Text views: the variant table, per-stage descriptions, and the CLI commands that print them."""

from __future__ import annotations

import re

import pytest

from gsa_space.describe import describe_net, format_macs, format_table, variants_table
from gsa_space.variants import list_variants
from search.cli import main


def _ratios(text: str) -> tuple[float, float]:
    match = re.search(r"params .* = ([\d.]+)x, MACs .* = ([\d.]+)x", text.splitlines()[-1])
    assert match is not None, text
    return float(match.group(1)), float(match.group(2))


def test_format_table_aligns_text_left_and_numbers_right():
    text = format_table(["name", "n"], [["a", 5], ["bcd", 123]])
    assert text.splitlines() == ["name    n", "----  ---", "a       5", "bcd   123"]


def test_describe_net_gsa_resnet50_cheaper_than_resnet50():
    text = describe_net("gsa_resnet50", overrides={}, input_size=None)
    assert "gsa_resnet50 vs resnet50 at 224x224" in text.splitlines()[-1]
    params_ratio, macs_ratio = _ratios(text)
    assert params_ratio < 1.0 and macs_ratio < 1.0, text


def test_describe_net_one_row_per_stage_plus_stem_and_head():
    text = describe_net("gsa_resnet26_cifar", overrides={"gsa_stages": [3, 4]}, input_size=16)
    rows = [line.split() for line in text.splitlines()[4:10]]
    assert [r[0] for r in rows] == ["stem", "1", "2", "3", "4", "head"]
    assert [r[1] for r in rows[1:5]] == ["conv3x3", "conv3x3", "gsa", "gsa"]
    assert [r[2] for r in rows[1:5]] == ["1", "2", "4", "1"]
    assert [r[7] for r in rows[1:5]] == ["16x16", "16x16->8x8", "8x8->4x4", "4x4->2x2"]


def test_describe_net_conv_variant_is_its_own_baseline():
    text = describe_net("resnet_tiny", overrides={}, input_size=None)
    assert _ratios(text) == (1.0, 1.0)
    assert text.endswith("(a conv net: its own baseline)")


def test_describe_net_unknown_variant_raises():
    with pytest.raises(ValueError, match="^unknown variant 'gsa_resnet_tiyn'; did you mean 'gsa_resnet_tiny'"):
        describe_net("gsa_resnet_tiyn", overrides={}, input_size=None)


def test_variants_table_lists_every_variant_once():
    lines = variants_table().splitlines()
    assert lines[0].split() == ["variant", "style", "input", "chans", "classes", "depths", "params_M", "gmacs"]
    assert [line.split()[0] for line in lines[2:]] == list_variants()
    tiny = next(line.split() for line in lines if line.startswith("gsa_resnet_tiny "))
    assert tiny[1:6] == ["tiny", "8x8", "1", "10", "1-1-1"]


def test_cli_describe_prints_the_summary(capsys):
    assert main(["describe", "gsa_resnet_tiny", "--set", "gsa.heads=2"]) == 0
    out = capsys.readouterr().out
    assert "gsa_resnet_tiny vs resnet_tiny at 8x8" in out


def test_cli_describe_bad_override_is_one_line_error(capsys):
    assert main(["describe", "gsa_resnet_tiny", "--set", "stages.2.heads=3"]) == 2
    err = capsys.readouterr().err
    assert err == "gsa-nas: error: stages.2.heads=3 must divide stages.2.width=32\n"


@pytest.mark.parametrize("gmacs, expected", [
    ((0.001435, 0.0013), ["1.435M", "1.300M"]),
    ((4.1, 0.35), ["4.100G", "0.350G"]),
    ((0.0999999,), ["100.0M"]),
    ((0.00005,), ["50.00k"]),
    ((123.4, 12.0), ["123.4G", "12.0G"]),
])
def test_format_macs_one_unit_four_significant_digits(gmacs: tuple[float, ...], expected: list[str]) -> None:
    assert format_macs(*gmacs) == expected


def test_describe_net_tiny_summary_macs_in_mmacs_on_both_sides():
    last = describe_net("gsa_resnet_tiny", overrides={}, input_size=None).splitlines()[-1]
    assert re.search(r", MACs \d\.\d{3}M / \d\.\d{3}M = \d\.\d\dx, ", last), last


def test_describe_net_resnet50_summary_macs_in_gmacs_on_both_sides():
    last = describe_net("gsa_resnet50", overrides={}, input_size=None).splitlines()[-1]
    assert re.search(r", MACs \d\.\d{3}G / \d\.\d{3}G = 0\.\d\dx, ", last), last
