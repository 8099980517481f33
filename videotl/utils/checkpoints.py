"""The one checkpoint reader and the one rule for finding a model's weights in a file.

Every file videotl loads weights from (a training checkpoint, a model-only state dict, an exported
ViT) goes through :func:`read_checkpoint` (``torch.load`` with ``weights_only=True``, so no pickled
code runs) and :func:`model_state_from`.
"""

from collections import OrderedDict
from pathlib import Path
from typing import Any, Dict, Mapping, Union

import torch

__all__ = ["CheckpointError", "read_checkpoint", "model_state_from", "STATE_KEYS"]

# Where a file may keep the model's weights, in the order they are looked for.
STATE_KEYS = ("model", "model_state", "state_dict")


class CheckpointError(RuntimeError):
    """A checkpoint cannot be read, or does not fit the model or run it is loaded into."""


def read_checkpoint(path: Union[str, Path]) -> Dict[str, Any]:
    """Read a checkpoint on the CPU; every error names the file and says why."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"cannot read checkpoint {path}: the file is empty (0 bytes)")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - torch raises many types for truncated or foreign files
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"cannot read checkpoint {path}: {reason}") from error
    if not isinstance(obj, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(obj).__name__}, not a dict of states")
    return obj


def model_state_from(obj: Mapping[str, Any], *, tensors_only: bool = False) -> "OrderedDict[str, torch.Tensor]":
    """The model's weights in a checkpoint (under ``model``, ``model_state`` or ``state_dict``) or a
    model-only state dict, with a DistributedDataParallel ``module.`` prefix removed.

    Entries that are not tensors are an error, or dropped with ``tensors_only`` (files that keep
    metadata beside the weights).
    """
    state = obj
    for key in STATE_KEYS:
        if key in obj and isinstance(obj[key], Mapping):
            state = obj[key]
            break
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad and not tensors_only:
        raise CheckpointError(f"not a model state: entries {bad[:5]} are not tensors")
    state = OrderedDict((k, v) for k, v in state.items() if isinstance(v, torch.Tensor))
    if state and all(k.startswith("module.") for k in state):
        state = OrderedDict((k[len("module.") :], v) for k, v in state.items())
    return state
