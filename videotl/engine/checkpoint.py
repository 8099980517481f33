"""Checkpoints: atomic saves, safe loads (``weights_only=True``), RNG capture and model-only files.

A checkpoint is ``OUTPUT_DIR/checkpoints/checkpoint_epoch_XXXXX.pyth`` (PySlowFast's naming, the
number counting completed epochs). It only holds tensors, dicts, lists, numbers and strings, so
``torch.load(..., weights_only=True)`` reads it without running any pickled code.
"""

import errno
import random
import re
import shutil
from collections import OrderedDict
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Union

import numpy as np
import torch
from torch import nn

from ..utils.checkpoints import CheckpointError, model_state_from, read_checkpoint
from ..utils.fileio import WriteError, atomic_path

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
]

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
