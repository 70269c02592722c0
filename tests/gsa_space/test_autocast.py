"""The GSA module and GSA nets under bf16 / fp16 autocast on the CPU, against float32 (docs/gsa.md §7).

Every case runs forward and backward under `torch.autocast("cpu", dtype)` alone ("cpu" policy) and
with `CudaPolicy` ("cuda" policy), which runs softmax, log_softmax and sum in float32 under autocast,
as CUDA's autocast does and the CPU's does not: so the CPU sees the dtype mix of a GPU trial. The
same weights run in float32 as the reference; ‖a - b‖ / ‖b‖ of the output and of the input gradient
must stay within TOLERANCE. Inputs come in both layouts, output gradients in several. The module
and a small net run on "auto" (torch_ops under CPU autocast) and on "batched" (what CUDA runs).
"""

import contextlib
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from gsa_space.attention import GlobalSelfAttention, attention_backend, dispatch, native
from gsa_space.networks import create_net

LOW = {"bf16": torch.bfloat16, "fp16": torch.float16}
TOLERANCE = {torch.bfloat16: 3e-2, torch.float16: 1e-2}


class CudaPolicy(TorchFunctionMode):
    """CUDA autocast's float32 rule for softmax, log_softmax and sum, applied while CPU autocast is on."""

    FLOAT32_OPS = {torch.softmax, Tensor.softmax, F.softmax, torch.log_softmax, Tensor.log_softmax, F.log_softmax,
                   torch.sum, Tensor.sum}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in self.FLOAT32_OPS and torch.is_autocast_enabled("cpu") and kwargs.get("dtype") is None:
            args = tuple(a.float() if isinstance(a, Tensor) and a.dtype in TOLERANCE else a for a in args)
        return func(*args, **kwargs)


def policy_mode(policy):
    return CudaPolicy() if policy == "cuda" else contextlib.nullcontext()


def rel_err(a: Tensor, b: Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


def output_grad(shape, layout: str, dtype) -> Tensor:
    """A seeded random output gradient in `layout`: contiguous, channels_last, transposed (H and W do
    not merge), or broadcast along W (what a mean over W hands back); logits' is contiguous."""
    g = torch.randn(shape, generator=torch.Generator().manual_seed(7))
    if len(shape) != 4:
        return g.to(dtype)
    if layout == "channels_last":
        g = g.contiguous(memory_format=torch.channels_last)
    elif layout == "transposed":
        g = g.transpose(2, 3).contiguous().transpose(2, 3)
    elif layout == "broadcast_w":
        g = g[..., :1].expand(shape)
    return g.to(dtype)


def run(model: nn.Module, x: Tensor, *, dtype=None, policy="cpu", grad_layout="contiguous", backend="auto",
        backward_in_autocast=False):
    """Forward and backward of a copy of `model` on a copy of x: (output, x grad, the copy)."""
    model = copy.deepcopy(model)
    x = x.detach().clone().requires_grad_(True)
    autocast = torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None)
    with attention_backend(backend), policy_mode(policy):
        with autocast:
            out = model(x)
            if backward_in_autocast:
                out.backward(output_grad(out.shape, grad_layout, out.dtype))
        if not backward_in_autocast:
            out.backward(output_grad(out.shape, grad_layout, out.dtype))
    return out.detach(), x.grad, model


def assert_grads_float32_and_finite(model: nn.Module) -> None:
    bad = [n for n, p in model.named_parameters()
           if p.dtype != torch.float32 or p.grad is None or p.grad.dtype != torch.float32
           or not torch.isfinite(p.grad).all()]
    assert bad == []


MODULE_CASES = {
    "global": {},
    "window_5": {"extent": 5},                       # windowed step (L < S)
    "window_21": {"extent": 21},                     # banded dense step at 16x16, windowed at 32x32
    "content_only": {"positional": False},
    "positional_only": {"content": False},
    "query_norm": {"query_norm": True},
    "out_proj": {"out_proj": True},
    "row_col": {"axial_order": "row_col"},
}
# (input layout, output gradient layout): 32x32 maps take the by-heads content step (N >= 512).
LAYOUTS = [("nchw", "contiguous"), ("channels_last", "channels_last"), ("channels_last", "transposed"),
           ("nchw", "broadcast_w")]


