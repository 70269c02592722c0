"""Compute accounting: parameters, multiply-accumulates (MACs) and activation memory.

MACs come from fvcore's traced op counts with our handlers for every op with arithmetic, the
same for GSA and conv nets so that ratios are fair. Convention: a fused multiply-add is one MAC
(so the unit is `gmacs`, not GFLOPs); an elementwise op is one MAC per output element; a
reduction or pool one per input element; softmax three per element (exp, sum, divide);
inference BatchNorm one per element (a scale and a shift). Activation memory is the fp32
bytes of every distinct module output tensor at batch 1 (in-place ops count once).
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections import Counter
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterator

import numpy as np
import torch
from fvcore.nn import FlopCountAnalysis
from fvcore.nn.jit_handles import conv_flop_jit, get_shape
from torch import nn

from gsa_space.config import NetConfig

Handle = Callable[[list[Any], list[Any]], float]

# Ops that move, copy, create or index data but do no arithmetic: they are left uncounted.
NO_ARITHMETIC_OPS: frozenset[str] = frozenset(f"aten::{n}" for n in (
    "view", "reshape", "permute", "transpose", "t", "flatten", "unflatten", "squeeze", "unsqueeze",
    "unsqueeze_", "expand", "expand_as", "contiguous", "select", "slice", "narrow", "index",
    "index_select", "gather", "take_along_dim", "cat", "stack", "split", "split_with_sizes",
    "chunk", "unbind", "size", "Int", "ScalarImplicit", "to", "type_as", "detach", "clone",
    "copy_", "zeros", "zeros_like", "ones", "ones_like", "empty", "new_empty", "new_zeros",
    "new_full", "full", "full_like", "arange", "constant_pad_nd", "pad", "unfold", "repeat",
    "as_strided", "roll", "diagonal", "diag_embed", "tril", "triu", "masked_fill", "index_put_",
    "dropout", "flip", "movedim", "_unsafe_view", "alias", "fill_", "zero_",
))
_ELEMENTWISE = (
    "add", "add_", "sub", "sub_", "rsub", "mul", "mul_", "div", "div_", "neg", "exp", "log",
    "sqrt", "rsqrt", "pow", "square", "reciprocal", "abs", "sigmoid", "tanh", "relu", "relu_",
    "gelu", "silu", "hardtanh", "hardtanh_", "leaky_relu", "clamp", "clamp_", "clamp_min",
    "clamp_max", "maximum", "minimum", "where", "eq", "ne", "ge", "gt", "le", "lt", "floor",
    "floor_divide", "remainder", "bitwise_not", "__and__", "lerp",
    "addcmul", "addcmul_",  # a fused multiply-add: one MAC per output element
)
_REDUCTIONS = ("sum", "mean", "amax", "amin", "max", "min", "logsumexp", "cumsum", "norm",
               "avg_pool2d", "max_pool2d", "adaptive_avg_pool2d", "adaptive_max_pool2d")
SOFTMAX_MACS_PER_ELEMENT = 3


def _numel(value: Any) -> int:
    shape = get_shape(value)
    return int(math.prod(shape)) if shape else 1


def _per_output(scale: float) -> Handle:
    return lambda inputs, outputs: scale * _numel(outputs[0])


def _per_input(inputs: list[Any], outputs: list[Any]) -> float:
    return float(_numel(inputs[0]))


def _matmul(inputs: list[Any], outputs: list[Any]) -> float:
    """Output elements times the contracted length (broadcast batches counted once each)."""
    return float(_numel(outputs[0]) * get_shape(inputs[0])[-1])


def _addmm(inputs: list[Any], outputs: list[Any]) -> float:
    return float(_numel(outputs[0]) * get_shape(inputs[1])[-1])


def _linear(inputs: list[Any], outputs: list[Any]) -> float:
    return float(_numel(outputs[0]) * get_shape(inputs[1])[-1])


def _einsum(inputs: list[Any], outputs: list[Any]) -> float:
    """Two operands: the product of every index size (a direct contraction); more: numpy's path."""
    equation = inputs[0].toIValue().replace(" ", "")
    shapes = [get_shape(v) for v in inputs[1].node().inputs()]
    lhs = equation.split("->")[0].split(",")
    if len(shapes) <= 2:
        sizes: dict[str, int] = {}
        for term, shape in zip(lhs, shapes):
            sizes.update(zip(term, shape))
        return float(math.prod(sizes.values()))
    path = np.einsum_path(equation, *[np.zeros(s) for s in shapes], optimize="optimal")[1]
    line = next(x for x in path.split("\n") if "optimized flop" in x.lower())
    return float(line.split(":")[-1]) / 2


