"""The native backend's C kernels (gsa_space.attention.native): threads, in-place operand layouts,
the fused module's BatchNorm bookkeeping, the vector exp, the buffer pool, and the build.

Numerical agreement of every backend with the loop references is in test_attention and
test_backends; these tests cover what only the native backend has. Each runs inside
`attention_backend("native")`.
"""

import os
import platform
import warnings
from dataclasses import replace

import pytest
import torch

from gsa_space.attention import GlobalSelfAttention, attention_backend
from gsa_space.attention.native import kernels as native, memory
from gsa_space.attention.settings import SETTINGS
from loop_references import assert_module_matches_reference, ref_module


@pytest.fixture(autouse=True)
def native_only():
    if native.library() is None:
        if os.environ.get("CI"):
            pytest.fail("native kernels did not build under CI")
        pytest.skip("native kernels unavailable (no C compiler)")
    with attention_backend("native"):
        yield


def seeded_module(seed, **kwargs):
    torch.manual_seed(seed)
    return GlobalSelfAttention(kwargs.pop("in_channels", 4), kwargs.pop("out_channels", 16), **kwargs).double()


@pytest.mark.parametrize("threads", [2, 3])  # 3: uneven split of the line tasks into jobs, a partial embedding grad each
@pytest.mark.parametrize("extent", ["global", 3])
def test_native_module_on_several_threads_matches_reference(threads, extent):
    torch.set_num_threads(threads)  # the one_thread fixture restores it
    m = seeded_module(5, heads=2, dim_key=8, extent=extent, max_size=(6, 7))
    x = torch.randn(3, 4, 6, 7, dtype=torch.float64, requires_grad=True)
    assert_module_matches_reference(m, x, torch.randn(3, 16, 6, 7, dtype=torch.float64))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("axial_order", ["col_row", "row_col"])
def test_native_module_reads_whole_vector_rows_in_place(dtype, axial_order):
    # dk = dv = 8 fill whole vectors (8 floats, 4 doubles): q, k, v, grads and outputs are read and
    # written in place in the q|k|v map instead of through padded copies.
    m = seeded_module(6, heads=2, dim_key=8, axial_order=axial_order, max_size=(5, 6))
    x = torch.randn(2, 4, 5, 6, dtype=torch.float64, requires_grad=True)
    if dtype == torch.float64:
        assert_module_matches_reference(m, x, torch.randn(2, 16, 5, 6, dtype=torch.float64))
        return
    with torch.no_grad():
        out32 = m.float()(x.detach().float())
    with torch.no_grad():
        ref = ref_module(m.double(), x.detach())
    assert float((out32.double() - ref).abs().max() / ref.abs().max()) < 1e-5


