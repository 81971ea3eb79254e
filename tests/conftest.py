"""Pytest fixtures shared by the whole suite."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _deterministic_threads():
    """Tests run with the thread count the reference vectors were made with."""
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)
