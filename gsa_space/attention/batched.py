"""The batched backend of the GSA module: a few large ops over all heads and the whole batch (a GPU's).

One 1x1 product makes q|v|k, two batched products the content branch, and each axial step is one
copy of q and its values into lines, one product of q with every offset's embedding and one product
of those logits, read through a skewed view as (position, partner) logits, with the values. No
chunking and no loop over heads; autograd differentiates the ops, and under autocast the products
run in its dtype as the rest of a network's do. 48 aten ops for a forward and backward at any batch
size and map (52 for a window shorter than 2S - 1; tests/gsa_space/test_op_budget.py).
Math: docs/gsa.md (§7 maps it to this code); this backend equals gsa_space.attention.spec (tests/gsa_space/test_batched.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from gsa_space.attention.params import GSAParams

__all__ = ["axial_step", "gsa_forward"]


def gsa_forward(p: GSAParams, x: Tensor) -> Tensor:
    """F_c + F_p of `p` on x (B, C_in, H, W) -> (B, h * dv, H, W), NCHW, before out_proj."""
    B, C_in, H, W = x.shape
    h, dv = p.heads, p.dim_value
    # §1: one 1x1 product with the weights interleaved per head, q|v|k: every (image, head) pair
    # then owns one block of channels, so (B, h) merge into one batch dimension in every view below.
    weights = [w for w in (p.to_q, p.to_v, p.to_k) if w is not None]
    weight = torch.cat([w.view(h, -1, C_in) for w in weights], dim=1)       # (h, dk + dv [+ dk], C_in)
    qvk = F.conv2d(x.contiguous(), weight.view(-1, C_in, 1, 1))             # (B, h * T, H, W), NCHW
    q, v, *k = qvk.view(B, h, -1, H, W).split([w.shape[0] // h for w in weights], dim=2)  # (B, h, dk|dv, H, W)
    out = None
    if p.content:
        out = _content(q, k[0], v, query_norm=p.query_norm)                 # (B, h, dv, H, W)
    if p.positional:
        assert p.norm is not None
        (axis1, rel1), (axis2, rel2) = p.steps()
        y = axial_step(q, v, rel1, axis1)                                   # (B, h, dv, H, W), a view
        y = p.norm(y.reshape(B, h * dv, H, W))                              # §4: a copy to NCHW, BatchNorm
        pos = axial_step(q, y.view(B, h, dv, H, W), rel2, axis2)            # (B, h, dv, H, W), a view
        out = pos if out is None else out + pos                             # NCHW, as `out` is
    assert out is not None, "at least one branch is on"
    return out.reshape(B, h * dv, H, W)                                     # (B, h*dv, H, W)


def _content(q: Tensor, k: Tensor, v: Tensor, *, query_norm: bool) -> Tensor:
    """§2, `spec.content_attention` with (B, h) as one batch dimension: softmax, two products.

    q, k: (B, h, dk, H, W); v: (B, h, dv, H, W); views in which B and h merge -> (B, h, dv, H, W).
    """
    B, h, dk, H, W = q.shape
    dv = v.shape[2]
    keys = k.reshape(B * h, dk, H * W).softmax(dim=-1)                      # (B*h, dk, N), over positions
    queries = q.reshape(B * h, dk, H * W)                                   # (B*h, dk, N), a view
    if query_norm:
        queries = queries.softmax(dim=1)                                    # (B*h, dk, N), over channels
    context = torch.bmm(v.reshape(B * h, dv, H * W), keys.transpose(1, 2))  # (B*h, dv, dk)
    return torch.bmm(context, queries).view(B, h, dv, H, W)                 # (B, h, dv, H, W)


def _window(rel: Tensor, size: int) -> Tensor:
    """The embedding rows of the 2 * size - 1 offsets that reach into an axis of `size` pixels.

    rel (h, L, dk), L odd, row i = offset i - c -> (h, 2 * size - 1, dk), row i = offset
    i - (size - 1): the central rows of a longer window (a view; a global extent on a map smaller
    than max_size, §5), or a shorter window padded with zero rows (its offsets contribute nothing).
    """
    L = rel.shape[1]
    c, reach = (L - 1) // 2, size - 1
    if c == reach:
        return rel
    if c > reach:
        return rel.narrow(1, c - reach, 2 * size - 1)                       # (h, 2S-1, dk), a view
    return F.pad(rel, (0, 0, reach - c, reach - c))                         # (h, 2S-1, dk)


def _skew(logits: Tensor) -> Tensor:
    """Logits per offset (n, S, 2S - 1), offset o at column o + S - 1, -> logits per partner
    (n, S, S), a view: out[:, a, a'] = logits[:, a, a' - a + S - 1].

    Row a of the flat (n, S * (2S - 1)) logits starts at a * (2S - 1); from S - 1 on, rows of
    2S - 2 put partner a' of position a at a * (2S - 2) + a' (a' < S <= 2S - 2 for S >= 2).
    """
    n, S, _ = logits.shape
    if S == 1:
        return logits                                                       # (n, 1, 1): offset 0 only
    band = logits.reshape(n, -1).narrow(1, S - 1, S * (2 * S - 2))          # (n, S*(2S-2)), a view
    return band.view(n, S, 2 * S - 2).narrow(2, 0, S)                       # (n, S, S'), a view


# (B, h, c, H, W) <-> (h, B, other, S, c): lines along H (col) or W (row), one per (head, image, other).
_TO_LINES = {"col": (1, 0, 4, 3, 2), "row": (1, 0, 3, 4, 2)}
_FROM_LINES = {"col": (1, 0, 4, 3, 2), "row": (1, 0, 4, 2, 3)}


def axial_step(q: Tensor, v: Tensor, rel: Tensor, axis: str) -> Tensor:
    """§3, `spec.relative_attention_1d`: y[a] = sum_a' (q[a] . rel[a' - a + c]) v[a'] along `axis`.

    Args:
        q: (B, h, dk, H, W); v: (B, h, dv, H, W); any strides. rel: (h, L, dk), L odd.
        axis: "col" (offsets along H) or "row" (offsets along W).
    Returns:
        (B, h, dv, H, W): a permuted view of a contiguous (h, B, other, S, dv).

    Three ops: one copy of q and v into lines (h, B, other, S, dk + dv); one product of every
    query with the 2S - 1 offsets' embeddings, all heads at once, (h, B*other*S, dk) x (h, dk, 2S-1)
    -> (h*B*other, S, 2S-1); and one product of their skewed view (h*B*other, S, S') with the
    values (h*B*other, S', dv). Partners outside the map have no column in the skewed view, so
    they contribute zero (§3). The S x S product is dense for any window: shorter windows multiply
    the zero rows of their padded embedding.
    """
    B, h, dk, H, W = q.shape
    dv = v.shape[2]
    S = H if axis == "col" else W
    to_lines = _TO_LINES[axis]
    lines = torch.cat([q.permute(to_lines), v.permute(to_lines)], dim=-1)   # (h, B, O, S, dk + dv), one copy
    queries, values = lines.split([dk, dv], dim=-1)                         # one split: one grad copy back
    queries = queries.reshape(h, -1, dk)                                    # (h, B*O*S, dk), a view
    values = values.reshape(-1, S, dv)                                      # (h*B*O, S', dv), a view
    logits = torch.bmm(queries, _window(rel, S).transpose(1, 2))            # (h, B*O*S, 2S-1)
    out = torch.bmm(_skew(logits.view(-1, S, 2 * S - 1)), values)           # (h*B*O, S, dv)
    return out.view(h, B, -1, S, dv).permute(_FROM_LINES[axis])             # (B, h, dv, H, W), a view
