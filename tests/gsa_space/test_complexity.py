"""Compute accounting: exact small counts, no uncounted arithmetic, GSA cheaper than conv."""

from __future__ import annotations

import dataclasses
import time

import pytest
import torch
from torch import nn

from gsa_space.attention import GlobalSelfAttention
from gsa_space.complexity import (
    NO_ARITHMETIC_OPS, SOFTMAX_MACS_PER_ELEMENT, Complexity, breakdown, complexity, measure, uncounted_ops,
)
from gsa_space.describe import describe_net
from gsa_space.networks import build_net, create_net
from gsa_space.variants import build_config



class _Softmax(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.softmax(dim=-1)


def test_measure_conv_exact_macs_params_and_activations():
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False))
    c = measure(net, 10, in_chans=3)
    assert c == Complexity(params=216, gmacs=8 * 100 * 27 / 1e9, act_mb=8 * 100 * 4 / 1e6)


def test_measure_elementwise_one_mac_per_output_and_inplace_counted_once():
    conv_macs, out = 8 * 100 * 27, 8 * 100
    relu = measure(nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.ReLU()), 10, in_chans=3)
    inplace = measure(nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.ReLU(inplace=True)), 10, in_chans=3)
    assert relu.gmacs * 1e9 == pytest.approx(conv_macs + out)
    assert relu.act_mb * 1e6 == pytest.approx(2 * out * 4)
    assert inplace.act_mb * 1e6 == pytest.approx(out * 4)


def test_measure_softmax_and_batchnorm_conventions():
    net = nn.Sequential(nn.Conv2d(3, 8, 1, bias=False), nn.BatchNorm2d(8), _Softmax())
    c = measure(net, 5, in_chans=3)
    out = 8 * 25
    assert c.gmacs * 1e9 == pytest.approx(out * 3 + out + SOFTMAX_MACS_PER_ELEMENT * out)


@pytest.mark.parametrize("options", [
    {},
    {"positional": False},
    {"content": False, "extent": 3},
    {"query_norm": True, "axial_order": "row_col", "out_proj": True},
])
def test_uncounted_ops_gsa_module_only_ops_without_arithmetic(options):
    gsa = GlobalSelfAttention(16, 16, heads=2, dim_key=8, max_size=(6, 7), **options)
    remaining = uncounted_ops(gsa, (6, 7), in_chans=16)
    assert sorted(set(remaining) - NO_ARITHMETIC_OPS) == []


@pytest.mark.parametrize("name, size", [("gsa_resnet_tiny", 8), ("gsa_resnet26_cifar", 8), ("resnet26", 32)])
def test_uncounted_ops_networks_only_ops_without_arithmetic(name, size):
    remaining = uncounted_ops(create_net(name, input_size=size), size)
    assert sorted(set(remaining) - NO_ARITHMETIC_OPS) == []


@pytest.mark.parametrize("style, size", [("", 224), ("_cifar", 32)])
@pytest.mark.parametrize("depth", [26, 38, 50, 101])
def test_complexity_gsa_net_fewer_params_and_macs_than_conv(depth, style, size):
    gsa = complexity(build_config(f"gsa_resnet{depth}{style}"))
    conv = complexity(build_config(f"resnet{depth}{style}"))
    assert build_config(f"gsa_resnet{depth}{style}").input_size == (size, size)
    assert gsa.params < conv.params, (gsa, conv)
    assert gsa.gmacs < conv.gmacs, (gsa, conv)


def test_complexity_resnet50_params_exact_and_macs_near_the_standard_4_1g():
    c = complexity(build_config("resnet50"))
    assert c.params == 25_557_032
    # 4.09 GMACs of convs and the linear layer; BN, ReLU, adds and pools bring 0.03 more
    assert 4.09 < c.gmacs < 4.15


@pytest.mark.parametrize("name, size, depths", [
    ("gsa_resnet_tiny", 8, [3, 1, 4]),
    ("gsa_resnet26_cifar", 8, [3, 1, 3, 1]),
    ("resnet_tiny", (6, 9), [1, 5, 2]),
])
def test_complexity_two_block_count_equals_the_full_net(name, size, depths):
    cfg = build_config(name, input_size=size, overrides={"depths": depths})
    torch.manual_seed(0)
    full = measure(build_net(cfg), size)
    fast = complexity(cfg)
    assert fast.params == full.params
    assert fast.gmacs == pytest.approx(full.gmacs, rel=1e-12)
    assert fast.act_mb == pytest.approx(full.act_mb, rel=1e-12)


