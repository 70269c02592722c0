"""`GSAParams`: what one forward of a GSA module hands to the reference and to each backend.

The module's weights and static options, typed; no backend reads the module itself. The
BatchNorm between the axial steps travels as its layer (docs/gsa.md §4): torch_ops and the
reference apply it, so that nn.BatchNorm2d's bookkeeping and hooks hold; native reads its
public state (affine weights, running statistics, momentum, eps, training).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

__all__ = ["GSAParams"]


@dataclass(frozen=True)
class GSAParams:
    """Weights (shapes below; h heads, dk key and dv value channels per head) and options."""

    heads: int
    dim_key: int
    dim_value: int
    content: bool
    positional: bool
    query_norm: bool
    axial_order: str              # "col_row" | "row_col"
    to_q: Tensor                  # (h * dk, C_in, 1, 1)
    to_k: Tensor | None           # (h * dk, C_in, 1, 1); None without the content branch
    to_v: Tensor                  # (h * dv, C_in, 1, 1)
    rel_col: Tensor | None        # (h, L_col, dk); None without the positional branch
    rel_row: Tensor | None        # (h, L_row, dk)
    norm: nn.BatchNorm2d | None   # over h * dv channels, between the axial steps

    def steps(self) -> tuple[tuple[str, Tensor], tuple[str, Tensor]]:
        """The positional branch's two axial steps, (axis, embedding) each, in `axial_order`."""
        assert self.rel_col is not None and self.rel_row is not None, "steps() needs the positional branch"
        col, row = ("col", self.rel_col), ("row", self.rel_row)
        return (row, col) if self.axial_order == "row_col" else (col, row)

    def projection_weights(self) -> list[Tensor]:
        """The 1x1 projections in q, k, v order (k only with the content branch)."""
        return [self.to_q] + ([self.to_k] if self.to_k is not None else []) + [self.to_v]
