import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(autouse=True)
def _process_state():
    """train()/test() set process-wide switches (deterministic algorithms); undo them per test."""
    yield
    torch.use_deterministic_algorithms(False)
    import fakes

    fakes.FAILED_VIDEOS.clear()
