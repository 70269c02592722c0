"""Fixtures of tests/reports: hand-built run directories (built by `rundirs`)."""

from __future__ import annotations

from pathlib import Path

import pytest
from rundirs import build_ablation, build_search


@pytest.fixture
def ablation_run(tmp_path: Path) -> Path:
    """A finished 4-variant x 3-seed ablation run directory with one failed trial."""
    return build_ablation(tmp_path / "quick")


@pytest.fixture
def search_run(tmp_path: Path) -> Path:
    """A finished 10-trial search run directory with a real SQLite Optuna storage."""
    return build_search(tmp_path / "search_small")
