"""Each backend's steps against the loop references and the spec, and the routes inside torch_ops.

The axial step of torch_ops and of native (`axial_step`, channels-last maps) and the content step
of torch_ops (`content_step`) must equal the loop references of docs/gsa.md in float64 (1e-9) and
float32 (1e-4 rel), outputs and gradients; the native content branch is checked through the whole
module (test_attention.py) and its kernels (test_native.py).
"""

import os
import zlib

import pytest
import torch

from gsa_space.attention import GlobalSelfAttention, attention_backend, native, spec, torch_ops
from loop_references import (CONTENT_CASES, REL_CASES, assert_close, assert_module_matches_reference, grads, make,
                             ref_content, ref_module, ref_relative)

AXIAL_STEPS = {"torch_ops": torch_ops.axial_step, "native": native.axial_step}


@pytest.fixture(params=["native", "torch_ops"])
def axial_step(request):
    if request.param == "native" and not native.kernels_loaded():
        if os.environ.get("CI"):
            pytest.fail("native kernels did not build under CI")
        pytest.skip("native kernels unavailable (no C compiler)")
    return AXIAL_STEPS[request.param]


def assert_matches(fast_fn, ref_fn, inputs, out_shape, gen):
    """`fast_fn(*inputs)` equals `ref_fn` (run in float64) in value and in every input's gradient."""
    dtype = inputs[0].dtype
    seed_out = torch.randn(*out_shape, generator=gen, dtype=torch.float64).to(dtype)
    assert_close(fast_fn(*inputs), ref_fn(*(t.double() for t in inputs)), dtype)
    fast_grads = grads(lambda: fast_fn(*inputs), inputs, seed_out)
    ref_grads = grads(lambda: ref_fn(*inputs), inputs, seed_out)
    for g_fast, g_ref in zip(fast_grads, ref_grads):
        assert_close(g_fast, g_ref, dtype)


def nchw_step(step, channels_last_out=False):
    """A backend's channels-last step called on NCHW maps, returning NCHW, like the spec."""
    def run(q, v, rel, axis):
        q_cl, v_cl = q.permute(0, 3, 4, 1, 2), v.permute(0, 3, 4, 1, 2)       # (B, H, W, h, dk|dv), views
        out = step(q_cl, v_cl, rel, axis, channels_last_out=channels_last_out)
        return out.permute(0, 3, 4, 1, 2) if channels_last_out else out
    return run


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("axis", ["col", "row"])
@pytest.mark.parametrize("case", REL_CASES)
def test_axial_step_matches_loop_reference(case, axis, dtype, axial_step):
    B, h, dk, dv, H, W, L = case
    gen = torch.Generator().manual_seed(zlib.crc32(repr((case, axis)).encode()))
    q, v, rel = make((B, h, dk, H, W), dtype, gen), make((B, h, dv, H, W), dtype, gen), make((h, L, dk), dtype, gen)
    step = nchw_step(axial_step)
    fast = step(q, v, rel, axis)
    assert fast.shape == (B, h, dv, H, W) and fast.is_contiguous()
    assert_matches(lambda *t: step(*t, axis), lambda *t: ref_relative(*t, axis), [q, v, rel], (B, h, dv, H, W), gen)


@pytest.mark.parametrize("axis", ["col", "row"])
@pytest.mark.parametrize("case", [REL_CASES[0], REL_CASES[2], REL_CASES[5]])
def test_axial_step_channels_last_out_matches_spec(case, axis, axial_step):
    B, h, dk, dv, H, W, L = case
    gen = torch.Generator().manual_seed(3)
    q, v, rel = (make(s, torch.float64, gen) for s in ((B, h, dk, H, W), (B, h, dv, H, W), (h, L, dk)))
    seed_out = torch.randn(B, h, dv, H, W, generator=gen, dtype=torch.float64)
    step = nchw_step(axial_step, channels_last_out=True)
    torch.testing.assert_close(step(q, v, rel, axis), spec.relative_attention_1d(q, v, rel, axis=axis),
                               rtol=0, atol=1e-9)
    for g_fast, g_spec in zip(grads(lambda: step(q, v, rel, axis), [q, v, rel], seed_out),
                              grads(lambda: spec.relative_attention_1d(q, v, rel, axis=axis), [q, v, rel], seed_out)):
        torch.testing.assert_close(g_fast, g_spec, rtol=0, atol=1e-9)


