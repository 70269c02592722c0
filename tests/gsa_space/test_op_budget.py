"""How many aten ops a forward and backward dispatches, counted on the meta device (no compute).

A GPU at these sizes is bound by kernel launches, so the batched backend ("auto" off the CPU) must
keep one GSA module within BUDGET ops at every batch size and map, and a GSA net within NET_RATIO
times its conv twin. Views and allocations are not counted (gsa_space.op_count).
Measured with torch 2.13 (docs/gsa.md §7): the module 48 ops (52 with extent 7) at every batch
size; torch_ops 88 to 1,875 by shape and batch. gsa_resnet26_cifar 591 vs resnet26_cifar 217 at
batch 128; torch_ops 4,897.
"""

import pytest
import torch

from gsa_space.attention import GlobalSelfAttention, attention_backend
from gsa_space.networks import create_net
from gsa_space.op_count import OpCounter, count_forward_backward

BUDGET = 80
NET_RATIO = 4
SHAPES = {  # name: (channels, map size, heads, dim_key, extent)
    "64ch_32x32": (64, 32, 8, 16, "global"),
    "128ch_16x16": (128, 16, 8, 16, "global"),
    "256ch_8x8": (256, 8, 8, 32, "global"),
    "64ch_32x32_extent7": (64, 32, 8, 16, 7),
}


def module_ops(shape: str, batch: int) -> int:
    C, S, heads, dim_key, extent = SHAPES[shape]
    with torch.device("meta"):
        m = GlobalSelfAttention(C, C, heads=heads, dim_key=dim_key, extent=extent, max_size=S)
        x = torch.empty(batch, C, S, S, requires_grad=True)
    forward, backward = count_forward_backward(m, x)
    return sum(forward.values()) + sum(backward.values())


def net_ops(name: str, batch: int = 128) -> int:
    with torch.device("meta"):
        net = create_net(name)
        x = torch.empty(batch, 3, 32, 32, requires_grad=True)
    forward, backward = count_forward_backward(net, x)
    return sum(forward.values()) + sum(backward.values())


@pytest.mark.parametrize("batch", [1, 8, 128])
@pytest.mark.parametrize("shape", list(SHAPES))
def test_gsa_module_forward_backward_within_op_budget(shape, batch):
    assert module_ops(shape, batch) <= BUDGET


@pytest.mark.parametrize("shape", list(SHAPES))
def test_gsa_module_op_count_does_not_grow_with_batch(shape):
    assert module_ops(shape, 1) == module_ops(shape, 128)


def test_gsa_net_within_op_ratio_of_its_conv_twin():
    gsa, conv = net_ops("gsa_resnet26_cifar"), net_ops("resnet26_cifar")
    assert gsa <= NET_RATIO * conv, (gsa, conv)


def test_torch_ops_module_exceeds_the_budget_where_it_chunks():
    # The count sees what it should: torch_ops loops over chunks and heads at batch 128 on 32x32.
    with attention_backend("torch_ops"):
        assert module_ops("64ch_32x32", 128) > 10 * BUDGET


def test_op_counter_skips_views_and_allocations_and_counts_copies():
    x = torch.empty(4, 6, device="meta")
    with OpCounter() as ops:
        x.view(2, 12).reshape(24).narrow(0, 0, 6).unsqueeze(0).t()      # views
        torch.empty(3, device="meta")                                    # an allocation
        x.contiguous()                                                   # contiguous already: no op
        x.t().contiguous()                                               # a copy
        torch.mm(x, x.t())
    assert dict(ops.counts) == {"clone": 1, "mm": 1}