def test_complexity_int_pair_and_network_agree():
    cfg = build_config("gsa_resnet_tiny")
    by_int, by_pair = complexity(cfg, 8), complexity(cfg, (8, 8))
    by_net = complexity(build_net(cfg))
    assert by_int == by_pair
    assert (by_net.params, by_net.gmacs) == (by_int.params, pytest.approx(by_int.gmacs, rel=1e-12))


def test_complexity_other_input_size_rebuilds_global_modules():
    cfg = build_config("gsa_resnet_tiny")
    small, large = complexity(cfg, 8), complexity(cfg, 16)
    assert large.gmacs > 3 * small.gmacs
    assert large.params > small.params  # global embeddings grow with the map


def test_breakdown_parts_sum_to_the_total():
    cfg = build_config("gsa_resnet26_cifar")
    parts = breakdown(cfg)
    assert list(parts) == ["stem", "stages.0", "stages.1", "stages.2", "stages.3", "pool", "head"]
    assert sum(p.params for p in parts.values()) == complexity(cfg).params


def test_complexity_tiny_net_under_a_second_of_cpu():
    cfg = build_config("gsa_resnet_tiny", overrides={"gsa.heads": 2, "gsa.dim_key": 4, "width_mult": 1.25})
    start = time.process_time()
    complexity(cfg)
    assert time.process_time() - start < 1.0


def test_complexity_record_is_frozen():
    c = complexity(build_config("resnet_tiny"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.gmacs = 0.0  # type: ignore[misc]


def test_measure_restores_training_mode():
    net = create_net("gsa_resnet_tiny")
    net.train()
    measure(net, 8)
    assert net.training is True


def test_complexity_module_without_config_needs_input_size():
    with pytest.raises(ValueError, match="input_size=None needs a network built from a NetConfig"):
        complexity(nn.Sequential(nn.Conv2d(1, 2, 1)))


# The attention module's own counts (traced on its PyTorch-ops path, whatever kernels run).

def _positional_macs(extent, size=16, heads=2, dim_key=4, channels=8):
    m = GlobalSelfAttention(channels, channels, heads=heads, dim_key=dim_key, extent=extent,
                            content=False, max_size=size)
    return round(measure(m, size, in_chans=channels).gmacs * 1e9)


def test_global_self_attention_windowed_macs_exact():
    from fvcore.nn import FlopCountAnalysis
    from gsa_space.complexity import handlers

    S, h, dk, dv, C, L = 16, 2, 4, 4, 8, 3
    m = GlobalSelfAttention(C, C, heads=h, dim_key=dk, extent=L, content=False, max_size=S).eval()
    by_op = FlopCountAnalysis(m, (torch.randn(1, C, S, S),)).set_op_handle(**handlers()).by_operator()
    assert by_op["bmm"] == 2 * S * S * h * L * dk               # logits of every offset, both steps
    assert 0 <= by_op["mul"] - 2 * h * dv * S * S < 8               # offset 0 (+ traced size arithmetic)
    assert by_op["addcmul_"] == 2 * h * dv * S * 2 * (S - 1)   # offsets +-1, inside the map only
    assert by_op["linear"] == S * S * C * (h * dk + C)


def test_global_self_attention_macs_grow_with_extent():
    macs = [_positional_macs(L) for L in (1, 3, 5, 9, 15, "global")]
    assert macs == sorted(macs) and len(set(macs)) == 6


def test_describe_gsa_resnet_tiny_extent_3_fewer_macs_than_global():
    local = complexity(build_config("gsa_resnet_tiny", overrides={"gsa.extent": 3}))
    dense = complexity(build_config("gsa_resnet_tiny", overrides={"gsa.extent": "global"}))
    assert local.gmacs < 0.97 * dense.gmacs
    assert f"MACs {local.gmacs * 1e3:.3f}M" in describe_net("gsa_resnet_tiny", overrides={"gsa.extent": 3})
    assert f"MACs {dense.gmacs * 1e3:.3f}M" in describe_net("gsa_resnet_tiny")
