"""Fixtures shared by the kit's tests."""
import pytest
import torch


@pytest.fixture
def one_thread():
    """One PyTorch thread for the test (the machine is shared; onnxruntime's check follows it)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