def test_native_content_softmax_float32_matches_float64():
    # the float32 keys come from the kernel's vector exp (polynomial), the float64 ones from libm;
    # the summary holds v^T keys, the keys' max and 1 / their sum per image and head
    gen = torch.Generator().manual_seed(8)
    q, k, v = (torch.randn(2, 150, 2, c, generator=gen, dtype=torch.float64) * 4 for c in (8, 8, 8))
    out64, summary64 = native.content_forward(q, k, v)
    out32, summary32 = native.content_forward(q.float(), k.float(), v.float())
    keys = k.softmax(dim=1)
    ctx = torch.einsum("bnhc,bnhd->bhcd", v, keys)
    torch.testing.assert_close(summary64[:, :, :8], ctx, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(summary64[:, :, 8], k.amax(dim=1), rtol=0, atol=0)
    torch.testing.assert_close(summary64[:, :, 9], 1 / (k - k.amax(dim=1, keepdim=True)).exp().sum(dim=1),
                               rtol=1e-12, atol=0)
    torch.testing.assert_close(out64, torch.einsum("bhcd,bnhd->bhcn", ctx, q), rtol=1e-12, atol=1e-12)
    ctx32, stats32 = summary32.double()[:, :, :8], summary32.double()[:, :, 8:]  # ctx sums cancel: relative to max
    assert float((ctx32 - ctx).abs().max() / ctx.abs().max()) < 1e-5
    assert float(((stats32 - summary64[:, :, 8:]) / summary64[:, :, 8:]).abs().max()) < 1e-5
    assert float((out32.double() - out64).abs().max() / out64.abs().max()) < 1e-5


def test_native_content_backward_with_few_images_splits_heads_and_adds():
    # one image on 3 threads: the heads are split into groups; q and v gradients added to buffers
    torch.set_num_threads(3)  # the one_thread fixture restores it
    gen = torch.Generator().manual_seed(12)
    q, k = (torch.randn(1, 70, 5, 3, generator=gen, dtype=torch.float64, requires_grad=True) for _ in range(2))
    v = torch.randn(1, 70, 5, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    g = torch.randn(1, 5, 4, 70, generator=gen, dtype=torch.float64)
    ctx = torch.einsum("bnhc,bnhd->bhcd", v, k.softmax(dim=1))
    torch.einsum("bhcd,bnhd->bhcn", ctx, q).backward(g)
    out, summary = native.content_forward(q.detach(), k.detach(), v.detach())
    torch.testing.assert_close(out, torch.einsum("bhcd,bnhd->bhcn", ctx, q).detach(), rtol=1e-12, atol=1e-12)
    base_q, base_v = torch.ones_like(q), torch.ones_like(v)
    gq, gk, gv = native.content_backward(q.detach(), k.detach(), v.detach(), g, summary,
                                         into=(base_q.clone(), None, base_v.clone()), add=(True, True))
    for got, want in ((gq - base_q, q.grad), (gk, k.grad), (gv - base_v, v.grad)):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("momentum", [0.1, None])
def test_native_batch_norm_bookkeeping_matches_torch_path(momentum):
    mods = []
    for _ in range(2):
        m = seeded_module(9, heads=2, dim_key=3, max_size=5)
        m.norm.momentum = momentum
        mods.append(m)
    x = torch.randn(2, 4, 5, 5, dtype=torch.float64)
    for _ in range(3):
        mods[0](x)
    with attention_backend("torch_ops"):
        for _ in range(3):
            mods[1](x)
    for name, buf in mods[0].norm.named_buffers():
        torch.testing.assert_close(buf, dict(mods[1].norm.named_buffers())[name], rtol=0, atol=1e-12)
    assert int(mods[0].norm.num_batches_tracked) == 3


def test_native_build_failure_falls_back_with_a_warning(tmp_path):
    failing = replace(SETTINGS, cache_dir=tmp_path, compiler="false")  # a compiler that always fails
    try:
        with pytest.warns(RuntimeWarning, match="building the native kernels failed"):
            assert native.load(failing) is None
        assert list(tmp_path.iterdir()) == []  # no half-written library left behind
    finally:
        native.load.cache_clear()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert native.library() is not None


def test_native_build_without_a_compiler_warns_and_gives_none(tmp_path):
    try:
        with pytest.warns(RuntimeWarning, match="no C compiler found"):
            assert native.load(replace(SETTINGS, cache_dir=tmp_path, compiler=None)) is None
    finally:
        native.load.cache_clear()


def test_native_library_is_built_once_per_source_and_cpu(tmp_path):
    settings = replace(SETTINGS, cache_dir=tmp_path)
    try:
        assert native.load(settings) is not None
        (built,) = tmp_path.iterdir()
        stamp = built.stat().st_mtime_ns
        native.load.cache_clear()
        assert native.load(settings) is not None and built.stat().st_mtime_ns == stamp
    finally:
        native.load.cache_clear()


def test_retain_freed_memory_takes_effect_on_glibc_and_can_be_refused():
    assert memory.retain_freed_memory(replace(SETTINGS, retain_memory=False)) is False
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        assert memory.retain_freed_memory(replace(SETTINGS, retain_memory=True)) is True


def test_native_wrappers_reject_arguments_outside_their_contract():
    q, v = torch.zeros(1, 4, 4, 2, 3), torch.zeros(1, 4, 4, 2, 5)
    with pytest.raises(ValueError, match="rel length L must be odd"):
        native.axial_forward(q, v, torch.zeros(2, 4, 3), "col", True)
    with pytest.raises(ValueError, match="disagree"):
        native.axial_backward(q, v[:, :3], torch.zeros(2, 5, 3), torch.zeros(1, 3, 4, 2, 5), "row", True)
    with pytest.raises(ValueError, match="content: want"):
        native.content_forward(q[..., 0, :], q[..., 0, :1], v[..., 0, :])
    keys = torch.zeros(1, 16, 2, 3)
    with pytest.raises(ValueError, match="summary"):
        native.content_backward(keys, keys, torch.zeros(1, 16, 2, 5), torch.zeros(1, 2, 5, 16), torch.zeros(1, 2, 5, 3))
    with pytest.raises(ValueError, match="needs its buffer"):
        native.content_backward(keys, keys, torch.zeros(1, 16, 2, 5), torch.zeros(1, 2, 5, 16), torch.zeros(1, 2, 7, 3),
                                add=(True, False))
    with pytest.raises(ValueError, match="needs its buffer"):
        native.axial_backward(q, v, torch.zeros(2, 7, 3), torch.zeros(1, 4, 4, 2, 5), "col", True, add_v=True)


def test_native_module_empty_batch_and_nan_keys():
    m = seeded_module(10, heads=2, dim_key=8, max_size=5).float()
    x = torch.randn(0, 4, 5, 5, requires_grad=True)
    m(x).sum().backward()
    assert x.grad.shape == x.shape
    k = torch.randn(1, 9, 1, 8)
    k[0, 3, 0, 2] = float("nan")
    _, summary = native.content_forward(k, k, torch.randn(1, 9, 1, 8))  # rows: ctx (8), max, 1 / sum
    assert torch.isnan(summary[0, 0, :8, 2]).all() and torch.isnan(summary[0, 0, 9, 2])
    assert torch.isfinite(summary[0, 0, :, 3]).all()


@pytest.mark.parametrize("train", [True, False])
def test_native_batch_norm_gradients_match_torch_path_in_both_modes(train):
    # the BatchNorm between the steps is folded into the kernels (statistics from the column step,
    # affine map and backward applied as the row/column steps load); eval mode uses running stats
    m = seeded_module(11, heads=2, dim_key=8, max_size=(5, 6))
    with torch.no_grad():
        m.norm.running_mean.uniform_(-0.5, 0.5)
        m.norm.running_var.uniform_(0.5, 2.0)
        m.norm.weight.uniform_(0.5, 1.5)
        m.norm.bias.uniform_(-0.5, 0.5)
    m.train(train)
    x = torch.randn(2, 4, 5, 6, dtype=torch.float64, requires_grad=True)
    seed = torch.randn(2, 16, 5, 6, dtype=torch.float64)
    results = []
    for backend in ("native", "torch_ops"):
        params = [x] + list(m.parameters())
        for p in params:
            p.grad = None
        with attention_backend(backend):
            (m(x) * seed).sum().backward()
        results.append([p.grad.clone() for p in params])
    for fast, ref in zip(*results):
        torch.testing.assert_close(fast, ref, rtol=0, atol=1e-9)


@pytest.mark.parametrize("out_channels, dim_key", [(16, 8), (4, 1)])  # q|k|v map wider / narrower than 5x6
@pytest.mark.parametrize("layout", ["nchw", "channels_last", "strided"])
def test_native_module_reads_every_input_layout(layout, out_channels, dim_key):
    # the q|k|v projection reads NCHW and channels-last inputs in place (others are copied), and
    # the input's gradient comes back in the input's layout; an NCHW input takes per-image
    # products when the map has fewer channels than positions, else one product over copied rows
    m = seeded_module(13, out_channels=out_channels, heads=2, dim_key=dim_key, max_size=(5, 6))
    base = torch.randn(3, 4, 5, 6, dtype=torch.float64)
    x = {"nchw": base, "channels_last": base.contiguous(memory_format=torch.channels_last),
         "strided": torch.randn(3, 4, 5, 12, dtype=torch.float64)[..., ::2]}[layout].requires_grad_(True)
    assert_module_matches_reference(m, x, torch.randn(3, out_channels, 5, 6, dtype=torch.float64))
    if layout == "channels_last":
        assert x.grad.is_contiguous(memory_format=torch.channels_last)


def test_buffer_pool_reuses_only_released_buffers():
    memory.clear()
    a = memory.take((4, 5), torch.float32)
    b = memory.take((4, 5), torch.float32)
    assert a.data_ptr() != b.data_ptr()  # a is still alive
    ptr = a.data_ptr()
    del a
    c = memory.take((2, 3), torch.float32)  # fits in the released buffer
    assert c.data_ptr() == ptr and c.shape == (2, 3)
    assert memory.take((4, 5), torch.float64).dtype == torch.float64
    # two forwards before their backwards: each keeps its own q|k|v map (saved for the backward)
    m = seeded_module(14, heads=2, dim_key=8, max_size=5)
    xs = [torch.randn(2, 4, 5, 5, dtype=torch.float64, requires_grad=True) for _ in range(2)]
    outs = [m(x) for x in xs]
    for out in outs:
        out.sum().backward()
    for x in xs:
        want = torch.autograd.grad(ref_module(m, x).sum(), x)[0]
        torch.testing.assert_close(x.grad, want, rtol=0, atol=1e-9)
    memory.clear()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_native_wide_lines_match_torch_path(dtype):
    # lines of 33 and 34 positions take the shared-load logits tiles (>= 4 vectors; their shifted
    # stores, column chunks and leftover rows); checked against the PyTorch-ops path, itself
    # checked against the loop references on small maps in test_attention
    m = seeded_module(15, heads=2, dim_key=8, max_size=(33, 34))
    x = torch.randn(2, 4, 33, 34, dtype=torch.float64)
    seed = torch.randn(2, 16, 33, 34, dtype=torch.float64)
    results = []
    for backend, run_dtype in (("native", dtype), ("torch_ops", torch.float64)):
        mod, inp = m.to(run_dtype), x.detach().to(run_dtype).requires_grad_(True)
        params = [inp] + list(mod.parameters())
        for p in params:
            p.grad = None
        with attention_backend(backend):
            out = mod(inp)
            (out * seed.to(run_dtype)).sum().backward()
        results.append([out.detach().double()] + [p.grad.double() for p in params])
    for fast, ref in zip(*results):
        if dtype == torch.float64:
            torch.testing.assert_close(fast, ref, rtol=0, atol=1e-9)
        else:
            assert float((fast - ref).abs().max() / ref.abs().max()) < 1e-4
