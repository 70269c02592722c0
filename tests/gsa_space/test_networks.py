"""GSA-ResNets and conv-ResNets: shapes, gradients, strides, variants and sampled configs."""

from __future__ import annotations

import random

import pytest
import torch

from gsa_space.attention import GlobalSelfAttention
from gsa_space.networks import ResNet, build_net, create_net, stage_sizes
from gsa_space.space import design_space, sample, split_values
from gsa_space.variants import build_config, conv_counterpart, list_variants

# Small inputs keep forward + backward of every variant fast on 2 CPU cores.
SMALL_SIZE = {"imagenet": 32, "cifar": 16, "tiny": 8}



def _forward_backward(net: ResNet, size: tuple[int, int], batch: int = 2) -> torch.Tensor:
    cfg = net.cfg
    x = torch.randn(batch, cfg.in_chans, *size)
    out = net(x)
    out.square().mean().backward()
    return out


def _assert_all_grads_finite(net: torch.nn.Module) -> None:
    for name, p in net.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all().item() is True, name


def test_list_variants_names_every_depth_style_and_op():
    expected = [f"{p}{d}{s}" for p in ("gsa_resnet", "resnet") for d in (26, 38, 50, 101) for s in ("", "_cifar")]
    expected += ["gsa_resnet_tiny", "resnet_tiny"]
    assert sorted(list_variants()) == sorted(expected)


@pytest.mark.parametrize("name", list_variants())
def test_create_net_every_variant_forward_backward(name):
    style = build_config(name).style
    size = SMALL_SIZE[style]
    torch.manual_seed(0)
    net = create_net(name, input_size=size)
    out = _forward_backward(net, (size, size))
    assert out.shape == (2, net.cfg.num_classes)
    _assert_all_grads_finite(net)


def test_create_net_defaults_by_style():
    assert build_config("gsa_resnet50").input_size == (224, 224)
    assert (build_config("resnet26_cifar").input_size, build_config("resnet26_cifar").num_classes) == ((32, 32), 100)
    tiny = build_config("gsa_resnet_tiny")
    assert (tiny.input_size, tiny.in_chans, tiny.num_classes) == ((8, 8), 1, 10)


def test_create_net_resnet50_matches_the_standard_param_count():
    assert sum(p.numel() for p in create_net("resnet50").parameters()) == 25_557_032


def test_create_net_overrides_as_keywords():
    net = create_net("gsa_resnet_tiny", num_classes=7, **{"gsa.heads": 2, "gsa_stages": [3]})
    assert [s.op for s in net.cfg.stages] == ["conv3x3", "conv3x3", "gsa"]
    assert net.cfg.stages[2].heads == 2
    assert net.head.out_features == 7


def test_build_net_without_zero_init_every_param_gets_nonzero_grad():
    torch.manual_seed(0)
    net = build_net(build_config("gsa_resnet_tiny"), zero_init_last=False)
    _forward_backward(net, (8, 8), batch=4)
    for name, p in net.named_parameters():
        assert p.grad.abs().sum().item() > 0, name


def test_build_net_zero_init_last_starts_blocks_as_shortcuts():
    net = build_net(build_config("gsa_resnet_tiny"))
    gammas = [b.bn3.weight for stage in net.stages for b in stage]
    assert [g.abs().sum().item() for g in gammas] == [0.0, 0.0, 0.0]


def test_stage_sizes_imagenet_224():
    sizes = stage_sizes(build_config("gsa_resnet50"))
    assert sizes == [((56, 56), (56, 56)), ((56, 56), (28, 28)), ((28, 28), (14, 14)), ((14, 14), (7, 7))]


def test_gsa_modules_built_for_their_blocks_resolution():
    net = create_net("gsa_resnet26", input_size=(64, 96))
    sizes = [m.max_size for m in net.modules() if isinstance(m, GlobalSelfAttention)]
    # depths 1-2-4-1; a block is built for its input: 16x24 | 16x24, 8x12 | 8x12, 4x6 x3 | 4x6
    assert sizes == [(16, 24), (16, 24), (8, 12), (8, 12), (4, 6), (4, 6), (4, 6), (4, 6)]


@pytest.mark.parametrize("size", [(8, 12), (7, 9), (5, 5)])
def test_create_net_non_square_and_odd_inputs(size):
    torch.manual_seed(0)
    net = create_net("gsa_resnet_tiny", input_size=size)
    out = _forward_backward(net, size)
    assert out.shape == (2, 10)
    _assert_all_grads_finite(net)


def test_gsa_block_strides_by_pooling_and_conv_block_in_its_3x3():
    gsa = create_net("gsa_resnet_tiny").stages[1][0].spatial
    conv = create_net("resnet_tiny").stages[1][0].spatial
    assert [type(m).__name__ for m in gsa] == ["GlobalSelfAttention", "AvgPool2d"]
    assert (type(conv).__name__, conv.stride) == ("Conv2d", (2, 2))


def test_tiny_gsa_blocks_not_larger_than_the_convs_they_replace():
    gsa, conv = create_net("gsa_resnet_tiny"), create_net("resnet_tiny")
    for i in range(3):
        n_gsa = sum(p.numel() for p in gsa.stages[i][0].spatial.parameters())
        n_conv = sum(p.numel() for p in conv.stages[i][0].spatial.parameters())
        assert n_gsa <= n_conv, (i + 1, n_gsa, n_conv)


def test_conv_counterpart_same_config_every_stage_conv():
    cfg = build_config("gsa_resnet26_cifar", overrides={"width_mult": 0.5})
    base = conv_counterpart(cfg)
    assert base.name == "resnet26_cifar"
    assert [s.op for s in base.stages] == ["conv3x3"] * 4
    assert [s.width for s in base.stages] == [s.width for s in cfg.stages] == [32, 64, 128, 256]


def test_create_net_unknown_variant_raises_with_suggestion():
    with pytest.raises(ValueError) as err:
        create_net("gsa_resnet62")
    assert str(err.value).startswith("unknown variant 'gsa_resnet62'; did you mean 'gsa_resnet26'")


def test_create_net_invalid_override_raises_before_building():
    with pytest.raises(ValueError) as err:
        create_net("gsa_resnet_tiny", **{"stages.2.heads": 3})
    assert str(err.value) == "stages.2.heads=3 must divide stages.2.width=32"


def _sampled_configs(n: int, seed: int) -> list:
    rng, dims, out = random.Random(seed), design_space(3), []
    for _ in range(n):
        net_values, _ = split_values(sample(dims, rng))
        out.append((net_values, build_config("gsa_resnet_tiny", overrides=net_values)))
    return out


SAMPLED = _sampled_configs(50, seed=0)


@pytest.mark.parametrize("index", range(len(SAMPLED)))
def test_sampled_configs_forward_backward(index):
    values, cfg = SAMPLED[index]
    torch.manual_seed(index)
    net = build_net(cfg)
    out = _forward_backward(net, cfg.input_size)
    assert out.shape == (2, 10), values
    _assert_all_grads_finite(net)


def test_sampled_configs_cover_the_choices():
    values = [v for v, _ in SAMPLED]
    assert {v["gsa.positional"] for v in values} == {True, False}
    assert {tuple(v["gsa_stages"]) for v in values} == {(1, 2, 3), (2, 3), (3,)}
    assert {v.get("gsa.extent") for v in values if "gsa.extent" in v} == {3, 5, 7, "global"}
