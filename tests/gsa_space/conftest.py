"""Fixtures of tests/gsa_space: one torch thread per test.

Batch-2 passes on tiny maps: extra intra-op threads only spin on a busy 2-core machine (10x slower).
"""

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