def handlers() -> dict[str, Handle | None]:
    """fvcore op handlers for every op with arithmetic used by the GSA and conv nets."""
    table: dict[str, Handle | None] = {f"aten::{n}": _per_output(1) for n in _ELEMENTWISE}
    table.update({f"aten::{n}": _per_input for n in _REDUCTIONS})
    table.update({
        "aten::_convolution": conv_flop_jit, "aten::conv2d": conv_flop_jit,
        "aten::matmul": _matmul, "aten::mm": _matmul, "aten::bmm": _matmul,
        "aten::addmm": _addmm, "aten::linear": _linear, "aten::einsum": _einsum,
        "aten::batch_norm": _per_output(1),
        "aten::softmax": _per_output(SOFTMAX_MACS_PER_ELEMENT),
        "aten::_softmax": _per_output(SOFTMAX_MACS_PER_ELEMENT),
        "aten::log_softmax": _per_output(SOFTMAX_MACS_PER_ELEMENT),
    })
    return table


@dataclass(frozen=True)
class Complexity:
    """Parameters, giga-MACs at batch 1, and activation memory in MB (10^6 bytes, fp32)."""

    params: int
    gmacs: float
    act_mb: float


def _size(input_size: int | tuple[int, int]) -> tuple[int, int]:
    return (input_size, input_size) if isinstance(input_size, int) else (int(input_size[0]), int(input_size[1]))


def _analysis(net: nn.Module, x: torch.Tensor) -> FlopCountAnalysis:
    fca = FlopCountAnalysis(net, (x,)).set_op_handle(**handlers())
    return fca.unsupported_ops_warnings(False).uncalled_modules_warnings(False)


def _in_chans(net: nn.Module) -> int:
    cfg = getattr(net, "cfg", None)
    if cfg is not None:
        return cfg.in_chans
    first = next(m for m in net.modules() if isinstance(m, nn.Conv2d))
    return first.in_channels


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Count on one intra-op thread: the batch-1 pass is tiny, and extra threads only spin
    (3-4x slower on a busy 2-core machine). The caller's thread count is restored."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _count(net: nn.Module, x: torch.Tensor) -> tuple[dict[str, int], dict[str, int]]:
    """(MACs by module name, activation bytes by module name) of one eval-mode pass on `x`.

    Each distinct output tensor (by storage pointer) is charged to the innermost module that
    produced it: forward hooks fire inner modules first, and in-place outputs share storage.
    """
    names = {id(m): n for n, m in net.named_modules()}
    seen: dict[int, torch.Tensor] = {}  # data_ptr -> tensor, kept alive so no pointer is reused
    act: dict[str, int] = {}

    def hook(module: nn.Module, inp: Any, out: Any) -> None:
        if isinstance(out, torch.Tensor) and out.data_ptr() not in seen:
            seen[out.data_ptr()] = out
            name = names[id(module)]
            act[name] = act.get(name, 0) + int(out.numel()) * 4

    handles = [m.register_forward_hook(hook) for m in net.modules()]
    was_training = net.training
    try:
        net.eval()
        with torch.no_grad(), _one_thread():
            macs = dict(_analysis(net, x).by_module())
    finally:
        net.train(was_training)
        for handle in handles:
            handle.remove()
    return macs, act


def _under(table: dict[str, int], prefix: str) -> int:
    """Sum of the entries of module `prefix` and its descendants (act bytes are per module)."""
    return sum(v for k, v in table.items() if k == prefix or k.startswith(prefix + "."))


