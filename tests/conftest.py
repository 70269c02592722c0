"""Shared test settings: GPU tests skip cleanly without CUDA; Ray workers at nice 0, so that two
test processes share the machine fairly; one Ray token before the workers start."""

import os
from pathlib import Path

import pytest
import torch


def pytest_configure(config):
    # Ray starts its workers at nice 15. Next to a second test process (xdist) at nice 0 they got
    # about 3% of a core and a two-epoch run took minutes; at 0 the two processes share fairly.
    os.environ.setdefault("RAY_worker_niceness", "0")
    _make_ray_token(config)


def _make_ray_token(config):
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
