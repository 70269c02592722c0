"""Frozen configuration objects for GSA-ResNets and the overrides that edit them.

A network is a `NetConfig`: a stem, then stages of bottleneck blocks whose spatial op is
either a GSA module or a 3x3 convolution. Study files edit configs with dotted keys
(`gsa.heads`, `stages.2.extent`, `width_mult`, `gsa_stages`), applied by `apply_overrides`.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, fields, replace
from typing import Any, Literal, Mapping

Op = Literal["gsa", "conv3x3"]
Style = Literal["imagenet", "cifar", "tiny"]
OPS: tuple[str, ...] = ("gsa", "conv3x3")
STYLES: tuple[str, ...] = ("imagenet", "cifar", "tiny")
AXIAL_ORDERS: tuple[str, ...] = ("col_row", "row_col")


@dataclass(frozen=True)
class StageConfig:
    """One resolution stage: `depth` bottleneck blocks, the first applying `stride`.

    `width` is the bottleneck width (before expansion) after the net's width multiplier;
    the GSA fields matter only when `op == "gsa"`.
    """

    depth: int
    width: int
    stride: int = 1
    op: Op = "gsa"
    heads: int = 8
    dim_key: int = 16
    extent: int | str = "global"
    content: bool = True
    positional: bool = True
    query_norm: bool = False
    axial_order: str = "col_row"
    out_proj: bool = False


@dataclass(frozen=True)
class NetConfig:
    """A whole network: style decides the stem; stages are numbered from 1 in overrides."""

    name: str
    style: Style
    stages: tuple[StageConfig, ...]
    stem_width: int = 64
    expansion: int = 4
    input_size: tuple[int, int] = (224, 224)
    in_chans: int = 3
    num_classes: int = 1000
    width_mult: float = 1.0

    @property
    def gsa_stages(self) -> tuple[int, ...]:
        """1-based indices of the stages whose spatial op is GSA."""
        return tuple(i for i, s in enumerate(self.stages, start=1) if s.op == "gsa")


STAGE_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(StageConfig))
GSA_FIELDS: tuple[str, ...] = (
    "heads", "dim_key", "extent", "content", "positional", "query_norm", "axial_order", "out_proj",
)
NET_FIELDS: tuple[str, ...] = ("stem_width", "expansion", "in_chans", "num_classes")


def round_width(width: float, multiple: int) -> int:
    """Round `width` to the nearest positive multiple of `multiple` (heads must divide widths)."""
    return max(multiple, int(round(width / multiple)) * multiple)


def _set_width_mult(cfg: NetConfig, mult: Any) -> NetConfig:
    if not isinstance(mult, (int, float)) or isinstance(mult, bool) or mult <= 0:
        raise ValueError(f"width_mult must be a positive number, but got width_mult={mult!r}.")
    base = cfg.width_mult
    stages = []
    for s in cfg.stages:
        multiple = s.heads if s.op == "gsa" else 1
        stages.append(replace(s, width=round_width(s.width * mult / base, multiple)))
    return replace(cfg, stages=tuple(stages), width_mult=float(mult))


def _set_gsa_stages(cfg: NetConfig, which: Any) -> NetConfig:
    n = len(cfg.stages)
    if not isinstance(which, (list, tuple)) or not all(isinstance(i, int) for i in which):
        raise ValueError(f"gsa_stages must be a list of stage numbers 1..{n}, but got gsa_stages={which!r}.")
    bad = [i for i in which if not 1 <= i <= n]
    if bad:
        raise ValueError(f"gsa_stages must name stages 1..{n}, but got gsa_stages={list(which)!r}.")
    stages = tuple(replace(s, op="gsa" if i in which else "conv3x3") for i, s in enumerate(cfg.stages, 1))
    return replace(cfg, stages=stages)


def _set_depths(cfg: NetConfig, depths: Any) -> NetConfig:
    n = len(cfg.stages)
    if not isinstance(depths, (list, tuple)) or len(depths) != n:
        raise ValueError(f"depths must list one depth per stage ({n}), but got depths={depths!r}.")
    return replace(cfg, stages=tuple(replace(s, depth=d) for s, d in zip(cfg.stages, depths)))


def _set_stage_field(cfg: NetConfig, index: int, name: str, value: Any) -> NetConfig:
    stages = list(cfg.stages)
    stages[index] = replace(stages[index], **{name: value})
    return replace(cfg, stages=tuple(stages))


NETWORK_KEYS: tuple[str, ...] = ("width_mult", "gsa_stages", "depths", "input_size", *NET_FIELDS)
# The keys a study varies and a results row records: `design_values` reads each from a built net.
DESIGN_KEYS: tuple[str, ...] = ("width_mult", "gsa_stages", "depths", *(f"gsa.{f}" for f in GSA_FIELDS))


@dataclass(frozen=True)
class NetworkKey:
    """A dotted network key taken apart: `gsa.X` (scope "gsa"), `stages.I.X` ("stage", I 1-based),
    or a whole-net key such as `width_mult` ("net", field = the key)."""

    scope: Literal["gsa", "stage", "net"]
    field: str
    stage: int | None = None


def _unknown(what: str, name: str, key: str, known: tuple[str, ...]) -> KeyError:
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return KeyError(f"unknown {what} {name!r} in {key!r}; expected one of: {', '.join(known)}{hint}")


def is_network_key(key: str) -> bool:
    """Whether `key` is written as a network key (`gsa.X`, `stages.I.X` or a whole-net key);
    the field itself may still be unknown (`parse_network_key` says so)."""
    head, dot, rest = str(key).partition(".")
    return (head == "gsa" and bool(dot)) or (head == "stages" and bool(dot)) or key in NETWORK_KEYS


def parse_network_key(key: str) -> NetworkKey:
    """`gsa.heads` -> NetworkKey("gsa", "heads"); KeyError naming the key and the rule otherwise.

    The stage number is checked against the net in `apply_override`, not here.
    """
    parts = str(key).split(".")
    if parts[0] == "gsa" and len(parts) == 2:
        if parts[1] not in GSA_FIELDS:
            raise _unknown("GSA field", parts[1], key, GSA_FIELDS)
        return NetworkKey("gsa", parts[1])
    if parts[0] == "stages" and len(parts) == 3:
        if not parts[1].isdigit():
            raise KeyError(f"stage number in {key!r} must be a whole number from 1")
        if parts[2] not in STAGE_FIELDS:
            raise _unknown("stage field", parts[2], key, STAGE_FIELDS)
        return NetworkKey("stage", parts[2], int(parts[1]))
    if key in NETWORK_KEYS:
        return NetworkKey("net", key)
    raise KeyError(
        f"unknown network key {key!r}; expected gsa.<field>, stages.<n>.<field>, width_mult, "
        f"gsa_stages, depths, input_size or one of: {', '.join(NET_FIELDS)}"
    )


def apply_override(cfg: NetConfig, key: str, value: Any) -> NetConfig:
    """Return `cfg` with one dotted-key override applied (no validation; see space.validate).

    Keys: `gsa.X` (X on every stage, GSA ones included, so that a later `gsa_stages`
    switch keeps it), `stages.I.X` (stage I, 1-based), `width_mult`, `gsa_stages`,
    `depths`, `input_size`, and the NetConfig fields `stem_width`, `expansion`,
    `in_chans`, `num_classes`.
    """
    parsed = parse_network_key(key)
    if parsed.scope == "gsa":
        return replace(cfg, stages=tuple(replace(s, **{parsed.field: value}) for s in cfg.stages))
    if parsed.scope == "stage":
        n = len(cfg.stages)
        if not 1 <= parsed.stage <= n:
            raise KeyError(f"stage number in {key!r} must be 1..{n}")
        return _set_stage_field(cfg, parsed.stage - 1, parsed.field, value)
    if key == "width_mult":
        return _set_width_mult(cfg, value)
    if key == "gsa_stages":
        return _set_gsa_stages(cfg, value)
    if key == "depths":
        return _set_depths(cfg, value)
    if key == "input_size":
        size = (value, value) if isinstance(value, int) else tuple(value)
        return replace(cfg, input_size=size)
    return replace(cfg, **{key: value})


def network_value(cfg: NetConfig, key: str) -> Any:
    """The value of network key `key` in a built config, the inverse of `apply_override`.

    `gsa.X` reads the first GSA stage (None in a net without one: not applicable);
    `gsa_stages` and `depths` are tuples.
    """
    parsed = parse_network_key(key)
    if parsed.scope == "gsa":
        stages = [s for s in cfg.stages if s.op == "gsa"]
        return getattr(stages[0], parsed.field) if stages else None
    if parsed.scope == "stage":
        return getattr(cfg.stages[parsed.stage - 1], parsed.field)
    if key == "depths":
        return tuple(s.depth for s in cfg.stages)
    return getattr(cfg, key)


def design_values(cfg: NetConfig) -> dict[str, Any]:
    """Every key of DESIGN_KEYS with its value in `cfg` (what a results row records)."""
    return {key: network_value(cfg, key) for key in DESIGN_KEYS}


# Structural keys first, so that `gsa.heads` and `width_mult` given together round widths
# to the new heads whatever order the caller wrote them in.
_ORDER = {"gsa_stages": 0, "depths": 0}


def apply_overrides(cfg: NetConfig, overrides: Mapping[str, Any]) -> NetConfig:
    """Apply dotted-key overrides; `width_mult` last so widths round to the final heads."""
    keys = sorted(overrides, key=lambda k: (_ORDER.get(k, 1) if k != "width_mult" else 2))
    for key in keys:
        cfg = apply_override(cfg, key, overrides[key])
    return cfg
