"""Count the aten ops a forward and backward dispatches: a GPU's launch count, seen on any device.

A `TorchDispatchMode` that tallies every op except views and bare allocations (no kernel runs for
them); copies and fills count. Run it on the meta device to count without computing. Used by
tests/gsa_space/test_op_budget.py and by the GSA backend notes (docs/gsa.md §7).
"""

from __future__ import annotations

from collections import Counter
from typing import Callable

import torch
from torch import Tensor, nn
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = ["SKIPPED", "OpCounter", "count_forward_backward"]

SKIPPED: frozenset[str] = frozenset({  # aten names of views and allocations (plus names starting "empty")
    "view", "reshape", "_unsafe_view", "_reshape_alias", "permute", "transpose", "expand", "t", "slice", "select",
    "narrow", "squeeze", "unsqueeze", "unflatten", "split", "split_with_sizes", "unbind", "as_strided", "alias",
    "detach", "new_empty", "new_empty_strided",
})


class OpCounter(TorchDispatchMode):
    """`with OpCounter() as ops: ...` then `ops.counts` (aten name -> calls) and `ops.total`."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name not in SKIPPED and not name.startswith("empty"):
            self.counts[name] += 1
        return func(*args, **(kwargs or {}))

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def count_forward_backward(model: nn.Module | Callable[[Tensor], Tensor], x: Tensor) -> tuple[Counter, Counter]:
    """(forward counts, backward counts) of `model(x)` and its backward from an output gradient
    made outside the count. x should require grad for the input gradient to be counted.

    Example:
        >>> conv = nn.Conv2d(3, 4, 1).to("meta")
        >>> fwd, bwd = count_forward_backward(conv, torch.empty(2, 3, 5, 5, device="meta", requires_grad=True))
        >>> (sum(fwd.values()), sum(bwd.values()))
        (1, 1)
    """
    with OpCounter() as forward:
        out = model(x)
    grad = torch.ones_like(out)
    with OpCounter() as backward:
        out.backward(grad)
    return forward.counts, backward.counts
