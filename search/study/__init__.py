"""Studies: a YAML study file read into frozen objects, and the trials it plans.

Modules import one way, each only from those above it:
`schema` (the frozen objects) <- `readers` (typed values, one-line errors) <- `keys` (the dotted
study keys) <- `overrides` (`--set`) <- `sections` / `search_section` (each section typed) <-
`resolve` (trials, YAML out) <- `rules` (cross-section checks) <- `files` / `load` (`load_study`).
"""

from search.study.load import load_study
from search.study.resolve import resolve_trial, study_document, study_to_yaml, trial_key
from search.study.schema import (DATASET_SHAPES, DataConfig, ModelConfig, PrunerConfig, Resources, SamplerConfig,
                                 SearchConfig, Study, StudyError, TrainConfig, TrialSpec, Variant, planned_trials)

__all__ = [
    "DATASET_SHAPES", "DataConfig", "ModelConfig", "PrunerConfig", "Resources", "SamplerConfig", "SearchConfig",
    "Study", "StudyError", "TrainConfig", "TrialSpec", "Variant", "load_study", "planned_trials", "resolve_trial",
    "study_document", "study_to_yaml", "trial_key",
]
