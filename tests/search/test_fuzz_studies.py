"""Fuzzing study loading: `load_study` returns a Study or raises one StudyError line naming the file.

Hypothesis writes random study documents (random keys, types and nesting; mutations of the
shipped studies; YAML-ish text spliced into them) to a temporary file and loads it, and passes
random `KEY=VALUE` texts through `search.cli._parse_sets` into the shipped digits studies.
Either a `Study` comes back, or a StudyError/ValueError whose message is one non-empty line
that starts with the file (or with the `--set` it blames); any other exception is a bug.
Derandomized, with no example database, so CI tries the same examples every run.
"""

from __future__ import annotations

import copy
import datetime
import math
from pathlib import Path
import tempfile
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

from search.cli import _parse_sets
from search.study import Study, StudyError, load_study
from search.study.files import shipped_studies_dir
from search.study.sections import ABLATION_KEYS, COMMON_KEYS, SEARCH_KEYS, TRAIN_KEYS

# Hypothesis caches unicode tables and the constants of local modules in its home folder, the
# constants already while pytest collects; keep them in the temp folder rather than ./.hypothesis.
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "gsa-nas-hypothesis")

STUDIES_DIR = shipped_studies_dir()
SHIPPED: dict[str, dict[str, Any]] = {p.stem: yaml.safe_load(p.read_text(encoding="utf-8"))
                                      for p in sorted(STUDIES_DIR.glob("*.yaml"))}
SHIPPED_TEXT: dict[str, str] = {p.stem: p.read_text(encoding="utf-8") for p in sorted(STUDIES_DIR.glob("*.yaml"))}
CIFAR_ROOT = "@CIFAR_ROOT@"  # stands for the fake archive folder, filled in when a document is written

# Examples tried per test; together at least 200 documents and 200 --set strings.
DOCUMENT_EXAMPLES = {"random": 80, "shaped": 80, "mutated": 150, "edge": 250, "spliced": 80}
SET_EXAMPLES = 400
FUZZ = settings(deadline=None, derandomize=True, database=None, print_blob=False,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def fuzz(examples: int) -> settings:
    return settings(FUZZ, max_examples=examples)


TRIED = {"documents": 0, "sets": 0, "loaded": 0, "refused": 0}
FINISHED: set[str] = set()

# ---------------------------------------------------------------- the vocabulary of study files

NETWORK_KEYS = ["gsa.heads", "gsa.dim_key", "gsa.extent", "gsa.content", "gsa.positional", "gsa.query_norm",
                "gsa.axial_order", "gsa.out_proj", "gsa.bogus", "stages.1.heads", "stages.2.extent",
                "stages.3.width", "stages.4.op", "stages.0.depth", "stages.x.heads", "width_mult",
                "gsa_stages", "depths", "input_size", "stem_width", "expansion", "in_chans", "num_classes"]
SECTION_KEYS = ["name", "root", "seed", "augment", "variant", "choice", "int", "float", "step", "log", "when",
                "cpu", "gpu", "max_gmacs", "max_params", "val_acc", "gmacs", "test_acc", "grace_period",
                "n_startup_trials", "n_warmup_steps", "population_size", "reduction_factor", "both", "conv",
                "model.variant", "train.lr", "train.epochs", "data.name"]
KEY_WORDS = [*COMMON_KEYS, *ABLATION_KEYS, *SEARCH_KEYS, *TRAIN_KEYS, *NETWORK_KEYS, *SECTION_KEYS]
VALUE_WORDS = ["ablation", "search", "digits", "cifar10", "cifar100", "gsa_resnet_tiny", "resnet_tiny",
               "gsa_resnet26_cifar", "adamw", "sgd", "cosine", "constant", "tpe", "random", "grid", "cmaes",
               "nsga2", "median", "percentile", "successive_halving", "hyperband", "asha", "none", "max", "min",
               "global", "gsa", "conv", "both", "1e-4", "3.0e-3", "0.5", "-1", "", " ", "~/nowhere", "../x",
               "a/b", "x y", "é", "nan", "inf"]

SCALARS = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-3, max_value=20),
    st.integers(), st.sampled_from([2**31, 2**63, -(2**63), 10**40, 10**400]),
    st.floats(), st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -0.0, 1e-320, 1e308, 0.25, 0.5, 1.5]),
    st.text(max_size=12), st.sampled_from(VALUE_WORDS),
    st.dates(min_value=datetime.date(1, 1, 1)), st.binary(max_size=4),
)
KEYS = st.one_of(st.sampled_from(KEY_WORDS), st.text(max_size=10), st.integers(min_value=-3, max_value=5),
                 st.booleans(), st.none(), st.floats(allow_nan=False), st.dates())
