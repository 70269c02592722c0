"""The GSA math as plain NCHW tensor code: the executable specification (docs/gsa.md).

Each function is the formula of its docs/gsa.md section, vectorised over batch, heads and
pixels and nothing more, so that it can be read against the paper. The backends
(gsa_space.attention.torch_ops, .native, .batched) must equal it; the tests compare
each of them with it, and it with the slow loops of tests/gsa_space/loop_references.py.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from gsa_space.attention.params import GSAParams

__all__ = ["AXES", "content_attention", "gsa_reference", "relative_attention_1d"]

AXES: tuple[str, ...] = ("col", "row")


def content_attention(q: Tensor, k: Tensor, v: Tensor, *, query_norm: bool = False) -> Tensor:
    """Per head `q . (softmax_N(k)^T . v)`; cost linear in N = H * W (docs/gsa.md §2).

    Args:
        q, k: (B, h, dk, H, W); v: (B, h, dv, H, W).
        query_norm: softmax each query over its dk channels (the Efficient Attention variant).
    Returns:
        (B, h, dv, H, W).

    Example:
        >>> q, k, v = torch.randn(2, 4, 8, 5, 5), torch.randn(2, 4, 8, 5, 5), torch.randn(2, 4, 16, 5, 5)
        >>> content_attention(q, k, v).shape
        torch.Size([2, 4, 16, 5, 5])
    """
    B, h, dk, H, W = q.shape
    dv = v.shape[2]
    keys = k.reshape(B, h, dk, H * W).softmax(dim=-1)            # (B, h, dk, N)
    context = torch.matmul(v.reshape(B, h, dv, H * W), keys.transpose(-1, -2))  # (B, h, dv, dk)
    queries = q.reshape(B, h, dk, H * W)                          # (B, h, dk, N)
    if query_norm:
        queries = queries.softmax(dim=2)                          # (B, h, dk, N)
    out = torch.matmul(context, queries)                          # (B, h, dv, N)
    return out.view(B, h, dv, H, W)


def _shifted(v: Tensor, offset: int, dim: int) -> Tensor:
    """`v` read `offset` pixels further along `dim`: out[.., a, ..] = v[.., a + offset, ..], zero
    where a + offset falls outside the map. |offset| < v.shape[dim]."""
    n = v.shape[dim] - abs(offset)
    kept = v.narrow(dim, max(0, offset), n)                       # the pixels that stay inside
    zeros = v.new_zeros(v.shape[:dim] + (abs(offset),) + v.shape[dim + 1:])
    return torch.cat([kept, zeros] if offset > 0 else [zeros, kept], dim)


def relative_attention_1d(q: Tensor, v: Tensor, rel: Tensor, *, axis: str) -> Tensor:
    """Relative positional attention along one axis; no softmax (docs/gsa.md §3).

    col: out[..., a, b] = sum_o (q[..., :, a, b] . rel[h, o + c]) * v[..., :, a + o, b];
    row: the same with the offset on the W axis. c = (L - 1) / 2, o = -c .. c; pixels outside
    the map contribute zero, so any odd L is valid, also L longer than the axis.

    Args:
        q: (B, h, dk, H, W); v: (B, h, dv, H, W); rel: (h, L, dk), L odd.
        axis: "col" (offsets along H) or "row" (offsets along W).
    Returns:
        (B, h, dv, H, W).

    Example:
        >>> q, v, rel = torch.randn(2, 4, 8, 5, 6), torch.randn(2, 4, 16, 5, 6), torch.randn(4, 3, 8)
        >>> relative_attention_1d(q, v, rel, axis="row").shape
        torch.Size([2, 4, 16, 5, 6])
    """
    if axis not in AXES:
        raise ValueError(f"axis must be one of {AXES}, but got axis={axis!r}.")
    if rel.shape[1] % 2 != 1:
        raise ValueError(f"rel must have an odd length L (offsets -(L-1)/2..(L-1)/2), but got L={rel.shape[1]}.")
    dim = 3 if axis == "col" else 4
    size, c = q.shape[dim], (rel.shape[1] - 1) // 2
    out = torch.zeros_like(v)                                     # (B, h, dv, H, W)
    for o in range(max(-c, 1 - size), min(c, size - 1) + 1):     # offsets that reach into the map
        logits = torch.einsum("bhdxy,hd->bhxy", q, rel[:, o + c])  # (B, h, H, W)
        out = out + logits.unsqueeze(2) * _shifted(v, o, dim)     # (B, h, dv, H, W)
    return out


def gsa_reference(p: GSAParams, x: Tensor) -> Tensor:
    """The whole module before its optional out_proj: F_c + F_p of docs/gsa.md §1-§6.

    Args:
        p: the module's weights and options (`GlobalSelfAttention.params()`).
        x: (B, C_in, H, W).
    Returns:
        (B, h * dv, H, W). In training mode the BatchNorm updates its running statistics.
    """
    B, _, H, W = x.shape
    h, dk, dv = p.heads, p.dim_key, p.dim_value
    q = F.conv2d(x, p.to_q).view(B, h, dk, H, W)                  # (B, h, dk, H, W)
    v = F.conv2d(x, p.to_v).view(B, h, dv, H, W)                  # (B, h, dv, H, W)
    out = None
    if p.content:
        assert p.to_k is not None
        k = F.conv2d(x, p.to_k).view(B, h, dk, H, W)              # (B, h, dk, H, W)
        out = content_attention(q, k, v, query_norm=p.query_norm)  # (B, h, dv, H, W)
    if p.positional:
        assert p.norm is not None
        (axis1, rel1), (axis2, rel2) = p.steps()
        y = relative_attention_1d(q, v, rel1, axis=axis1)          # (B, h, dv, H, W)
        y = p.norm(y.reshape(B, h * dv, H, W)).view(B, h, dv, H, W)
        pos = relative_attention_1d(q, y, rel2, axis=axis2)        # (B, h, dv, H, W)
        out = pos if out is None else out + pos
    assert out is not None, "at least one branch is on"
    return out.reshape(B, h * dv, H, W)