@pytest.mark.parametrize("axis", ["col", "row"])
@pytest.mark.parametrize("case", [(2, 2, 3, 2, 5, 4, 9), (1, 2, 2, 5, 3, 4, 7), (2, 2, 3, 2, 7, 6, 3)])  # S > dv, S <= dv, windowed
def test_axial_step_no_grad_path_matches_loop_reference(case, axis, axial_step):
    B, h, dk, dv, H, W, L = case
    gen = torch.Generator().manual_seed(11)
    q, v, rel = (torch.randn(*s, generator=gen, dtype=torch.float64) for s in ((B, h, dk, H, W), (B, h, dv, H, W), (h, L, dk)))
    with torch.no_grad():
        fast = nchw_step(axial_step)(q, v, rel, axis)
    torch.testing.assert_close(fast, ref_relative(q, v, rel, axis), rtol=0, atol=1e-9)


# -- torch_ops: the content step and the routes ---------------------------------------------------

def content_step_nchw(q, k, v, query_norm):
    """torch_ops.content_step on NCHW maps (channels-last views), returning NCHW."""
    B, h, dk, H, W = q.shape
    cl = lambda t: t.permute(0, 3, 4, 1, 2).reshape(B, H * W, h, t.shape[2])  # noqa: E731
    return torch_ops.content_step(cl(q), cl(k), cl(v), query_norm=query_norm).view(B, h, v.shape[2], H, W)


@pytest.mark.parametrize("by_heads", [False, True])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("query_norm", [False, True])
@pytest.mark.parametrize("case", CONTENT_CASES)
def test_torch_ops_content_step_matches_loop_reference(case, query_norm, dtype, by_heads, monkeypatch):
    if by_heads:
        monkeypatch.setattr(torch_ops, "_HEADS_MIN_N", 1)  # the by-heads content step on any map
    B, h, dk, dv, H, W = case
    gen = torch.Generator().manual_seed(zlib.crc32(repr((case, query_norm)).encode()))
    q, k, v = make((B, h, dk, H, W), dtype, gen), make((B, h, dk, H, W), dtype, gen), make((B, h, dv, H, W), dtype, gen)
    assert_matches(lambda *t: content_step_nchw(*t, query_norm), lambda *t: ref_content(*t, query_norm), [q, k, v],
                   (B, h, dv, H, W), gen)


@pytest.mark.parametrize("axis", ["col", "row"])
def test_torch_ops_chunked_axial_step_matches_loop_reference(axis, monkeypatch):
    monkeypatch.setattr(torch_ops, "_CHUNK_ELEMENTS", 2 * 4 * 4 * 4)  # one image per chunk
    gen = torch.Generator().manual_seed(7)
    q, v, rel = make((3, 2, 3, 4, 4), torch.float64, gen), make((3, 2, 2, 4, 4), torch.float64, gen), make((2, 5, 3), torch.float64, gen)
    seed_out = torch.randn(3, 2, 2, 4, 4, generator=gen, dtype=torch.float64)
    step = nchw_step(torch_ops.axial_step)
    torch.testing.assert_close(step(q, v, rel, axis), ref_relative(q, v, rel, axis), rtol=0, atol=1e-9)
    fast_grads = grads(lambda: step(q, v, rel, axis), [q, v, rel], seed_out)
    ref_grads = grads(lambda: ref_relative(q, v, rel, axis), [q, v, rel], seed_out)
    for g_fast, g_ref in zip(fast_grads, ref_grads):
        torch.testing.assert_close(g_fast, g_ref, rtol=0, atol=1e-9)


