"""The fused C kernels of the native backend: built on first use with the machine's C compiler,
called via ctypes.

The axial relative step is a batch of thousands of tiny products per line and head, and the
content branch a few small ones per image and head; in PyTorch ops both are bound by per-product
dispatch and layout copies. `kernels.c` runs one line of one head (or one image, in blocks of
positions) per task, reading the channels-last maps in place with the next operands prefetched,
its intermediates in cache, on PyTorch's OpenMP threads. Math: docs/gsa.md §2-§3.
No compiler, a failed build, or GSA_NAS_NATIVE=0 (gsa_space.attention.settings) means `library()`
is None and the "auto" backend choice takes torch_ops, which gives the same numbers. The shared
object is cached per source, flags and CPU under SETTINGS.cache_dir, built to a temporary name and
renamed, so concurrent Ray workers are safe.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import subprocess
import tempfile
import warnings
from pathlib import Path

import torch
from torch import Tensor

from gsa_space.attention.settings import SETTINGS, Settings

__all__ = ["DTYPES", "axial_backward", "axial_forward", "check_axial", "check_content", "content_backward",
           "content_forward", "library", "load"]

_HERE = Path(__file__).parent
_SOURCES = ("kernels.c", "vector_ops.h", "axial_step_body.h", "axial_line_math.h", "content_step_body.h")
_FLAGS = ("-O3", "-fPIC", "-shared", "-fno-math-errno")
# Tried in order: tuned for this CPU with OpenMP, then without tuning, then single-threaded.
_LADDER = (("-march=native", "-fopenmp"), ("-fopenmp",), ())
DTYPES = {torch.float32: "f32", torch.float64: "f64"}  # the kernels' real types
_I64 = ctypes.c_int64
_PTR = ctypes.c_void_p


def _cpu_flags() -> str:
    """The CPU's feature line: a build with -march=native is only valid on a CPU that has them."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor()


def _build(compiler: str, target: Path) -> None:
    """Compile into a temporary file beside `target`, then rename it into place (atomic)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        for extra in _LADDER:
            cmd = [compiler, *_FLAGS, *extra, "-o", tmp, str(_HERE / _SOURCES[0]), "-lm"]
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode == 0:
                os.replace(tmp, target)
                return
        errors = [line for line in done.stderr.splitlines() if "error" in line] or done.stderr.strip().splitlines()
        raise RuntimeError(errors[0].strip() if errors else "compiler failed")
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@functools.cache
def load(settings: Settings) -> ctypes.CDLL | None:
    """The kernels built (once per source, flags and CPU) and loaded per `settings`, or None with a
    warning when there is no compiler or the build fails. Cached per settings."""
    compiler = settings.compiler
    if compiler is None:
        warnings.warn("gsa_space: no C compiler found; the GSA module runs as PyTorch ops (slower).",
                      RuntimeWarning, stacklevel=3)
        return None
    digest = hashlib.sha256()
    for name in _SOURCES:
        digest.update((_HERE / name).read_bytes())
    digest.update(repr((compiler, _FLAGS, _LADDER, platform.machine(), _cpu_flags())).encode())
    target = settings.cache_dir / f"kernels-{digest.hexdigest()[:16]}.so"
    try:
        if not target.exists():
            _build(compiler, target)
        lib = ctypes.CDLL(str(target))
    except (OSError, RuntimeError) as err:
        warnings.warn(f"gsa_space: building the native kernels failed ({err}); using PyTorch ops.",
                      RuntimeWarning, stacklevel=3)
        return None
    for suffix in DTYPES.values():
        getattr(lib, f"gsa_axial_forward_{suffix}").argtypes = [_PTR] * 6
        getattr(lib, f"gsa_axial_backward_{suffix}").argtypes = [_PTR] * 9
        getattr(lib, f"gsa_content_forward_{suffix}").argtypes = [_PTR] * 7
        getattr(lib, f"gsa_content_backward_{suffix}").argtypes = [_PTR] * 10
    return lib


def library() -> ctypes.CDLL | None:
    """The loaded kernels, or None (GSA_NAS_NATIVE=0, no compiler, failed build)."""
    return load(SETTINGS) if SETTINGS.native else None


def _line_strides(t: Tensor, axis: str) -> list[int]:
    """Strides of a (B, H, W, h, c) view as (image, position on the axis, line, head, channel)."""
    b, hs, ws, j, c = t.stride()
    return [b, hs, ws, j, c] if axis == "col" else [b, ws, hs, j, c]


def _dims(q: Tensor, v: Tensor, rel: Tensor, axis: str, *flags: bool) -> list[int]:
    B, H, W, h, dk = q.shape
    S, O = (H, W) if axis == "col" else (W, H)
    return [B, S, O, h, dk, v.shape[-1], rel.shape[1], torch.get_num_threads(), *map(int, flags)]


def _call(name: str, dtype: torch.dtype, ints: list[int], strides: list[int], *tensors: Tensor) -> None:
    lib = library()
    if lib is None:
        raise RuntimeError(f"gsa_space native {name}: the C kernels are not loaded (GSA_NAS_NATIVE=0, no C "
                           "compiler, or a failed build); run the torch_ops attention backend instead")
    fn = getattr(lib, f"{name}_{DTYPES[dtype]}")
    status = fn((_I64 * len(ints))(*ints), (_I64 * len(strides))(*strides), *(t.data_ptr() for t in tensors))
    if status != 0:
        raise MemoryError(f"gsa_space native {name}: out of memory for its scratch buffers")


def check_axial(q: Tensor, v: Tensor, rel: Tensor, axis: str) -> None:
    """The kernels' contract: q (B, H, W, h, dk), v (B, H, W, h, dv), rel (h, L, dk) with L odd."""
    if axis not in ("col", "row") or q.dim() != 5 or v.dim() != 5 or rel.dim() != 3:
        raise ValueError(f"axial step: want axis col|row, q and v 5-d, rel 3-d; got {axis!r}, "
                         f"{tuple(q.shape)}, {tuple(v.shape)}, {tuple(rel.shape)}")
    if v.shape[:4] != q.shape[:4] or rel.shape[0] != q.shape[3] or rel.shape[2] != q.shape[4]:
        raise ValueError(f"axial step: q {tuple(q.shape)}, v {tuple(v.shape)} and rel {tuple(rel.shape)} disagree")
    if rel.shape[1] % 2 != 1 or min(q.shape[3:]) < 1 or v.shape[4] < 1:
        raise ValueError(f"axial step: rel length L must be odd and heads/channels >= 1; got rel {tuple(rel.shape)}")


