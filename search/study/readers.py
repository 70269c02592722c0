"""Typed readers for study-file values: each returns the value typed or raises a one-line StudyError.

A `Where` knows the file; every reader takes the dotted key path of the value it reads, so
an error reads `<file>: <key path>: <value> <what is wrong>; <the rule>`.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from search.study.schema import StudyError

_NUMBER_NAMES = {int: "an integer", float: "a number"}


@dataclass(frozen=True)
class Where:
    """The file being read; makes StudyErrors that name it.

    `sets` are (document key path, `--set` text as typed) pairs: an error at or below a key
    that came from the command line says so, instead of blaming the file alone.
    """

    file: str
    sets: tuple[tuple[str, str], ...] = ()

    def origin(self, path: str, *, below: bool = False) -> str | None:
        """The `--set KEY=VALUE` text that set `path` (or a section above it), else None.

        With `below`, a key set inside `path` counts too (an unknown section named by --set).
        """
        for key, text in self.sets:
            if path == key or path.startswith((key + ".", key + "[")):
                return text
            if below and key.startswith(path + "."):
                return text
        return None

    def error(self, path: str, message: str, *, set_key: str | None = None) -> StudyError:
        """`<file>: <path>: <message>`; led by `--set KEY=VALUE on` when the value came from --set.

        `set_key` names the key to look up instead of `path` (an unknown key at a section).
        """
        lookup = path if set_key is None else set_key
        text = self.origin(lookup, below=set_key is not None) if lookup else None
        where = f"{self.file}: {path}: " if path else f"{self.file}: "
        if text is None:
            return StudyError(one_line(where + message))
        hint = _list_hint(text, message)
        body = message.rstrip(".") if hint else message
        return StudyError(one_line(f"--set {text} on {where}{body}{hint}"))


def one_line(text: str) -> str:
    """`text` with line breaks and other unprintable characters escaped (`\\n`), so an error stays one line."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def _list_hint(text: str, message: str) -> str:
    """`--set seeds=0,1` is the text '0,1': show how a list is written on the command line (not for flow
    YAML: a list, a mapping, an anchored or a tagged value)."""
    key, _, raw = text.partition("=")
    if "," not in raw or raw.lstrip().startswith(("[", "{", "&", "!")) or "--set" in message:
        return ""
    items = ", ".join(part.strip() for part in raw.split(","))
    return f'; write a list on the command line as --set "{key}=[{items}]"'


MAX_DEPTH = 32  # a study nests 4 levels (space.K.when.K); deeper is junk, and would exhaust the stack
MAX_VALUES = 100_000  # YAML aliases can expand a small file into billions of values ("billion laughs")


def plain_tree(where: Where, path: str, value: Any) -> None:
    """A value as YAML gave it, checked to be a finite tree: no alias inside its own anchor
    (`&a [*a]`), at most MAX_DEPTH levels, at most MAX_VALUES values with aliases expanded.
    """
    count = 0
    stack: list[tuple[str, Any, tuple[int, ...]]] = [(path, value, ())]
    while stack:
        here, v, above = stack.pop()
        count += 1
        if count > MAX_VALUES:
            raise where.error(path, f"holds more than {MAX_VALUES} values once YAML aliases are expanded; "
                                    f"a study needs far fewer (write values out instead of nesting aliases)")
        if not isinstance(v, (dict, list)):
            continue
        if id(v) in above:
            raise where.error(here, "contains itself (a YAML alias inside its own anchor, like &a [*a]); "
                                    "write the value out")
        if len(above) >= MAX_DEPTH:
            raise where.error(here, f"is nested more than {MAX_DEPTH} levels deep; a study needs a few levels")
        inner = (*above, id(v))
        items = v.items() if isinstance(v, dict) else ((f"[{i}]", x) for i, x in enumerate(v))
        for k, x in items:
            sub = f"{here}{k}" if isinstance(v, list) else join(here, str(k))
            stack.append((sub, x, inner))


def join(path: str, key: str) -> str:
    """`train` + `epochs` -> `train.epochs`; top level has the empty path."""
    return f"{path}.{key}" if path else str(key)


