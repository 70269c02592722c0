"""The torch_ops backend of the GSA module: PyTorch ops on channels-last maps, tuned for the CPU.

The 1x1 projections are matrix products over pixels; the content branch runs as two batched
products (by heads, with a hand-written backward, on large maps); each axial step as dense S x S
logits (`_DenseStep`) for a window at least as long as the axis, or as logits for L offsets and
a shifted apply (`_WindowApply`) for a shorter one. Math: docs/gsa.md; this backend equals
gsa_space.attention.spec (tests/gsa_space/test_backends.py). fvcore's MAC count
(gsa_space.complexity) traces this backend, on its plain ops: docs/gsa.md §8.
Under autocast every product runs in autocast's dtype and the parameters' gradients come back in
their own dtype, accumulated in it (docs/gsa.md §7, tests/gsa_space/test_autocast.py).
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from gsa_space.attention.params import GSAParams

__all__ = ["axial_step", "content_step", "gsa_forward"]


def gsa_forward(p: GSAParams, x: Tensor) -> Tensor:
    """F_c + F_p of `p` on x (B, C_in, H, W) -> (B, h * dv, H, W), before out_proj."""
    B, C_in, H, W = x.shape
    h, dk, dv = p.heads, p.dim_key, p.dim_value
    # 1x1 convolutions as matmuls on one channels-last copy of x: the attention steps read
    # channels-last maps, whose layout changes copy contiguous runs of channels.
    pixels = x.permute(0, 2, 3, 1).reshape(B * H * W, C_in)                  # (B*H*W, C_in)
    project = lambda weight: F.linear(pixels, weight.flatten(1))             # noqa: E731
    q = project(p.to_q).view(B, H, W, h, dk)                                 # (B, H, W, h, dk)
    v = project(p.to_v).view(B, H, W, h, dv)                                 # (B, H, W, h, dv)
    out = None
    if p.content:
        k = project(p.to_k).view(B, H * W, h, dk)                            # (B, N, h, dk)
        out = content_step(q.view(B, H * W, h, dk), k, v.view(B, H * W, h, dv),
                           query_norm=p.query_norm).view(B, h, dv, H, W)
    if p.positional:
        pos = _positional(p, q, v)                                           # (B, h, dv, H, W)
        out = pos if out is None else out.add_(pos)                         # in place: no saved output
    return out.view(B, h * dv, H, W)                                         # (B, h*dv, H, W)


def _positional(p: GSAParams, q: Tensor, v: Tensor) -> Tensor:
    """First axial step, BatchNorm, second step; q, v: (B, H, W, h, dk|dv) -> (B, h, dv, H, W)."""
    B, H, W, h, dv = v.shape
    (axis1, rel1), (axis2, rel2) = p.steps()
    y = axial_step(q, v, rel1, axis1, channels_last_out=True)                # (B, H, W, h, dv)
    y = p.norm(y.view(B, H, W, h * dv).permute(0, 3, 1, 2))                 # (B, C, H, W), NHWC memory
    y = y.permute(0, 2, 3, 1).reshape(B, H, W, h, dv)                       # (B, H, W, h, dv)
    return axial_step(q, y, rel2, axis2, channels_last_out=False)           # (B, h, dv, H, W)


def _compute_dtype(t: Tensor) -> torch.dtype:
    """The dtype the products of a step on t run in: autocast's where it is on for t's device (and t
    is not float64, which autocast leaves alone), else t's own."""
    device = t.device.type
    if t.dtype != torch.float64 and torch.amp.is_autocast_available(device) and torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return t.dtype


def _cast(t: Tensor, dtype: torch.dtype) -> Tensor:
    """t in `dtype`: t itself when it is (no op recorded when fvcore traces), else a cast that
    autograd follows back to t's dtype."""
    return t if t.dtype == dtype else t.to(dtype)


def _autocast_off(t: Tensor) -> contextlib.AbstractContextManager:
    """Autocast off for t's device inside a hand-written step, whose operands already share one
    dtype (autocast would promote some ops to float32 and mix dtypes), if it is on; else nothing."""
    device = t.device.type
    if torch.amp.is_autocast_available(device) and torch.is_autocast_enabled(device):
        return torch.autocast(device, enabled=False)
    return contextlib.nullcontext()


