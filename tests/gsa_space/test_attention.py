"""The GSA spec and module against slow loop references written straight from docs/gsa.md.

The references loop over pixels and offsets (vectorised only over batch, heads and channels);
outputs and gradients must match them in float64 (1e-9) and float32 (1e-4 rel). The spec
(gsa_space.attention.spec) is checked here; the module runs on each backend (native, torch_ops),
chosen with `attention_backend`, and is checked against the references and the spec.
Step-level checks of each backend are in test_backends.py.
"""

import os
import zlib
from pathlib import Path

import pytest
import torch

from gsa_space.attention import GlobalSelfAttention, attention_backend, content_attention, relative_attention_1d
from gsa_space.attention import dispatch, spec
from gsa_space.attention.native import kernels, kernels_loaded
from gsa_space.attention.settings import Settings
from loop_references import (CONTENT_CASES, REL_CASES, assert_close, assert_module_matches_reference, grads, make,
                             ref_content, ref_module, ref_relative)


@pytest.fixture(params=["native", "torch_ops"])
def backend(request):
    """Runs the test inside `attention_backend(name)`; the native one must exist under CI (gcc there)."""
    if request.param == "native" and not kernels_loaded():
        if os.environ.get("CI"):
            pytest.fail("native kernels did not build under CI")
        pytest.skip("native kernels unavailable (no C compiler)")
    with attention_backend(request.param):
        yield request.param


# -- the spec -------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("axis", ["col", "row"])
@pytest.mark.parametrize("case", REL_CASES)
def test_relative_attention_1d_matches_loop_reference(case, axis, dtype):
    B, h, dk, dv, H, W, L = case
    gen = torch.Generator().manual_seed(zlib.crc32(repr((case, axis)).encode()))
    q, v, rel = make((B, h, dk, H, W), dtype, gen), make((B, h, dv, H, W), dtype, gen), make((h, L, dk), dtype, gen)
    seed_out = torch.randn(B, h, dv, H, W, generator=gen, dtype=torch.float64).to(dtype)
    out = relative_attention_1d(q, v, rel, axis=axis)
    ref = ref_relative(q.double(), v.double(), rel.double(), axis)
    assert out.shape == (B, h, dv, H, W)
    assert_close(out, ref, dtype)
    out_grads = grads(lambda: relative_attention_1d(q, v, rel, axis=axis), [q, v, rel], seed_out)
    ref_grads = grads(lambda: ref_relative(q, v, rel, axis), [q, v, rel], seed_out)
    for g_out, g_ref in zip(out_grads, ref_grads):
        assert_close(g_out, g_ref, dtype)


def test_relative_attention_1d_rejects_even_length():
    q, v = torch.randn(1, 1, 2, 3, 3), torch.randn(1, 1, 2, 3, 3)
    with pytest.raises(ValueError, match=r"odd length L.*L=4"):
        relative_attention_1d(q, v, torch.randn(1, 4, 2), axis="col")


def test_relative_attention_1d_rejects_unknown_axis():
    q = torch.randn(1, 1, 2, 3, 3)
    with pytest.raises(ValueError, match=r"axis='diag'"):
        relative_attention_1d(q, q, torch.randn(1, 3, 2), axis="diag")




@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("query_norm", [False, True])
@pytest.mark.parametrize("case", CONTENT_CASES)
def test_content_attention_matches_loop_reference(case, query_norm, dtype):
    B, h, dk, dv, H, W = case
    gen = torch.Generator().manual_seed(zlib.crc32(repr((case, query_norm)).encode()))
    q, k = make((B, h, dk, H, W), dtype, gen), make((B, h, dk, H, W), dtype, gen)
    v = make((B, h, dv, H, W), dtype, gen)
    seed_out = torch.randn(B, h, dv, H, W, generator=gen, dtype=torch.float64).to(dtype)
    out = content_attention(q, k, v, query_norm=query_norm)
    assert out.shape == (B, h, dv, H, W)
    assert_close(out, ref_content(q.double(), k.double(), v.double(), query_norm), dtype)
    out_grads = grads(lambda: content_attention(q, k, v, query_norm=query_norm), [q, k, v], seed_out)
    ref_grads = grads(lambda: ref_content(q, k, v, query_norm), [q, k, v], seed_out)
    for g_out, g_ref in zip(out_grads, ref_grads):
        assert_close(g_out, g_ref, dtype)


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


