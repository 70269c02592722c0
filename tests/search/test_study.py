"""Unit tests of search.study: the shipped studies, YAML quirks, --set overrides, trials, round trips."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from search.study import (StudyError, TrainConfig, load_study, planned_trials, resolve_trial,
                          study_to_yaml)
from search.study.files import shipped_studies_dir
from search.study.schema import frozen

REPO = Path(__file__).resolve().parents[2]
SHIPPED = sorted(p.stem for p in shipped_studies_dir().glob("*.yaml"))

SMALL = """
name: small
kind: ablation
data: {name: digits}
model: {variant: gsa_resnet_tiny}
train: {epochs: 2, lr: 1e-4, weight_decay: 5e-4}
seeds: [3, 4]
baseline: both
variants:
  both: {}
  narrow: {width_mult: 0.5, train.lr: 2e-3}
  conv: {model.variant: resnet_tiny}
"""


def _write(tmp_path: Path, text: str, name: str = "study.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_shipped_studies_dir_is_the_top_level_studies_folder_in_the_source_tree() -> None:
    assert shipped_studies_dir() == REPO / "studies"  # the `studies` package (tests/test_packaging.py: installed)


def test_shipped_studies_are_the_six_promised() -> None:
    assert SHIPPED == ["ablation_branches_cifar100", "ablation_extent_cifar100", "ablation_stages_cifar100",
                       "quickstart", "search_cifar100", "search_digits"]


@pytest.mark.parametrize("name", [n for n in SHIPPED if "cifar" not in n])
def test_load_study_shipped_digits_study_loads(name: str) -> None:
    study = load_study(name)
    assert study.name == name
    assert study.data.name == "digits"
    assert study.source == str(shipped_studies_dir() / f"{name}.yaml")


@pytest.mark.parametrize("name", [n for n in SHIPPED if "cifar" in n])
def test_load_study_shipped_cifar_study_without_data_names_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                name: str) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(StudyError, match=r"studies/" + name + r"\.yaml: data\.root: '~/data/cifar-100-python' "
                                         r"\(= .*/data/cifar-100-python\) is not an existing directory"):
        load_study(name)


def test_load_study_cifar_root_expands_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    folder = tmp_path / "data" / "cifar-100-python"
    folder.mkdir(parents=True)
    for f in ("train", "test", "meta"):
        (folder / f).write_bytes(b"")
    assert load_study("ablation_extent_cifar100").data.root == str(folder)


def test_load_study_cifar_root_without_archive_files(tmp_path: Path) -> None:
    with pytest.raises(StudyError, match=r"data\.root: '.*': .*/train: missing file of the cifar100 archive"):
        load_study("ablation_stages_cifar100", {"data.root": str(tmp_path)})


@pytest.mark.parametrize("name", [n for n in SHIPPED if "cifar" in n])
def test_load_study_shipped_cifar_study_with_set_root_loads(tmp_path: Path, name: str) -> None:
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    for f in ("train", "test", "meta"):
        (folder / f).write_bytes(b"")
    study = load_study(name, {"data.root": str(tmp_path)})
    assert study.data.name == "cifar100"
    assert study.data.root == str(tmp_path)
    assert study.model.variant == "gsa_resnet26_cifar"


def test_load_study_quickstart_plans_variants_times_seeds() -> None:
    study = load_study("quickstart")
    assert [v.name for v in study.variants] == ["both", "content_only", "positional_only", "conv"]
    assert study.seeds == (0, 1, 2)
    assert study.baseline == "both"
    assert planned_trials(study)[:4] == [("both", 0), ("both", 1), ("both", 2), ("content_only", 0)]
    assert len(planned_trials(study)) == 12


def test_load_study_exponent_without_dot_reads_as_float(tmp_path: Path) -> None:
    study = load_study(str(_write(tmp_path, SMALL)))
    assert study.train.lr == 1e-4
    assert isinstance(study.train.lr, float)
    assert study.variant("narrow").overrides_dict() == {"width_mult": 0.5, "train.lr": 2e-3}


def test_load_study_set_overrides_apply_before_checks(tmp_path: Path) -> None:
    path = _write(tmp_path, SMALL)
    study = load_study(str(path), {"train.epochs": 5, "max_concurrent": 3, "variants.narrow.width_mult": 0.75,
                                   "model.gsa.heads": 2, "train.lr": "3e-3"})
    assert study.train.epochs == 5
    assert study.train.lr == 3e-3
    assert study.max_concurrent == 3
    assert study.variant("narrow").overrides_dict()["width_mult"] == 0.75
    assert study.model.overrides == (("gsa.heads", 2),)


def test_load_study_set_override_is_checked(tmp_path: Path) -> None:
    with pytest.raises(StudyError, match=r"study\.yaml: train\.epochs: 0 must be a positive integer$"):
        load_study(str(_write(tmp_path, SMALL)), {"train.epochs": 0})


def test_load_study_search_set_overrides() -> None:
    study = load_study("search_digits", {"num_samples": 4, "sampler.seed": 3, "pruner.name": "asha",
                                         "pruner.grace_period": 2})
    assert study.search.num_samples == 4
    assert study.search.sampler.seed == 3
    assert study.search.sampler.options == (("n_startup_trials", 6),)
    assert study.search.pruner.name == "asha"
    assert study.search.pruner.options == (("grace_period", 2),)


def test_load_study_set_sampler_name_drops_old_options_keeps_seed() -> None:
    sampler = load_study("search_digits", {"sampler.name": "random"}).search.sampler
    assert (sampler.name, sampler.seed, sampler.options) == ("random", 0, ())


def test_load_study_unknown_name_lists_shipped() -> None:
    with pytest.raises(StudyError, match=r"quickstrat: no such study file.*quickstart, search_cifar100"):
        load_study("quickstrat")


def test_load_study_grid_fills_num_samples(tmp_path: Path) -> None:
    text = """
