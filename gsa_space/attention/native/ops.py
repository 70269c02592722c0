"""The native backend's operators, registered with torch.library (docs/gsa.md §7).

gsa_nas::gsa_forward and gsa_nas::gsa_backward run the whole module (fused.py);
gsa_nas::axial_step and gsa_nas::axial_step_backward one axial relative step (kernels.py). Each
has a fake implementation (shapes, dtypes and strides only) and each forward an autograd formula,
so that autograd, the meta device, FakeTensor and torch.compile see one operator where a ctypes
call would otherwise stop them; each forward has a CPU autocast rule too: the kernels compute in
float32, so under autocast their float16 / bfloat16 inputs are cast to it (docs/gsa.md §7).
`gsa_forward` and `axial_step` are the backend's entry points.
"""

# No `from __future__ import annotations`: torch.library reads the operators' schemas from the
# annotations.

import torch
from torch import Tensor

import gsa_space.attention.native.fused as fused
import gsa_space.attention.native.kernels as kernels
from gsa_space.attention.params import GSAParams

__all__ = ["axial_step", "gsa_forward", "kernels_loaded", "supports"]

_FORWARD_OUTPUTS = tuple[(Tensor,) * len(fused.FORWARD_OUTPUTS)]  # type: ignore[misc]


@torch.compiler.assume_constant_result
def kernels_loaded() -> bool:
    """Whether the C kernels are built and loaded; a constant to torch.compile (no ctypes traced)."""
    return kernels.library() is not None


# What CPU autocast makes of an input dtype before a gsa_nas operator runs (its autocast rule).
_UNDER_AUTOCAST = {torch.float16: torch.float32, torch.bfloat16: torch.float32}


def supports(*tensors: Tensor, autocast: bool = False) -> bool:
    """Whether the native backend takes these tensors: one dtype, float32 or float64, and all on the
    CPU with the kernels loaded, or all on the meta device (shapes only, through the fake impls).
    With `autocast` (on for the CPU), the dtypes are those after the operators' autocast rule,
    which casts float16 and bfloat16 to float32."""
    dtypes = {_UNDER_AUTOCAST.get(t.dtype, t.dtype) if autocast else t.dtype for t in tensors}
    devices = {t.device.type for t in tensors}
    if len(dtypes) != 1 or not dtypes <= set(kernels.DTYPES):
        return False
    return devices == {"meta"} or (devices == {"cpu"} and kernels_loaded())


# -- the whole module -----------------------------------------------------------------------------

@torch.library.custom_op("gsa_nas::gsa_forward", mutates_args=())
def _gsa_forward(
    x: Tensor, weight: Tensor, rel_col: Tensor | None, rel_row: Tensor | None, bn_weight: Tensor | None,
    bn_bias: Tensor | None, running_mean: Tensor | None, running_var: Tensor | None, bn_count: Tensor | None,
    heads: int, dim_key: int, content: bool, positional: bool, query_norm: bool, axial_order: str,
    momentum: float | None, eps: float, batch_stats: bool,
) -> _FORWARD_OUTPUTS:
    return fused.forward(x, weight, rel_col, rel_row, bn_weight, bn_bias, running_mean, running_var, bn_count,
                         heads, dim_key, content, positional, query_norm, axial_order, momentum, eps, batch_stats)


@_gsa_forward.register_fake
def _gsa_forward_fake(x, weight, rel_col, rel_row, bn_weight, bn_bias, running_mean, running_var, bn_count,
                      heads, dim_key, content, positional, query_norm, axial_order, momentum, eps, batch_stats):
    B, C, H, W = x.shape
    Ct, h, dk = weight.shape[0], heads, dim_key
    dv = (Ct - h * dk * (2 if content else 1)) // h
    rows = x.permute(0, 2, 3, 1).reshape(B * H * W, C) if fused.uses_rows(x, Ct) else None
    stats = positional and batch_stats
    shapes = {
        "out": (B, h * dv, H, W), "qkv": (B, H, W, Ct),
        "x_rows": (B * H * W, C) if rows is not None and not fused.shares_memory(rows, x) else None,
        "queries": (B, H * W, h, dk) if content and query_norm else None,
        "summary": (B, h, dv + 2, dk) if content else None,
        "y1": (B, H, W, h, dv) if positional else None, "y2": (B, H, W, h, dv) if positional else None,
        "mean": (h * dv,) if stats else None, "invstd": (h * dv,) if stats else None,
        "running_mean": (h * dv,) if stats and running_mean is not None else None,
        "running_var": (h * dv,) if stats and running_mean is not None else None,
    }
    return tuple(x.new_empty(shapes[name] or (0,)) for name in fused.FORWARD_OUTPUTS)


