"""GSA module against slow loop references written straight from DESIGN.md section 2.

The references loop over pixels and offsets (vectorised only over batch, heads and channels);
outputs and gradients of the fast code must match them in float64 (1e-9) and float32 (1e-4 rel).
Every test runs twice: on the C kernels (gsa_space.native) and on the PyTorch-ops path.
"""

import os
import zlib

import pytest
import torch

from gsa_space.attention import module as attention, torch_ops as axial
from gsa_space.attention.native import fused as attention_native, kernels as native
from gsa_space.attention import GlobalSelfAttention, content_attention, relative_attention_1d
from loop_references import (assert_close, assert_module_matches_reference, grads, make, ref_content, ref_module,
                        ref_relative)


@pytest.fixture(params=["native", "torch_ops"], autouse=True)
def kernels(request, monkeypatch):
    """Which implementation the fast code takes; the native one must exist under CI (gcc there)."""
    if request.param == "native":
        monkeypatch.delenv("GSA_NAS_NATIVE", raising=False)
        if native.library() is None:
            if os.environ.get("CI"):
                pytest.fail("native kernels did not build under CI")
            pytest.skip("native kernels unavailable (no C compiler)")
    else:
        monkeypatch.setenv("GSA_NAS_NATIVE", "0")
    return request.param


def torch_ops_only(kernels):
    if kernels == "native":
        pytest.skip("checks a route of the PyTorch-ops path")


REL_CASES = [  # (B, h, dk, dv, H, W, L)
    (2, 1, 3, 2, 5, 4, 3),    # L smaller than both axes
    (1, 8, 2, 2, 3, 4, 5),    # 8 heads
    (2, 2, 4, 3, 4, 6, 11),   # L = 2 * max(H, W) - 1, non-square
    (1, 2, 3, 2, 3, 5, 15),   # L larger than the map
    (1, 1, 2, 3, 1, 6, 1),    # single offset, one-pixel axis
    (2, 2, 3, 4, 5, 3, 5),    # dv >= W: the untransposed apply on the row axis
    (2, 2, 3, 2, 7, 6, 3),    # windowed path (L < S) on both axes
    (1, 3, 2, 5, 9, 6, 5),    # windowed on both axes, dv > L
    (2, 2, 2, 3, 4, 8, 7),    # windowed on the row axis only (L >= H = 4)
]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("axis", ["col", "row"])
@pytest.mark.parametrize("case", REL_CASES)
def test_relative_attention_1d_matches_loop_reference(case, axis, dtype):
    B, h, dk, dv, H, W, L = case
    gen = torch.Generator().manual_seed(zlib.crc32(repr((case, axis)).encode()))
    q, v, rel = make((B, h, dk, H, W), dtype, gen), make((B, h, dv, H, W), dtype, gen), make((h, L, dk), dtype, gen)
    seed_out = torch.randn(B, h, dv, H, W, generator=gen, dtype=torch.float64).to(dtype)
    fast = relative_attention_1d(q, v, rel, axis=axis)
    ref = ref_relative(q.double(), v.double(), rel.double(), axis)
    assert fast.shape == (B, h, dv, H, W)
    assert_close(fast, ref, dtype)
    fast_grads = grads(lambda: relative_attention_1d(q, v, rel, axis=axis), [q, v, rel], seed_out)
    ref_grads = grads(lambda: ref_relative(q, v, rel, axis), [q, v, rel], seed_out)
    for g_fast, g_ref in zip(fast_grads, ref_grads):
        assert_close(g_fast, g_ref, dtype)


def test_relative_attention_1d_rejects_even_length():
    q, v = torch.randn(1, 1, 2, 3, 3), torch.randn(1, 1, 2, 3, 3)
    with pytest.raises(ValueError, match=r"odd length L.*L=4"):
        relative_attention_1d(q, v, torch.randn(1, 4, 2), axis="col")


def test_relative_attention_1d_rejects_unknown_axis():
    q = torch.randn(1, 1, 2, 3, 3)
    with pytest.raises(ValueError, match=r"axis='diag'"):
        relative_attention_1d(q, q, torch.randn(1, 3, 2), axis="diag")


