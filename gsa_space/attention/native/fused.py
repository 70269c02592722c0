"""The whole GSA module (before out_proj) on the C kernels: forward and backward as two functions.

One matrix product projects x to q, k and v together into a channels-last map (every pixel's q, k,
v channels are one row) and each kernel reads its slice of that map in place. The backward writes
the gradients of q, k and v straight into one buffer of the same layout, the kernels adding where
a tensor feeds several steps (q feeds three), and the projection's backward is two products. The
map and its gradient come from the buffer pool (gsa_space.attention.native.memory). Both functions
take tensors and static options only; gsa_space.attention.native.ops registers them as the
operators gsa_nas::gsa_forward and gsa_nas::gsa_backward. Math: docs/gsa.md.
"""

from __future__ import annotations

import torch
from torch import Tensor

import gsa_space.attention.native.kernels as kernels
import gsa_space.attention.native.memory as memory

__all__ = ["FORWARD_OUTPUTS", "backward", "forward", "shares_memory", "uses_rows"]

# What `forward` returns, in order; those not computed for the options at hand are empty (0,)
# placeholders (an operator's outputs are fixed). All but "out" are kept for the backward.
FORWARD_OUTPUTS = ("out", "qkv", "x_rows", "queries", "summary", "y1", "y2", "mean", "invstd",
                   "running_mean", "running_var")


def _split(t: Tensor, heads: int, dim_key: int, content: bool) -> tuple[Tensor, Tensor | None, Tensor]:
    """(B, H, W, Ct) channels-last q|k|v map -> q, k (or None), v as (B, H, W, h, c) views."""
    h, dk = heads, dim_key
    dv = (t.shape[-1] - h * dk * (2 if content else 1)) // h
    q = t[..., : h * dk].unflatten(-1, (h, dk))
    k = t[..., h * dk: 2 * h * dk].unflatten(-1, (h, dk)) if content else None
    v = t[..., t.shape[-1] - h * dv:].unflatten(-1, (h, dv))
    return q, k, v


def _steps(rel_col: Tensor, rel_row: Tensor, axial_order: str) -> list[tuple[str, Tensor]]:
    steps = [("col", rel_col), ("row", rel_row)]
    return steps[::-1] if axial_order == "row_col" else steps


def shares_memory(a: Tensor, b: Tensor) -> bool:
    """Whether a and b are views of one storage (the test torch.library applies to an operator's
    outputs; `Tensor._is_view` is not tracked below autograd, where operators run)."""
    return a.untyped_storage()._cdata == b.untyped_storage()._cdata


def uses_rows(x: Tensor, channels: int) -> bool:
    """Whether `_project` reads x (B, C, H, W) as (positions, C) rows: channels-last x, or NCHW x
    on a small map (more q|k|v `channels` than positions)."""
    return not (x.is_contiguous() and channels <= x.shape[2] * x.shape[3])


def _project(x: Tensor, weight: Tensor, qkv: Tensor) -> Tensor | None:
    """qkv (B, H, W, Ct) = the 1x1 projection of x (B, C, H, W) by weight (Ct, C, 1, 1).

    An NCHW image is read in place as the transposed operand of its own product; channels-last x,
    or NCHW x on a small map (more q|k|v channels than positions, where one product over all rows
    beats per-image ones and the weight gradient needs the rows anyway), as (positions, C) rows,
    which are returned for the backward (None otherwise).
    """
    B, C, H, W = x.shape
    w_t = weight.view(weight.shape[0], C).t()
    if not uses_rows(x, weight.shape[0]):
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


def _empty(like: Tensor) -> Tensor:
    return like.new_empty(0)


def forward(x: Tensor, weight: Tensor, rel_col: Tensor | None, rel_row: Tensor | None, bn_weight: Tensor | None,
            bn_bias: Tensor | None, running_mean: Tensor | None, running_var: Tensor | None,
            bn_count: Tensor | None, heads: int, dim_key: int, content: bool, positional: bool,
            query_norm: bool, axial_order: str, momentum: float | None, eps: float,
            batch_stats: bool) -> tuple[Tensor, ...]:
    """x (B, C_in, H, W) -> F_c + F_p (B, C_out, H, W) and what the backward needs (`FORWARD_OUTPUTS`).

    weight: the q|k|v projection (Ct, C_in, 1, 1); rel_col, rel_row (h, L, dk); the BatchNorm's
    affine weights, running statistics (None when it keeps none) and its update count `bn_count`
    (already incremented; None when it does not count), as nn.BatchNorm2d holds them. Updated
    running statistics come back as new tensors (an operator does not write its inputs).
    """
    B, C, H, W = x.shape
    qkv = memory.take((B, H, W, weight.shape[0]), x.dtype)                    # (B, H, W, Ct)
    x_rows = _project(x, weight, qkv)
    q, k, v = _split(qkv, heads, dim_key, content)                            # (B, H, W, h, c) views
    h, dv = heads, v.shape[-1]
    out = queries = summary = None
    if content:
        queries = q.flatten(1, 2).softmax(dim=-1) if query_norm else q.flatten(1, 2)
        out, summary = kernels.content_forward(queries, k.flatten(1, 2), v.flatten(1, 2))
        out = out.view(B, h, dv, H, W)                                        # keys: softmax over N
    y1 = y2 = mean = invstd = new_mean = new_var = None
    if positional:
        (axis1, rel1), (axis2, rel2) = _steps(rel_col, rel_row, axial_order)
        y1 = kernels.axial_forward(q, v, rel1, axis1, channels_last_out=True)   # (B, H, W, h, dv)
        y1_nchw = y1.view(B, H, W, h * dv).permute(0, 3, 1, 2)                # channels-last strides
        factor = 0.0 if momentum is None else momentum                        # as nn.BatchNorm2d
        if bn_count is not None:
            factor = 1.0 / float(bn_count) if momentum is None else momentum
        if batch_stats and running_mean is not None:                          # updated in copies
            new_mean, new_var = running_mean.clone(), running_var.clone()
        y2, mean, invstd = torch.native_batch_norm(
            y1_nchw, bn_weight, bn_bias, new_mean if new_mean is not None else running_mean,
            new_var if new_var is not None else running_var, batch_stats, factor, eps)
        y2 = y2.permute(0, 2, 3, 1).reshape(B, H, W, h, dv)                   # a view when NHWC
        out = kernels.axial_forward(q, y2, rel2, axis2, channels_last_out=False, add_to=out)
    saved_rows = x_rows if x_rows is not None and not shares_memory(x_rows, x) else None  # a view: redone
    saved_queries = queries if query_norm and content else None               # else a view of qkv
    outs = (out.view(B, h * dv, H, W), qkv, saved_rows, saved_queries, summary, y1, y2, mean, invstd,
            new_mean, new_var)
    return tuple(_empty(x) if t is None else t for t in outs)