@torch.library.custom_op("gsa_nas::gsa_backward", mutates_args=())
def _gsa_backward(
    grad: Tensor, x: Tensor, weight: Tensor, qkv: Tensor, x_rows: Tensor, queries: Tensor, summary: Tensor,
    y1: Tensor, y2: Tensor, mean: Tensor, invstd: Tensor, rel_col: Tensor | None, rel_row: Tensor | None,
    bn_weight: Tensor | None, running_mean: Tensor | None, running_var: Tensor | None, heads: int, dim_key: int,
    content: bool, positional: bool, query_norm: bool, axial_order: str, eps: float, batch_stats: bool,
    want_x: bool, want_weight: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    return fused.backward(grad, x, weight, qkv, x_rows, queries, summary, y1, y2, mean, invstd, rel_col, rel_row,
                          bn_weight, running_mean, running_var, heads, dim_key, content, positional, query_norm,
                          axial_order, eps, batch_stats, want_x, want_weight)


@_gsa_backward.register_fake
def _gsa_backward_fake(grad, x, weight, qkv, x_rows, queries, summary, y1, y2, mean, invstd, rel_col, rel_row,
                       bn_weight, running_mean, running_var, heads, dim_key, content, positional, query_norm,
                       axial_order, eps, batch_stats, want_x, want_weight):
    like = lambda t, want: torch.empty_like(t) if want else x.new_empty(0)  # noqa: E731
    contiguous = lambda t: torch.empty_like(t, memory_format=torch.contiguous_format)  # noqa: E731
    if not positional:
        return (like(x, want_x), like(weight, want_weight), *(x.new_empty(0) for _ in range(4)))
    C = grad.shape[1]
    return (like(x, want_x), like(weight, want_weight), contiguous(rel_col), contiguous(rel_row),
            grad.new_empty(C), grad.new_empty(C))


_GSA_INPUTS = 18  # _gsa_forward's arguments


def _gsa_setup_context(ctx, inputs, output):
    (x, weight, rel_col, rel_row, bn_weight, _, running_mean, running_var, _, heads, dim_key, content,
     positional, query_norm, axial_order, _, eps, batch_stats) = inputs
    ctx.set_materialize_grads(False)          # only `out` gets a gradient; the rest are kept tensors
    ctx.mark_non_differentiable(*output[1:])
    ctx.options = (heads, dim_key, content, positional, query_norm, axial_order, eps, batch_stats)
    # The backward reads the running statistics only in eval mode, where nothing updates them.
    running = (None, None) if batch_stats else (running_mean, running_var)
    ctx.save_for_backward(x, weight, *output[1:9], rel_col, rel_row, bn_weight, *running)


def _gsa_backward_formula(ctx, grad, *_):
    if grad is None:
        return (None,) * _GSA_INPUTS
    x, weight, qkv, x_rows, queries, summary, y1, y2, mean, invstd, *rest = ctx.saved_tensors
    want_x, want_weight = ctx.needs_input_grad[:2]
    positional = ctx.options[3]
    grads = torch.ops.gsa_nas.gsa_backward(grad, x, weight, qkv, x_rows, queries, summary, y1, y2, mean, invstd,
                                           *rest, *ctx.options, want_x, want_weight)
    wanted = (want_x, want_weight) + (positional,) * 4   # rel_col, rel_row, BatchNorm weight, bias
    return tuple(g if w else None for g, w in zip(grads, wanted)) + (None,) * (_GSA_INPUTS - len(wanted))


_gsa_forward.register_autograd(_gsa_backward_formula, setup_context=_gsa_setup_context)
# The kernels compute in float32 (or float64, which autocast leaves alone): under CPU autocast the
# operator takes its float16 / bfloat16 inputs as float32 and returns float32, as autocast's
# float32 ops do; autograd takes the gradients back through the casts.
_gsa_forward.register_autocast("cpu", torch.float32)


def gsa_forward(p: GSAParams, x: Tensor) -> Tensor:
    """F_c + F_p of `p` on x (B, C_in, H, W) -> (B, h * dv, H, W), before out_proj, as one operator.

    The BatchNorm's bookkeeping is nn.BatchNorm2d's: its update count is incremented here and its
    running statistics are updated from the copies the operator returns.
    """
    weights = p.projection_weights()
    weight = torch.cat(weights) if len(weights) > 1 else weights[0]             # (Ct, C_in, 1, 1)
    if not (x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last)):
        x = x.contiguous()
    bn, running, count, batch_stats = p.norm, (None, None), None, False
    affine, momentum, eps = (None, None), None, 0.0
    if bn is not None:
        if bn.training and bn.track_running_stats and bn.num_batches_tracked is not None:
            bn.num_batches_tracked.add_(1)
            count = bn.num_batches_tracked
        batch_stats = bn.training or bn.running_mean is None
        if not bn.training or bn.track_running_stats:
            running = (bn.running_mean, bn.running_var)
        affine, momentum, eps = (bn.weight, bn.bias), bn.momentum, bn.eps
    outs = torch.ops.gsa_nas.gsa_forward(x, weight, p.rel_col, p.rel_row, *affine, *running, count, p.heads,
                                         p.dim_key, p.content, p.positional, p.query_norm, p.axial_order,
                                         momentum, eps, batch_stats)
    if batch_stats and running[0] is not None:
        running[0].copy_(outs[-2])
        running[1].copy_(outs[-1])
    return outs[0]