kind: search
data: {name: digits}
model: {variant: gsa_resnet_tiny}
train: {epochs: 2}
space:
  gsa.heads: {choice: [1, 2]}
  gsa.extent: {choice: [3, 5, global]}
sampler: {name: grid}
"""
    study = load_study(str(_write(tmp_path, text, "grid.yaml")))
    assert study.name == "grid"
    assert study.search.num_samples == 6
    assert study.search.objectives == (("val_acc", "max"),)


@pytest.mark.parametrize("name", [n for n in SHIPPED if "cifar" not in n])
def test_study_to_yaml_round_trips(tmp_path: Path, name: str) -> None:
    study = load_study(name)
    path = _write(tmp_path, study_to_yaml(study), "resolved.yaml")
    again = load_study(str(path))
    assert again == replace(study, source=str(path))


def test_study_to_yaml_fills_defaults(tmp_path: Path) -> None:
    doc = yaml.safe_load(study_to_yaml(load_study(str(_write(tmp_path, SMALL)))))
    assert doc["train"]["optimizer"] == "adamw"
    assert doc["train"]["lr"] == 1e-4
    assert doc["resources"] == {"cpu": 1.0, "gpu": 0.0}
    assert doc["variants"]["conv"] == {"model.variant": "resnet_tiny"}


def test_resolve_trial_variant_sets_net_and_train(tmp_path: Path) -> None:
    study = load_study(str(_write(tmp_path, SMALL)))
    spec = resolve_trial(study, variant="narrow", seed=4, params={})
    assert spec.trial_key == "narrow-s4"
    assert spec.seed == 4
    assert [s.width for s in spec.net.stages] == [8, 16, 32]
    assert spec.net.input_size == (8, 8) and spec.net.in_chans == 1 and spec.net.num_classes == 10
    assert spec.train == replace(study.train, lr=2e-3)


def test_resolve_trial_conv_variant_switches_network() -> None:
    spec = resolve_trial(load_study("quickstart"), variant="conv", seed=0, params={})
    assert spec.net.name == "resnet_tiny"
    assert spec.net.gsa_stages == ()


def test_resolve_trial_search_params_are_typed() -> None:
    study = load_study("search_digits")
    params = {"gsa.heads": 2, "gsa.positional": False, "gsa_stages": (2, 3), "train.lr": 0.005,
              "train.epochs": 3.0}
    spec = resolve_trial(study, variant=None, seed=0, params=params)
    assert spec.train.epochs == 3 and isinstance(spec.train.epochs, int)
    assert spec.train.lr == 0.005
    assert spec.net.gsa_stages == (2, 3)
    assert [s.positional for s in spec.net.stages] == [False, False, False]
    assert spec.params == tuple(sorted(params.items()))
    assert spec.trial_key == resolve_trial(study, variant=None, seed=0, params=dict(params)).trial_key
    assert spec.trial_key != resolve_trial(study, variant=None, seed=1, params=params).trial_key


def test_resolve_trial_unknown_variant_names_known_ones() -> None:
    with pytest.raises(KeyError, match="unknown variant 'both2'"):
        resolve_trial(load_study("quickstart"), variant="both2", seed=0, params={})


def test_train_config_defaults_match_contract() -> None:
    t = TrainConfig(epochs=1)
    assert (t.batch_size, t.optimizer, t.lr, t.momentum, t.weight_decay) == (64, "adamw", 3e-3, 0.9, 5e-4)
    assert (t.label_smoothing, t.schedule, t.warmup_epochs, t.amp, t.channels_last) == (0.0, "cosine", 0, "bf16", True)


def _shipped_list() -> str:
    return ", ".join(SHIPPED)


def test_load_study_missing_path_names_the_path_as_given() -> None:
    with pytest.raises(StudyError) as err:
        load_study("studies/nope.yaml")
    assert str(err.value) == f"no such study file studies/nope.yaml (or give a study name: {_shipped_list()})"


def test_load_study_misspelt_name_suggests_the_closest_study() -> None:
    with pytest.raises(StudyError) as err:
        load_study("quikstart")
    assert str(err.value) == ("quikstart: no such study file, and no study named 'quikstart' in studies/; "
                              f"did you mean 'quickstart'? (studies/ holds: {_shipped_list()})")


def test_load_study_misspelt_path_suggests_a_sibling_file(tmp_path: Path) -> None:
    _write(tmp_path, SMALL, "quickstart.yaml")
    with pytest.raises(StudyError, match=r"^no such study file .*/quikstart\.yaml; did you mean "
                                         r"'.*/quickstart\.yaml'\?"):
        load_study(str(tmp_path / "quikstart.yaml"))


def test_load_study_bare_file_name_with_wrong_suffix_suggests_the_name() -> None:
    with pytest.raises(StudyError, match=r"^no such study file search_digits\.yml; did you mean 'search_digits'\?"):
        load_study("search_digits.yml")


def test_load_study_directory_is_not_a_study_file(tmp_path: Path) -> None:
    with pytest.raises(StudyError, match=r"/ is a directory, not a study file"):
        load_study(str(tmp_path) + "/")


def test_load_study_set_seeds_text_blames_the_command_line() -> None:
    with pytest.raises(StudyError) as err:
        load_study("search_digits", {"seeds": "0,1"})
    assert str(err.value) == (f"--set seeds=0,1 on {shipped_studies_dir() / 'search_digits.yaml'}: seeds: '0,1' must be "
                              'a non-empty list of integers, e.g. --set "seeds=[0, 1]"')


def test_load_study_file_error_does_not_mention_set(tmp_path: Path) -> None:
    path = _write(tmp_path, SMALL.replace("seeds: [3, 4]", "seeds: '3,4'"))
    with pytest.raises(StudyError) as err:
        load_study(str(path), {"train.epochs": 3})
    assert str(err.value) == f"{path}: seeds: '3,4' must be a non-empty list of integers, e.g. [0, 1, 2]"


@pytest.mark.parametrize("key, value, field", [("gsa.heads", 2, "gsa.heads"), ("stages.3.extent", 3, "stages.3.extent"),
                                               ("width_mult", 0.5, "width_mult"), ("gsa_stages", [2, 3], "gsa_stages")])
def test_load_study_set_network_shorthand_means_model_key(key: str, value: Any, field: str) -> None:
    assert load_study("quickstart", {key: value}).model.overrides == ((field, frozen(value)),)


def test_load_study_set_even_extent_shorthand_names_key_and_rule() -> None:
    with pytest.raises(StudyError, match=r"^--set gsa\.extent=4 on .*search_digits\.yaml: model\.gsa\.extent: 4 gives "
                                         r"an impossible network: stages\.1\.extent=4 must be an odd int"):
        load_study("search_digits", {"gsa.extent": 4})


def test_load_study_set_list_as_text_shows_list_syntax() -> None:
    with pytest.raises(StudyError, match=r"model\.gsa_stages: '2,3' gives an impossible network: .*gsa_stages='2,3'; "
                                         r'write a list on the command line as --set "gsa_stages=\[2, 3\]"$'):
        load_study("search_digits", {"gsa_stages": "2,3"})


@pytest.mark.parametrize("key, hint", [("epochs", "unknown key 'epochs' at top level; did you mean 'train.epochs'?"),
                                       ("heads", "unknown key 'heads' at top level; did you mean 'gsa.heads'?"),
                                       ("gsa.haeds", "model.gsa.haeds: unknown GSA field 'haeds'"),
                                       ("stages.2.extnt", "model.stages.2.extnt: unknown stage field 'extnt'")])
def test_load_study_set_misplaced_key_suggests_the_full_key(key: str, hint: str) -> None:
    with pytest.raises(StudyError) as err:
        load_study("search_digits", {key: 4})
    assert str(err.value).startswith(f"--set {key}=4 on ")
    assert hint in str(err.value)


def test_load_study_set_section_typo_keeps_did_you_mean() -> None:
    with pytest.raises(StudyError, match=r"^--set trian\.epochs=4 on .*: unknown key 'trian' at top level; .*"
                                         r"did you mean 'train'\?$"):
        load_study("search_digits", {"trian.epochs": 4})


def test_load_study_loggers_default_gives_experiment_analysis_its_files() -> None:
    assert load_study("quickstart").loggers == ("json", "csv")


def test_load_study_loggers_list_is_kept_in_order_and_round_trips(tmp_path: Path) -> None:
    study = load_study(str(_write(tmp_path, SMALL + "loggers: [csv, tensorboard, json]\n")))
    assert study.loggers == ("csv", "tensorboard", "json")
    assert yaml.safe_load(study_to_yaml(study))["loggers"] == ["csv", "tensorboard", "json"]


@pytest.mark.parametrize("value, message", [
    ("[csv, tensorbord]", "loggers[1]: unknown logger 'tensorbord'; expected one of: json, csv, tensorboard, "
                          "mlflow, wandb; did you mean 'tensorboard'?"),
    ("[csv, csv]", "loggers: ['csv', 'csv'] repeats a logger; list each once"),
    ("{csv: true}", "loggers: {'csv': True} must be a list of logger names"),
])
def test_load_study_bad_loggers_name_file_key_value_and_rule(tmp_path: Path, value: str, message: str) -> None:
    path = _write(tmp_path, SMALL + f"loggers: {value}\n")
    with pytest.raises(StudyError) as err:
        load_study(str(path))
    assert str(err.value).startswith(f"{path}: {message}")


def test_load_study_logger_without_its_package_names_the_extra(tmp_path: Path, monkeypatch) -> None:
    import search.study.sections as sections

    monkeypatch.setattr(sections, "installed", lambda module: module != "mlflow")
    path = _write(tmp_path, SMALL + "loggers: [csv, mlflow]\n")
    with pytest.raises(StudyError) as err:
        load_study(str(path))
    assert str(err.value) == (f"{path}: loggers[1]: 'mlflow' needs the mlflow package, which is not installed; "
                              f"pip install 'gsa-nas[trackers]' (mlflow-skinny), or remove mlflow from loggers")
