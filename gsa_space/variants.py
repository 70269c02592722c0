"""The table of named network variants and the one way to turn a name into a config.

Every variant is a frozen `NetConfig` in `VARIANTS`; `build_config` looks one up, sets its
input, applies dotted-key overrides and validates the result. GSA variants and their conv
baselines differ only in each stage's spatial op (`conv_counterpart`).
"""

from __future__ import annotations

import difflib
from dataclasses import replace
from typing import Any, Mapping

from gsa_space.config import NetConfig, StageConfig, apply_overrides
from gsa_space.space import validate

IMAGENET_DEPTHS: dict[int, tuple[int, int, int, int]] = {
    26: (1, 2, 4, 1),
    38: (2, 3, 5, 2),
    50: (3, 4, 6, 3),
    101: (3, 4, 23, 3),
}
WIDTHS: tuple[int, ...] = (64, 128, 256, 512)
STRIDES: tuple[int, ...] = (1, 2, 2, 2)
# 8 heads everywhere; the key width grows with the stage so that heads * dim_key = width / 2
# from stage 2 on (= width at stage 1, where d_k = 8 is the floor). Every GSA module then has
# fewer params than the 3x3 conv it replaces, and every GSA net fewer params and MACs than its
# conv twin (a strided first block costs more: GSA runs before the pool, the conv strides).
HEADS: tuple[int, ...] = (8, 8, 8, 8)
DIM_KEYS: tuple[int, ...] = (8, 8, 16, 32)

TINY_WIDTHS: tuple[int, ...] = (16, 32, 64)
TINY_STRIDES: tuple[int, ...] = (1, 2, 2)
TINY_HEADS: tuple[int, ...] = (2, 4, 4)
TINY_DIM_KEY = 8


def _resnet_stages(depths: tuple[int, ...], op: str) -> tuple[StageConfig, ...]:
    return tuple(
        StageConfig(depth=d, width=w, stride=s, op=op, heads=h, dim_key=k)
        for d, w, s, h, k in zip(depths, WIDTHS, STRIDES, HEADS, DIM_KEYS)
    )


def _tiny_stages(op: str) -> tuple[StageConfig, ...]:
    return tuple(
        StageConfig(depth=1, width=w, stride=s, op=op, heads=h, dim_key=TINY_DIM_KEY)
        for w, s, h in zip(TINY_WIDTHS, TINY_STRIDES, TINY_HEADS)
    )


def _make_table() -> dict[str, NetConfig]:
    table: dict[str, NetConfig] = {}
    for prefix, op in (("gsa_resnet", "gsa"), ("resnet", "conv3x3")):
        for depth, depths in IMAGENET_DEPTHS.items():
            stages = _resnet_stages(depths, op)
            name = f"{prefix}{depth}"
            table[name] = NetConfig(name=name, style="imagenet", stages=stages)
            table[f"{name}_cifar"] = NetConfig(
                name=f"{name}_cifar", style="cifar", stages=stages,
                input_size=(32, 32), in_chans=3, num_classes=100,
            )
        name = f"{prefix}_tiny"
        table[name] = NetConfig(
            name=name, style="tiny", stages=_tiny_stages(op), stem_width=16,
            input_size=(8, 8), in_chans=1, num_classes=10,
        )
    return table


VARIANTS: Mapping[str, NetConfig] = _make_table()


def list_variants() -> list[str]:
    """Names of every variant, GSA ones first, in table order."""
    return list(VARIANTS)


def get_variant(name: str) -> NetConfig:
    """The table entry `name`; an unknown name raises ValueError with the closest names."""
    if not isinstance(name, str) or name not in VARIANTS:
        close = difflib.get_close_matches(str(name), list(VARIANTS), n=3, cutoff=0.6)
        hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
        raise ValueError(f"unknown variant {name!r}; {hint}(gsa-nas variants lists them)")
    return VARIANTS[name]


def _as_size(value: Any, field: str) -> tuple[int, int]:
    size = (value, value) if isinstance(value, int) and not isinstance(value, bool) else tuple(value)
    if len(size) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in size):
        raise ValueError(f"{field}={value!r} must be a positive int or an (H, W) pair of positive ints")
    return size  # type: ignore[return-value]


def build_config(
    name: str,
    *,
    input_size: int | tuple[int, int] | None = None,
    in_chans: int | None = None,
    num_classes: int | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> NetConfig:
    """Variant `name` with its input set and `overrides` applied, validated.

    Example: `build_config("gsa_resnet_tiny", overrides={"gsa.heads": 2, "gsa_stages": [2, 3]})`.
    """
    cfg = get_variant(name)
    if input_size is not None:
        cfg = replace(cfg, input_size=_as_size(input_size, "input_size"))
    if in_chans is not None:
        cfg = replace(cfg, in_chans=in_chans)
    if num_classes is not None:
        cfg = replace(cfg, num_classes=num_classes)
    if overrides:
        cfg = apply_overrides(cfg, overrides)
        if "input_size" in overrides:
            cfg = replace(cfg, input_size=_as_size(overrides["input_size"], "input_size"))
    validate(cfg)
    return cfg


def conv_counterpart(cfg: NetConfig) -> NetConfig:
    """The same network with every stage's spatial op a 3x3 convolution (the baseline)."""
    name = cfg.name[4:] if cfg.name.startswith("gsa_") else cfg.name
    return replace(cfg, name=name, stages=tuple(replace(s, op="conv3x3") for s in cfg.stages))