def _module(kwargs, shape, seed=0):
    torch.manual_seed(seed)
    kwargs = dict(kwargs)
    out_channels = kwargs.pop("out_channels", 16 if kwargs["heads"] == 8 else 6)
    return GlobalSelfAttention(shape[1], out_channels, **kwargs).double(), out_channels


@pytest.mark.parametrize("kwargs, shape", MODULE_CASES)
def test_gsa_reference_matches_loop_reference(kwargs, shape):
    # the spec's whole module (before out_proj) against the loops, output and every gradient
    m, out_channels = _module(kwargs, shape)
    x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    seed_out = torch.randn(shape[0], out_channels, *shape[2:], dtype=torch.float64)
    project = (lambda t: t) if m.proj is None else m.proj
    out = project(spec.gsa_reference(m.params(), x))
    torch.testing.assert_close(out, ref_module(m, x), rtol=0, atol=1e-9)
    params = [x] + list(m.parameters())
    spec_grads = grads(lambda: project(spec.gsa_reference(m.params(), x)), params, seed_out)
    for g_spec, g_ref in zip(spec_grads, grads(lambda: ref_module(m, x), params, seed_out)):
        torch.testing.assert_close(g_spec, g_ref, rtol=0, atol=1e-9)


# -- the module, on each backend ------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, shape", MODULE_CASES)
def test_global_self_attention_matches_loop_reference(kwargs, shape, backend):
    m, out_channels = _module(kwargs, shape)
    x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    seed_out = torch.randn(shape[0], out_channels, *shape[2:], dtype=torch.float64)
    out = assert_module_matches_reference(m, x, seed_out)
    assert out.shape == (shape[0], out_channels, *shape[2:])


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("kwargs, shape", MODULE_CASES[:3] + MODULE_CASES[6:8])
def test_global_self_attention_matches_spec(kwargs, shape, train, backend):
    m, out_channels = _module(kwargs, shape, seed=4)
    if m.positional:
        with torch.no_grad():
            m.norm.running_mean.uniform_(-0.5, 0.5)
            m.norm.running_var.uniform_(0.5, 2.0)
    m.train(train)
    x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    seed_out = torch.randn(shape[0], out_channels, *shape[2:], dtype=torch.float64)
    project = (lambda t: t) if m.proj is None else m.proj
    params = [x] + list(m.parameters())
    got = grads(lambda: m(x), params, seed_out)
    want = grads(lambda: project(spec.gsa_reference(m.params(), x)), params, seed_out)
    torch.testing.assert_close(m(x), project(spec.gsa_reference(m.params(), x)), rtol=0, atol=1e-9)
    for g_got, g_want in zip(got, want):
        torch.testing.assert_close(g_got, g_want, rtol=0, atol=1e-9)


def test_global_self_attention_every_parameter_gets_gradient(backend):
    m = GlobalSelfAttention(8, 8, heads=2, dim_key=4, out_proj=True, max_size=6)
    m(torch.randn(2, 8, 5, 6)).square().sum().backward()
    missing = [n for n, p in m.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


def test_global_self_attention_global_embedding_lengths():
    m = GlobalSelfAttention(4, 4, heads=2, dim_key=3, max_size=(5, 7))
    assert tuple(m.rel_col.shape) == (2, 9, 3)
    assert tuple(m.rel_row.shape) == (2, 13, 3)


def test_global_self_attention_axial_order_changes_output(backend):
    torch.manual_seed(0)
    a = GlobalSelfAttention(4, 4, heads=2, dim_key=2, content=False, max_size=4)
    b = GlobalSelfAttention(4, 4, heads=2, dim_key=2, content=False, axial_order="row_col", max_size=4)
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 4, 4, 4)
    with torch.no_grad():
        assert float((a(x) - b(x)).abs().max()) > 1e-3


def test_global_self_attention_eval_mode_uses_running_stats(backend):
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