# -- one axial step -------------------------------------------------------------------------------

@torch.library.custom_op("gsa_nas::axial_step", mutates_args=())
def _axial_step(q: Tensor, v: Tensor, rel: Tensor, axis: str, channels_last_out: bool) -> Tensor:
    return kernels.axial_forward(q, v, rel, axis, channels_last_out)


@_axial_step.register_fake
def _axial_step_fake(q, v, rel, axis, channels_last_out):
    kernels.check_axial(q, v, rel, axis)
    B, H, W, h, _ = q.shape
    dv = v.shape[-1]
    return q.new_empty((B, H, W, h, dv) if channels_last_out else (B, h, dv, H, W))


@torch.library.custom_op("gsa_nas::axial_step_backward", mutates_args=())
def _axial_step_backward(q: Tensor, v: Tensor, rel: Tensor, grad: Tensor, axis: str,
                         channels_last_out: bool) -> tuple[Tensor, Tensor, Tensor]:
    return kernels.axial_backward(q, v, rel, grad, axis, channels_last_out)


@_axial_step_backward.register_fake
def _axial_step_backward_fake(q, v, rel, grad, axis, channels_last_out):
    return tuple(torch.empty_like(t, memory_format=torch.contiguous_format) for t in (q, v, rel))


def _axial_setup_context(ctx, inputs, output):
    q, v, rel, axis, channels_last_out = inputs
    ctx.save_for_backward(q, v, rel)
    ctx.axis, ctx.channels_last_out = axis, channels_last_out


def _axial_backward_formula(ctx, grad):
    q, v, rel = ctx.saved_tensors
    grad_q, grad_v, grad_rel = torch.ops.gsa_nas.axial_step_backward(q, v, rel, grad, ctx.axis, ctx.channels_last_out)
    return grad_q, grad_v, grad_rel, None, None


_axial_step.register_autograd(_axial_backward_formula, setup_context=_axial_setup_context)
_axial_step.register_autocast("cpu", torch.float32)


def axial_step(q: Tensor, v: Tensor, rel: Tensor, axis: str, *, channels_last_out: bool) -> Tensor:
    """`spec.relative_attention_1d` on channels-last maps as one C kernel per direction.

    Args:
        q: (B, H, W, h, dk); v: (B, H, W, h, dv) (any strides); rel: (h, L, dk), L odd.
        axis: "col" (offsets along H) or "row" (offsets along W).
        channels_last_out: return (B, H, W, h, dv) if True, else (B, h, dv, H, W); contiguous.
    """
    return torch.ops.gsa_nas.axial_step(q, v, rel, axis, channels_last_out)