VALUES = st.recursive(SCALARS, lambda kids: st.lists(kids, max_size=4) | st.dictionaries(KEYS, kids, max_size=4),
                      max_leaves=12)


def _subtrees(value: Any) -> list[Any]:
    """Every value in a document, whole sections included (the pool that mutations swap in)."""
    out = [value]
    if isinstance(value, dict):
        for v in value.values():
            out += _subtrees(v)
    elif isinstance(value, list):
        for v in value:
            out += _subtrees(v)
    return out


SHIPPED_VALUES = [v for doc in SHIPPED.values() for v in _subtrees(doc)[1:]]
# Plausible values of each top-level key, as the shipped studies write them.
TOP_VALUES: dict[str, list[Any]] = {}
for _doc in SHIPPED.values():
    for _k, _v in _doc.items():
        TOP_VALUES.setdefault(_k, []).append(_v)
ANY_VALUE = st.one_of(VALUES, st.sampled_from(SHIPPED_VALUES).map(copy.deepcopy))

# ---------------------------------------------------------------- documents


def _with_cifar_root(doc: Any, root: Path) -> Any:
    """The placeholder data.root of the cifar studies pointed at the fake archive."""
    data = doc.get("data") if isinstance(doc, dict) else None
    if isinstance(data, dict) and data.get("root") == CIFAR_ROOT:
        data["root"] = str(root)
    return doc


def _shipped(name: str) -> dict[str, Any]:
    doc = copy.deepcopy(SHIPPED[name])
    if isinstance(doc.get("data"), dict) and "root" in doc["data"]:
        doc["data"]["root"] = CIFAR_ROOT
    return doc


@st.composite
def shaped_documents(draw: st.DrawFn) -> dict[str, Any]:
    """A document with study-like top-level keys, each a shipped value or a random one."""
    doc: dict[str, Any] = {}
    for key in draw(st.lists(st.sampled_from(list(TOP_VALUES) + ["shedular", "epochs", "heads"]), unique=True)):
        pool = TOP_VALUES.get(key)
        doc[key] = draw(st.sampled_from(pool).map(copy.deepcopy) | VALUES) if pool else draw(VALUES)
    if draw(st.booleans()):
        doc["kind"] = draw(st.sampled_from(["ablation", "search"]))
    return doc


def _containers(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], Any]]:
    """(path, container) of every mapping and list in a document, the document first."""
    out: list[tuple[tuple[Any, ...], Any]] = []
    if isinstance(value, (dict, list)):
        out.append((path, value))
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for k, v in items:
            out += _containers(v, (*path, k))
    return out