@pytest.mark.parametrize("axial_order", ["col_row", "row_col"])
def test_torch_ops_chunked_module_matches_loop_reference(axial_order, monkeypatch):
    monkeypatch.setattr(torch_ops, "_CHUNK_ELEMENTS", 2 * 5 * 5 * 4)  # one image per chunk
    torch.manual_seed(1)
    m = GlobalSelfAttention(4, 6, heads=2, dim_key=3, axial_order=axial_order, max_size=(4, 5)).double()
    x = torch.randn(3, 4, 4, 5, dtype=torch.float64, requires_grad=True)
    seed_out = torch.randn(3, 6, 4, 5, dtype=torch.float64)
    with attention_backend("torch_ops"):
        assert_module_matches_reference(m, x, seed_out)


def test_torch_ops_windowed_path_is_taken_for_short_window(monkeypatch):
    calls = []
    windowed = torch_ops._relative_windowed
    monkeypatch.setattr(torch_ops, "_relative_windowed", lambda *a, **k: calls.append(a[3]) or windowed(*a, **k))
    q = torch.randn(1, 4, 8, 1, 2)                                          # (B, H, W, h, dk)
    torch_ops.axial_step(q, q, torch.randn(1, 5, 2), "col", channels_last_out=False)  # L = 5 >= H = 4: dense
    torch_ops.axial_step(q, q, torch.randn(1, 5, 2), "row", channels_last_out=False)  # L = 5 < W = 8: windowed
    assert calls == ["row"]


@pytest.mark.parametrize("query_norm", [False, True])
@pytest.mark.parametrize("content_only", [False, True])
def test_torch_ops_by_heads_content_module_matches_loop_reference(content_only, query_norm, monkeypatch):
    monkeypatch.setattr(torch_ops, "_HEADS_MIN_N", 1)  # the by-heads content step on any map
    calls = []
    step = torch_ops._ContentStep.apply
    monkeypatch.setattr(torch_ops._ContentStep, "apply", lambda *a: calls.append(a[0].shape) or step(*a))
    torch.manual_seed(3)
    m = GlobalSelfAttention(4, 6, heads=2, dim_key=3, positional=not content_only, query_norm=query_norm,
                            max_size=(4, 5)).double()
    x = torch.randn(3, 4, 4, 5, dtype=torch.float64, requires_grad=True)
    seed_out = torch.randn(3, 6, 4, 5, dtype=torch.float64)
    with attention_backend("torch_ops"):
        assert_module_matches_reference(m, x, seed_out)
        assert calls == [(3, 20, 2, 3)] * 2  # the forward above and the one inside grads()
        with torch.no_grad():
            torch.testing.assert_close(m(x), ref_module(m, x), rtol=0, atol=1e-9)
    assert len(calls) == 2  # no autograd Function without gradients


def test_torch_ops_large_map_takes_by_heads_content_step(monkeypatch):
    calls = []
    step = torch_ops._ContentStep.apply
    monkeypatch.setattr(torch_ops._ContentStep, "apply", lambda *a: calls.append(a[0].shape) or step(*a))
    m = GlobalSelfAttention(4, 4, heads=2, dim_key=2, positional=False)
    with attention_backend("torch_ops"):
        m(torch.randn(1, 4, 16, 32, requires_grad=True))  # N = 512
        m(torch.randn(1, 4, 16, 31, requires_grad=True))  # N = 496
    assert calls == [(1, 512, 2, 2)]


@pytest.mark.parametrize("backend", ["auto", "native", "batched", "torch_ops"])
@pytest.mark.parametrize("kwargs", [dict(), dict(content=False, extent=3), dict(positional=False, out_proj=True)])
def test_module_runs_on_the_meta_device(backend, kwargs):
    # Shapes only, forward and backward ("auto" takes batched there); what the op counts rely on.
    with torch.device("meta"):
        m = GlobalSelfAttention(8, 16, heads=2, dim_key=4, max_size=(6, 7), **kwargs)
        x = torch.randn(3, 8, 6, 7, requires_grad=True)
    with attention_backend(backend):
        out = m(x)
    assert (out.device.type, tuple(out.shape)) == ("meta", (3, 16, 6, 7))
    out.sum().backward()
    assert (x.grad.device.type, tuple(x.grad.shape)) == ("meta", (3, 8, 6, 7))
    assert [n for n, p in m.named_parameters() if p.grad is None or p.grad.shape != p.shape] == []
