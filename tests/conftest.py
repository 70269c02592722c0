"""Shared test settings: GPU tests skip cleanly without CUDA; one Ray token before the workers start."""

from pathlib import Path

import pytest
import torch


def pytest_configure(config):
    """In the xdist controller (or a plain run): make the token a local Ray with token
    authentication uses, as Ray's first `ray.init` would. Ray writes ~/.ray/auth_token without a
    lock, so two test processes starting their first local Ray at once could each write their own."""
    if hasattr(config, "workerinput") or (Path.home() / ".ray" / "auth_token").is_file():
        return
    from ray._private.authentication.authentication_token_setup import generate_and_save_token

    generate_and_save_token()


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA; none on this machine")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
