"""The batched backend against the spec and the loop references, its choice, the meta device, compile.

gsa_space.attention.batched must equal spec.gsa_reference in float64 (1e-9) for every option, in
training and eval mode: output, the gradients of the input and of every parameter, and the
BatchNorm's running statistics. Its axial step must equal the loop reference. torch.compile must
trace it without a graph break and give eager's numbers. Op counts: test_op_budget.py; autocast:
test_autocast.py.
"""

import copy
import zlib

import pytest
import torch

from gsa_space.attention import GlobalSelfAttention, attention_backend, batched, dispatch, spec
from gsa_space.networks import create_net
from loop_references import REL_CASES, grads, make, ref_relative

CASES = {  # name: (module kwargs, input (B, C_in, H, W)); out_channels 6 unless given
    "global": (dict(heads=2, dim_key=3, max_size=(4, 5)), (2, 5, 4, 5)),
    "global_map_smaller_than_max": (dict(heads=2, dim_key=3, max_size=(7, 6)), (2, 5, 4, 5)),
    "local_shorter_than_axes": (dict(heads=2, dim_key=3, extent=3), (2, 5, 6, 7)),
    "local_between_axis_and_twice": (dict(heads=2, dim_key=2, extent=7), (2, 4, 5, 6)),  # S <= L < 2S - 1
    "local_longer_than_axes": (dict(heads=2, dim_key=2, extent=11), (2, 4, 3, 4)),
    "local_shorter_on_one_axis": (dict(heads=2, dim_key=2, extent=5, axial_order="row_col"), (2, 4, 7, 3)),
    "positional_only": (dict(heads=2, dim_key=2, content=False, extent=5), (2, 4, 4, 5)),
    "positional_only_one_head": (dict(heads=1, dim_key=2, content=False, max_size=(3, 5)), (2, 4, 3, 5)),
    "content_only": (dict(heads=2, dim_key=2, positional=False), (2, 4, 4, 3)),
    "content_only_query_norm": (dict(heads=2, dim_key=2, positional=False, query_norm=True), (2, 4, 4, 3)),
    "query_norm": (dict(heads=2, dim_key=3, query_norm=True, max_size=(5, 4)), (2, 5, 5, 4)),
    "row_col": (dict(heads=2, dim_key=2, axial_order="row_col", max_size=(3, 6)), (2, 4, 3, 6)),
    "one_head": (dict(heads=1, dim_key=3, max_size=(4, 6)), (2, 5, 4, 6)),
    "eight_heads": (dict(heads=8, dim_key=2, max_size=5, out_channels=16), (2, 6, 5, 3)),
    "batch_1": (dict(heads=2, dim_key=3, max_size=(5, 4)), (1, 5, 5, 4)),
    "one_pixel_axis": (dict(heads=2, dim_key=2, max_size=(1, 5)), (2, 4, 1, 5)),
    "dv_longer_than_axes": (dict(heads=2, dim_key=2, max_size=5, out_channels=16), (2, 4, 3, 5)),
    "out_proj": (dict(heads=2, dim_key=2, out_proj=True, query_norm=True, max_size=4), (2, 4, 4, 4)),
}


def build(name, seed=0):
    kwargs, shape = CASES[name]
    kwargs = dict(kwargs)
    out_channels = kwargs.pop("out_channels", 6)
    torch.manual_seed(seed)
    m = GlobalSelfAttention(shape[1], out_channels, **kwargs).double()
    if m.positional:
        with torch.no_grad():  # running statistics that eval mode visibly uses
            m.norm.running_mean.uniform_(-0.5, 0.5)
            m.norm.running_var.uniform_(0.5, 2.0)
    x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    return m, x, torch.randn(shape[0], out_channels, *shape[2:], dtype=torch.float64)


def reference(m, x):
    """The module's output by the spec (gsa_reference, then out_proj)."""
    out = spec.gsa_reference(m.params(), x)
    return out if m.proj is None else m.proj(out)


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("name", list(CASES))
def test_batched_module_matches_spec(name, train):
    m, x, seed_out = build(name)
    m.train(train)
    twin = copy.deepcopy(m)
    with attention_backend("batched"):
        out = m(x)
        got = grads(lambda: m(x), [x] + list(m.parameters()), seed_out)
    torch.testing.assert_close(out, reference(twin, x), rtol=0, atol=1e-9)
    want = grads(lambda: reference(twin, x), [x] + list(twin.parameters()), seed_out)
    for g_got, g_want in zip(got, want):
        torch.testing.assert_close(g_got, g_want, rtol=0, atol=1e-9)
    assert [(n, b.dtype) for n, b in m.named_buffers()] == [(n, b.dtype) for n, b in twin.named_buffers()]
    for (n, b_got), (_, b_want) in zip(m.named_buffers(), twin.named_buffers()):
        torch.testing.assert_close(b_got, b_want, rtol=0, atol=1e-12, msg=n)