def measure(net: nn.Module, input_size: int | tuple[int, int], in_chans: int | None = None) -> Complexity:
    """Count `net` on one (1, C, H, W) input in eval mode; the net's training mode is restored."""
    h, w = _size(input_size)
    macs, act = _count(net, torch.randn(1, in_chans or _in_chans(net), h, w))
    params = sum(p.numel() for p in net.parameters())
    return Complexity(params=params, gmacs=macs.get("", 0) / 1e9, act_mb=sum(act.values()) / 1e6)


def breakdown(cfg: NetConfig, input_size: int | tuple[int, int] | None = None) -> dict[str, Complexity]:
    """Counts of `cfg` per part: "stem", "stages.0" (stage 1), ..., "pool", "head" (cached)."""
    return dict(_breakdown(cfg, _size(input_size) if input_size is not None else cfg.input_size))


@functools.lru_cache(maxsize=256)
def _short_counts(short: NetConfig) -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
    """(MACs, activation bytes, params) by module name of the net of `short` (name-free, so
    that variants differing only in depths past two share one count)."""
    from gsa_space.networks import build_net  # networks imports attention; keep this module light

    torch.manual_seed(0)
    net = build_net(short)
    macs, act = _count(net, torch.randn(1, short.in_chans, *short.input_size))
    params = {name: sum(p.numel() for p in m.parameters()) for name, m in net.named_modules()}
    return macs, act, params


@functools.lru_cache(maxsize=512)
def _breakdown(cfg: NetConfig, size: tuple[int, int]) -> dict[str, Complexity]:
    """Exact counts per part, from a copy whose stages hold at most two blocks.

    Blocks 2..depth of a stage are identical (same channels, stride 1, same map), so each one
    past the second adds exactly what the second costs: a 101-layer net counts like a 26.
    """
    stages = tuple(replace(s, depth=min(s.depth, 2)) for s in cfg.stages)
    macs, act, params = _short_counts(replace(cfg, name="", input_size=size, stages=stages))
    parts = {
        name: Complexity(params[name], macs.get(name, 0) / 1e9, _under(act, name) / 1e6)
        for name in ("stem", "pool", "head")
    }
    for i, stage in enumerate(cfg.stages):
        prefix, extra = f"stages.{i}", max(stage.depth - 2, 0)
        block = f"{prefix}.1"
        parts[prefix] = Complexity(
            params[prefix] + extra * params.get(block, 0),
            (macs.get(prefix, 0) + extra * macs.get(block, 0)) / 1e9,
            (_under(act, prefix) + extra * _under(act, block)) / 1e6,
        )
    order = ["stem"] + [f"stages.{i}" for i in range(len(cfg.stages))] + ["pool", "head"]
    return {k: parts[k] for k in order}


def _total(parts: dict[str, Complexity]) -> Complexity:
    return Complexity(
        params=sum(p.params for p in parts.values()),
        gmacs=sum(p.gmacs for p in parts.values()),
        act_mb=sum(p.act_mb for p in parts.values()),
    )


def complexity(net_or_config: nn.Module | NetConfig, input_size: int | tuple[int, int] | None = None) -> Complexity:
    """Params, gmacs and act_mb of a network or a config (cached per config and size).

    Example: `complexity(build_config("gsa_resnet_tiny"), 8).params`.
    """
    if isinstance(net_or_config, NetConfig):
        size = _size(input_size) if input_size is not None else net_or_config.input_size
        return _total(_breakdown(net_or_config, size))
    if input_size is None:
        cfg = getattr(net_or_config, "cfg", None)
        if cfg is None:
            raise ValueError("input_size=None needs a network built from a NetConfig; pass input_size")
        input_size = cfg.input_size
    return measure(net_or_config, input_size)


def uncounted_ops(net: nn.Module, input_size: int | tuple[int, int], in_chans: int | None = None) -> Counter[str]:
    """Ops that neither our handlers count nor are known to be arithmetic-free, with call counts.

    fvcore silently skips its own ignore list; this clears that list, so every op without a
    handler is reported: all of them should be in `NO_ARITHMETIC_OPS`.
    """
    h, w = _size(input_size)
    x = torch.randn(1, in_chans or _in_chans(net), h, w)
    fca = _analysis(net.eval(), x)
    fca._ignored_ops = set()  # fvcore has no public way to empty its ignore list
    with torch.no_grad(), _one_thread():
        fca.total()
    return Counter(fca.unsupported_ops())