def check_content(q: Tensor, k: Tensor, v: Tensor) -> None:
    """The kernels' contract: q, k (B, N, h, dk), v (B, N, h, dv), channels >= 1."""
    if q.dim() != 4 or k.shape != q.shape or v.dim() != 4 or v.shape[:3] != q.shape[:3] or min(q.shape[2:]) < 1 \
            or v.shape[3] < 1:
        raise ValueError(f"content: want q, k (B, N, h, dk) and v (B, N, h, dv); got {tuple(q.shape)}, "
                         f"{tuple(k.shape)}, {tuple(v.shape)}")


def _nchw_as_lines(t: Tensor) -> Tensor:
    """(B, h, dv, H, W) -> a (B, H, W, h, dv) view."""
    return t.permute(0, 3, 4, 1, 2)


def axial_forward(q: Tensor, v: Tensor, rel: Tensor, axis: str, channels_last_out: bool,
                  add_to: Tensor | None = None) -> Tensor:
    """One axial relative step. q: (B, H, W, h, dk), v: (B, H, W, h, dv), any strides; rel: (h, L, dk).

    Returns (B, H, W, h, dv) if `channels_last_out` else (B, h, dv, H, W), contiguous; or adds the
    step into `add_to` (that shape, any strides) and returns it.
    """
    check_axial(q, v, rel, axis)
    B, H, W, h, dk = q.shape
    dv = v.shape[-1]
    rel = rel.contiguous()
    out = add_to if add_to is not None else q.new_empty((B, H, W, h, dv) if channels_last_out else (B, h, dv, H, W))
    if q.numel() == 0:  # an empty batch or map: nothing to add
        return out if add_to is not None else out.zero_()
    out_view = out if channels_last_out else _nchw_as_lines(out)                 # (B, H, W, h, dv)
    strides = _line_strides(q, axis) + _line_strides(v, axis) + _line_strides(out_view, axis)
    _call("gsa_axial_forward", q.dtype, _dims(q, v, rel, axis, add_to is not None, False), strides, q, v, rel, out)
    return out


