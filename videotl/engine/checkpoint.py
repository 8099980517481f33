"""Checkpoints: atomic saves, safe loads (``weights_only=True``), RNG capture, model-only files, and
a training run's save and resume (:func:`save_train_state`, :func:`restore_train_state`).

A checkpoint is ``OUTPUT_DIR/checkpoints/checkpoint_epoch_XXXXX.pyth`` (PySlowFast's naming, the
number counting completed epochs). It only holds tensors, dicts, lists, numbers and strings, so
``torch.load(..., weights_only=True)`` reads it without running any pickled code.
"""

import errno
import logging
import random
import re
import shutil
from collections import OrderedDict
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import numpy as np
import torch
from fvcore.common.config import CfgNode
from torch import nn

from ..utils.checkpoints import CheckpointError, model_state_from, read_checkpoint
from ..utils.fileio import WriteError, atomic_path
from . import distributed as du
from .state import TrainState

__all__ = [
    "CheckpointError",
    "checkpoint_dir",
    "checkpoint_path",
    "last_checkpoint",
    "list_checkpoints",
    "remove_stale_temporaries",
    "save_checkpoint",
    "read_checkpoint",
    "unwrap_model",
    "model_state_from",
    "load_model_state",
    "one_line",
    "capture_rng_state",
    "restore_rng_state",
    "save_train_state",
    "restore_train_state",
]

logger = logging.getLogger("videotl")

PathLike = Union[str, Path]


_NAME = re.compile(r"^checkpoint_epoch_(\d{5,})\.pyth$")


def checkpoint_dir(output_dir: PathLike) -> Path:
    return Path(output_dir) / "checkpoints"


def checkpoint_path(output_dir: PathLike, epoch: int) -> Path:
    return checkpoint_dir(output_dir) / f"checkpoint_epoch_{epoch:05d}.pyth"


def list_checkpoints(output_dir: PathLike) -> List[Path]:
    """The run's checkpoints, newest (highest epoch) first. Temporary files of a killed save are ignored."""
    folder = checkpoint_dir(output_dir)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found, reverse=True)]


def last_checkpoint(output_dir: PathLike) -> Optional[Path]:
    """The checkpoint with the highest epoch, or None. Temporary files of a killed save are ignored."""
    found = list_checkpoints(output_dir)
    return found[0] if found else None


