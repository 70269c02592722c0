"""GlobalSelfAttention on CPU as one autograd Function over the native kernels (gsa_space.native).

One matrix product projects x to q, k and v together into a channels-last map (every pixel's q, k,
v channels are one row) and each kernel reads its slice of that map in place. The backward writes
the gradients of q, k and v straight into one buffer of the same layout, the kernels adding where
a tensor feeds several steps (q feeds three), and the projection's backward is two products. The
map and its gradient come from gsa_space.buffer_pool (no fresh pages per step). The math is
`GlobalSelfAttention`'s; the tests compare both paths with the loop references.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from gsa_space.attention.native import kernels as native
from gsa_space.attention.native import memory as buffer_pool

if TYPE_CHECKING:
    from gsa_space.attention.module import GlobalSelfAttention


def _batch_norm(bn: nn.BatchNorm2d, y: Tensor) -> tuple[Tensor, Tensor, Tensor, bool]:
    """`bn(y)` as nn.BatchNorm2d computes it (running stats, momentum None), plus what its
    backward needs: (out, saved mean, saved inverse std, whether batch statistics were used)."""
    factor = 0.0 if bn.momentum is None else bn.momentum
    if bn.training and bn.track_running_stats and bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)
        factor = 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum
    batch_stats = bn.training or bn.running_mean is None
    keep = not bn.training or bn.track_running_stats
    out, mean, invstd = torch.native_batch_norm(
        y, bn.weight, bn.bias, bn.running_mean if keep else None, bn.running_var if keep else None,
        batch_stats, factor, bn.eps)
    return out, mean, invstd, batch_stats


def _split(t: Tensor, m: GlobalSelfAttention) -> tuple[Tensor, Tensor | None, Tensor]:
    """(B, H, W, Ct) channels-last q|k|v map -> q, k (or None), v as (B, H, W, h, c) views."""
    B, H, W, _ = t.shape
    h, dk, dv = m.heads, m.dim_key, m.dim_value
    q = t[..., : h * dk].unflatten(-1, (h, dk))
    k = t[..., h * dk: 2 * h * dk].unflatten(-1, (h, dk)) if m.content else None
    v = t[..., t.shape[-1] - h * dv:].unflatten(-1, (h, dv))
    return q, k, v


def _steps(m: GlobalSelfAttention) -> list[tuple[str, Tensor]]:
    steps = [("col", m.rel_col), ("row", m.rel_row)]
    return steps[::-1] if m.axial_order == "row_col" else steps


def _project(x: Tensor, weight: Tensor, qkv: Tensor) -> Tensor | None:
    """qkv (B, H, W, Ct) = the 1x1 projection of x (B, C, H, W) by weight (Ct, C, 1, 1).

    An NCHW image is read in place as the transposed operand of its own product; channels-last x,
    or NCHW x on a small map (more q|k|v channels than positions, where one product over all rows
    beats per-image ones and the weight gradient needs the rows anyway), as (positions, C) rows,
    which are returned for the backward (None otherwise).
    """
    B, C, H, W = x.shape
    w_t = weight.view(weight.shape[0], C).t()
    if x.is_contiguous() and weight.shape[0] <= H * W:
        torch.matmul(x.view(B, C, H * W).transpose(1, 2), w_t, out=qkv.view(B, H * W, -1))
        return None
    x_rows = x.permute(0, 2, 3, 1).reshape(B * H * W, C)                         # a view when NHWC
    torch.mm(x_rows, w_t, out=qkv.view(B * H * W, -1))
    return x_rows


def _project_backward(x: Tensor, x_rows: Tensor | None, weight: Tensor, grad: Tensor, want_x: bool,
                      want_w: bool) -> tuple[Tensor | None, Tensor | None]:
    """Gradients of `_project` for x (in x's layout) and weight, from grad (B, H, W, Ct)."""
    B, C, H, W = x.shape
    w2 = weight.view(weight.shape[0], C)
    g_rows, g_t = grad.view(B * H * W, -1), grad.view(B, H * W, -1).transpose(1, 2)  # (BHW, Ct), (B, Ct, HW)
    grad_x = grad_w = None
    if want_x and x.is_contiguous():
        grad_x = torch.bmm(w2.t().expand(B, C, -1), g_t).view(B, C, H, W)
    elif want_x:
        grad_x = torch.mm(g_rows, w2).view(B, H, W, C).permute(0, 3, 1, 2)
    if want_w and x_rows is not None:
        grad_w = torch.mm(g_rows.t(), x_rows).view_as(weight)
    elif want_w:  # per-image products, summed
        grad_w = torch.bmm(g_t, x.view(B, C, H * W).transpose(1, 2)).sum(0).view_as(weight)
    return grad_x, grad_w


class _FusedGSA(torch.autograd.Function):
    """x (B, C_in, H, W) -> F_c + F_p (B, C_out, H, W) with the q|k|v projection `weight`
    (Ct, C_in, 1, 1); grads for x, weight, the two embeddings (col, row) and the BatchNorm's
    weight and bias."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, rel_col: Tensor | None, rel_row: Tensor | None,
                bn_weight: Tensor | None, bn_bias: Tensor | None, m: GlobalSelfAttention) -> Tensor:
        B, C, H, W = x.shape
        qkv = buffer_pool.take((B, H, W, weight.shape[0]), x.dtype)               # (B, H, W, Ct)
        x_rows = _project(x, weight, qkv)
        q, k, v = _split(qkv, m)                                                  # (B, H, W, h, c) views
        h, dv = m.heads, m.dim_value
        out = saved = None
        if m.content:
            queries = q.flatten(1, 2).softmax(dim=-1) if m.query_norm else q.flatten(1, 2)
            out, summary = native.content_forward(queries, k.flatten(1, 2), v.flatten(1, 2))
            out = out.view(B, h, dv, H, W)                                        # keys: softmax over N
            saved = (queries, summary)
        if m.positional:
            (axis1, rel1), (axis2, rel2) = _steps(m)
            y1 = native.axial_forward(q, v, rel1, axis1, channels_last_out=True)  # (B, H, W, h, dv)
            y1_nchw = y1.view(B, H, W, h * dv).permute(0, 3, 1, 2)                # channels-last strides
            y2, mean, invstd, batch_stats = _batch_norm(m.norm, y1_nchw)
            y2 = y2.permute(0, 2, 3, 1).reshape(B, H, W, h, dv)                   # a view when NHWC
            out = native.axial_forward(q, y2, rel2, axis2, channels_last_out=False, add_to=out)
            ctx.bn = (mean, invstd, batch_stats)
            ctx.save_for_backward(x, x_rows, weight, qkv, *(saved or (qkv, qkv)), y1_nchw, y2)
        else:
            ctx.save_for_backward(x, x_rows, weight, qkv, *saved)
        ctx.m = m
        return out.view(B, h * dv, H, W)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:
        m = ctx.m
        x, x_rows, weight, qkv, queries, summary, *pos = ctx.saved_tensors
        B, H, W, Ct = qkv.shape
        h, dv = m.heads, m.dim_value
        grad_cl = buffer_pool.take((B, H, W, Ct), qkv.dtype)                       # the one qkv grad buffer
        gq, gk, gv = _split(grad_cl, m)
        q, k, v = _split(qkv, m)
        g_lines = grad.view(B, h, dv, H, W)
        grads_rel: dict[str, Tensor] = {}
        g_bn_w = g_bn_b = None
        if m.positional:
            y1_nchw, y2 = pos
            (axis1, rel1), (axis2, rel2) = _steps(m)
            _, g_y2, grads_rel[axis2] = native.axial_backward(q, y2, rel2, g_lines, axis2, False, grad_q=gq)
            mean, invstd, batch_stats = ctx.bn
            g_y2_nchw = g_y2.view(B, H, W, h * dv).permute(0, 3, 1, 2)
            g_y1, g_bn_w, g_bn_b = torch.ops.aten.native_batch_norm_backward(
                g_y2_nchw, y1_nchw, m.norm.weight, m.norm.running_mean, m.norm.running_var, mean, invstd,
                batch_stats, m.norm.eps, [True, True, True])
            g_y1 = g_y1.permute(0, 2, 3, 1).unflatten(-1, (h, dv))                 # (B, H, W, h, dv)
            *_, grads_rel[axis1] = native.axial_backward(q, v, rel1, g_y1, axis1, True, grad_q=gq, add_q=True,
                                                         grad_v=gv)
        if m.content:
            flat = lambda t: t.flatten(1, 2)                                       # noqa: E731
            g_queries = torch.empty_like(queries) if m.query_norm else flat(gq)
            native.content_backward(queries, flat(k), flat(v), grad.view(B, h, dv, H * W), summary,
                                    into=(g_queries, flat(gk), flat(gv)),
                                    add=(m.positional and not m.query_norm, m.positional))
            if m.query_norm:
                g_q = torch._softmax_backward_data(g_queries, queries, 3, queries.dtype)
                flat(gq).add_(g_q) if m.positional else flat(gq).copy_(g_q)
        grad_x, grad_w = _project_backward(x, x_rows, weight, grad_cl, *ctx.needs_input_grad[:2])
        return grad_x, grad_w, grads_rel.get("col"), grads_rel.get("row"), g_bn_w, g_bn_b, None


def fused_forward(m: GlobalSelfAttention, x: Tensor) -> Tensor:
    """`m(x)` through the native kernels: (B, C_in, H, W) -> (B, C_out, H, W), before out_proj."""
    convs = [m.to_q] + ([m.to_k] if m.content else []) + [m.to_v]
    weight = torch.cat([c.weight for c in convs]) if len(convs) > 1 else convs[0].weight
    pos = m.positional
    if not (x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last)):
        x = x.contiguous()
    return _FusedGSA.apply(x, weight,
                           m.rel_col if pos else None, m.rel_row if pos else None,
                           m.norm.weight if pos else None, m.norm.bias if pos else None, m)
