"""Global Self-Attention (GSA) module: a functional core and a thin nn.Module shell.

Paper: Shen et al., "Global Self-Attention Networks for Image Recognition", arXiv 2010.03019.
Content branch: keys softmax-normalised over positions (linear in N); positional branch: axial,
relative, no softmax, column step -> BatchNorm -> row step (steps in gsa_space/axial.py).
Math and shapes: DESIGN.md section 2.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from gsa_space.attention.native import kernels as native
from gsa_space.attention.native.fused import fused_forward
from gsa_space.attention.torch_ops import _relative_channels_last
from gsa_space.config import AXIAL_ORDERS

__all__ = ["GlobalSelfAttention", "content_attention", "relative_attention_1d"]

AXES: tuple[str, ...] = ("col", "row")


def content_attention(q: Tensor, k: Tensor, v: Tensor, *, query_norm: bool = False) -> Tensor:
    """Per head `q . (softmax_N(k)^T . v)`; cost linear in N = H * W.

    Args:
        q, k: (B, h, dk, H, W); v: (B, h, dv, H, W).
        query_norm: softmax each query over its dk channels (the Efficient Attention variant).
    Returns:
        (B, h, dv, H, W).
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


def _content_channels_last(q: Tensor, k: Tensor, v: Tensor, *, query_norm: bool) -> Tensor:
    """`content_attention` on channels-last maps; q, k: (B, N, h, dk); v: (B, N, h, dv).

    Returns (B, h, dv, N), i.e. NCHW: the second product is taken transposed so that no
    output transposition is needed.
    """
    B, N, h, dk = q.shape
    dv = v.shape[-1]
    keys = k.softmax(dim=1).transpose(1, 2).reshape(B * h, N, dk)  # (B*h, N, dk), softmax over N
    values = v.transpose(1, 2).reshape(B * h, N, dv)               # (B*h, N, dv)
    queries = q.transpose(1, 2).reshape(B * h, N, dk)              # (B*h, N, dk)
    if query_norm:
        queries = queries.softmax(dim=-1)                          # (B*h, N, dk)
    context = torch.bmm(values.transpose(1, 2), keys)              # (B*h, dv, dk)
    out = torch.bmm(context, queries.transpose(1, 2))              # (B*h, dv, N)
    return out.view(B, h, dv, N)