@pytest.mark.parametrize("axis", ["col", "row"])
@pytest.mark.parametrize("case", REL_CASES)
def test_batched_axial_step_matches_loop_reference(case, axis):
    B, h, dk, dv, H, W, L = case
    gen = torch.Generator().manual_seed(zlib.crc32(repr((case, axis)).encode()))
    q, v, rel = make((B, h, dk, H, W), torch.float64, gen), make((B, h, dv, H, W), torch.float64, gen), \
        make((h, L, dk), torch.float64, gen)
    seed_out = torch.randn(B, h, dv, H, W, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(batched.axial_step(q, v, rel, axis), ref_relative(q, v, rel, axis), rtol=0, atol=1e-9)
    got = grads(lambda: batched.axial_step(q, v, rel, axis), [q, v, rel], seed_out)
    for g_got, g_ref in zip(got, grads(lambda: ref_relative(q, v, rel, axis), [q, v, rel], seed_out)):
        torch.testing.assert_close(g_got, g_ref, rtol=0, atol=1e-9)


def test_batched_module_takes_channels_last_input():
    m, x, seed_out = build("global")
    x_cl = x.detach().contiguous(memory_format=torch.channels_last).requires_grad_(True)
    with attention_backend("batched"):
        torch.testing.assert_close(m(x_cl), m(x), rtol=0, atol=1e-12)
        got = grads(lambda: m(x_cl), [x_cl], seed_out)[0]
        want = grads(lambda: m(x), [x], seed_out)[0]
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


# -- the choice -----------------------------------------------------------------------------------

def test_resolve_batched_runs_where_chosen_and_auto_picks_it_off_the_cpu():
    x, w = torch.randn(2, 4, 3, 3), torch.randn(6, 4, 1, 1)
    with attention_backend("batched"):
        assert dispatch.resolve(x, w) == "batched"
        assert dispatch.resolve(x[:0], w) == "torch_ops"                          # empty batch
    assert dispatch.resolve(x.to("meta"), w.to("meta")) == "batched"
    assert dispatch.resolve(x, w) in ("native", "torch_ops")                      # the CPU keeps its own


def test_module_runs_batched_when_chosen(monkeypatch):
    calls = []
    forward = batched.gsa_forward
    monkeypatch.setattr(batched, "gsa_forward", lambda p, x: calls.append(tuple(x.shape)) or forward(p, x))
    m = GlobalSelfAttention(4, 4, heads=2, dim_key=2, max_size=3)
    m(torch.randn(1, 4, 3, 3))
    with attention_backend("batched"):
        m(torch.randn(2, 4, 3, 3))
    assert calls == [(2, 4, 3, 3)]


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
def test_torchscript_tracing_runs_torch_ops_when_batched_is_chosen(monkeypatch):
    monkeypatch.setattr(batched, "gsa_forward", lambda p, x: pytest.fail("batched ran under tracing"))
    m = GlobalSelfAttention(4, 4, heads=2, dim_key=2, max_size=4).eval()
    with torch.no_grad(), attention_backend("batched"):
        traced = torch.jit.trace(m, torch.randn(1, 4, 4, 4), check_trace=False)
    assert tuple(traced(torch.randn(1, 4, 4, 4)).shape) == (1, 4, 4, 4)


# -- torch.compile --------------------------------------------------------------------------------

@pytest.fixture
def dynamo():
    torch._dynamo.reset()
    with attention_backend("batched"):
        yield
    torch._dynamo.reset()


def forward_backward(fn, module, x, seed_out):
    """fn(x)'s output and the gradients of x and of every parameter of `module`."""
    x.grad = None
    module.zero_grad(set_to_none=True)
    out = fn(x)
    (out * seed_out).sum().backward()
    return [out.detach(), x.grad] + [p.grad for p in module.parameters()]


@pytest.mark.parametrize("name", ["global", "local_shorter_than_axes", "positional_only", "content_only_query_norm",
                                  "out_proj"])
def test_batched_module_compiles_without_graph_break(name, dynamo):
    m, x, _ = build(name)
    explained = torch._dynamo.explain(m)(x)
    assert (explained.graph_count, explained.graph_break_count) == (1, 0)


def test_batched_net_compiles_without_graph_break(dynamo):
    torch.manual_seed(0)
    net = create_net("gsa_resnet_tiny")
    explained = torch._dynamo.explain(net)(torch.randn(2, 1, 8, 8))
    assert (explained.graph_count, explained.graph_break_count) == (1, 0)


@pytest.mark.slow
def test_batched_module_inductor_matches_eager(dynamo):
    # Inductor's generated kernels, float32: the same numbers to rounding, forward and backward.
    torch.manual_seed(0)
    m = GlobalSelfAttention(8, 8, heads=2, dim_key=4, max_size=6, out_proj=True)
    x = torch.randn(2, 8, 5, 6, requires_grad=True)
    seed_out = torch.randn(2, 8, 5, 6)
    eager_model, compiled_model = m, copy.deepcopy(m)
    eager = forward_backward(eager_model, eager_model, x, seed_out)
    compiled = forward_backward(torch.compile(compiled_model, backend="inductor"), compiled_model, x, seed_out)
    for e, c in zip(eager, compiled):
        torch.testing.assert_close(c, e, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(compiled_model.norm.running_var, eager_model.norm.running_var, rtol=1e-5, atol=1e-6)


def test_batched_net_aot_eager_matches_eager(dynamo):
    torch.manual_seed(0)
    net = create_net("gsa_resnet_tiny").double()
    x = torch.randn(2, 1, 8, 8, dtype=torch.float64, requires_grad=True)
    seed_out = torch.randn(2, 10, dtype=torch.float64)
    twin = copy.deepcopy(net)
    eager = forward_backward(net, net, x, seed_out)
    compiled = forward_backward(torch.compile(twin, backend="aot_eager"), twin, x, seed_out)
    for e, c in zip(eager, compiled):
        torch.testing.assert_close(c, e, rtol=0, atol=1e-9)
