"""Studies, data, the trainable, the Ray Tune + Optuna wiring and the `gsa-nas` CLI.

Only `search.tune` imports Ray.
"""
