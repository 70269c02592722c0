"""Slow loop references for the GSA math, written straight from docs/gsa.md, and the helpers
that compare the spec and the backends with them (imported by the tests of gsa_space.attention)."""

import torch

__all__ = ["CONTENT_CASES", "REL_CASES", "assert_close", "assert_module_matches_reference", "grads", "make",
           "ref_content", "ref_module", "ref_relative"]

REL_CASES = [  # (B, h, dk, dv, H, W, L)
    (2, 1, 3, 2, 5, 4, 3),    # L smaller than both axes
    (1, 8, 2, 2, 3, 4, 5),    # 8 heads
    (2, 2, 4, 3, 4, 6, 11),   # L = 2 * max(H, W) - 1, non-square
    (1, 2, 3, 2, 3, 5, 15),   # L larger than the map
    (1, 1, 2, 3, 1, 6, 1),    # single offset, one-pixel axis
    (2, 2, 3, 4, 5, 3, 5),    # dv >= W: the untransposed apply on the row axis
    (2, 2, 3, 2, 7, 6, 3),    # windowed path (L < S) on both axes
    (1, 3, 2, 5, 9, 6, 5),    # windowed on both axes, dv > L
    (2, 2, 2, 3, 4, 8, 7),    # windowed on the row axis only (L >= H = 4)
]

CONTENT_CASES = [(2, 1, 3, 2, 4, 5), (1, 8, 2, 3, 3, 3), (2, 2, 4, 4, 1, 7)]  # (B, h, dk, dv, H, W)


def ref_content(q, k, v, query_norm=False):
    """F_c = q . (softmax_N(k)^T . v), with explicit loops over positions."""
    B, h, dk, H, W = q.shape
    keys = k.reshape(B, h, dk, H * W)
    keys = torch.exp(keys) / torch.exp(keys).sum(-1, keepdim=True)  # softmax over N per key channel
    values = v.reshape(B, h, -1, H * W)
    queries = q.reshape(B, h, dk, H * W)
    if query_norm:
        queries = torch.exp(queries) / torch.exp(queries).sum(2, keepdim=True)
    context = 0
    for n in range(H * W):
        context = context + keys[:, :, :, n, None] * values[:, :, None, :, n]  # (B, h, dk, dv)
    cols = [(queries[:, :, :, n, None] * context).sum(2) for n in range(H * W)]  # each (B, h, dv)
    return torch.stack(cols, -1).reshape(B, h, -1, H, W)


def ref_relative(q, v, rel, axis):
    """out[a, b] = sum_o (q[a, b] . rel[o + c]) * v[a + o, b] (col) or v[a, b + o] (row)."""
    B, h, dk, H, W = q.shape
    L = rel.shape[1]
    c = (L - 1) // 2
    out = [[0 for _ in range(W)] for _ in range(H)]
    for a in range(H):
        for b in range(W):
            for o in range(-c, c + 1):
                a2, b2 = (a + o, b) if axis == "col" else (a, b + o)
                if 0 <= a2 < H and 0 <= b2 < W:
                    weight = (q[:, :, :, a, b] * rel[None, :, o + c, :]).sum(-1, keepdim=True)  # (B, h, 1)
                    out[a][b] = out[a][b] + weight * v[:, :, :, a2, b2]
    zero = torch.zeros_like(v[:, :, :, 0, 0])
    rows = [torch.stack([x if torch.is_tensor(x) else zero for x in row], -1) for row in out]
    return torch.stack(rows, -2)  # (B, h, dv, H, W)


def ref_module(m, x):
    """GlobalSelfAttention.forward in training mode, from the definitions."""
    B, _, H, W = x.shape
    h, dk, dv = m.heads, m.dim_key, m.dim_value
    proj = lambda conv, ch: torch.einsum("oc,bchw->bohw", conv.weight[:, :, 0, 0], x).reshape(B, h, ch, H, W)
    q, v = proj(m.to_q, dk), proj(m.to_v, dv)
    out = 0
    if m.content:
        out = out + ref_content(q, proj(m.to_k, dk), v, m.query_norm)
    if m.positional:
        order = [("col", m.rel_col), ("row", m.rel_row)]
        if m.axial_order == "row_col":
            order.reverse()
        y = ref_relative(q, v, order[0][1], order[0][0]).reshape(B, h * dv, H, W)
        mean = y.mean((0, 2, 3), keepdim=True)
        var = ((y - mean) ** 2).mean((0, 2, 3), keepdim=True)
        y = (y - mean) / torch.sqrt(var + m.norm.eps) * m.norm.weight[:, None, None] + m.norm.bias[:, None, None]
        out = out + ref_relative(q, y.reshape(B, h, dv, H, W), order[1][1], order[1][0])
    out = out.reshape(B, h * dv, H, W)
    return out if m.proj is None else torch.einsum("oc,bchw->bohw", m.proj.weight[:, :, 0, 0], out) + m.proj.bias[:, None, None]


def assert_close(fast, ref, dtype):
    if dtype == torch.float64:
        torch.testing.assert_close(fast, ref, rtol=0, atol=1e-9)
    else:
        err = (fast.detach().double() - ref.detach().double()).abs().max() / ref.detach().double().abs().max()
        assert float(err) < 1e-4


def grads(fn, tensors, seed_out):
    for t in tensors:
        t.grad = None
    (fn() * seed_out).sum().backward()
    return [t.grad.clone() for t in tensors]


def assert_module_matches_reference(m, x, seed_out):
    """Output and the grads of x and every parameter equal the loop reference to 1e-9 (float64).

    Returns the module's output.
    """
    out = m(x)
    torch.testing.assert_close(out, ref_module(m, x), rtol=0, atol=1e-9)
    params = [x] + list(m.parameters())
    for g_fast, g_ref in zip(grads(lambda: m(x), params, seed_out), grads(lambda: ref_module(m, x), params, seed_out)):
        torch.testing.assert_close(g_fast, g_ref, rtol=0, atol=1e-9)
    return out


def make(shape, dtype, gen):
    return torch.randn(*shape, generator=gen, dtype=torch.float64).to(dtype).requires_grad_(True)