@pytest.mark.parametrize("backend", ["auto", "batched"])
@pytest.mark.parametrize("size", [16, 32])
@pytest.mark.parametrize("case", list(MODULE_CASES))
@pytest.mark.parametrize("policy", ["cpu", "cuda"])
@pytest.mark.parametrize("dtype", list(LOW.values()), ids=list(LOW))
def test_module_under_autocast_matches_float32(dtype, policy, case, size, backend):
    torch.manual_seed(0)
    m = GlobalSelfAttention(32, 32, heads=4, dim_key=8, max_size=size, **MODULE_CASES[case])
    x = torch.randn(2, 32, size, size).to(dtype)        # as a GSA module gets it inside an autocast net
    for x_layout, grad_layout in LAYOUTS:
        xl = x.contiguous(memory_format=torch.channels_last) if x_layout == "channels_last" else x
        out, grad_x, copy_ = run(m, xl, dtype=dtype, policy=policy, grad_layout=grad_layout, backend=backend)
        ref_out, ref_grad_x, _ = run(m, xl.float(), grad_layout=grad_layout, backend=backend)
        assert (out.dtype, grad_x.dtype) == (dtype, dtype)
        assert torch.isfinite(out).all() and torch.isfinite(grad_x).all()
        assert_grads_float32_and_finite(copy_)
        errors = rel_err(out, ref_out), rel_err(grad_x, ref_grad_x)
        assert max(errors) <= TOLERANCE[dtype], (x_layout, grad_layout, errors)


@pytest.mark.parametrize("backend", ["auto", "batched"])
@pytest.mark.parametrize("case", ["global", "window_5", "query_norm"])
@pytest.mark.parametrize("dtype", list(LOW.values()), ids=list(LOW))
def test_module_backward_inside_autocast_matches_float32(dtype, case, backend):
    # backward() called inside the autocast block (and CUDA's policy): torch_ops' hand-written
    # backwards turn autocast off and keep their operands' dtype; batched's are autograd's.
    torch.manual_seed(0)
    m = GlobalSelfAttention(32, 32, heads=4, dim_key=8, max_size=32, **MODULE_CASES[case])
    x = torch.randn(2, 32, 32, 32).to(dtype)
    out, grad_x, copy_ = run(m, x, dtype=dtype, policy="cuda", backward_in_autocast=True, backend=backend)
    ref_out, ref_grad_x, _ = run(m, x.float(), backend=backend)
    assert_grads_float32_and_finite(copy_)
    assert max(rel_err(out, ref_out), rel_err(grad_x, ref_grad_x)) <= TOLERANCE[dtype]


@pytest.mark.parametrize("case", ["global", "content_only", "query_norm", "window_5"])
@pytest.mark.parametrize("dtype", list(LOW.values()), ids=list(LOW))
def test_native_under_autocast_computes_in_float32(dtype, case):
    # The operators' autocast rule casts a low-precision input to float32: the kernels' own numbers.
    if not native.kernels_loaded():
        pytest.skip("native kernels unavailable (no C compiler)")
    torch.manual_seed(0)
    m = GlobalSelfAttention(16, 16, heads=2, dim_key=4, max_size=8, **MODULE_CASES[case])
    x = torch.randn(2, 16, 8, 8).to(dtype)
    out, grad_x, cast = run(m, x, dtype=dtype, policy="cuda", backend="native")
    ref_out, ref_grad_x, plain = run(m, x.float(), backend="native")
    assert out.dtype == torch.float32 and torch.equal(out, ref_out)
    assert torch.equal(grad_x, ref_grad_x.to(dtype))
    assert all(torch.equal(a.grad, b.grad) for a, b in zip(cast.parameters(), plain.parameters()))


