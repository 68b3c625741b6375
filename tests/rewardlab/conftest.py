"""Fixtures shared by the rewardlab tests."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="module")
def one_torch_thread():
    """Use one thread: tensors this small gain nothing from a second, whose spin-waits on a busy two-core
    machine made a training module 4 times slower (40 s against 10 s)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
