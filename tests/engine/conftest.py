import subprocess
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


@pytest.fixture(scope="session")
def reference_run(tmp_path_factory):
    """The output folder of one uninterrupted ``fakes.CHECKPOINTED_RUN``: what the killed,
    interrupted and resumed runs must end like."""
    import fakes

    out = tmp_path_factory.mktemp("reference") / "run"
    command = [sys.executable, str(Path(__file__).with_name("run_fake.py")), "train", *fakes.CHECKPOINTED_RUN]
    subprocess.run(
        command + ["OUTPUT_DIR", str(out)], env=fakes.subprocess_env(), check=True, capture_output=True, timeout=600
    )
    return out
