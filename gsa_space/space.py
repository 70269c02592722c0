"""The design space of GSA-ResNets as data, and the validity rules of a network config.

A `Dimension` is a dotted override key (`gsa.heads`, `gsa_stages`, `width_mult`, `train.lr`)
with a domain (`Choice`, `IntRange`, `FloatRange`; bounds inclusive) and optional conditions
on other dimensions (`gsa.extent` matters only when `gsa.positional` is true).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping, Sequence, Union

from gsa_space.config import AXIAL_ORDERS, OPS, NetConfig, is_network_key

TRAIN_PREFIX = "train."  # the design space's training knobs (train.lr, ...): not network keys


@dataclass(frozen=True)
class Choice:
    """One of `values` (any YAML scalars or lists)."""

    values: tuple[Any, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", tuple(self.values))
        if not self.values:
            raise ValueError("Choice.values=() must hold at least one value")

    def sample(self, rng: random.Random) -> Any:
        return rng.choice(self.values)

    def contains(self, value: Any) -> bool:
        return any(_same(value, v) for v in self.values)


def _same(a: Any, b: Any) -> bool:
    """Equal and of the same kind (True is not 1); lists and tuples compare by items."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def _check_range(kind: str, low: float, high: float, log: bool) -> None:
    if low > high:
        raise ValueError(f"{kind}(low={low!r}, high={high!r}): low must not exceed high")
    if log and low <= 0:
        raise ValueError(f"{kind}(low={low!r}, log=True): a log range needs low > 0")


@dataclass(frozen=True)
class IntRange:
    """An int in [low, high] on a grid of `step` from low; `log` samples log-uniformly."""

    low: int
    high: int
    step: int = 1
    log: bool = False

    def __post_init__(self) -> None:
        _check_range("IntRange", self.low, self.high, self.log)
        if self.step < 1:
            raise ValueError(f"IntRange(step={self.step!r}): step must be >= 1")

    def sample(self, rng: random.Random) -> int:
        if self.log:
            raw = math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
            return min(self.high, self.low + round((raw - self.low) / self.step) * self.step)
        return rng.randrange(self.low, self.high + 1, self.step)

    def contains(self, value: Any) -> bool:
        ok_type = isinstance(value, int) and not isinstance(value, bool)
        return ok_type and self.low <= value <= self.high and (value - self.low) % self.step == 0


@dataclass(frozen=True)
class FloatRange:
    """A float in [low, high]; `step` puts it on a grid from low; `log` samples log-uniformly."""

    low: float
    high: float
    step: float | None = None
    log: bool = False

    def __post_init__(self) -> None:
        _check_range("FloatRange", self.low, self.high, self.log)
        if self.step is not None and (self.step <= 0 or self.log):
            raise ValueError(f"FloatRange(step={self.step!r}, log={self.log}): step must be > 0 and not log")

    def sample(self, rng: random.Random) -> float:
        if self.log:
            return math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
        if self.step is not None:
            n = int(math.floor((self.high - self.low) / self.step + 1e-9))
            return round(self.low + rng.randint(0, n) * self.step, 12)
        return rng.uniform(self.low, self.high)

    def contains(self, value: Any) -> bool:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return False
        return self.low - 1e-12 <= value <= self.high + 1e-12


Domain = Union[Choice, IntRange, FloatRange]


@dataclass(frozen=True)
class Dimension:
    """A named, dotted override key with its domain; `when` = values other dimensions must take."""

    name: str
    domain: Domain
    when: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "when", MappingProxyType(dict(self.when)))
        if self.name in self.when:
            raise ValueError(f"Dimension {self.name!r}: `when` must not refer to the dimension itself")

    def __hash__(self) -> int:
        return hash((self.name, self.domain, tuple(sorted(self.when.items(), key=lambda kv: kv[0]))))


def active(dim: Dimension, values: Mapping[str, Any]) -> bool:
    """True when every condition of `dim` holds in `values` (an absent dimension fails it)."""
    return all(key in values and _same(values[key], want) for key, want in dim.when.items())


def active_dims(dims: Sequence[Dimension], values: Mapping[str, Any]) -> tuple[Dimension, ...]:
    """The dimensions of `dims` whose conditions hold in `values`."""
    return tuple(d for d in dims if active(d, values))


def sample(dims: Sequence[Dimension], rng: random.Random) -> dict[str, Any]:
    """One point: a value for each active dimension, in order (conditions refer to earlier ones)."""
    seen: set[str] = set()
    values: dict[str, Any] = {}
    for dim in dims:
        later = [k for k in dim.when if k not in seen]
        if later:
            raise ValueError(f"Dimension {dim.name!r}: condition on {later[0]!r}, which must come earlier")
        seen.add(dim.name)
        if active(dim, values):
            values[dim.name] = dim.domain.sample(rng)
    return values


