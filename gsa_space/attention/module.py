"""Global Self-Attention (GSA) module: parameters, and one backend choice per forward.

Paper: Shen et al., "Global Self-Attention Networks for Image Recognition", arXiv 2010.03019.
Content branch: keys softmax-normalised over positions (linear in N); positional branch: axial,
relative, no softmax, column step -> BatchNorm -> row step. Math and options: docs/gsa.md; the
reference is gsa_space.attention.spec, the backends gsa_space.attention.{torch_ops,native,batched}.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from gsa_space.attention.dispatch import gsa_forward
from gsa_space.attention.params import GSAParams
from gsa_space.config import AXIAL_ORDERS

__all__ = ["GlobalSelfAttention"]


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

    def params(self) -> GSAParams:
        """This module's weights and options as the backends and `spec.gsa_reference` take them."""
        return GSAParams(
            heads=self.heads, dim_key=self.dim_key, dim_value=self.dim_value, content=self.content,
            positional=self.positional, query_norm=self.query_norm, axial_order=self.axial_order,
            to_q=self.to_q.weight, to_k=self.to_k.weight if self.to_k is not None else None,
            to_v=self.to_v.weight, rel_col=self.rel_col if self.positional else None,
            rel_row=self.rel_row if self.positional else None, norm=self.norm if self.positional else None,
        )

    def forward(self, x: Tensor) -> Tensor:
        B, C_in, H, W = x.shape
        self._check_size(H, W)
        out = gsa_forward(self.params(), x)                                      # (B, C_out, H, W)
        return out if self.proj is None else self.proj(out)
