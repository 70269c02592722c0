"""The dotted keys of a study: `model.variant`, `train.X`, `data.X`, and the network keys.

A variant, a space dimension or a `--set` names what it changes with one dotted key. This is
the only module of `search` that takes such a key apart; the network keys (`gsa.X`,
`stages.I.X`, `width_mult`, `gsa_stages`, `depths`, ...) belong to `gsa_space.config`.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from gsa_space.config import NetConfig, is_network_key, network_value
from search.study.schema import TrainConfig

__all__ = ["MODEL_VARIANT", "MODEL", "TRAIN", "DATA", "train_field", "train_key", "document_path",
           "network_path", "split_keys", "trial_value"]

MODEL, TRAIN, DATA = "model", "train", "data"
MODEL_VARIANT = "model.variant"  # a variant's or a sample's choice of base network


def train_field(key: str) -> str | None:
    """`train.lr` -> `lr`; None for any other key."""
    head, dot, rest = str(key).partition(".")
    return rest if head == TRAIN and dot and "." not in rest else None


def train_key(field: str) -> str:
    """`lr` -> `train.lr`."""
    return f"{TRAIN}.{field}"


def section(key: str) -> str:
    """The document section a dotted key starts with: `train.lr` -> `train`."""
    return str(key).partition(".")[0]


def document_path(key: str) -> str:
    """The study-document path a `--set` key writes: network keys gain `model.`, others are kept."""
    key = str(key).strip()
    return f"{MODEL}.{key}" if is_network_key(key) else key


def network_path(path: str) -> str | None:
    """`model.gsa.heads` -> `gsa.heads` (a network key under model:); None for any other path."""
    head, dot, rest = str(path).partition(".")
    return rest if head == MODEL and dot and rest != "variant" and is_network_key(rest) else None


def split_keys(variant: str, base: Iterable[tuple[str, Any]],
               keys: Mapping[str, Any]) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(model variant, network overrides, train overrides) of a base model plus `keys`.

    `base` are the model's own network overrides; `keys` hold `model.variant`, `train.X` and
    network keys, and win over the base.
    """
    net = dict(base)
    train: dict[str, Any] = {}
    for key, value in keys.items():
        if key == MODEL_VARIANT:
            variant = value
        elif train_field(key) is not None:
            train[train_field(key)] = value
        else:
            net[key] = value
    return variant, net, train


def trial_value(net: NetConfig, train: TrainConfig, model_variant: str, key: str) -> Any:
    """The value of `key` in a resolved trial (its NetConfig and TrainConfig).

    `gsa.X` of a net without a GSA stage is None (not applicable).
    """
    if key == MODEL_VARIANT:
        return model_variant
    field = train_field(key)
    if field is not None:
        return getattr(train, field)
    return network_value(net, key)
