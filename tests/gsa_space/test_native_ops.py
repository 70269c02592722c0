"""The native backend's torch.library operators: registration, fake impls, meta, compile, autocast.

gsa_nas::gsa_forward / gsa_backward (the whole module) and gsa_nas::axial_step / _backward must
pass torch.library.opcheck (schema, fake impl against the real one, autograd registration, AOT
dispatch), run on the meta device, let torch.compile trace the module without a graph break, and
make the module one operator per direction. Numerics are in test_attention and test_native.
"""

import os

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from gsa_space.attention import GlobalSelfAttention, attention_backend, native


@pytest.fixture(autouse=True)
def native_only():
    if not native.kernels_loaded():
        if os.environ.get("CI"):
            pytest.fail("native kernels did not build under CI")
        pytest.skip("native kernels unavailable (no C compiler)")
    with attention_backend("native"):
        yield


def gsa_forward_args(m, x, *, train):
    """The arguments `native.gsa_forward` passes to gsa_nas::gsa_forward for module m on x."""
    p = m.params()
    weight = torch.cat(p.projection_weights())
    if not m.positional:
        return (x, weight, None, None, None, None, None, None, None, p.heads, p.dim_key, p.content, False,
                p.query_norm, p.axial_order, None, 0.0, False)
    bn = m.norm
    return (x, weight, p.rel_col, p.rel_row, bn.weight, bn.bias, bn.running_mean.clone(), bn.running_var.clone(),
            bn.num_batches_tracked.clone() + 1 if train else None, p.heads, p.dim_key, p.content, True,
            p.query_norm, p.axial_order, bn.momentum, bn.eps, train)


@pytest.mark.parametrize("kwargs, layout, train", [
    (dict(), "nchw", True),
    (dict(query_norm=True, axial_order="row_col"), "channels_last", True),
    (dict(content=False, extent=3), "nchw", False),
    (dict(positional=False, query_norm=True), "channels_last", True),
    (dict(out_channels=32), "nchw", True),  # more q|k|v channels than positions: rows kept for the backward
])
def test_gsa_forward_operator_passes_opcheck(kwargs, layout, train):
    torch.manual_seed(0)
    kwargs = dict(kwargs)
    out_channels = kwargs.pop("out_channels", 8)
    m = GlobalSelfAttention(6, out_channels, heads=2, dim_key=4, max_size=(4, 5), **kwargs).double().train(train)
    x = torch.randn(2, 6, 4, 5, dtype=torch.float64)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    torch.library.opcheck(torch.ops.gsa_nas.gsa_forward.default, gsa_forward_args(m, x.requires_grad_(True), train=train))


@pytest.mark.parametrize("channels_last_out", [False, True])
@pytest.mark.parametrize("axis, L", [("col", 3), ("row", 9)])
def test_axial_step_operator_passes_opcheck(axis, L, channels_last_out):
    gen = torch.Generator().manual_seed(1)
    q = torch.randn(2, 2, 3, 4, 5, generator=gen, dtype=torch.float64).permute(0, 3, 4, 1, 2)  # strided views
    v = torch.randn(2, 2, 6, 4, 5, generator=gen, dtype=torch.float64).permute(0, 3, 4, 1, 2)
    rel = torch.randn(2, L, 3, generator=gen, dtype=torch.float64)
    args = tuple(t.requires_grad_(True) for t in (q, v, rel)) + (axis, channels_last_out)
    torch.library.opcheck(torch.ops.gsa_nas.axial_step.default, args)


def test_native_axial_step_runs_on_the_meta_device_and_checks_its_arguments():
    q, v = torch.empty(2, 4, 5, 3, 2, device="meta"), torch.empty(2, 4, 5, 3, 7, device="meta")
    assert tuple(native.axial_step(q, v, torch.empty(3, 5, 2, device="meta"), "row", channels_last_out=False).shape) \
        == (2, 3, 7, 4, 5)
    with pytest.raises(ValueError, match="rel length L must be odd"):
        native.axial_step(q, v, torch.empty(3, 4, 2, device="meta"), "col", channels_last_out=True)