def _custom_backward(*tensors: Tensor) -> bool:
    """Whether a step runs as its autograd.Function (hand-written backward): only when a gradient
    is wanted, and not while TorchScript traces (fvcore's MAC count), which sees plain ops only."""
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors) and not torch.jit.is_tracing()


def _content_channels_last(q: Tensor, k: Tensor, v: Tensor, *, query_norm: bool) -> Tensor:
    """`spec.content_attention` on channels-last maps; q, k: (B, N, h, dk); v: (B, N, h, dv).

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
        with _autocast_off(q):
            out, context = _content_heads(q, keys, v)
        ctx.save_for_backward(q, keys, v, context)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        q, keys, v, context = ctx.saved_tensors
        with _autocast_off(q):
            return _ContentStep._grads(q, keys, v, context, _cast(grad, q.dtype).contiguous())

    @staticmethod
    def _grads(q: Tensor, keys: Tensor, v: Tensor, context: Tensor, grad: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """grad (B, h, dv, N), contiguous -> the grads of q, keys, v (B, N, h, dk|dv)."""
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


def content_step(q: Tensor, k: Tensor, v: Tensor, *, query_norm: bool) -> Tensor:
    """`spec.content_attention` on channels-last maps: by heads (`_ContentStep`) on large maps;
    the plain ops (`_content_channels_last`) on small ones and when fvcore traces it.

    q, k: (B, N, h, dk); v: (B, N, h, dv) -> (B, h, dv, N), contiguous. Under autocast the
    products run in its dtype (a softmax that autocast runs in float32, as CUDA's does, is cast).
    """
    if torch.jit.is_tracing() or q.shape[1] < _HEADS_MIN_N:
        return _content_channels_last(q, k, v, query_norm=query_norm)
    dtype = _compute_dtype(q)
    keys = _cast(k.softmax(dim=1), dtype)                                          # (B, N, h, dk)
    queries = _cast(q.softmax(dim=-1) if query_norm else q, dtype)                 # (B, N, h, dk)
    v = _cast(v, dtype)                                                            # (B, N, h, dv)
    if _custom_backward(queries, keys, v):
        return _ContentStep.apply(queries, keys, v)
    with _autocast_off(q):
        return _content_heads(queries, keys, v)[0]


def _absolute_embedding(rel: Tensor, size: int) -> Tensor:
    """Relative (h, L, dk) -> absolute (size, h, dk, size): [a, j, :, a'] = rel[j, a' - a + c].

    c = (L - 1) / 2; offsets outside the window get a zero vector. Only offsets that land in
    the map (|a' - a| < size) are built, so a long window is cut to its central 2 * size - 1.
    A window with S <= L < 2 * S - 1 gives a banded matrix whose zeros are multiplied like any
    other entry (and fvcore counts them); shorter windows take `_relative_windowed` instead.
    The gather reads the small parameter, never the activations.
    """
    h, L, dk = rel.shape
    pos = torch.arange(size, device=rel.device)
    offset = pos[None, :] - pos[:, None] + (L - 1) // 2           # (S, S'): index into rel
    offset = torch.where((offset >= 0) & (offset < L), offset, L)  # L -> the zero row below
    padded = torch.cat([rel, rel.new_zeros(h, 1, dk)], dim=1)     # (h, L + 1, dk)
    return padded[:, offset].permute(1, 0, 3, 2)                  # (S, h, dk, S')


# Logits elements per chunk of whole images: a chunk's logits (2 MiB) stay in the two cores' L2
# from the logits product through the reorder copy to the apply. Measured on a 2-core EPYC (fwd +
# bwd, 2 threads), the S = 32 step runs 1.3x faster than with 8 MiB chunks, 2.2x than with 32 MiB,
# and S = 16 about 10% faster than with 0.5 MiB. No temporary nears the mmap threshold (32 MiB).
_CHUNK_ELEMENTS = 1 << 19


def _lines(t: Tensor, axis: str) -> Tensor:
    """(n, H, W, h, c) -> (n, other, S, h, c), a view: one line along the step's axis per (n, other)."""
    return t.transpose(1, 2) if axis == "col" else t


def _chunk_forward(q: Tensor, v: Tensor, emb: Tensor, axis: str, transposed: bool) -> tuple[Tensor, ...]:
    """Dense step on one chunk of images; q: (n, H, W, h, dk), v: (n, H, W, h, dv), emb: (S*h, dk, S').

    Returns (out, queries, logits, values): out is (P*h, dv, S) if `transposed` else (P*h, S, dv).
    One bmm batched over (a, j) gives the logits; one copy makes them (p, j)-major, L (P*h, S, S')
    (rows of S' stay contiguous, so the copy moves runs); one bmm batched over (p, j) applies them.
    Measured on CPU: tiny batched products run 2-3x faster when the output's last dim is the
    larger of S and dv, so the orientation follows S > dv (and so do the backward products).
    """
    ql, vl = _lines(q, axis), _lines(v, axis)                           # (n, other, S, h, dk|dv)
    n, other, S, h, dk = ql.shape
    P, dv = n * other, vl.shape[-1]
    queries = ql.permute(2, 3, 0, 1, 4).reshape(S * h, P, dk)           # (S*h, P, dk), a copy
    logits = torch.bmm(queries, emb).view(S, h, P, S)                   # (S, h, P, S'): [a, j, p, a']
    logits = logits.permute(2, 1, 0, 3).reshape(P * h, S, S)            # (P*h, S, S'), a copy of rows
    if transposed:
        values = vl.permute(0, 1, 3, 4, 2).reshape(P * h, dv, S)        # (P*h, dv, S')
        return torch.bmm(values, logits.transpose(1, 2)), queries, logits, values  # (P*h, dv, S)
    values = vl.permute(0, 1, 3, 2, 4).reshape(P * h, S, dv)            # (P*h, S', dv)
    return torch.bmm(logits, values), queries, logits, values           # (P*h, S, dv)


def _to_lines(t: Tensor, n: int, other: int, h: int, transposed: bool) -> Tensor:
    """(P*h, c, S) if `transposed` else (P*h, S, c) -> (n, other, S, h, c), a view."""
    if transposed:
        return t.view(n, other, h, t.shape[1], t.shape[2]).permute(0, 1, 4, 2, 3)
    return t.view(n, other, h, t.shape[1], t.shape[2]).permute(0, 1, 3, 2, 4)


def _dense(q: Tensor, v: Tensor, emb: Tensor, axis: str, channels_last_out: bool, saved: list | None) -> Tensor:
    """The dense step in chunks of whole images, written into one output; `saved` collects
    each chunk's (queries, logits, values) for the backward."""
    B, H, W, h, dk = q.shape
    dv = v.shape[-1]
    S, other = (H, W) if axis == "col" else (W, H)
    transposed = S > dv
    out = q.new_empty((B, H, W, h, dv) if channels_last_out else (B, h, dv, H, W))
    out_cl = out if channels_last_out else out.permute(0, 3, 4, 1, 2)   # (B, H, W, h, dv), a view
    images = max(1, _CHUNK_ELEMENTS // (h * S * S * other))
    for start in range(0, B, images):
        part = slice(start, min(B, start + images))
        res, *tensors = _chunk_forward(q[part], v[part], emb, axis, transposed)
        _lines(out_cl[part], axis).copy_(_to_lines(res, part.stop - start, other, h, transposed))
        if saved is not None:
            saved.append(tensors)
    return out


class _DenseStep(torch.autograd.Function):
    """`_dense` with a hand-written backward: grads go straight into full buffers, every tiny
    product keeps the fast orientation, and the embedding grad accumulates in place.

    q and v share one dtype, the products'; the embedding may be wider (float32 under autocast):
    it is cast for the products, and its gradient accumulates in its own dtype.
    """

    @staticmethod
    def forward(ctx, q: Tensor, v: Tensor, emb: Tensor, axis: str, channels_last_out: bool) -> Tensor:
        saved: list = []
        emb_q = _cast(emb, q.dtype)                                      # (S*h, dk, S'), the products' dtype
        with _autocast_off(q):
            out = _dense(q, v, emb_q, axis, channels_last_out, saved)
        ctx.save_for_backward(emb_q)
        ctx.saved, ctx.axis, ctx.shapes = saved, axis, (q.shape, v.shape, channels_last_out)
        ctx.emb_dtype = emb.dtype
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        (emb,) = ctx.saved_tensors
        with _autocast_off(emb):
            return _DenseStep._grads(ctx, emb, _cast(grad_out, emb.dtype))

    @staticmethod
    def _grads(ctx, emb: Tensor, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        (B, H, W, h, dk), dv, cl_out = ctx.shapes[0], ctx.shapes[1][-1], ctx.shapes[2]
        axis = ctx.axis
        S, other = (H, W) if axis == "col" else (W, H)
        transposed = S > dv
        g_cl = grad_out if cl_out else grad_out.permute(0, 3, 4, 1, 2)  # (B, H, W, h, dv), a view
        grad_q, grad_v = grad_out.new_empty(B, H, W, h, dk), grad_out.new_empty(B, H, W, h, dv)
        widen = ctx.emb_dtype != emb.dtype           # under autocast: the chunks' products summed in float32
        grad_emb = torch.zeros_like(emb, dtype=ctx.emb_dtype)            # (S*h, dk, S')
        start = 0
        for queries, logits, values in ctx.saved:
            n = queries.shape[1] // other
            part, P = slice(start, start + n), n * other
            gl = _lines(g_cl[part], axis)                                # (n, other, S, h, dv)
            if transposed:
                g = gl.permute(0, 1, 3, 4, 2).reshape(P * h, dv, S)      # (P*h, dv, S)
                gv = torch.bmm(g, logits)                                # (P*h, dv, S')
                g_l = torch.bmm(g.transpose(1, 2), values)               # (P*h, S, S')
            else:
                g = gl.permute(0, 1, 3, 2, 4).reshape(P * h, S, dv)      # (P*h, S, dv)
                gv = torch.bmm(logits.transpose(1, 2), g)                # (P*h, S', dv)
                g_l = torch.bmm(g, values.transpose(1, 2))               # (P*h, S, S')
            g_logits = g_l.view(P, h, S, S).permute(2, 1, 0, 3).reshape(S * h, P, S)  # (S*h, P, S'), a copy
            _lines(grad_v[part], axis).copy_(_to_lines(gv, n, other, h, transposed))
            gq = torch.bmm(g_logits, emb.transpose(1, 2))                # (S*h, P, dk)
            _lines(grad_q[part], axis).copy_(gq.view(S, h, n, other, dk).permute(2, 3, 0, 1, 4))
            if widen:
                grad_emb += torch.bmm(queries.transpose(1, 2), g_logits)  # (S*h, dk, S')
            else:
                grad_emb.baddbmm_(queries.transpose(1, 2), g_logits)     # (S*h, dk, S')
            start += n
        return grad_q, grad_v, grad_emb, None, None


def _shifts(L: int, S: int) -> list[tuple[int, int, int, int]]:
    """(offset index, dst start, src start, length) of every nonzero offset that lands in the map."""
    c = (L - 1) // 2
    return [(o + c, max(0, -o), max(0, o), S - abs(o)) for o in range(max(-c, 1 - S), min(c, S - 1) + 1) if o]


def _window_apply(logits: Tensor, v: Tensor, dim: int) -> Tensor:
    """out[.., a, ..] = sum_o logits[.., a, .., o] * v[.., a + o, ..] along `dim`, in-map terms only.

    logits: (B, H, W, h, L); v: (B, H, W, h, dv) -> (B, H, W, h, dv). One fused multiply-add
    per offset, over the pixels whose shifted partner is inside the map.
    """
    c = (logits.shape[-1] - 1) // 2
    out = torch.mul(logits[..., c, None], v)                                 # (B, H, W, h, dv): offset 0
    for i, dst, src, n in _shifts(logits.shape[-1], v.shape[dim]):
        weight = logits.narrow(dim, dst, n)[..., i, None]                   # (B, H', W', h, 1)
        out.narrow(dim, dst, n).addcmul_(weight, v.narrow(dim, src, n))      # fused multiply-add
    return out


class _WindowApply(torch.autograd.Function):
    """`_window_apply` with a hand-written backward that accumulates in place: autograd's
    would build a zero-filled full-size gradient for every shifted slice."""

    @staticmethod
    def forward(ctx, logits: Tensor, v: Tensor, dim: int) -> Tensor:
        ctx.save_for_backward(logits, v)
        ctx.dim = dim
        with _autocast_off(v):
            return _window_apply(logits, v, dim)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:
        logits, v = ctx.saved_tensors
        with _autocast_off(v):
            return _WindowApply._grads(logits, v, _cast(grad, v.dtype), ctx.dim)

    @staticmethod
    def _grads(logits: Tensor, v: Tensor, grad: Tensor, dim: int) -> tuple[Tensor | None, ...]:
        c = (logits.shape[-1] - 1) // 2
        grad_logits = torch.zeros_like(logits)                                      # (B, H, W, h, L), its strides
        grad_logits[..., c] = (grad * v).sum(-1)
        grad_v = torch.mul(grad, logits[..., c, None])                              # (B, H, W, h, dv)
        for i, dst, src, n in _shifts(logits.shape[-1], v.shape[dim]):
            g = grad.narrow(dim, dst, n)                                            # (B, H', W', h, dv)
            grad_logits.narrow(dim, dst, n)[..., i] = (g * v.narrow(dim, src, n)).sum(-1)
            grad_v.narrow(dim, src, n).addcmul_(g, logits.narrow(dim, dst, n)[..., i, None])
        return grad_logits, grad_v, None


def _relative_windowed(q: Tensor, v: Tensor, rel: Tensor, axis: str, *, channels_last_out: bool) -> Tensor:
    """The 1-D relative step for a window shorter than the axis (L < S): cost linear in L.

    Logits only for the L offsets (border ones included; their values are never read), then
    the apply as one multiply-add per offset of v shifted along the axis, over the pixels whose
    shifted partner is inside the map; so the MACs are about S * L * (dk + dv) per line and head.

    Args:
        q: (B, H, W, h, dk); v: (B, H, W, h, dv); any strides.
        channels_last_out: return (B, H, W, h, dv) if True, else (B, h, dv, H, W); contiguous.
    """
    B, H, W, h, dk = q.shape
    dim = 1 if axis == "col" else 2
    # Logits transposed, (h, L, N): a product whose output's last dim is long runs several times
    # faster (forward and backward) than the (N, L) one; the apply reads one (h, N) block per offset.
    queries = q.reshape(B * H * W, h, dk).permute(1, 2, 0)            # (h, dk, N)
    logits = torch.bmm(_cast(rel, q.dtype), queries)                  # (h, L, N)
    logits = logits.view(h, -1, B, H, W).permute(2, 3, 4, 0, 1)       # (B, H, W, h, L), a view
    if _custom_backward(logits, v):
        out = _WindowApply.apply(logits, v, dim)                      # (B, H, W, h, dv)
    else:
        with _autocast_off(v):
            out = _window_apply(logits, v, dim)                       # (B, H, W, h, dv)
    return out.contiguous() if channels_last_out else out.permute(0, 3, 4, 1, 2).contiguous()


def axial_step(q: Tensor, v: Tensor, rel: Tensor, axis: str, *, channels_last_out: bool) -> Tensor:
    """`spec.relative_attention_1d` on channels-last maps.

    Args:
        q: (B, H, W, h, dk); v: (B, H, W, h, dv) (any strides); rel: (h, L, dk), L odd.
        axis: "col" (offsets along H) or "row" (offsets along W).
        channels_last_out: return (B, H, W, h, dv) if True, else (B, h, dv, H, W); contiguous.

    A window shorter than the axis (L < S) takes the windowed path, whose cost is linear in L;
    otherwise the dense S x S logits (a banded matrix when 2 * S - 1 > L >= S). Without
    gradients (and when fvcore traces it) the dense step runs as plain ops, else as `_DenseStep`.
    Under autocast q, v and the embedding's products run in autocast's dtype; rel's gradient
    comes back in rel's dtype.
    """
    dtype = _compute_dtype(q)
    q, v = _cast(q, dtype), _cast(v, dtype)                            # (B, H, W, h, dk|dv)
    S = q.shape[1] if axis == "col" else q.shape[2]
    if rel.shape[1] < S:
        return _relative_windowed(q, v, rel, axis, channels_last_out=channels_last_out)
    h, dk = q.shape[-2:]
    emb = _absolute_embedding(rel, S).reshape(S * h, dk, S)            # (S*h, dk, S')
    if _custom_backward(q, v, emb):
        return _DenseStep.apply(q, v, emb, axis, channels_last_out)
    with _autocast_off(q):
        return _dense(q, v, _cast(emb, dtype), axis, channels_last_out, None)