def axial_backward(q: Tensor, v: Tensor, rel: Tensor, grad: Tensor, axis: str, channels_last_out: bool,
                   grad_q: Tensor | None = None, add_q: bool = False, grad_v: Tensor | None = None,
                   add_v: bool = False) -> tuple[Tensor, Tensor, Tensor]:
    """Gradients of `axial_forward` for q, v and rel (h, L, dk). Into `grad_q` / `grad_v` (any
    strides; added to them when `add_q` / `add_v`) or new contiguous channels-last tensors."""
    check_axial(q, v, rel, axis)
    if (add_q and grad_q is None) or (add_v and grad_v is None):
        raise ValueError("axial backward: adding to a gradient needs its buffer (grad_q / grad_v)")
    rel = rel.contiguous()
    grad_view = grad if channels_last_out else _nchw_as_lines(grad)              # (B, H, W, h, dv)
    grad_q = torch.empty_like(q, memory_format=torch.contiguous_format) if grad_q is None else grad_q
    grad_v = torch.empty_like(v, memory_format=torch.contiguous_format) if grad_v is None else grad_v
    grad_rel = torch.empty_like(rel)
    if q.numel() == 0:  # an empty batch or map: zero gradients
        return (grad_q if add_q else grad_q.zero_()), (grad_v if add_v else grad_v.zero_()), grad_rel.zero_()
    strides = [s for t in (q, v, grad_view, grad_q, grad_v) for s in _line_strides(t, axis)]
    _call("gsa_axial_backward", q.dtype, _dims(q, v, rel, axis, add_q, add_v), strides, q, v, rel, grad_view,
          grad_q, grad_v, grad_rel)
    return grad_q, grad_v, grad_rel


def content_forward(q: Tensor, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
    """Per image and head `out[n] = (v^T keys) q[n]` with keys = softmax over the N positions of k.
    q, k: (B, N, h, dk); v: (B, N, h, dv), any strides. Returns out (B, h, dv, N), contiguous, and
    the summary the backward needs: (B, h, dv + 2, dk) = v^T keys, the keys' max, 1 / their sum."""
    check_content(q, k, v)
    B, N, h, dk = q.shape
    dv = v.shape[-1]
    out = q.new_empty(B, h, dv, N)
    summary = q.new_empty(B, h, dv + 2, dk)
    if q.numel() == 0:
        return out.zero_(), summary.zero_()
    strides = [s for t in (q, k, v, out.permute(0, 3, 1, 2)) for s in t.stride()]
    _call("gsa_content_forward", q.dtype, [B, N, h, dk, dv, torch.get_num_threads(), 0, 0], strides,
          q, k, v, out, summary)
    return out, summary


def content_backward(q: Tensor, k: Tensor, v: Tensor, grad: Tensor, summary: Tensor,
                     into: tuple[Tensor | None, Tensor | None, Tensor | None] = (None, None, None),
                     add: tuple[bool, bool] = (False, False)) -> tuple[Tensor, Tensor, Tensor]:
    """Gradients of `content_forward` for q, k (before the softmax) and v: (B, N, h, c).
    grad: (B, h, dv, N), any strides; summary: the forward's. Written into the tensors of `into`
    (any strides) or new contiguous ones; the q and v gradients are added to where `add` says."""
    check_content(q, k, v)
    B, N, h, dk = q.shape
    dv = v.shape[-1]
    if summary.shape != (B, h, dv + 2, dk):
        raise ValueError(f"content backward: summary {tuple(summary.shape)}, want {(B, h, dv + 2, dk)}")
    if (add[0] and into[0] is None) or (add[1] and into[2] is None):
        raise ValueError("content backward: adding to a gradient needs its buffer in `into`")
    grads = [t if t is not None else torch.empty(B, N, h, c, dtype=q.dtype) for t, c in zip(into, (dk, dk, dv))]
    if q.numel() == 0:
        return (grads[0] if add[0] else grads[0].zero_()), grads[1].zero_(), (grads[2] if add[1] else grads[2].zero_())
    g = grad.permute(0, 3, 1, 2)                                                   # (B, N, h, dv)
    strides = [s for t in (q, k, v, g, *grads) for s in t.stride()]
    ints = [B, N, h, dk, dv, torch.get_num_threads(), *map(int, add)]
    _call("gsa_content_backward", q.dtype, ints, strides, q, k, v, g, summary.contiguous(), *grads)
    return grads[0], grads[1], grads[2]
