"""Study files on disk: find one by path or by the name of a shipped study, and read its YAML."""

from __future__ import annotations

import difflib
import os
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from search.study.readers import Where, plain_tree
from search.study.schema import StudyError

SHIPPED_PACKAGE = "studies"  # the top-level folder studies/, a package whose *.yaml are package data


def shipped_studies_dir() -> Path:
    """The folder of the shipped study files: the `studies` package, in the source tree or installed.

    Example: `(shipped_studies_dir() / "quickstart.yaml").is_file()`.
    """
    return Path(resources.files(SHIPPED_PACKAGE))  # a regular package: a folder on disk


def yaml_value_problem(err: Exception) -> str:
    """One line for what else PyYAML's safe constructors raise on a scalar they cannot build:
    `2020-13-45`, `!!int ten` (ValueError), `!!bool maybe` (KeyError), `!!timestamp x` (AttributeError).

    Example: `a value YAML cannot build (ValueError: month must be in 1..12)`.
    """
    detail = " ".join((repr(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)).split())
    return f"a value YAML cannot build ({err.__class__.__name__}: {detail})"


def _looks_like_path(text: str) -> bool:
    return "/" in text or os.sep in text or text.endswith((".yaml", ".yml"))


def find_study_file(path_or_name: str) -> Path:
    """A path to an existing file, or the name of a shipped study (a file in the `studies` package).

    A missing path (it has a `/` or ends in .yaml/.yml) is named as given; a missing name
    gets a did-you-mean among the shipped studies.
    """
    text = str(path_or_name)
    path = Path(os.path.expanduser(text))
    if path.is_file():
        return path
    shipped = shipped_studies_dir()
    known = sorted(p.stem for p in shipped.glob("*.yaml"))
    if not _looks_like_path(text):
        if (shipped / f"{text}.yaml").is_file():
            return shipped / f"{text}.yaml"
        close = difflib.get_close_matches(text, known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise StudyError(f"{text}: no such study file, and no study named {text!r} in studies/{hint} "
                         f"(studies/ holds: {', '.join(known)})")
    if "/" not in text and os.sep not in text and (shipped / text).is_file():
        return shipped / text
    if path.is_dir():
        raise StudyError(f"{text} is a directory, not a study file; give a .yaml file or a study name")
    siblings = sorted(p.name for p in path.parent.glob("*.y*ml")) if path.parent.is_dir() else []
    close = difflib.get_close_matches(path.name, siblings, n=1)
    if close:
        hint = f"; did you mean {str(path.parent / close[0])!r}?"
    else:  # a bare file name may be a shipped study's, misspelt or with the wrong suffix
        named = difflib.get_close_matches(path.stem, known, n=1) if path.parent == Path(".") else []
        hint = f"; did you mean {named[0]!r}?" if named else ""
    raise StudyError(f"no such study file {text}{hint} (or give a study name: {', '.join(known)})")


def read_yaml(path: Path) -> dict[str, Any]:
    """safe_load the file; a syntax error (with its position), a value YAML cannot build, nesting too
    deep, or an alias inside its own anchor becomes one line."""
    where = Where(str(path))
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise where.error("", f"cannot read the file ({err.__class__.__name__}: {err})") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = " ".join(str(getattr(err, "problem", None) or err).split())
        raise where.error("", f"unreadable YAML{at}: {problem}; fix the syntax (YAML is read with safe_load)") from None
    except RecursionError:
        raise where.error("", "unreadable YAML: nested too deeply to read; a study needs a few levels") from None
    except Exception as err:  # a constructor failing on a value (see yaml_value_problem)
        raise where.error("", f"unreadable YAML: {yaml_value_problem(err)}; fix the value (YAML is read with "
                              f"safe_load)") from None
    if not isinstance(doc, dict):
        raise where.error("", f"the document must be a mapping of study keys, but it is {type(doc).__name__}")
    plain_tree(where, "", doc)
    return doc