def backward(grad: Tensor, x: Tensor, weight: Tensor, qkv: Tensor, x_rows: Tensor, queries: Tensor,
             summary: Tensor, y1: Tensor, y2: Tensor, mean: Tensor, invstd: Tensor, rel_col: Tensor | None,
             rel_row: Tensor | None, bn_weight: Tensor | None, running_mean: Tensor | None,
             running_var: Tensor | None, heads: int, dim_key: int, content: bool, positional: bool,
             query_norm: bool, axial_order: str, eps: float, batch_stats: bool, want_x: bool,
             want_weight: bool) -> tuple[Tensor, ...]:
    """Gradients of `forward` for x, weight, rel_col, rel_row and the BatchNorm's weight and bias,
    from grad (B, C_out, H, W) and the tensors `forward` kept; (0,) where not wanted or not used."""
    B, H, W, Ct = qkv.shape
    grad_cl = memory.take((B, H, W, Ct), qkv.dtype)                            # the one qkv grad buffer
    gq, gk, gv = _split(grad_cl, heads, dim_key, content)
    q, k, v = _split(qkv, heads, dim_key, content)
    h, dv = heads, v.shape[-1]
    g_lines = grad.view(B, h, dv, H, W)                                        # a view: only C splits
    grads_rel: dict[str, Tensor] = {}
    g_bn_w = g_bn_b = None
    if positional:
        y1_nchw = y1.view(B, H, W, h * dv).permute(0, 3, 1, 2)                 # channels-last strides
        (axis1, rel1), (axis2, rel2) = _steps(rel_col, rel_row, axial_order)
        _, g_y2, grads_rel[axis2] = kernels.axial_backward(q, y2, rel2, g_lines, axis2, False, grad_q=gq)
        g_y2_nchw = g_y2.view(B, H, W, h * dv).permute(0, 3, 1, 2)
        g_y1, g_bn_w, g_bn_b = torch.ops.aten.native_batch_norm_backward(
            g_y2_nchw, y1_nchw, bn_weight, running_mean, running_var, mean, invstd, batch_stats, eps,
            [True, True, True])
        g_y1 = g_y1.permute(0, 2, 3, 1).unflatten(-1, (h, dv))                 # (B, H, W, h, dv)
        *_, grads_rel[axis1] = kernels.axial_backward(q, v, rel1, g_y1, axis1, True, grad_q=gq, add_q=True,
                                                      grad_v=gv)
    if content:
        flat = lambda t: t.flatten(1, 2)                                       # noqa: E731
        queries = queries if query_norm else flat(q)
        g_queries = torch.empty_like(queries) if query_norm else flat(gq)
        # The kernel reads any strides; reshape copies only a gradient whose H and W do not merge
        # (a transposed one, or one broadcast along W).
        kernels.content_backward(queries, flat(k), flat(v), grad.reshape(B, h, dv, H * W), summary,
                                 into=(g_queries, flat(gk), flat(gv)), add=(positional and not query_norm, positional))
        if query_norm:
            g_q = torch._softmax_backward_data(g_queries, queries, 3, queries.dtype)
            flat(gq).add_(g_q) if positional else flat(gq).copy_(g_q)
    rows = x_rows if x_rows.dim() == 2 else None
    if rows is None and uses_rows(x, Ct):
        rows = x.permute(0, 2, 3, 1).reshape(B * H * W, x.shape[1])            # a view of x (NHWC)
    grad_x, grad_w = _project_backward(x, rows, weight, grad_cl, want_x, want_weight)
    outs = (grad_x, grad_w, grads_rel.get("col"), grads_rel.get("row"), g_bn_w, g_bn_b)
    return tuple(_empty(x) if t is None else t for t in outs)
