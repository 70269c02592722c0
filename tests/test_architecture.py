"""The import structure of gsa_space, search, reports and studies: no cycles, imports point one way.

`search` may import `reports` and `gsa_space`; `reports` may import `gsa_space`, but neither
`search` nor Ray; `gsa_space` imports none of `search`, `reports`, Ray or Optuna; `studies`
(YAML files as package data) imports nothing of ours; only `search.tune` imports Ray. Imports
inside functions and under TYPE_CHECKING count.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from import_graph import cycles, import_graph, layer_violations

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("gsa_space", "search", "reports", "studies")
# Modules loaded by name through importlib: search.tune's lazy attributes (see its __init__), and
# the shipped study files, read as package data of `studies` (importlib.resources).
DECLARED = {"search.tune": ("search.tune.tuner", "search.tune.ledger", "search.tune.trainable"),
            "search.study.files": ("studies",)}
FORBIDDEN = {
    "gsa_space": ("search", "reports", "ray", "optuna"),
    "reports": ("search", "ray"),
    "studies": ("gsa_space", "search", "reports", "ray", "optuna"),  # data, no code
}
ONLY_FROM = {"ray": "search.tune"}


@pytest.fixture(scope="module")
def graph():
    return import_graph(ROOT, PACKAGES, DECLARED)


def test_architecture_has_no_import_cycles(graph):
    assert cycles(graph) == []


def test_architecture_layers_point_one_way(graph):
    assert layer_violations(graph, FORBIDDEN, ONLY_FROM) == []


def test_architecture_graph_sees_function_level_and_type_checking_imports(graph):
    # search.runner imports gsa_space.complexity inside a function; search.train_loop imports
    # search.study under TYPE_CHECKING: both must be edges, or the checks above see too little.
    assert "gsa_space.complexity" in graph.edges["search.runner"]
    assert "search.study" in graph.edges["search.train_loop"]


def test_architecture_declared_importlib_edges_name_real_modules(graph):
    for source, targets in DECLARED.items():
        assert set(targets) <= set(graph.edges), f"{source}: declared edges to modules that do not exist"


def _package(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_checker_finds_a_cycle_hidden_in_a_function(tmp_path):
    _package(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "from pkg.b import helper\n",
        "pkg/b.py": "def helper():\n    from pkg import a  # dodges the cycle at import time\n    return a\n",
        "pkg/c.py": "import pkg.a\n",
    })
    assert cycles(import_graph(tmp_path, ["pkg"])) == [["pkg.a", "pkg.b"]]


def test_checker_finds_a_cycle_under_type_checking_and_relative_imports(tmp_path):
    _package(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/sub/__init__.py": "",
        "pkg/sub/x.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..y import Y\n",
        "pkg/y.py": "from .sub.x import X\n",
    })
    assert cycles(import_graph(tmp_path, ["pkg"])) == [["pkg.sub.x", "pkg.y"]]


def test_checker_finds_a_layer_violation(tmp_path):
    _package(tmp_path, {
        "low/__init__.py": "", "low/m.py": "def f():\n    import high.n\n    import ray\n",
        "high/__init__.py": "", "high/n.py": "import low.m\n",
    })
    graph = import_graph(tmp_path, ["low", "high"])
    assert layer_violations(graph, {"low": ("high",)}, {"ray": "high"}) == [
        "low.m imports high.n", "low.m imports ray (only high may)"]