def split_values(values: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(network overrides, training knobs without the `train.` prefix) of a sampled point."""
    net = {k: v for k, v in values.items() if is_network_key(k)}
    train = {k.removeprefix(TRAIN_PREFIX): v for k, v in values.items() if not is_network_key(k)}
    return net, train


def design_space(num_stages: int = 4) -> tuple[Dimension, ...]:
    """The standard design space for a net of `num_stages` stages (4: ResNets, 3: tiny nets)."""
    last = list(range(1, num_stages + 1))
    gsa_stages = Choice(tuple(tuple(last[i:]) for i in range(num_stages)))
    depths = Choice(((1,) * num_stages, (1, 2, 2, 1)[:num_stages], (2,) * num_stages))
    return (
        Dimension("gsa.heads", Choice((1, 2, 4, 8))),
        Dimension("gsa.dim_key", Choice((4, 8, 16, 32))),
        Dimension("gsa.positional", Choice((True, False))),
        # With positional off, content stays on (its base value): one branch must be on.
        Dimension("gsa.content", Choice((True, False)), when={"gsa.positional": True}),
        Dimension("gsa.extent", Choice((3, 5, 7, "global")), when={"gsa.positional": True}),
        Dimension("gsa.axial_order", Choice(AXIAL_ORDERS), when={"gsa.positional": True}),
        Dimension("gsa.query_norm", Choice((False, True))),
        Dimension("gsa_stages", gsa_stages),
        Dimension("width_mult", FloatRange(0.5, 1.5, step=0.25)),
        Dimension("depths", depths),
        Dimension("train.lr", FloatRange(1e-4, 1e-1, log=True)),
        Dimension("train.weight_decay", FloatRange(1e-6, 1e-2, log=True)),
        Dimension("train.label_smoothing", FloatRange(0.0, 0.2, step=0.05)),
        Dimension("train.epochs", IntRange(5, 50, step=5)),
    )


DESIGN_SPACE: tuple[Dimension, ...] = design_space(4)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_stage(i: int, s: Any) -> None:
    p = f"stages.{i}"
    for name in ("depth", "width"):
        v = getattr(s, name)
        if not _is_int(v) or v < 1:
            raise ValueError(f"{p}.{name}={v!r} must be a positive int")
    if s.stride not in (1, 2) or not _is_int(s.stride):
        raise ValueError(f"{p}.stride={s.stride!r} must be 1 or 2")
    if s.op not in OPS:
        raise ValueError(f"{p}.op={s.op!r} must be one of: {', '.join(OPS)}")
    if s.op != "gsa":
        return  # the GSA fields of a conv stage are inert
    for name in ("heads", "dim_key"):
        v = getattr(s, name)
        if not _is_int(v) or v < 1:
            raise ValueError(f"{p}.{name}={v!r} must be a positive int")
    if s.width % s.heads:
        raise ValueError(f"{p}.heads={s.heads} must divide {p}.width={s.width}")
    e = s.extent
    if isinstance(e, str) and e != "global":
        raise ValueError(f"{p}.extent={e!r} must be an odd int >= 1 or 'global'")
    if not isinstance(e, str) and (not _is_int(e) or e < 1 or e % 2 == 0):
        raise ValueError(f"{p}.extent={e!r} must be an odd int >= 1 or 'global'")
    for name in ("content", "positional", "query_norm", "out_proj"):
        if not isinstance(getattr(s, name), bool):
            raise ValueError(f"{p}.{name}={getattr(s, name)!r} must be true or false")
    if not (s.content or s.positional):
        raise ValueError(f"{p}.content=False and {p}.positional=False: at least one branch must be on")
    if s.axial_order not in AXIAL_ORDERS:
        raise ValueError(f"{p}.axial_order={s.axial_order!r} must be one of: {', '.join(AXIAL_ORDERS)}")


def validate(cfg: NetConfig) -> NetConfig:
    """Raise ValueError naming the field, the value and the rule; return `cfg` when valid."""
    if not cfg.stages:
        raise ValueError(f"{cfg.name}: stages=() must hold at least one stage")
    for name in ("stem_width", "expansion", "in_chans", "num_classes"):
        v = getattr(cfg, name)
        if not _is_int(v) or v < 1:
            raise ValueError(f"{name}={v!r} must be a positive int")
    size = cfg.input_size
    if len(size) != 2 or not all(_is_int(v) and v >= 1 for v in size):
        raise ValueError(f"input_size={size!r} must be an (H, W) pair of positive ints")
    for i, s in enumerate(cfg.stages, start=1):
        _check_stage(i, s)
    return cfg