def remove_stale_temporaries(output_dir: PathLike) -> List[Path]:
    """Delete the temporary files of checkpoint saves that a kill interrupted; return them.

    Only a process holding the run lock may call this: another run's save in progress looks the same.
    """
    folder = checkpoint_dir(output_dir)
    if not folder.is_dir():
        return []
    stale = [p for p in folder.iterdir() if p.name.startswith(".checkpoint_epoch_") and p.name.endswith(".tmp")]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module inside DistributedDataParallel / DataParallel, else the model itself."""
    return model.module if hasattr(model, "module") and isinstance(model.module, nn.Module) else model


def capture_rng_state() -> Dict[str, Any]:
    """Python, NumPy, torch and CUDA generator states as tensors, lists and numbers."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: Dict[str, Any] = {
        "python": {"version": version, "state": list(internal), "gauss": gauss},
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Mapping[str, Any]) -> None:
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    npy = state["numpy"]
    np.random.set_state(
        (npy["kind"], npy["keys"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"], npy["cached_gaussian"])
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)


def save_checkpoint(path: PathLike, state: Dict[str, Any]) -> Path:
    """Write ``state`` atomically: a crash (SIGKILL included) leaves the old file set unchanged.

    A file system that refuses the write raises :class:`~videotl.utils.fileio.WriteError` naming
    ``path`` and the reason ("no space left on device"); the partial temporary file is removed.
    """
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            # Through a Python file, a refused write surfaces as the OSError behind torch's own error.
            with open(tmp, "wb") as handle:
                torch.save(state, handle)
    except RuntimeError as error:
        if "inline_container" not in str(error) and "write failed" not in str(error):
            raise
        # torch's writer lost the cause: a full file system is by far the usual one.
        free = shutil.disk_usage(path.parent).free
        reason = "no space left on device" if free < 2**20 else str(error).strip().splitlines()[0]
        raise WriteError(f"cannot write {path}: {reason}", errno.ENOSPC if free < 2**20 else None) from None
    return path


def one_line(error: BaseException) -> str:
    """An error's message on one line (``load_state_dict`` lists missing and unexpected keys on several)."""
    return "; ".join(line.strip() for line in str(error).splitlines() if line.strip())


def load_model_state(model: nn.Module, state: Mapping[str, torch.Tensor], *, strict: bool = True) -> List[str]:
    """Load weights into ``model`` (DDP-wrapped or not).

    ``strict=True`` (resume, test) requires the exact same parameters. ``strict=False``
    (fine-tuning) skips missing keys and tensors whose shape differs, such as a classifier with
    another number of classes, and returns a description of every skipped entry.
    """
    target = unwrap_model(model)
    own = target.state_dict()
    if strict:
        target.load_state_dict(state, strict=True)
        return []
    skipped: List[str] = []
    usable = OrderedDict()
    for key, value in state.items():
        if key not in own:
            skipped.append(f"{key} (not in the model)")
        elif own[key].shape != value.shape:
            skipped.append(f"{key} (shape {tuple(value.shape)} in the file, {tuple(own[key].shape)} in the model)")
        else:
            usable[key] = value
    if not usable:
        raise CheckpointError("no tensor of the checkpoint fits this model: is it a checkpoint of another model?")
    skipped.extend(f"{key} (not in the file, left as initialised)" for key in own if key not in state)
    target.load_state_dict(usable, strict=False)
    return skipped


def load_weights(model: nn.Module, path: PathLike) -> Dict[str, Any]:
    """Load a checkpoint's (or a model-only file's) weights into ``model`` strictly and return the
    file's contents; a file that does not fit the model raises :class:`CheckpointError`."""
    state = read_checkpoint(path)
    try:
        load_model_state(model, model_state_from(state), strict=True)
    except RuntimeError as error:
        raise CheckpointError(f"{path} does not fit the configured model: {one_line(error)}") from error
    return state


def save_train_state(state: TrainState, *, cfg: CfgNode, ctx: du.DistContext) -> None:
    """Save the run at the end of epoch ``state.progress.epoch``: rank 0 writes the checkpoint of
    that epoch with every rank's RNG states; a refused write is raised on every rank, naming the
    checkpoint that is intact."""
    epoch, iteration = state.progress.epoch, state.progress.iteration
    # Every rank's generators: a resume on the same number of ranks continues each stream exactly.
    rng_states = du.all_gather_objects(capture_rng_state())

    def write() -> None:
        contents = {
            "model": unwrap_model(state.model).state_dict(),
            "optimizer": state.optimizer.state_dict(),
            "scheduler": state.schedule.state_dict(),
            "scaler": state.scaler.state_dict(),
            "rng_states": rng_states,
            # Checkpoints fall on epoch boundaries: the sampler resumes at the start of `epoch`.
            "sampler": {"epoch": epoch, "position": 0},
            "epoch": epoch,
            "iteration": iteration,
            "world_size": ctx.world_size,
            **state.model_info,
            # Run totals so far, so that the final summary counts the epochs before a resume too.
            "data_skips": {
                "samples": state.progress.skipped_samples,
                "broken_videos": sorted(state.progress.broken_videos),
            },
        }
        path = checkpoint_path(cfg.OUTPUT_DIR, epoch)
        try:
            save_checkpoint(path, contents)
        except WriteError as error:
            earlier = [p for p in list_checkpoints(cfg.OUTPUT_DIR) if p != path]
            kept = f"the last checkpoint {earlier[0]} is intact" if earlier else "no earlier checkpoint exists"
            raise WriteError(
                f"{error}; epoch {epoch} is not saved and {kept}: make room and run the same command to resume",
                error.errno,
            ) from None
        logger.info(f"saved {path}")

    du.on_main(ctx, write)


def restore_train_state(state: TrainState, *, cfg: CfgNode, ctx: du.DistContext) -> int:
    """Load the run's newest readable checkpoint into ``state`` (TRAIN.AUTO_RESUME: the full state,
    the RNG streams and the skip counts) or else TRAIN.CHECKPOINT_FILE_PATH (weights that fit);
    return the epoch to start from. Temporary files of an interrupted save are removed first."""
    on_main: Dict[str, Any] = {}

    def find() -> str:
        # Under the run lock: no other run's save is in flight in this folder.
        for path in remove_stale_temporaries(cfg.OUTPUT_DIR):
            logger.info(f"removed {path}, left by a save that was interrupted")
        if not cfg.TRAIN.AUTO_RESUME:
            return ""
        found, on_main["contents"] = _newest_readable_checkpoint(cfg.OUTPUT_DIR)
        return found

    # Rank 0 decides, so that all ranks resume from the same file even if a new one appears meanwhile.
    found = du.on_main(ctx, find)
    if found:
        return _resume(state, found, on_main.get("contents") or read_checkpoint(found), cfg=cfg, ctx=ctx)
    if cfg.TRAIN.CHECKPOINT_FILE_PATH:
        contents = read_checkpoint(cfg.TRAIN.CHECKPOINT_FILE_PATH)
        skipped = load_model_state(state.model, model_state_from(contents), strict=False)
        logger.info(f"initialised from {cfg.TRAIN.CHECKPOINT_FILE_PATH}")
        for entry in skipped:
            logger.warning(f"not loaded: {entry}")
    return 0


def _newest_readable_checkpoint(output_dir: str) -> Tuple[str, Optional[Dict[str, Any]]]:
    """The newest checkpoint of the run that reads, with its contents; ``("", None)`` if there is
    none. Unreadable newer ones are skipped with a warning; if every one is unreadable, that is an error."""
    unreadable = []
    for path in list_checkpoints(output_dir):
        try:
            return str(path), read_checkpoint(path)
        except (CheckpointError, FileNotFoundError) as error:
            unreadable.append(f"{path.name} ({str(error).removeprefix(f'cannot read checkpoint {path}: ')})")
            logger.warning(f"{error}; skipping it, resuming from the newest checkpoint that reads")
    if unreadable:
        raise CheckpointError(
            f"no checkpoint in {checkpoint_dir(output_dir)} can be read: {', '.join(unreadable)}. Move them away "
            "to train from the start, or set TRAIN.AUTO_RESUME False"
        )
    return "", None


def _resume(state: TrainState, found: str, contents: Dict[str, Any], *, cfg: CfgNode, ctx: du.DistContext) -> int:
    """Load the full state of checkpoint ``found`` into ``state``; return its epoch."""
    try:
        load_model_state(state.model, model_state_from(contents), strict=True)
        state.optimizer.load_state_dict(contents["optimizer"])
        state.schedule.load_state_dict(contents["scheduler"])
        # A run saved with a disabled scaler (float32, bfloat16) has an empty state; a float16
        # run resumed from it starts from a fresh scale.
        if contents["scaler"]:
            state.scaler.load_state_dict(contents["scaler"])
    except (KeyError, RuntimeError, ValueError) as error:
        raise CheckpointError(
            f"cannot resume from {found}: {one_line(error)}. It belongs to another run; use a new OUTPUT_DIR "
            "or TRAIN.AUTO_RESUME False"
        ) from error
    rng_states = contents.get("rng_states") or []
    epoch = int(contents["epoch"])
    if len(rng_states) == ctx.world_size:
        restore_rng_state(rng_states[ctx.rank])
    else:
        seed = cfg.RNG_SEED + ctx.rank + 1000 * epoch
        logger.warning(
            f"{found} was written by {len(rng_states)} processes, this run has {ctx.world_size}: "
            f"random streams restart from seed {seed}, so the run is not bit-exact"
        )
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
    skips = contents.get("data_skips") or {}
    state.progress.skipped_samples = int(skips.get("samples", 0))
    state.progress.broken_videos = frozenset(skips.get("broken_videos", ()))
    logger.info(f"resumed from {found} (epoch {epoch}, iteration {contents.get('iteration')})")
    return epoch