def _content_heads(q: Tensor, keys: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
    """The content products one head at a time on channels-last views: no input layout copies.

    q, keys: (B, N, h, dk); v: (B, N, h, dv); only their last dim must be contiguous: a head's
    (B, N, c) slice is a batch of BLAS matrices with row stride h * c, so bmm reads it in place.
    Returns (out (B, h, dv, N), context (B, h, dv, dk)). Products go to a fresh buffer and are
    copied into strided slots: bmm with a strided `out=` runs on one thread (2x slower at 2).
    """
    B, N, h, dk = q.shape
    dv = v.shape[-1]
    out = q.new_empty(B, h, dv, N)
    context = q.new_empty(B, h, dv, dk)
    for j in range(h):
        torch.bmm(v[:, :, j].transpose(1, 2), keys[:, :, j], out=context[:, j])    # (B, dv, dk)
        out[:, j].copy_(torch.bmm(context[:, j], q[:, :, j].transpose(1, 2)))      # (B, dv, N)
    return out, context


class _ContentStep(torch.autograd.Function):
    """`_content_heads` with a hand-written backward that writes each head's grads straight into
    channels-last buffers: autograd's would copy every strided slice, or zero-fill per head."""

    @staticmethod
    def forward(ctx, q: Tensor, keys: Tensor, v: Tensor) -> Tensor:
        out, context = _content_heads(q, keys, v)
        ctx.save_for_backward(q, keys, v, context)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        q, keys, v, context = ctx.saved_tensors
        grad = grad.contiguous()                                                   # (B, h, dv, N)
        grad_q, grad_keys, grad_v = (q.new_empty(t.shape) for t in (q, keys, v))  # (B, N, h, dk|dv)
        for j in range(q.shape[2]):
            g = grad[:, j]                                                         # (B, dv, N)
            grad_context = torch.bmm(g, q[:, :, j])                                # (B, dv, dk)
            grad_q[:, :, j].copy_(torch.bmm(g.transpose(1, 2), context[:, j]))     # (B, N, dk)
            # A contiguous (dk, dv) right factor: read transposed, the narrow product runs 3x slower.
            right = grad_context.transpose(1, 2).contiguous()                      # (B, dk, dv)
            grad_v[:, :, j].copy_(torch.bmm(keys[:, :, j], right))                 # (B, N, dv)
            grad_keys[:, :, j].copy_(torch.bmm(v[:, :, j], grad_context))          # (B, N, dk)
        return grad_q, grad_keys, grad_v


# Fewest positions for the by-heads content step. Measured fwd + bwd at batch 32, 8 heads, 1 thread:
# 17% faster than the copying path at N = 1024 (C = 64), even at N = 256, 7% slower at N = 64.
_HEADS_MIN_N = 512


def _content_fast(q: Tensor, k: Tensor, v: Tensor, *, query_norm: bool) -> Tensor:
    """`_content_channels_last` by heads (`_ContentStep`) on large maps; the plain ops on small
    ones and when fvcore traces it.

    q, k: (B, N, h, dk); v: (B, N, h, dv) -> (B, h, dv, N), contiguous.
    """
    if torch.jit.is_tracing() or q.shape[1] < _HEADS_MIN_N:
        return _content_channels_last(q, k, v, query_norm=query_norm)
    keys = k.softmax(dim=1)                                                        # (B, N, h, dk)
    queries = q.softmax(dim=-1) if query_norm else q                               # (B, N, h, dk)
    if torch.is_grad_enabled() and any(t.requires_grad for t in (queries, keys, v)):
        return _ContentStep.apply(queries, keys, v)
    return _content_heads(queries, keys, v)[0]


def relative_attention_1d(q: Tensor, v: Tensor, rel: Tensor, *, axis: str) -> Tensor:
    """Relative positional attention along one axis; no softmax; outside pixels contribute 0.

    col: out[..., a, b] = sum_o (q[..., :, a, b] . rel[h, o + c]) * v[..., :, a + o, b];
    row: the same with the offset on the W axis. c = (L - 1) / 2; any odd L is valid.
    A window shorter than the axis (L < S) computes logits for its L offsets only (cost linear
    in L); otherwise only the offsets that land inside the map (logits of S x S per axis).

    Args:
        q: (B, h, dk, H, W); v: (B, h, dv, H, W); rel: (h, L, dk), L odd.
        axis: "col" (offsets along H) or "row" (offsets along W).
    Returns:
        (B, h, dv, H, W), contiguous.
    """
    if axis not in AXES:
        raise ValueError(f"axis must be one of {AXES}, but got axis={axis!r}.")
    if rel.shape[1] % 2 != 1:
        raise ValueError(f"rel must have an odd length L (offsets -(L-1)/2..(L-1)/2), but got L={rel.shape[1]}.")
    q_cl, v_cl = q.permute(0, 3, 4, 1, 2), v.permute(0, 3, 4, 1, 2)  # (B, H, W, h, dk|dv), views
    return _relative_channels_last(q_cl, v_cl, rel, axis, channels_last_out=False)


def _pair(max_size: int | tuple[int, int]) -> tuple[int, int]:
    pair = (max_size, max_size) if isinstance(max_size, int) else tuple(max_size)
    if len(pair) != 2 or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in pair):
        raise ValueError(f"max_size must be a positive int or an (H, W) pair of them, but got {max_size=!r}.")
    return pair  # type: ignore[return-value]


