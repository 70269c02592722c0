"""Global Self-Attention (GSA) module: a functional core and a thin nn.Module shell.

Paper: Shen et al., "Global Self-Attention Networks for Image Recognition", arXiv 2010.03019.
Content branch: keys softmax-normalised over positions (linear in N); positional branch: axial,
relative, no softmax, column step -> BatchNorm -> row step. Math and shapes: DESIGN.md section 2.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["GlobalSelfAttention", "content_attention", "relative_attention_1d"]

AXES: tuple[str, ...] = ("col", "row")
AXIAL_ORDERS: tuple[str, ...] = ("col_row", "row_col")


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
    context = torch.matmul(keys, v.reshape(B, h, dv, H * W).transpose(-1, -2))  # (B, h, dk, dv)
    queries = q.reshape(B, h, dk, H * W)                          # (B, h, dk, N)
    if query_norm:
        queries = queries.softmax(dim=2)                          # (B, h, dk, N)
    out = torch.matmul(context.transpose(-1, -2), queries)        # (B, h, dv, N)
    return out.view(B, h, dv, H, W)


def _absolute_embedding(rel: Tensor, size: int) -> Tensor:
    """Relative (h, L, dk) -> absolute (size, h, dk, size): [a, j, :, a'] = rel[j, a' - a + c].

    c = (L - 1) / 2; offsets outside the window get a zero vector. Only offsets that land in
    the map (|a' - a| < size) are built, so a long window is cut to its central 2 * size - 1.
    The gather reads the small parameter, never the activations.
    """
    h, L, dk = rel.shape
    pos = torch.arange(size, device=rel.device)
    offset = pos[None, :] - pos[:, None] + (L - 1) // 2           # (S, S'): index into rel
    offset = torch.where((offset >= 0) & (offset < L), offset, L)  # L -> the zero row below
    padded = torch.cat([rel, rel.new_zeros(h, 1, dk)], dim=1)     # (h, L + 1, dk)
    return padded[:, offset].permute(1, 0, 3, 2)                  # (S, h, dk, S')


# Logits elements per chunk of the batched axis: a chunk's (h, S, S) logits stay cache-sized,
# and no temporary reaches the allocator's mmap threshold (fresh pages fault on every call).
_CHUNK_ELEMENTS = 1 << 19


def _axial(q: Tensor, v: Tensor, emb: Tensor) -> Tensor:
    """The 1-D relative step on the axis of length S, batched over P other positions.

    Args:
        q: (P, S, h, dk), contiguous; v: (P, h, S, dv), contiguous; emb: (S, h, dk, S).
    Returns:
        (P, h, S, dv): out[p, j, a] = sum_a' (q[p, a, j] . emb[a, j, :, a']) * v[p, j, a'].

    Per chunk of P: one bmm batched over (a, j) (the embedding depends on a) gives the logits,
    one transposing copy makes them (p, j)-major, one bmm batched over (p, j) applies them.
    """
    P, S, h, dk = q.shape
    dv = v.shape[-1]
    emb = emb.reshape(S * h, dk, S)                                     # (S*h, dk, S')
    step = max(1, _CHUNK_ELEMENTS // (h * S * S))
    outs = []
    for q_chunk, v_chunk in zip(q.split(step), v.split(step)):
        n = q_chunk.shape[0]
        queries = q_chunk.reshape(n, S * h, dk).transpose(0, 1)        # (S*h, n, dk), a view
        logits = torch.bmm(queries, emb)                                # (S*h, n, S')
        logits = logits.view(S, h, n, S).permute(2, 1, 0, 3)           # (n, h, S, S'), a view
        logits = logits.reshape(n * h, S, S)                            # (n*h, S, S'), a copy
        out = torch.bmm(logits, v_chunk.reshape(n * h, S, dv))          # (n*h, S, dv)
        outs.append(out.view(n, h, S, dv))
    return outs[0] if len(outs) == 1 else torch.cat(outs)              # (P, h, S, dv)


def relative_attention_1d(q: Tensor, v: Tensor, rel: Tensor, *, axis: str) -> Tensor:
    """Relative positional attention along one axis; no softmax; outside pixels contribute 0.

    col: out[..., a, b] = sum_o (q[..., :, a, b] . rel[h, o + c]) * v[..., :, a + o, b];
    row: the same with the offset on the W axis. c = (L - 1) / 2; any odd L is valid.

    Args:
        q: (B, h, dk, H, W); v: (B, h, dv, H, W); rel: (h, L, dk), L odd.
        axis: "col" (offsets along H) or "row" (offsets along W).
    Returns:
        (B, h, dv, H, W), a non-contiguous view.
    """
    if axis not in AXES:
        raise ValueError(f"axis must be one of {AXES}, but got axis={axis!r}.")
    if rel.shape[1] % 2 != 1:
        raise ValueError(f"rel must have an odd length L (offsets -(L-1)/2..(L-1)/2), but got L={rel.shape[1]}.")
    B, h, dk, H, W = q.shape
    dv = v.shape[2]
    if axis == "col":
        qs = q.permute(0, 4, 3, 1, 2).reshape(B * W, H, h, dk)   # (B*W, H, h, dk)
        vs = v.permute(0, 4, 1, 3, 2).reshape(B * W, h, H, dv)   # (B*W, h, H, dv)
        out = _axial(qs, vs, _absolute_embedding(rel, H))         # (B*W, h, H, dv)
        return out.view(B, W, h, H, dv).permute(0, 2, 4, 3, 1)    # (B, h, dv, H, W)
    qs = q.permute(0, 3, 4, 1, 2).reshape(B * H, W, h, dk)       # (B*H, W, h, dk)
    vs = v.permute(0, 3, 1, 4, 2).reshape(B * H, h, W, dv)       # (B*H, h, W, dv)
    out = _axial(qs, vs, _absolute_embedding(rel, W))             # (B*H, h, W, dv)
    return out.view(B, H, h, W, dv).permute(0, 2, 4, 1, 3)        # (B, h, dv, H, W)


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
        """Column step, BatchNorm, row step (or row first); q: (B, h, dk, H, W) -> (B, h, dv, H, W)."""
        B, h, dv, H, W = v.shape
        steps = [("col", self.rel_col), ("row", self.rel_row)]
        if self.axial_order == "row_col":
            steps.reverse()
        (axis1, rel1), (axis2, rel2) = steps
        y = relative_attention_1d(q, v, rel1, axis=axis1)                 # (B, h, dv, H, W)
        y = self.norm(y.reshape(B, h * dv, H, W)).view(B, h, dv, H, W)    # (B, h, dv, H, W)
        return relative_attention_1d(q, y, rel2, axis=axis2)              # (B, h, dv, H, W)

    def forward(self, x: Tensor) -> Tensor:
        B, _, H, W = x.shape
        self._check_size(H, W)
        h, dk, dv = self.heads, self.dim_key, self.dim_value
        q = self.to_q(x).view(B, h, dk, H, W)                             # (B, h, dk, H, W)
        v = self.to_v(x).view(B, h, dv, H, W)                             # (B, h, dv, H, W)
        out = None
        if self.content:
            k = self.to_k(x).view(B, h, dk, H, W)                         # (B, h, dk, H, W)
            out = content_attention(q, k, v, query_norm=self.query_norm)  # (B, h, dv, H, W)
        if self.positional:
            pos = self._positional(q, v)                                  # (B, h, dv, H, W)
            out = pos if out is None else out + pos
        out = out.reshape(B, self.out_channels, H, W)                     # (B, C_out, H, W)
        return out if self.proj is None else self.proj(out)
