"""The GSA model family and its design space: pure PyTorch (+ fvcore), no Ray, no Optuna."""

from gsa_space.config import NetConfig, StageConfig, apply_overrides

__all__ = ["NetConfig", "StageConfig", "apply_overrides"]
