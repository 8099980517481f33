import pytest
import torch

# Test tensors are tiny: one thread per process avoids threading overhead and leaves the second
# core to the DataLoader workers and tool subprocesses the tests start.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