@st.composite
def mutated_studies(draw: st.DrawFn) -> dict[str, Any]:
    """A shipped study with 1-3 edits: a key deleted or renamed, a value replaced, junk inserted."""
    doc = _shipped(draw(st.sampled_from(sorted(SHIPPED))))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        _, box = draw(st.sampled_from(_containers(doc)))
        op = draw(st.sampled_from(["delete", "replace", "replace", "rename", "insert"]))
        keys = list(box) if isinstance(box, dict) else list(range(len(box)))
        if op == "insert" or not keys:
            if isinstance(box, dict):
                box[draw(KEYS)] = draw(ANY_VALUE)
            else:
                box.insert(draw(st.integers(min_value=0, max_value=len(box))), draw(ANY_VALUE))
            continue
        key = draw(st.sampled_from(keys))
        if op == "delete":
            del box[key]
        elif op == "replace":
            box[key] = draw(ANY_VALUE)
        elif isinstance(box, dict):  # rename: a near miss, another real key, or anything
            new = draw(st.one_of(st.sampled_from(KEY_WORDS), KEYS,
                                 st.just(f"{key}s"), st.just(str(key)[:-1]), st.just(str(key).upper())))
            box[new] = box.pop(key)
        else:
            box[key], box[-1] = box[-1], box[key]
    return doc


# Values that each reader must refuse or take, put at one place of a valid study at a time.
EDGE_VALUES = [None, True, False, 0, -1, 1, 3, 2**63, 10**400, -(10**400), 0.5, -0.0, 1e-320, 1e308, math.nan,
               math.inf, -math.inf, "", " ", "x", "1e-4", "global", "tpe", "a\nb", "a\x00b", "~", "../..", [], [None],
               [1, 2], [[1], [2]], {}, {"a": 1}, {1: 2}, {None: None}, {"choice": []}, datetime.date(2020, 1, 1),
               b"\x00"]


