import contextlib
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


def pytest_xdist_auto_num_workers(config):
    """``-n auto``: one worker per CPU this process may use, at most four (each worker imports torch,
    and many tests start DataLoader workers or tool subprocesses of their own)."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(4, usable))


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    """Keep pytest-xdist's ``--dist loadgroup`` grouping on pytest 9.2: xdist marks an item's group
    by appending ``@group`` to ``item._nodeid``, which pytest 9.2 no longer reads (an item's id
    lives in ``item._id``), so every group was spread over the workers and each built the group's
    session fixture again. Set where pytest reads it; older pytest needs nothing."""
    if not getattr(config.option, "loadgroup", False):
        return
    try:
        from _pytest.nodeid import NodeId
    except ImportError:
        return
    for item in items:
        groups = {
            str(m.args[0] if m.args else m.kwargs.get("name", "default")) for m in item.iter_markers("xdist_group")
        }
        if groups and "@" not in item.nodeid and hasattr(item, "_id"):
            item._id = NodeId.parse(f"{item.nodeid}@{'_'.join(sorted(groups))}")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@contextlib.contextmanager
def videotl_logger_restored():
    """``setup_logging`` points the "videotl" logger at the sys.stdout of the moment, which under
    pytest is the test's capture stream, closed once the test ends, and stops it propagating (so
    caplog sees nothing): undo both on leaving."""
    logger = logging.getLogger("videotl")
    handlers, propagate, level = list(logger.handlers), logger.propagate, logger.level
    try:
        yield
    finally:
        for handler in list(logger.handlers):
            if handler not in handlers:
                logger.removeHandler(handler)
                handler.close()
        logger.propagate, logger.level = propagate, level


@pytest.fixture(autouse=True)
def _restore_videotl_logger():
    with videotl_logger_restored():
        yield


@pytest.fixture(scope="session")
def tiny_trained(tmp_path_factory):
    """(config, Charades-format data root, checkpoint) of a tiny TokenLearner model trained for one
    epoch on the real pipeline: what the notebook API and the installed-wheel tests load."""
    from videotl.config import load_config
    from videotl.engine import train

    from .data.conftest import CHARADES_CLASSES, write_charades
    from .models.conftest import TINY_X3D

    root = write_charades(tmp_path_factory.mktemp("charades"))
    out = tmp_path_factory.mktemp("run")
    overrides = [
        *TINY_X3D,
        "RES5.TEMPORAL", "tokenlearner", "MODEL.NUM_CLASSES", str(len(CHARADES_CLASSES)),
        "DATA.PATH_TO_DATA_DIR", str(root), "DATA.NUM_FRAMES", "8", "DATA_LOADER.NUM_WORKERS", "0",
        "TRAIN.BATCH_SIZE_PER_DEVICE", "2", "TEST.BATCH_SIZE_PER_DEVICE", "2", "SOLVER.MAX_EPOCH", "1",
        "TRAIN.EVAL_PERIOD", "0", "TENSORBOARD.ENABLE", "False", "DEVICE", "cpu", "OUTPUT_DIR", str(out),
    ]  # fmt: skip
    cfg = load_config("", overrides)
    # A session fixture is set up before the test's autouse fixtures record the logger's state, so
    # it restores the logger itself (else every later test on this worker loses caplog).
    with videotl_logger_restored():
        train(cfg)
    return cfg, root, out / "checkpoints" / "checkpoint_epoch_00001.pyth"


@pytest.fixture
def tmpfs(tmp_path):
    """``mount(name, size, read_only=False)``: a fresh tmpfs of ``size`` (``"1m"``) at
    ``tmp_path / name``, unmounted after the test; the test is skipped where mounting is not
    allowed (not root, a container without the capability)."""
    import os
    import shutil
    import subprocess

    mounted = []

    def mount(name, size, read_only=False):
        if os.name != "posix" or os.geteuid() != 0 or shutil.which("mount") is None:
            pytest.skip("mounting a tmpfs needs root and mount(8)")
        folder = tmp_path / name
        folder.mkdir()
        options = f"size={size}" + (",ro" if read_only else "")
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True, text=True
        )
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip() or result.returncode}")
        mounted.append(folder)
        return folder

    yield mount
    for folder in reversed(mounted):
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)