def test_auto_backend_under_autocast_is_torch_ops():
    # Under CPU autocast "auto" runs torch_ops, whose products take autocast's dtype.
    x, w = torch.randn(2, 4, 3, 3), torch.randn(6, 4, 1, 1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert dispatch.resolve(x, w) == "torch_ops"
        assert dispatch.resolve(x.bfloat16(), w) == "torch_ops"
    assert dispatch.resolve(x, w) == ("native" if native.kernels_loaded() else "torch_ops")


@pytest.mark.parametrize("grad_layout", ["channels_last", "transposed", "broadcast_w"])
@pytest.mark.parametrize("backend", ["native", "torch_ops", "batched"])
def test_float32_module_takes_output_gradients_of_any_layout(backend, grad_layout):
    # Same numbers as for a contiguous gradient of the same values, bit for bit.
    if backend == "native" and not native.kernels_loaded():
        pytest.skip("native kernels unavailable (no C compiler)")
    torch.manual_seed(0)
    m = GlobalSelfAttention(16, 16, heads=2, dim_key=4, max_size=8, query_norm=True)
    x = torch.randn(2, 16, 8, 8)
    got = run(m, x, grad_layout=grad_layout, backend=backend)
    model = copy.deepcopy(m)
    xc = x.clone().requires_grad_(True)
    with attention_backend(backend):
        out = model(xc)
        out.backward(output_grad(out.shape, grad_layout, out.dtype).contiguous())
    assert torch.equal(got[0], out.detach()) and torch.equal(got[1], xc.grad)
    assert all(torch.equal(a.grad, b.grad) for a, b in zip(got[2].parameters(), model.parameters()))


def smooth(net: nn.Module) -> nn.Module:
    """net with every ReLU replaced by a SiLU (same weights), in place."""
    for name, child in net.named_children():
        setattr(net, name, nn.SiLU()) if isinstance(child, nn.ReLU) else smooth(child)
    return net


BOTH_LAYOUTS = (torch.contiguous_format, torch.channels_last)
NETS = [pytest.param("gsa_resnet_tiny", (1, 8), BOTH_LAYOUTS, id="gsa_resnet_tiny"),
        pytest.param("gsa_resnet26_cifar", (3, 32), (torch.channels_last,), id="gsa_resnet26_cifar",
                     marks=pytest.mark.slow)]  # 4 s per low-precision pass on the CPU: the layout CUDA trains in


@pytest.mark.parametrize("backend", ["auto", "batched"])
@pytest.mark.parametrize("name, image, layouts", NETS)
@pytest.mark.parametrize("policy", ["cpu", "cuda"])
@pytest.mark.parametrize("dtype", list(LOW.values()), ids=list(LOW))
def test_net_under_autocast_matches_float32(dtype, policy, name, image, layouts, backend):
    """A whole net at its real initialisation, batch 2, in `layouts`.

    The input gradient of a ReLU net is compared with float32 on the same net with SiLUs: a ReLU
    whose input sits within rounding of zero flips its mask, which moves ‖Δ grad‖ / ‖grad‖ of any
    ReLU net, the conv baselines too, to 0.1-0.2 (the error grows as the square root of the forward
    error, not with it); everything else in the net is unchanged.
    """
    torch.manual_seed(0)
    net = create_net(name)
    chans, size = image
    x = torch.randn(2, chans, size, size)
    for layout in layouts:
        relu_net, xl = copy.deepcopy(net).to(memory_format=layout), x.contiguous(memory_format=layout)
        out, grad_x, cast = run(relu_net, xl, dtype=dtype, policy=policy, backend=backend)
        ref_out, _, _ = run(relu_net, xl, backend=backend)
        assert torch.isfinite(out).all() and torch.isfinite(grad_x).all()
        assert_grads_float32_and_finite(cast)
        assert rel_err(out, ref_out) <= TOLERANCE[dtype]
    silu_net = smooth(copy.deepcopy(net))
    out, grad_x, _ = run(silu_net, x, dtype=dtype, policy=policy, backend=backend)
    ref_out, ref_grad_x, _ = run(silu_net, x, backend=backend)
    assert max(rel_err(out, ref_out), rel_err(grad_x, ref_grad_x)) <= TOLERANCE[dtype]


@pytest.mark.gpu
@pytest.mark.parametrize("case", ["global", "window_5", "content_only", "query_norm", "out_proj", "row_col"])
@pytest.mark.parametrize("dtype", list(LOW.values()), ids=list(LOW))
def test_module_under_cuda_autocast_matches_float32(dtype, case):
    # CUDA's own autocast policy, channels_last input, 32x32 (the by-heads content step); float32 without TF32.
    torch.manual_seed(0)
    m = GlobalSelfAttention(32, 32, heads=4, dim_key=8, max_size=32, **MODULE_CASES[case]).cuda()
    x = torch.randn(2, 32, 32, 32, device="cuda").contiguous(memory_format=torch.channels_last)
    g = torch.randn(2, 32, 32, 32, device="cuda")
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        results = []
        for enabled in (True, False):
            model, xi = copy.deepcopy(m), x.clone().requires_grad_(True)
            with torch.autocast("cuda", dtype=dtype, enabled=enabled):
                out = model(xi)
            out.backward(g.to(out.dtype))
            assert_grads_float32_and_finite(model)
            results.append((out.detach(), xi.grad))
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
    (out, grad_x), (ref_out, ref_grad_x) = results
    assert out.dtype == dtype and torch.isfinite(out).all() and torch.isfinite(grad_x).all()
    assert max(rel_err(out, ref_out), rel_err(grad_x, ref_grad_x)) <= TOLERANCE[dtype]