def mapping(where: Where, path: str, value: Any, *, allow_none: bool = True) -> dict[str, Any]:
    """A YAML mapping with string keys (None reads as empty when allowed)."""
    if value is None and allow_none:
        return {}
    if not isinstance(value, Mapping):
        raise where.error(path, f"{value!r} must be a mapping (key: value lines or {{key: value}})")
    bad = [k for k in value if not isinstance(k, str)]
    if bad:
        raise where.error(path, f"key {bad[0]!r} must be a string; quote it")
    return dict(value)


def known_keys(where: Where, path: str, value: Mapping[str, Any], allowed: Iterable[str]) -> None:
    """Reject keys outside `allowed`, with a did-you-mean when one is close."""
    allowed = list(allowed)
    for key in value:
        if key in allowed:
            continue
        if not isinstance(key, str):  # YAML reads `1:`, `null:`, `2020-01-01:` as int, None, date keys
            raise where.error(path, f"key {key!r} must be a string; quote it")
        close = difflib.get_close_matches(key, allowed, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        place = "at top level" if not path else f"in {path}"
        raise where.error("", f"unknown key {key!r} {place}; expected one of: {', '.join(allowed)}{hint}",
                          set_key=join(path, key))


def required(where: Where, path: str, value: Mapping[str, Any], key: str, rule: str) -> Any:
    if key not in value or value[key] is None:
        raise where.error(join(path, key), f"missing; {rule}")
    return value[key]


def integer(where: Where, path: str, value: Any, *, minimum: int | None = None) -> int:
    """An int (not a bool, not 2.5); `minimum` 1 reads as 'a positive integer'."""
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise where.error(path, f"{value!r} must be an integer")
    if minimum is not None and value < minimum:
        rule = {0: "a non-negative integer", 1: "a positive integer"}.get(minimum, f"an integer >= {minimum}")
        raise where.error(path, f"{value!r} must be {rule}")
    return value


def number(where: Where, path: str, value: Any, *, minimum: float | None = None,
           positive: bool = False, maximum: float | None = None) -> float:
    """A float; numeric strings count, because YAML 1.1 reads `1e-4` as the string '1e-4'."""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise where.error(path, f"{value!r} must be a number") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise where.error(path, f"{value!r} must be a number")
    try:
        value = float(value)
    except OverflowError:  # an int beyond any float, like 10**400
        raise where.error(path, f"{value!r} must be a finite number") from None
    if not math.isfinite(value):
        raise where.error(path, f"{value!r} must be a finite number")
    if positive and value <= 0:
        raise where.error(path, f"{value!r} must be a positive number")
    if minimum is not None and value < minimum:
        raise where.error(path, f"{value!r} must be >= {minimum}")
    if maximum is not None and value > maximum:
        raise where.error(path, f"{value!r} must be <= {maximum}")
    return value


def boolean(where: Where, path: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise where.error(path, f"{value!r} must be true or false")
    return value


def string(where: Where, path: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise where.error(path, f"{value!r} must be a non-empty string")
    return value


def choice(where: Where, path: str, value: Any, choices: Iterable[str], what: str = "") -> str:
    """One of `choices`, with a did-you-mean for a near miss."""
    choices = list(choices)
    if value in choices:
        return value
    close = difflib.get_close_matches(str(value), choices, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    noun = f"unknown {what} " if what else ""
    raise where.error(path, f"{noun}{value!r}; expected one of: {', '.join(choices)}{hint}")


def name(where: Where, path: str, value: Any) -> str:
    """A name used in directories and tables: letters, digits, `_`, `-`, `.`."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)  # YAML reads a variant called 1 or 0.5 as a number
    value = string(where, path, value)
    if not all(c.isalnum() or c in "_-." for c in value) or value.startswith("."):
        raise where.error(path, f"{value!r} must use only letters, digits, '_', '-' and '.' (it names directories)")
    return value


def options(where: Where, path: str, value: Mapping[str, Any], allowed: Iterable[str]) -> tuple[tuple[str, Any], ...]:
    """Constructor options: known names only; numeric strings become floats."""
    allowed = list(allowed)
    known_keys(where, path, value, allowed)
    out = []
    for key, v in value.items():
        if isinstance(v, str):
            try:
                v = float(v)
            except ValueError:
                pass
        out.append((key, v))
    return tuple(out)