class GlobalSelfAttention(nn.Module):
    """GSA over an NCHW map; keeps H and W, maps in_channels -> out_channels.

    Example:
        >>> gsa = GlobalSelfAttention(64, 64, heads=8, dim_key=16, max_size=32)
        >>> gsa(torch.randn(2, 64, 32, 32)).shape
        torch.Size([2, 64, 32, 32])
    """

    def __init__(
        self, in_channels: int, out_channels: int, *, heads: int = 8, dim_key: int = 16,
        extent: int | str = "global", content: bool = True, positional: bool = True,
        query_norm: bool = False, axial_order: str = "col_row", out_proj: bool = False,
        max_size: int | tuple[int, int] = 64,
    ) -> None:
        super().__init__()
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels),
                            ("heads", heads), ("dim_key", dim_key)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive int, but got {name}={value!r}.")
        if out_channels % heads:
            raise ValueError(f"out_channels must be divisible by heads, but got {out_channels=}, {heads=}.")
        if extent != "global" and (not isinstance(extent, int) or isinstance(extent, bool)
                                   or extent < 1 or extent % 2 == 0):
            raise ValueError(f"extent must be 'global' or an odd int >= 1, but got extent={extent!r}.")
        if not (content or positional):
            raise ValueError(f"at least one branch must be on, but got {content=}, {positional=}.")
        if axial_order not in AXIAL_ORDERS:
            raise ValueError(f"axial_order must be one of {AXIAL_ORDERS}, but got axial_order={axial_order!r}.")
        self.heads, self.dim_key, self.dim_value = heads, dim_key, out_channels // heads
        self.out_channels, self.extent, self.max_size = out_channels, extent, _pair(max_size)
        self.content, self.positional = bool(content), bool(positional)
        self.query_norm, self.axial_order = bool(query_norm), axial_order
        self.to_q = nn.Conv2d(in_channels, heads * dim_key, 1, bias=False)
        self.to_k = nn.Conv2d(in_channels, heads * dim_key, 1, bias=False) if content else None
        self.to_v = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        if positional:
            len_col, len_row = ((2 * self.max_size[0] - 1, 2 * self.max_size[1] - 1)
                                if extent == "global" else (extent, extent))
            self.rel_col = nn.Parameter(torch.randn(heads, len_col, dim_key) * dim_key**-0.5)
            self.rel_row = nn.Parameter(torch.randn(heads, len_row, dim_key) * dim_key**-0.5)
            self.norm = nn.BatchNorm2d(out_channels)
        self.proj = nn.Conv2d(out_channels, out_channels, 1) if out_proj else None

    def extra_repr(self) -> str:
        return (f"heads={self.heads}, dim_key={self.dim_key}, extent={self.extent!r}, "
                f"content={self.content}, positional={self.positional}, query_norm={self.query_norm}, "
                f"axial_order={self.axial_order!r}, max_size={self.max_size}")

    def _check_size(self, H: int, W: int) -> None:
        if self.positional and self.extent == "global" and (H > self.max_size[0] or W > self.max_size[1]):
            raise ValueError(
                f"input map {H}x{W} is larger than max_size={self.max_size} (H, W) that this global "
                f"module holds embeddings for; build it with max_size >= the map size."
            )

    def _positional(self, q: Tensor, v: Tensor) -> Tensor:
        """First axial step, BatchNorm, second step; q, v: (B, H, W, h, dk|dv) -> (B, h, dv, H, W)."""
        B, H, W, h, dv = v.shape
        steps = [("col", self.rel_col), ("row", self.rel_row)]
        if self.axial_order == "row_col":
            steps.reverse()
        (axis1, rel1), (axis2, rel2) = steps
        y = _relative_channels_last(q, v, rel1, axis1, channels_last_out=True)  # (B, H, W, h, dv)
        y = self.norm(y.view(B, H, W, h * dv).permute(0, 3, 1, 2))              # (B, C, H, W), NHWC memory
        y = y.permute(0, 2, 3, 1).reshape(B, H, W, h, dv)                       # (B, H, W, h, dv)
        return _relative_channels_last(q, y, rel2, axis2, channels_last_out=False)  # (B, h, dv, H, W)

    def forward(self, x: Tensor) -> Tensor:
        B, C_in, H, W = x.shape
        self._check_size(H, W)
        if x.numel() and not torch.jit.is_tracing() and native.available(x, self.to_q.weight):
            return self._project_out(fused_forward(self, x))
        h, dk, dv = self.heads, self.dim_key, self.dim_value
        # 1x1 convolutions as matmuls on one channels-last copy of x: the attention steps read
        # channels-last maps, whose layout changes copy contiguous runs of channels.
        pixels = x.permute(0, 2, 3, 1).reshape(B * H * W, C_in)                  # (B*H*W, C_in)
        project = lambda conv: F.linear(pixels, conv.weight.flatten(1))          # noqa: E731
        q = project(self.to_q).view(B, H, W, h, dk)                              # (B, H, W, h, dk)
        v = project(self.to_v).view(B, H, W, h, dv)                              # (B, H, W, h, dv)
        out = None
        if self.content:
            k = project(self.to_k).view(B, H * W, h, dk)                         # (B, N, h, dk)
            out = _content_fast(q.view(B, H * W, h, dk), k, v.view(B, H * W, h, dv),
                                query_norm=self.query_norm).view(B, h, dv, H, W)
        if self.positional:
            pos = self._positional(q, v)                                         # (B, h, dv, H, W)
            out = pos if out is None else out.add_(pos)                         # in place: no saved output
        return self._project_out(out.view(B, self.out_channels, H, W))          # (B, C_out, H, W)

    def _project_out(self, out: Tensor) -> Tensor:
        return out if self.proj is None else self.proj(out)
