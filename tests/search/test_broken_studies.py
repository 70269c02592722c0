"""Broken study files through the real CLI: exit code 2, one line naming file and key path, no run dir.

Each case edits a small valid study (ablation or search), writes it to tmp_path, and runs
`python -m search.cli validate FILE` and `python -m search.cli run FILE --out RUNS` as subprocesses.
"""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]

ABLATION: dict[str, Any] = {
    "name": "broken", "kind": "ablation", "data": {"name": "digits"},
    "model": {"variant": "gsa_resnet_tiny"}, "train": {"epochs": 1, "batch_size": 64},
    "seeds": [0], "baseline": "both",
    "variants": {"both": {}, "content_only": {"gsa.positional": False}},
    "resources": {"cpu": 1, "gpu": 0}, "max_concurrent": 1,
}
SEARCH: dict[str, Any] = {
    "name": "broken_search", "kind": "search", "data": {"name": "digits"},
    "model": {"variant": "gsa_resnet_tiny"}, "train": {"epochs": 2},
    "space": {"gsa.heads": {"choice": [1, 2]}, "width_mult": {"float": [0.5, 1.0], "step": 0.25}},
    "sampler": {"name": "tpe", "seed": 0}, "num_samples": 2, "objectives": {"val_acc": "max"},
    "pruner": {"name": "none"}, "max_concurrent": 1,
}


def _edit(base: dict[str, Any], change: Callable[[dict[str, Any]], None] | None) -> dict[str, Any]:
    doc = copy.deepcopy(base)
    if change is not None:
        change(doc)
    return doc


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """An edit that sets doc[a][b] for path 'a/b' (slashes, because keys hold dots)."""
    def change(doc: dict[str, Any]) -> None:
        *heads, last = path.split("/")
        for h in heads:
            doc = doc.setdefault(h, {})
        doc[last] = value
    return change


# (case id, base document or raw text, edit, text the one error line must contain besides the file)
CASES: list[tuple[str, Any, Any, str]] = [
    ("unreadable_yaml", "name: x\nkind: ablation\ntrain: {epochs: 3\n", None, "unreadable YAML at line"),
    ("unknown_top_key", ABLATION, _set("shedular", {"name": "cosine"}), "unknown key 'shedular' at top level"),
    ("wrong_type_epochs", ABLATION, _set("train/epochs", "ten"), "train.epochs: 'ten' must be an integer"),
    ("negative_epochs", ABLATION, _set("train/epochs", -3), "train.epochs: -3 must be a positive integer"),
    ("lr_not_a_number", ABLATION, _set("train/lr", "fast"), "train.lr: 'fast' must be a number"),
    ("heads_not_dividing", ABLATION, _set("variants/h3", {"gsa.heads": 3}), "variants.h3.gsa.heads: 3"),
    ("even_extent", ABLATION, _set("variants/e4", {"gsa.extent": 4}), "variants.e4.gsa.extent: 4"),
    ("both_branches_off", ABLATION, _set("variants/off", {"gsa.content": False, "gsa.positional": False}),
     "variants.off.gsa.positional: False"),
    ("unknown_network", ABLATION, _set("model/variant", "gsa_resnet62"), "model.variant: 'gsa_resnet62'"),
    ("unknown_train_key_in_variant", ABLATION, _set("variants/slow", {"train.lrr": 0.1}), "variants.slow.train.lrr"),
    ("empty_variants", ABLATION, _set("variants", {}), "variants: an ablation needs at least one variant"),
    ("baseline_not_a_variant", ABLATION, _set("baseline", "conv"), "baseline: 'conv' is not among the variants"),
    ("unknown_dataset", ABLATION, _set("data/name", "mnist"), "data.name: unknown data set 'mnist'"),
    ("missing_data_dir", ABLATION, _set("data", {"name": "cifar10", "root": "/nonexistent/cifar"}),
     "data.root: '/nonexistent/cifar'"),
    ("digits_with_root", ABLATION, _set("data/root", "/tmp"), "data.root: '/tmp' given"),
    ("duplicate_seeds", ABLATION, _set("seeds", [0, 0]), "seeds: [0, 0] repeats a seed"),
    ("search_keys_in_ablation", ABLATION, _set("num_samples", 4), "num_samples: given, but only a search"),
    ("unknown_sampler", SEARCH, _set("sampler/name", "bayes"), "sampler.name: unknown sampler 'bayes'"),
    ("unknown_sampler_option", SEARCH, _set("sampler/n_startup", 3), "unknown key 'n_startup' in sampler"),
    ("unknown_pruner", SEARCH, _set("pruner/name", "early"), "pruner.name: unknown pruner 'early'"),
    ("objective_without_direction", SEARCH, _set("objectives", {"val_acc": None}),
     "objectives.val_acc: no direction"),
    ("objective_as_list", SEARCH, _set("objectives", ["val_acc"]), "objectives: ['val_acc'] gives no direction"),
    ("test_acc_objective", SEARCH, _set("objectives", {"test_acc": "max"}), "objectives.test_acc: test accuracy"),
    ("optuna_pruner_multi_objective", SEARCH,
     lambda d: d.update(objectives={"val_acc": "max", "gmacs": "min"}, pruner={"name": "median"}),
     "pruner.name: 'median' needs one intermediate value"),
    ("cmaes_with_choice", SEARCH, _set("sampler/name", "cmaes"), "sampler.name: 'cmaes' handles only"),
    ("grid_with_range", SEARCH, _set("sampler/name", "grid"), "space.width_mult: is a range"),
    ("space_even_extent", SEARCH, _set("space/gsa.extent", {"choice": [3, 4]}), "space.gsa.extent: value 4"),
    ("condition_on_unknown_key", SEARCH, _set("space/gsa.extent", {"choice": [3], "when": {"gsa.pos": True}}),
     "space.gsa.extent.when: 'gsa.pos'"),
    ("range_low_above_high", SEARCH, _set("space/width_mult", {"float": [1.5, 0.5]}), "space.width_mult.float"),
    ("log_range_with_zero", SEARCH, _set("space/train.lr", {"float": [0, 0.1], "log": True}), "space.train.lr.float"),
    ("variants_in_search", SEARCH, _set("variants", {"a": {}}), "variants: given, but only an ablation"),
]


