"""What training and testing share: one process's setup, OUTPUT_DIR's lock, the model on its device.

Nothing here knows which model or dataset it runs: both come from the builders
(``videotl.models.build_model``, ``videotl.data.build_loader``), which callers may replace.
"""

import contextlib
import os
import random
import shutil
import sys
from pathlib import Path
from typing import Any, Callable, Dict

import numpy as np
import torch
from fvcore.common.config import CfgNode
from torch import nn

from ..config import ConfigError, cuda_only_settings
from ..data.build import inputs_cross_as_uint8
from . import distributed as du
from .output_dir import run_lock
from .run_log import setup_logging

__all__ = [
    "COMPILE_OPTIONS",
    "WORKER_DEATH_ERRORS",
    "LoaderBuilder",
    "ModelBuilder",
    "check_shared_memory",
    "compile_model",
    "default_loader_builder",
    "default_model_builder",
    "format_metrics",
    "holding_output_dir",
    "model_on",
    "setup_run",
]

ModelBuilder = Callable[[CfgNode], nn.Module]
# (cfg, split, mode, *, distributed) -> a videotl.data.VideoLoader (VideoLoader.of wraps a DataLoader).
LoaderBuilder = Callable[..., Any]

# torch.compile options under MODEL.COMPILE: static shapes, so each mode (train, eval) and clip
# shape gets its own graph; the batch size alone is symbolic (evaluator.prepare_inputs marks it).
COMPILE_OPTIONS: Dict[str, Any] = {"dynamic": False}

# What a DataLoader raises in the main process when its workers die of a stop signal sent to the
# whole process group: RuntimeError once a worker is gone, or a connection error when one dies
# while handing over a batch's shared memory. Caught only while a stop was requested.
WORKER_DEATH_ERRORS = (RuntimeError, ConnectionError, EOFError)


def setup_run(cfg: CfgNode) -> du.DistContext:
    """Process group, device, seeds, determinism and console logging for one process of a run.

    ``OUTPUT_DIR/log.txt`` joins the log once the run holds the folder's lock (``train``, ``test``).
    """
    if cfg.TRAIN.DETERMINISTIC:
        # cuBLAS reads this when CUDA starts; it must be set before the device is touched.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    if cfg.DEVICE == "auto" and not torch.cuda.is_available():
        # load_config refuses these with DEVICE cpu; "auto" only finds out here.
        problems = cuda_only_settings(cfg)
        if problems:
            raise ConfigError("; ".join(problems) + ", but DEVICE = 'auto' finds no CUDA device")
    check_shared_memory(cfg)
    ctx = du.init_distributed(device=cfg.DEVICE, backend=cfg.DIST_BACKEND, timeout_minutes=cfg.DIST_TIMEOUT_MINUTES)
    setup_logging(None, is_main=ctx.is_main)
    # Each rank draws different augmentations; the seed is still fixed per rank.
    seed = cfg.RNG_SEED + ctx.rank
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if cfg.TRAIN.DETERMINISTIC:
        # CPU runs must be bit-exact (resume test); on CUDA a few ops used by video models (3-D
        # adaptive pooling backward) have no deterministic kernel, so warn instead of failing.
        torch.use_deterministic_algorithms(True, warn_only=ctx.device.type == "cuda")
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    elif ctx.device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    return ctx


def _batch_bytes(cfg: CfgNode) -> int:
    """A training batch's clips: B x 3 x T x crop^2 bytes, 4 per value when float32 crosses
    (``DATA.INPUT_DTYPE``)."""
    data = cfg.DATA
    value_bytes = 1 if inputs_cross_as_uint8(cfg) else 4
    return cfg.TRAIN.BATCH_SIZE_PER_DEVICE * 3 * data.NUM_FRAMES * data.TRAIN_CROP_SIZE**2 * value_bytes


def check_shared_memory(cfg: CfgNode, *, shm: str = "/dev/shm") -> None:
    """Apply ``DATA_LOADER.SHARING_STRATEGY``; with PyTorch's file-descriptor strategy on Linux,
    stop in one line when ``shm`` cannot hold the batches the loader's workers keep in flight (a
    container's default 64 MB kills the workers midway, with an error that says nothing of it)."""
    import torch.multiprocessing as mp

    strategy = cfg.DATA_LOADER.SHARING_STRATEGY
    if strategy in mp.get_all_sharing_strategies():
        mp.set_sharing_strategy(strategy)
    workers = cfg.DATA_LOADER.NUM_WORKERS
    if strategy != "file_descriptor" or workers == 0 or not sys.platform.startswith("linux") or not os.path.isdir(shm):
        return
    # Each worker prefetches two batches (the DataLoader's default) and one more is being handed over.
    needed = (2 * workers + 1) * _batch_bytes(cfg)
    free = shutil.disk_usage(shm).free
    if free < needed:
        raise ConfigError(
            f"{shm} has {free / 2**20:.0f} MB free, but {workers} loader workers need about {needed / 2**20:.0f} MB "
            f"for the batches they hand over (TRAIN.BATCH_SIZE_PER_DEVICE {cfg.TRAIN.BATCH_SIZE_PER_DEVICE} clips of "
            f"{_batch_bytes(cfg) // cfg.TRAIN.BATCH_SIZE_PER_DEVICE / 2**20:.0f} MB): give the container more shared "
            "memory (docker run --shm-size 8g) or set DATA_LOADER.SHARING_STRATEGY file_system"
        )


@contextlib.contextmanager
def holding_output_dir(ctx: du.DistContext, out: Path):
    """OUTPUT_DIR's run lock for the block, taken by rank 0; every rank stops if it cannot be had."""
    with contextlib.ExitStack() as stack:

        def take() -> None:
            stack.enter_context(run_lock(out))

        du.on_main(ctx, take)
        yield


def default_model_builder() -> ModelBuilder:
    from ..models import build_model

    return build_model


def default_loader_builder() -> LoaderBuilder:
    from ..data import build_loader

    return build_loader


def model_on(device: torch.device, build_model_fn: ModelBuilder, cfg: CfgNode) -> nn.Module:
    """The model on ``device``, its 3-D kernels channels-last under ``TRAIN.CHANNELS_LAST``."""
    model = build_model_fn(cfg).to(device)
    if cfg.TRAIN.CHANNELS_LAST:
        from ..models import to_channels_last_3d

        model = to_channels_last_3d(model)
    return model


def compile_model(model: nn.Module, cfg: CfgNode) -> None:
    """``MODEL.COMPILE``: compile the module in place (``nn.Module.compile``), so that its state
    dict, DDP's wrapper and the evaluation of the bare module all stay as they are."""
    if cfg.MODEL.COMPILE:
        model.compile(**COMPILE_OPTIONS)


def format_metrics(metrics: Dict[str, Any]) -> str:
    """The headline metrics of an evaluation on one log line."""
    keys = (
        "map",
        "map_classes_with_positives",
        "map_sklearn",
        "num_classes_evaluated",
        "top1",
        "top5",
        "mean_class_accuracy",
        "num_videos",
        "num_failed_videos",
    )
    parts = []
    for key in keys:
        if key in metrics:
            value = metrics[key]
            parts.append(f"{key} {value:.4f}" if isinstance(value, float) else f"{key} {value}")
    return ", ".join(parts)