CONTENT_CASES = [(2, 1, 3, 2, 4, 5), (1, 8, 2, 3, 3, 3), (2, 2, 4, 4, 1, 7)]  # (B, h, dk, dv, H, W)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("query_norm", [False, True])
@pytest.mark.parametrize("case", CONTENT_CASES)
def test_content_attention_matches_loop_reference(case, query_norm, dtype):
    B, h, dk, dv, H, W = case
    gen = torch.Generator().manual_seed(zlib.crc32(repr((case, query_norm)).encode()))
    q, k = make((B, h, dk, H, W), dtype, gen), make((B, h, dk, H, W), dtype, gen)
    v = make((B, h, dv, H, W), dtype, gen)
    seed_out = torch.randn(B, h, dv, H, W, generator=gen, dtype=torch.float64).to(dtype)
    fast = content_attention(q, k, v, query_norm=query_norm)
    assert fast.shape == (B, h, dv, H, W)
    assert_close(fast, ref_content(q.double(), k.double(), v.double(), query_norm), dtype)
    fast_grads = grads(lambda: content_attention(q, k, v, query_norm=query_norm), [q, k, v], seed_out)
    ref_grads = grads(lambda: ref_content(q, k, v, query_norm), [q, k, v], seed_out)
    for g_fast, g_ref in zip(fast_grads, ref_grads):
        assert_close(g_fast, g_ref, dtype)


def test_content_attention_query_norm_changes_output():
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 2, 3, 3, 3, generator=gen) for _ in range(3))
    diff = (content_attention(q, k, v, query_norm=True) - content_attention(q, k, v)).abs().max()
    assert float(diff) > 1e-3


MODULE_CASES = [  # kwargs, input (B, C_in, H, W)
    (dict(heads=2, dim_key=3, max_size=(4, 5)), (2, 5, 4, 5)),
    (dict(heads=2, dim_key=3, max_size=(6, 7)), (2, 5, 4, 5)),   # global: central embeddings
    (dict(heads=8, dim_key=2, extent=3, max_size=5), (2, 6, 5, 3)),
    (dict(heads=2, dim_key=3, extent=3, max_size=8), (2, 5, 6, 7)),          # windowed both steps
    (dict(heads=2, dim_key=2, extent=5, axial_order="row_col"), (2, 4, 7, 4)),  # windowed col only
    (dict(heads=2, dim_key=2, axial_order="row_col", max_size=6), (2, 4, 3, 6)),
    (dict(heads=2, dim_key=2, content=False, extent=5), (2, 4, 4, 4)),
    (dict(heads=2, dim_key=2, positional=False, query_norm=True), (2, 4, 4, 3)),
    (dict(heads=2, dim_key=2, out_proj=True, query_norm=True, max_size=4), (2, 4, 4, 4)),
    (dict(heads=2, dim_key=2, max_size=5, out_channels=16), (2, 4, 3, 5)),  # dv = 8 > H, W
    (dict(heads=2, dim_key=2, max_size=5, out_channels=16, axial_order="row_col"), (2, 4, 3, 5)),
]


@pytest.mark.parametrize("kwargs, shape", MODULE_CASES)
def test_global_self_attention_matches_loop_reference(kwargs, shape):
    torch.manual_seed(0)
    kwargs = dict(kwargs)
    out_channels = kwargs.pop("out_channels", 16 if kwargs["heads"] == 8 else 6)
    m = GlobalSelfAttention(shape[1], out_channels, **kwargs).double()
    x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    seed_out = torch.randn(shape[0], out_channels, *shape[2:], dtype=torch.float64)
    out = assert_module_matches_reference(m, x, seed_out)
    assert out.shape == (shape[0], out_channels, *shape[2:])


def test_global_self_attention_every_parameter_gets_gradient():
    m = GlobalSelfAttention(8, 8, heads=2, dim_key=4, out_proj=True, max_size=6)
    m(torch.randn(2, 8, 5, 6)).square().sum().backward()
    missing = [n for n, p in m.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


def test_global_self_attention_global_embedding_lengths():
    m = GlobalSelfAttention(4, 4, heads=2, dim_key=3, max_size=(5, 7))
    assert tuple(m.rel_col.shape) == (2, 9, 3)
    assert tuple(m.rel_row.shape) == (2, 13, 3)


def test_global_self_attention_axial_order_changes_output():
    torch.manual_seed(0)
    a = GlobalSelfAttention(4, 4, heads=2, dim_key=2, content=False, max_size=4)
    b = GlobalSelfAttention(4, 4, heads=2, dim_key=2, content=False, axial_order="row_col", max_size=4)
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 4, 4, 4)
    with torch.no_grad():
        assert float((a(x) - b(x)).abs().max()) > 1e-3


