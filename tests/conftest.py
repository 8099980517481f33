import logging
import os
import tempfile

import pytest
import torch

# Probe manifests go to a folder of this test run, never to the user's ~/.cache/videotl (set
# before any test imports videotl, and inherited by the tools' subprocesses).
os.environ["VIDEOTL_CACHE_DIR"] = tempfile.mkdtemp(prefix="videotl_test_cache_")

# Test tensors are tiny: one thread per process avoids threading overhead and leaves the second
# core to the DataLoader workers and tool subprocesses the tests start.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _restore_videotl_logger():
    """``setup_logging`` points the "videotl" logger at the sys.stdout of the moment, which under
    pytest is the test's capture stream, closed once the test ends: undo it after each test."""
    logger = logging.getLogger("videotl")
    handlers, propagate, level = list(logger.handlers), logger.propagate, logger.level
    yield
    for handler in list(logger.handlers):
        if handler not in handlers:
            logger.removeHandler(handler)
            handler.close()
    logger.propagate, logger.level = propagate, level
