"""`--set KEY=VALUE` overrides: from command-line keys to paths in the study document.

Network keys may skip `model.` (`gsa.extent`, `stages.2.heads`, `width_mult`, `gsa_stages`,
`depths` mean `model.<key>`), and every key remembers the text the user typed, so that a bad
value is blamed on the command line rather than on the study file.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import yaml

from gsa_space.config import GSA_FIELDS, parse_network_key
from search.study.keys import TRAIN, document_path, network_path
from search.study.readers import Where, join, plain_tree

__all__ = ["set_text", "command_line_sets", "apply_sets"]

# Keys people write without their section; the top-level did-you-mean cannot find these.
_SECTION_HINTS = dict.fromkeys(GSA_FIELDS, "gsa")


def _flow(value: Any, *, quoted: bool = False) -> str:
    """`value` as one line of flow-style YAML (every scalar double-quoted, escapes and all, if `quoted`)."""
    try:
        text = yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=math.inf, allow_unicode=True,
                              default_style='"' if quoted else None)
    except (yaml.YAMLError, RecursionError):  # nested too deeply to write; apply_sets says so
        return "..."
    return text.strip().removesuffix("...").strip()


def set_text(key: str, value: Any) -> str:
    """`KEY=VALUE` as the user most likely typed it (YAML flow style on one line; strings bare).

    Text with line breaks or control characters is shown double-quoted, with escapes.
    """
    if value is None:
        shown = ""
    elif isinstance(value, str):
        shown = value if value.isprintable() else _flow(value, quoted=True)
    else:
        shown = _flow(value)
        if not shown.isprintable():
            shown = _flow(value, quoted=True)
    return f"{key if key.isprintable() else repr(key)}={shown}"


def command_line_sets(overrides: Mapping[str, Any]) -> tuple[dict[str, Any], tuple[tuple[str, str], ...]]:
    """(document path -> value, (document path, `KEY=VALUE` text) pairs for `Where.sets`)."""
    values: dict[str, Any] = {}
    texts: list[tuple[str, str]] = []
    for key, value in overrides.items():
        path = document_path(key)
        values[path] = value
        texts.append((path, set_text(str(key).strip(), value)))
    return values, tuple(texts)


def _check_top_level(where: Where, key: str, top_keys: tuple[str, ...], train_keys: tuple[str, ...]) -> None:
    """A lone training or GSA field (`epochs`, `heads`) is a section-less key: say which section."""
    if "." in key or key in top_keys:
        return
    section = TRAIN if key in train_keys else _SECTION_HINTS.get(key)
    if section is None:
        return  # the top-level key check names it, with its own did-you-mean
    raise where.error("", f"unknown key {key!r} at top level; did you mean {join(section, key)!r}?", set_key=key)


def _check_network_field(where: Where, path: str) -> None:
    """`model.gsa.haeds` fails here with a did-you-mean, rather than deep in network building."""
    key = network_path(path)
    if key is None:
        return
    try:
        parse_network_key(key)
    except (KeyError, ValueError) as err:  # ValueError: a stage "number" like `stages.².heads`
        message = str(err.args[0] if err.args else err).replace(f" in {key!r}", "")
        raise where.error(path, message) from None


def apply_sets(where: Where, doc: dict[str, Any], overrides: Mapping[str, Any], *,
               top_keys: tuple[str, ...] = (), train_keys: tuple[str, ...] = ()) -> dict[str, Any]:
    """Document-path overrides into the document: `train.epochs`, `model.gsa.heads`, `variants.v.train.lr`.

    A new `sampler.name` / `pruner.name` drops the old one's options (not the sampler seed),
    so `--set pruner.name=asha` works on a study written for the median pruner.
    """
    ordered = sorted(overrides.items(), key=lambda kv: kv[0] not in ("sampler.name", "pruner.name"))
    for key, value in ordered:
        plain_tree(where, str(key), value)
        if top_keys:
            _check_top_level(where, str(key), top_keys, train_keys)
        _check_network_field(where, str(key))
        head, _, rest = str(key).partition(".")  # a document path, walked one section down
        if not rest:
            doc[head] = value
            continue
        section = doc.get(head)
        if section is None:
            section = doc[head] = {}
        if not isinstance(section, dict):
            raise where.error(head, f"--set {key} needs {head} to be a mapping, but it is {section!r}")
        if head in ("sampler", "pruner") and rest == "name" and section.get("name") != value:
            kept = {"seed": section["seed"]} if "seed" in section else {}
            section.clear()
            section.update(kept)
        if head in ("variants", "space"):
            sub_head, _, sub_rest = rest.partition(".") if head == "variants" else (rest, "", "")
            if sub_rest:
                inner = section.get(sub_head) or {}
                if not isinstance(inner, dict):
                    raise where.error(join(head, sub_head), f"--set {key} needs a mapping here, but it is {inner!r}")
                inner[sub_rest] = value
                section[sub_head] = inner
                continue
        section[rest] = value
    return doc