def _places(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """The path of every value below the document (mapping keys and list indices)."""
    out: list[tuple[Any, ...]] = [path] if path else []
    if isinstance(value, (dict, list)):
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for k, v in items:
            out += _places(v, (*path, k))
    return out


PLACES = [(name, place) for name in sorted(SHIPPED) for place in _places(SHIPPED[name])]


@st.composite
def edged_studies(draw: st.DrawFn) -> dict[str, Any]:
    """A shipped study with the value at one place replaced by an edge value (or a random one)."""
    name, place = draw(st.sampled_from(PLACES))
    doc = _shipped(name)
    box = doc
    for k in place[:-1]:
        box = box[k]
    box[place[-1]] = draw(st.sampled_from(EDGE_VALUES).map(copy.deepcopy) | VALUES)
    return doc


# YAML-ish pieces: flow syntax, tags, anchors, aliases, timestamps, numbers YAML 1.1 reads oddly.
FRAGMENTS = ["[", "]", "{", "}", ", ", ": ", " ", "-", "1", "0", "-3", "0.5", "1e-4", "1.0e+3", ".inf", "-.inf",
             ".nan", "true", "no", "null", "~", "global", "tpe", "asha", "digits", "'", '"', "&a ", "*a", "*b",
             "!!int ", "!!float ", "!!str ", "!!bool ", "!!set ", "!!binary ", "!!timestamp ", "!!omap ",
             "!!python/tuple ", "!custom ", "2020-13-45", "2020-02-30", "2020-01-01", "2001-12-14t21:59:43.10-05:00",
             "12:30:00", "0x1F", "0o17", "1_000", "#", "\\n", "\n", "\n  ", "|", ">", "- ", "? ", "%", "@", "`",
             "<<: ", "10000000000000000000000", "1e400", "=", "a.b"]
YAMLISH = st.lists(st.sampled_from(FRAGMENTS), max_size=8).map("".join)


@st.composite
def spliced_texts(draw: st.DrawFn) -> str:
    """A shipped study's text with one value replaced by YAML-ish text, or a new line of it."""
    lines = SHIPPED_TEXT[draw(st.sampled_from(["quickstart", "search_digits"]))].splitlines()
    i = draw(st.integers(min_value=0, max_value=len(lines) - 1))
    head, colon, _ = lines[i].partition(": ")
    if colon and draw(st.booleans()):
        lines[i] = f"{head}: {draw(YAMLISH)}"
    else:
        lines.insert(i, draw(YAMLISH))
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- checks


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder for the fuzzed files, with an empty (but complete) cifar10 and cifar100 archive."""
    root = tmp_path_factory.mktemp("fuzz_studies")
    archive = root / "cifar"
    (archive / "cifar-100-python").mkdir(parents=True)
    for f in ("train", "test", "meta"):
        (archive / "cifar-100-python" / f).write_bytes(b"")
    (archive / "cifar-10-batches-py").mkdir()
    for f in (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta"):
        (archive / "cifar-10-batches-py" / f).write_bytes(b"")
    return root


def _check_file_outcome(path: Path) -> None:
    """load_study(path) gives a Study, or a one-line StudyError that starts with the path."""
    TRIED["documents"] += 1
    try:
        study = load_study(str(path))
    except StudyError as err:
        message = str(err)
        assert message.startswith(f"{path}: "), message
        assert message.splitlines() == [message], message
        assert message.strip() != f"{path}:", message
        TRIED["refused"] += 1
        return
    TRIED["loaded"] += 1
    assert isinstance(study, Study)
    assert study.source == str(path)


def _write_doc(study_dir: Path, doc: Any) -> Path:
    text = yaml.safe_dump(_with_cifar_root(doc, study_dir / "cifar"), sort_keys=False, allow_unicode=True)
    return _write_text(study_dir, text)


def _write_text(study_dir: Path, text: str) -> Path:
    path = study_dir / f"study_{TRIED['documents']}.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@fuzz(DOCUMENT_EXAMPLES["random"])
@given(doc=st.one_of(st.dictionaries(KEYS, VALUES, max_size=8), VALUES))
@example(doc={0: None})
def test_load_study_random_document_is_study_or_one_line(study_dir: Path, doc: Any) -> None:
    _check_file_outcome(_write_doc(study_dir, doc))
    FINISHED.add("random")


@fuzz(DOCUMENT_EXAMPLES["shaped"])
@given(doc=shaped_documents())
def test_load_study_shaped_document_is_study_or_one_line(study_dir: Path, doc: dict[str, Any]) -> None:
    _check_file_outcome(_write_doc(study_dir, doc))
    FINISHED.add("shaped")


@fuzz(DOCUMENT_EXAMPLES["mutated"])
@given(doc=mutated_studies())
@example(doc={**_shipped("quickstart"), "variants": {"both": {"width_mult": math.inf}}})
@example(doc={**_shipped("search_digits"), "space": {"width_mult": {"float": [0.5, 1e308]}}})
def test_load_study_mutated_shipped_study_is_study_or_one_line(study_dir: Path, doc: dict[str, Any]) -> None:
    _check_file_outcome(_write_doc(study_dir, doc))
    FINISHED.add("mutated")


@fuzz(DOCUMENT_EXAMPLES["edge"])
@given(doc=edged_studies())
@example(doc={**_shipped("quickstart"), "train": {"epochs": 10, "lr": 10**400}})
@example(doc={**_shipped("search_digits"), "space": {"width_mult": {"float": [0.5, 1.5], "log": True, "step": 1}}})
@example(doc={**_shipped("ablation_stages_cifar100"), "data": {"name": "cifar100", "root": "~a\x00b"}})
@example(doc={**_shipped("ablation_stages_cifar100"), "data": {"name": "cifar100", "root": "a\nb"}})
def test_load_study_shipped_study_with_one_edge_value_is_study_or_one_line(study_dir: Path,
                                                                            doc: dict[str, Any]) -> None:
    _check_file_outcome(_write_doc(study_dir, doc))
    FINISHED.add("edge")


@fuzz(DOCUMENT_EXAMPLES["spliced"])
@given(text=spliced_texts())
@example(text=SHIPPED_TEXT["quickstart"].replace("epochs: 10", "epochs: 2020-13-45"))
@example(text=SHIPPED_TEXT["quickstart"].replace("epochs: 10", "epochs: !!int ten"))
@example(text=SHIPPED_TEXT["quickstart"].replace("epochs: 10", "epochs: !!bool maybe"))
@example(text=SHIPPED_TEXT["quickstart"].replace("epochs: 10", "epochs: !!timestamp x"))
@example(text=SHIPPED_TEXT["quickstart"].replace("both: {}", "both: {gsa_stages: &a [1, *a]}"))
@example(text="seeds: " + "[" * 2000 + "]" * 2000 + "\n")
def test_load_study_spliced_yaml_text_is_study_or_one_line(study_dir: Path, text: str) -> None:
    _check_file_outcome(_write_text(study_dir, text))
    FINISHED.add("spliced")


# ---------------------------------------------------------------- --set strings

SET_KEYS = ["train.epochs", "train.lr", "train.warmup_epochs", "train.optimizer", "train.amp", "epochs", "lr",
            "gsa.heads", "gsa.extent", "gsa.positional", "gsa.haeds", "heads", "stages.2.extent", "stages.1.heads",
            "stages.9.heads", "stages.x.heads", "width_mult", "gsa_stages", "depths", "model.variant",
            "model.gsa.heads", "data.name", "data.root", "data.seed", "seeds", "name", "kind", "description",
            "baseline", "variants.both.gsa.heads", "variants.x.gsa.heads", "variants.conv.model.variant",
            "variants.both.train.lr", "variants.new", "variants", "space.gsa.heads", "space.width_mult",
            "space.train.lr", "space", "sampler.name", "sampler.seed", "sampler.n_startup_trials", "pruner.name",
            "pruner.grace_period", "num_samples", "objectives", "objectives.gmacs", "constraints.max_gmacs",
            "max_concurrent", "max_failures", "max_rejections", "resources.gpu", "resources.cpu", "model"]
SET_VALUES = st.one_of(
    YAMLISH,
    st.text(max_size=12),
    VALUES.map(lambda v: yaml.safe_dump(v, default_flow_style=True, allow_unicode=True, sort_keys=False)
               .strip().removesuffix("...").strip()),  # may wrap lines: a value can be typed over lines
    st.sampled_from(["3", "0", "-1", "2.5", "1e-4", "true", "global", "[2, 3]", "[0, 1]", "{choice: [1, 2]}",
                     "{float: [0.5, 1.0]}", "asha", "grid", "cmaes", "nsga2", "median", "resnet_tiny", "[1,",
                     "{a: 1", "'x", "]", "0,1", "null", ""]),
)
SET_TEXTS = st.builds(lambda key, sep, value: f"{key}{sep}{value}",
                      st.one_of(st.sampled_from(SET_KEYS), st.text(max_size=8),
                                st.sampled_from(SET_KEYS).map(lambda k: f" {k} ")),
                      st.sampled_from(["=", "=", "=", "=", "", " = ", "=="]), SET_VALUES)


def _check_sets_outcome(study: str, items: list[str]) -> None:
    """_parse_sets then load_study: a Study, or one line naming the --set or the study file."""
    TRIED["sets"] += len(items)
    try:
        overrides = _parse_sets(items)
    except ValueError as err:
        message = str(err)
        assert type(err) is ValueError, message
        assert message.startswith("--set "), message
        assert message.splitlines() == [message], message
        return
    path = str(STUDIES_DIR / f"{study}.yaml")
    try:
        result = load_study(study, overrides)
    except StudyError as err:
        message = str(err)
        assert message.startswith(f"{path}: ") or (message.startswith("--set ") and f" on {path}: " in message), \
            message
        assert message.splitlines() == [message], message
        TRIED["refused"] += 1
        return
    TRIED["loaded"] += 1
    assert isinstance(result, Study)
    assert result.source == path


@fuzz(SET_EXAMPLES // 2)
@given(items=st.lists(SET_TEXTS, min_size=1, max_size=3))
@example(items=["train.epochs=2020-13-45"])
@example(items=['train.epochs="a\\nb"'])
@example(items=["seeds=[" + ", ".join(map(str, range(40))) + ", -1]"])
@example(items=["stages.\u00b2.heads=2"])
@example(items=["variants.both.gsa_stages=&a [1, *a]"])
@example(items=["  =3"])
@example(items=["train.epochs=!!bool maybe", "x=!!timestamp y"])
@example(items=["k\x1e=[1"])
def test_load_study_quickstart_with_random_sets_is_study_or_one_line(items: list[str]) -> None:
    _check_sets_outcome("quickstart", items)
    FINISHED.add("sets_quickstart")


@fuzz(SET_EXAMPLES // 2)
@given(items=st.lists(SET_TEXTS, min_size=1, max_size=3))
@example(items=["space.width_mult={float: [0.5, .inf]}"])
def test_load_study_search_digits_with_random_sets_is_study_or_one_line(items: list[str]) -> None:
    _check_sets_outcome("search_digits", items)
    FINISHED.add("sets_search_digits")


# ---------------------------------------------------------------- what the fuzzing found, one test each

QUICKSTART = SHIPPED_TEXT["quickstart"]
LAUGHS = "\n".join(["x0: &a0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"] +
                   [f"x{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]) + "\n"
# (case id, study text, the error after `<file>: `)
FOUND_IN_FILES = [
    ("non_string_top_key", "0: null\n", "key 0 must be a string; quote it"),
    ("impossible_date", QUICKSTART.replace("epochs: 10", "epochs: 2020-13-45"),
     "unreadable YAML: a value YAML cannot build (ValueError: month must be in 1..12); fix the value "
     "(YAML is read with safe_load)"),
    ("bad_bool_tag", QUICKSTART.replace("epochs: 10", "epochs: !!bool maybe"),
     "unreadable YAML: a value YAML cannot build (KeyError: 'maybe'); fix the value (YAML is read with safe_load)"),
    ("alias_inside_its_anchor", QUICKSTART.replace("both: {}", "both: {gsa_stages: &a [1, *a]}"),
     "variants.both.gsa_stages[1]: contains itself (a YAML alias inside its own anchor, like &a [*a]); "
     "write the value out"),
    ("nested_too_deeply_to_read", "seeds: " + "[" * 2000 + "]" * 2000 + "\n",
     "unreadable YAML: nested too deeply to read; a study needs a few levels"),
    ("nested_too_deeply", "seeds: " + "[" * 40 + "]" * 40 + "\n",
     "seeds" + "[0]" * 31 + ": is nested more than 32 levels deep; a study needs a few levels"),
    ("billion_laughs", LAUGHS,
     "holds more than 100000 values once YAML aliases are expanded; a study needs far fewer "
     "(write values out instead of nesting aliases)"),
    ("infinite_width_mult", QUICKSTART.replace("both: {}", "both: {width_mult: .inf}"),
     "variants.both.width_mult: inf gives an impossible network: cannot convert float infinity to integer"),
    ("int_beyond_float", QUICKSTART.replace("lr: 3.0e-3", "lr: 1" + "0" * 400),
     "train.lr: 1" + "0" * 400 + " must be a finite number"),
    ("float_log_step_1", SHIPPED_TEXT["search_digits"].replace("{float: [0.5, 1.5], step: 0.25}",
                                                               "{float: [0.5, 1.5], step: 1, log: true}"),
     "space.width_mult.step: 1.0 cannot be combined with log: true (Optuna's rule)"),
    ("root_with_nul", QUICKSTART.replace("data: {name: digits, seed: 0}", 'data: {name: cifar10, root: "~a\\0b"}'),
     "data.root: '~a\\x00b' is not a usable path (embedded null byte); point data.root at the cifar10 "
     "python-pickle archive"),
]


@pytest.mark.parametrize("text, expected", [c[1:] for c in FOUND_IN_FILES], ids=[c[0] for c in FOUND_IN_FILES])
def test_load_study_found_by_fuzzing_is_one_line(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "study.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(StudyError) as caught:
        load_study(str(path))
    assert str(caught.value) == f"{path}: {expected}"


def test_load_study_root_with_line_break_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "study.yaml"
    path.write_text(QUICKSTART.replace("data: {name: digits, seed: 0}", 'data: {name: cifar10, root: "a\\nb"}'))
    with pytest.raises(StudyError) as caught:
        load_study(str(path))
    expanded = Path.cwd() / "a\\nb"  # the line break escaped, as it is shown
    assert str(caught.value) == (f"{path}: data.root: 'a\\nb' (= {expanded}) is not an existing directory; put the "
                                 f"cifar10 python-pickle archive there or point data.root at it")


QUICKSTART_PATH = STUDIES_DIR / "quickstart.yaml"
# (case id, --set items, the one ValueError/StudyError line)
FOUND_IN_SETS = [
    ("impossible_date", ["train.epochs=2020-13-45"],
     "--set train.epochs=2020-13-45: the value is YAML that cannot be built (ValueError: month must be in 1..12); "
     "fix it, or quote it to pass it as text"),
    ("bad_timestamp_tag", ["x=!!timestamp y"],
     "--set x=!!timestamp y: the value is YAML that cannot be built (AttributeError: 'NoneType' object has no "
     "attribute 'groupdict'); fix it, or quote it to pass it as text"),
    ("blank_key", ["  =3"], "--set expects key=value, but got '  =3'"),
    ("control_character", ["k\x1e=[1"],
     "--set 'k\\x1e=[1': the value is not valid YAML (expected ',' or ']', but got '<stream end>'); quote lists "
     "and mappings, e.g. --set \"seeds=[0, 1]\""),
    ("line_break_in_value", ['train.epochs="a\\nb"'],
     f'--set train.epochs="a\\nb" on {QUICKSTART_PATH}: train.epochs: \'a\\nb\' must be an integer'),
    ("long_list", ["seeds=[" + ", ".join(map(str, range(40))) + ", -1]"],
     f"--set seeds=[{', '.join(map(str, range(40)))}, -1] on {QUICKSTART_PATH}: seeds[40]: -1 must be a "
     f"non-negative integer"),
    ("stage_number_not_decimal", ["stages.\u00b2.heads=2"],
     f"--set stages.\u00b2.heads=2 on {QUICKSTART_PATH}: model.stages.\u00b2.heads: invalid literal for int() with "
     f"base 10: '\u00b2'"),
    ("alias_inside_its_anchor", ["variants.both.gsa_stages=&a [1, *a]"],
     f"--set variants.both.gsa_stages=&id001 [1, *id001] on {QUICKSTART_PATH}: variants.both.gsa_stages[1]: "
     f"contains itself (a YAML alias inside its own anchor, like &a [*a]); write the value out"),
]


@pytest.mark.parametrize("items, expected", [c[1:] for c in FOUND_IN_SETS], ids=[c[0] for c in FOUND_IN_SETS])
def test_parse_sets_then_load_study_found_by_fuzzing_is_one_line(items: list[str], expected: str) -> None:
    with pytest.raises(ValueError) as caught:
        load_study("quickstart", _parse_sets(items))
    assert str(caught.value) == expected


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_fuzz_base_shipped_study_loads(study_dir: Path, name: str) -> None:
    """The mutations start from valid documents (the cifar ones on the empty archive)."""
    path = study_dir / f"base_{name}.yaml"
    path.write_text(yaml.safe_dump(_with_cifar_root(_shipped(name), study_dir / "cifar"), sort_keys=False))
    assert load_study(str(path)).name == name


def test_fuzz_tried_at_least_200_documents_and_200_sets() -> None:
    """Runs last (file order): how much the fuzz tests above tried, when all of them ran."""
    if FINISHED != {*DOCUMENT_EXAMPLES, "sets_quickstart", "sets_search_digits"}:
        pytest.skip("counts only when the whole module runs")
    print(f"\nfuzzed {TRIED['documents']} study documents and {TRIED['sets']} --set strings: "
          f"{TRIED['loaded']} loaded, {TRIED['refused']} refused by load_study, the rest by _parse_sets")
    assert TRIED["documents"] >= 200
    assert TRIED["sets"] >= 200