def _write(tmp_path: Path, base: Any, edit: Any) -> Path:
    path = tmp_path / "study.yaml"
    if isinstance(base, str):
        path.write_text(base)
    else:
        path.write_text(yaml.safe_dump(_edit(base, edit), sort_keys=False))
    return path


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "search.cli", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("command", ["validate", "run"])
@pytest.mark.parametrize("case, base, edit, expected", CASES, ids=[c[0] for c in CASES])
def test_broken_study_fails_with_one_line(tmp_path: Path, command: str, case: str, base: Any, edit: Any,
                                          expected: str) -> None:
    path = _write(tmp_path, base, edit)
    runs = tmp_path / "runs"
    args = ["validate", str(path)] if command == "validate" else ["run", str(path), "--out", str(runs)]
    proc = _cli(*args)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert lines[0].startswith(f"gsa-nas: error: {path}: ")
    assert expected in lines[0]
    assert proc.stdout == ""
    assert not runs.exists()


def test_broken_study_cases_cover_at_least_sixteen_problems() -> None:
    assert len({c[0] for c in CASES}) == len(CASES) >= 16


# (case id, --set items on the valid ablation, text the one error line must contain after `--set ITEM on FILE: `)
SET_CASES: list[tuple[str, list[str], str]] = [
    ("seeds_as_text", ["seeds=0,1"], 'seeds: \'0,1\' must be a non-empty list of integers, e.g. --set "seeds=[0, 1]"'),
    ("even_extent_shorthand", ["gsa.extent=4"], "model.gsa.extent: 4 gives an impossible network: "
                                                "stages.1.extent=4 must be an odd int >= 1 or 'global'"),
    ("heads_not_dividing_shorthand", ["stages.2.heads=3"], "model.stages.2.heads: 3 gives an impossible network: "
                                                           "stages.2.heads=3 must divide stages.2.width=32"),
    ("epochs_without_section", ["epochs=3"], "unknown key 'epochs' at top level; did you mean 'train.epochs'?"),
    ("zero_epochs", ["train.epochs=0"], "train.epochs: 0 must be a positive integer"),
    ("epochs_below_warmup", ["train.warmup_epochs=1", "train.epochs=1"],
     "train.warmup_epochs: 1 must be smaller than train.epochs (1)"),
]


@pytest.mark.parametrize("case, items, expected", SET_CASES, ids=[c[0] for c in SET_CASES])
def test_broken_set_blames_the_command_line(tmp_path: Path, case: str, items: list[str], expected: str) -> None:
    path = _write(tmp_path, ABLATION, None)
    args = ["validate", str(path)]
    for item in items:
        args += ["--set", item]
    proc = _cli(*args)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr == f"gsa-nas: error: --set {items[0]} on {path}: {expected}\n"
    assert proc.stdout == ""