def test_global_self_attention_eval_mode_uses_running_stats():
    torch.manual_seed(0)
    m = GlobalSelfAttention(4, 4, heads=2, dim_key=2, content=False, max_size=4).eval()
    x = torch.randn(1, 4, 4, 4)
    with torch.no_grad():
        torch.testing.assert_close(m(x)[0], m(torch.cat([x, 5 * x]))[0], rtol=1e-5, atol=1e-6)
        m.train()
        assert float((m(x)[0] - m(torch.cat([x, 5 * x]))[0]).abs().max()) > 1e-2


@pytest.mark.parametrize("kwargs, pattern", [
    (dict(extent=4), r"extent must be 'global' or an odd int >= 1, but got extent=4"),
    (dict(extent=0), r"extent=0"),
    (dict(extent="local"), r"extent='local'"),
    (dict(heads=3), r"out_channels must be divisible by heads.*out_channels=8, heads=3"),
    (dict(content=False, positional=False), r"at least one branch must be on.*content=False, positional=False"),
    (dict(axial_order="diag"), r"axial_order must be one of.*axial_order='diag'"),
    (dict(max_size=(4, 0)), r"max_size must be a positive int.*max_size=\(4, 0\)"),
    (dict(dim_key=0), r"dim_key must be a positive int, but got dim_key=0"),
])
def test_global_self_attention_rejects_bad_arguments(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        GlobalSelfAttention(8, 8, **kwargs)


def test_global_self_attention_rejects_map_larger_than_max_size():
    m = GlobalSelfAttention(4, 4, heads=2, dim_key=2, max_size=(4, 6))
    assert m(torch.randn(1, 4, 4, 6)).shape == (1, 4, 4, 6)
    with pytest.raises(ValueError, match=r"input map 5x6 is larger than max_size=\(4, 6\)"):
        m(torch.randn(1, 4, 5, 6))


@pytest.mark.parametrize("axis", ["col", "row"])
def test_relative_attention_1d_chunked_matches_loop_reference(axis, monkeypatch, kernels):
    torch_ops_only(kernels)
    monkeypatch.setattr(axial, "_CHUNK_ELEMENTS", 2 * 4 * 4 * 4)  # one image per chunk
    gen = torch.Generator().manual_seed(7)
    q, v, rel = make((3, 2, 3, 4, 4), torch.float64, gen), make((3, 2, 2, 4, 4), torch.float64, gen), make((2, 5, 3), torch.float64, gen)
    seed_out = torch.randn(3, 2, 2, 4, 4, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(relative_attention_1d(q, v, rel, axis=axis), ref_relative(q, v, rel, axis), rtol=0, atol=1e-9)
    fast_grads = grads(lambda: relative_attention_1d(q, v, rel, axis=axis), [q, v, rel], seed_out)
    ref_grads = grads(lambda: ref_relative(q, v, rel, axis), [q, v, rel], seed_out)
    for g_fast, g_ref in zip(fast_grads, ref_grads):
        torch.testing.assert_close(g_fast, g_ref, rtol=0, atol=1e-9)


@pytest.mark.parametrize("axial_order", ["col_row", "row_col"])
def test_global_self_attention_chunked_matches_loop_reference(axial_order, monkeypatch, kernels):
    torch_ops_only(kernels)
    monkeypatch.setattr(axial, "_CHUNK_ELEMENTS", 2 * 5 * 5 * 4)  # one image per chunk
    torch.manual_seed(1)
    m = GlobalSelfAttention(4, 6, heads=2, dim_key=3, axial_order=axial_order, max_size=(4, 5)).double()
    x = torch.randn(3, 4, 4, 5, dtype=torch.float64, requires_grad=True)
    seed_out = torch.randn(3, 6, 4, 5, dtype=torch.float64)
    assert_module_matches_reference(m, x, seed_out)


def test_global_self_attention_float32_matches_float64():
    torch.manual_seed(2)
    m = GlobalSelfAttention(16, 16, heads=4, dim_key=4, max_size=12)
    x = torch.randn(2, 16, 12, 9)
    out32 = m(x)
    out64 = m.double()(x.double())
    err = (out32.detach().double() - out64.detach()).abs().max() / out64.detach().abs().max()
    assert float(err) < 1e-5


def test_relative_attention_1d_windowed_path_is_taken_for_short_window(monkeypatch, kernels):
    torch_ops_only(kernels)
    calls = []
    windowed = axial._relative_windowed
    monkeypatch.setattr(axial, "_relative_windowed", lambda *a, **k: calls.append(a[3]) or windowed(*a, **k))
    q = torch.randn(1, 1, 2, 4, 8)
    relative_attention_1d(q, q, torch.randn(1, 5, 2), axis="col")  # L = 5 >= H = 4: dense
    relative_attention_1d(q, q, torch.randn(1, 5, 2), axis="row")  # L = 5 < W = 8: windowed
    assert calls == ["row"]


@pytest.mark.parametrize("axis", ["col", "row"])
@pytest.mark.parametrize("case", [(2, 2, 3, 2, 5, 4, 9), (1, 2, 2, 5, 3, 4, 7), (2, 2, 3, 2, 7, 6, 3)])  # S > dv, S <= dv, windowed
def test_relative_attention_1d_no_grad_path_matches_loop_reference(case, axis):
    B, h, dk, dv, H, W, L = case
    gen = torch.Generator().manual_seed(11)
    q, v, rel = (torch.randn(*s, generator=gen, dtype=torch.float64) for s in ((B, h, dk, H, W), (B, h, dv, H, W), (h, L, dk)))
    with torch.no_grad():
        fast = relative_attention_1d(q, v, rel, axis=axis)
    torch.testing.assert_close(fast, ref_relative(q, v, rel, axis), rtol=0, atol=1e-9)


@pytest.mark.parametrize("query_norm", [False, True])
@pytest.mark.parametrize("content_only", [False, True])
def test_global_self_attention_by_heads_content_matches_loop_reference(content_only, query_norm, monkeypatch, kernels):
    torch_ops_only(kernels)
    monkeypatch.setattr(attention, "_HEADS_MIN_N", 1)  # the by-heads content step on any map
    calls = []
    step = attention._ContentStep.apply
    monkeypatch.setattr(attention._ContentStep, "apply", lambda *a: calls.append(a[0].shape) or step(*a))
    torch.manual_seed(3)
    m = GlobalSelfAttention(4, 6, heads=2, dim_key=3, positional=not content_only, query_norm=query_norm,
                            max_size=(4, 5)).double()
    x = torch.randn(3, 4, 4, 5, dtype=torch.float64, requires_grad=True)
    seed_out = torch.randn(3, 6, 4, 5, dtype=torch.float64)
    assert_module_matches_reference(m, x, seed_out)
    assert calls == [(3, 20, 2, 3)] * 2  # the forward above and the one inside grads()
    with torch.no_grad():
        torch.testing.assert_close(m(x), ref_module(m, x), rtol=0, atol=1e-9)
    assert len(calls) == 2  # no autograd Function without gradients


def test_global_self_attention_large_map_takes_by_heads_content_step(monkeypatch, kernels):
    torch_ops_only(kernels)
    calls = []
    step = attention._ContentStep.apply
    monkeypatch.setattr(attention._ContentStep, "apply", lambda *a: calls.append(a[0].shape) or step(*a))
    m = GlobalSelfAttention(4, 4, heads=2, dim_key=2, positional=False)
    m(torch.randn(1, 4, 16, 32, requires_grad=True))  # N = 512
    m(torch.randn(1, 4, 16, 31, requires_grad=True))  # N = 496
    assert calls == [(1, 512, 2, 2)]


@pytest.mark.parametrize("L", [5, 15])  # windowed (L < W) and dense
def test_native_route_module_is_one_function_functional_step_another(L, kernels, monkeypatch):
    if kernels != "native":
        pytest.skip("checks the native route")
    calls = []
    for fn in (axial._NativeStep, attention_native._FusedGSA):
        step = fn.apply
        monkeypatch.setattr(fn, "apply", lambda *a, _s=step, _n=fn.__name__: calls.append(_n) or _s(*a))
    m = GlobalSelfAttention(4, 4, heads=2, dim_key=2, extent=L, max_size=8)
    m(torch.randn(2, 4, 6, 8, requires_grad=True)).sum().backward()
    q, v = torch.randn(2, 2, 2, 6, 8, requires_grad=True), torch.randn(2, 2, 2, 6, 8)
    relative_attention_1d(q, v, torch.randn(2, L, 2), axis="row").sum().backward()
    assert calls == ["_FusedGSA", "_NativeStep"]


def test_native_kernels_off_by_environment(monkeypatch):
    monkeypatch.setenv("GSA_NAS_NATIVE", "0")
    assert native.library() is None and not native.available(torch.zeros(1))