class _OpLog(TorchDispatchMode):
    """The operators called at the top level (inside an operator's own implementation, none)."""

    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(str(func.overloadpacket))
        return func(*args, **(kwargs or {}))


def test_native_module_is_one_operator_per_direction():
    m = GlobalSelfAttention(4, 8, heads=2, dim_key=2, max_size=(6, 8))
    x = torch.randn(2, 4, 6, 8, requires_grad=True)
    with _OpLog() as log:
        m(x).sum().backward()
    assert [op for op in log.ops if op.startswith("gsa_nas")] == ["gsa_nas.gsa_forward", "gsa_nas.gsa_backward"]
    assert not {"aten.bmm", "aten.mm", "aten.matmul", "aten.native_batch_norm"} & set(log.ops)


@pytest.mark.parametrize("kwargs", [dict(), dict(out_proj=True, query_norm=True), dict(content=False, extent=3)])
def test_native_module_compiles_without_graph_break(kwargs):
    torch.manual_seed(0)
    m = GlobalSelfAttention(8, 8, heads=2, dim_key=4, max_size=6, **kwargs)
    x = torch.randn(2, 8, 6, 6, requires_grad=True)
    explained = torch._dynamo.explain(m)(x)
    assert (explained.graph_count, explained.graph_break_count) == (1, 0)
    targets = [str(n.target) for g in explained.graphs for n in g.graph.nodes if n.op == "call_function"]
    assert "gsa_nas.gsa_forward" in targets


@pytest.mark.parametrize("compiler", ["eager", "aot_eager"])
def test_native_module_compiled_equals_eager_bit_for_bit(compiler):
    torch.manual_seed(0)
    m = GlobalSelfAttention(8, 8, heads=2, dim_key=4, max_size=6, out_proj=True)
    x = torch.randn(2, 8, 6, 6, requires_grad=True)
    results = []
    for run in (m, torch.compile(m, backend=compiler)):
        torch.manual_seed(1)
        x.grad = None
        m.zero_grad(set_to_none=True)
        out = run(x)
        out.square().sum().backward()
        results.append([out.detach(), x.grad] + [p.grad for p in m.parameters()])
    for eager, compiled in zip(*results):
        assert torch.equal(eager, compiled)
    assert int(m.norm.num_batches_tracked) == 2  # the compiled forward kept nn.BatchNorm2d's count


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_native_module_under_cpu_autocast_runs_in_float32(dtype):
    # the gsa_nas operators' autocast rule: float16 / bfloat16 inputs are cast to float32, the
    # kernels' dtype, and the output stays float32 (as for autocast's float32 ops)
    torch.manual_seed(0)
    m = GlobalSelfAttention(8, 8, heads=2, dim_key=4, max_size=6).eval()
    x = torch.randn(2, 8, 6, 6).to(dtype)
    with torch.no_grad():
        plain = m(x.float())
        with torch.autocast("cpu", dtype=torch.bfloat16):
            cast = m(x)
    assert cast.dtype == torch.float32 and torch.equal(cast, plain)


def test_axial_step_operator_under_cpu_autocast_runs_in_float32():
    gen = torch.Generator().manual_seed(1)
    q, v = torch.randn(2, 4, 5, 2, 3, generator=gen), torch.randn(2, 4, 5, 2, 4, generator=gen)
    rel = torch.randn(2, 5, 3, generator=gen)
    with torch.autocast("cpu", dtype=torch.float16):
        cast = native.axial_step(q.half(), v.half(), rel, "col", channels_last_out=True)
    assert cast.dtype == torch.float32 and torch.equal(cast, native.axial_step(q.half().float(), v.half().float(),
                                                                                 rel, "col", channels_last_out=True))