def test_global_self_attention_rejects_map_larger_than_max_size(backend):
    m = GlobalSelfAttention(4, 4, heads=2, dim_key=2, max_size=(4, 6))
    assert m(torch.randn(1, 4, 4, 6)).shape == (1, 4, 4, 6)
    with pytest.raises(ValueError, match=r"input map 5x6 is larger than max_size=\(4, 6\)"):
        m(torch.randn(1, 4, 5, 6))


def test_global_self_attention_float32_matches_float64(backend):
    torch.manual_seed(2)
    m = GlobalSelfAttention(16, 16, heads=4, dim_key=4, max_size=12)
    x = torch.randn(2, 16, 12, 9)
    out32 = m(x)
    out64 = m.double()(x.double())
    err = (out32.detach().double() - out64.detach()).abs().max() / out64.detach().abs().max()
    assert float(err) < 1e-5


# -- the backend choice ---------------------------------------------------------------------------

def test_resolve_auto_takes_native_for_cpu_floats_when_kernels_load():
    x, w = torch.randn(2, 4, 3, 3), torch.randn(6, 4, 1, 1)
    assert dispatch.current_backend() == "auto"
    assert dispatch.resolve(x, w) == ("native" if kernels_loaded() else "torch_ops")
    assert dispatch.resolve(x[:0], w) == "torch_ops"                          # empty batch
    assert dispatch.resolve(x.bfloat16(), w.bfloat16()) == "torch_ops"        # a dtype without kernels
    assert dispatch.resolve(x.to("meta"), w.to("meta")) == "batched"          # any device but the CPU


def test_attention_backend_scopes_the_choice_and_rejects_unknown_names():
    x, w = torch.randn(2, 4, 3, 3), torch.randn(6, 4, 1, 1)
    with attention_backend("torch_ops"):
        assert dispatch.resolve(x, w) == "torch_ops"
        with attention_backend("auto"):
            assert dispatch.current_backend() == "auto"
        assert dispatch.current_backend() == "torch_ops"
    assert dispatch.current_backend() == "auto"
    with pytest.raises(ValueError, match=r"unknown attention backend 'nativ'; expected one of: auto, torch_ops, native, batched"):
        with attention_backend("nativ"):
            pass


def test_resolve_native_rejects_tensors_it_cannot_take():
    x, w = torch.randn(2, 4, 3, 3).bfloat16(), torch.randn(6, 4, 1, 1).bfloat16()
    with attention_backend("native"), pytest.raises(ValueError, match=r"takes float32 or float64.*torch.bfloat16"):
        dispatch.resolve(x, w)


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
def test_resolve_under_torchscript_tracing_is_torch_ops(monkeypatch):
    # fvcore's MAC count traces the module: it must see the PyTorch ops, whatever was chosen
    seen = []
    resolve = dispatch.resolve
    monkeypatch.setattr(dispatch, "resolve", lambda *a: seen.append(resolve(*a)) or seen[-1])
    m = GlobalSelfAttention(4, 4, heads=2, dim_key=2, max_size=4).eval()
    with torch.no_grad(), attention_backend("native" if kernels_loaded() else "auto"):
        torch.jit.trace(m, torch.randn(1, 4, 4, 4), check_trace=False)
    assert seen == ["torch_ops"]


def test_settings_read_the_environment():
    s = Settings.from_environ({"GSA_NAS_NATIVE": "0", "GSA_NAS_CACHE": "/tmp/k", "CC": "clang",
                               "GSA_NAS_RETAIN_MEMORY": "0"})
    assert (s.native, s.cache_dir, s.compiler, s.retain_memory) == (False, Path("/tmp/k"), "clang", False)
    s = Settings.from_environ({"XDG_CACHE_HOME": "/tmp/xdg", "CC": "cc"})
    assert (s.native, s.cache_dir, s.retain_memory) == (True, Path("/tmp/xdg/gsa-nas"), True)


def test_gsa_nas_native_0_makes_auto_take_torch_ops(monkeypatch):
    # the settings are read once at import; GSA_NAS_NATIVE=0 there means these settings
    monkeypatch.setattr(kernels, "SETTINGS", Settings.from_environ({"GSA_NAS_NATIVE": "0"}))
    assert kernels.library() is None and not kernels_loaded()
    assert dispatch.resolve(torch.randn(1, 2, 3, 3), torch.randn(2, 2, 1, 1)) == "torch_ops"
