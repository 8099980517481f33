"""What a training run changes as it goes and what its checkpoints hold: :class:`TrainState`."""

from dataclasses import dataclass, field
from typing import Any, Dict

import torch
from torch import nn

from .solver import LRSchedule

__all__ = ["Progress", "TrainState"]


@dataclass
class Progress:
    """Where training is, for the interruption message, the checkpoints and the counts of skipped samples."""

    # Epochs begun (completed ones at an epoch boundary) and iterations done.
    epoch: int = 0
    iteration: int = 0
    # What the run was doing besides training steps, for the message ("while evaluating").
    phase: str = "while starting"
    # Run totals, before a resume included: unreadable training samples replaced, and the distinct
    # broken videos found.
    skipped_samples: int = 0
    broken_videos: frozenset = frozenset()


@dataclass
class TrainState:
    """The objects a training step updates, and what a checkpoint saves and a resume restores.

    ``model`` is the model as training runs it: compiled in place under ``MODEL.COMPILE`` and, under
    DDP, wrapped in ``DistributedDataParallel`` (:func:`~videotl.engine.checkpoint.unwrap_model`
    gives the bare module, whose names a checkpoint holds).
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    schedule: LRSchedule
    scaler: torch.amp.GradScaler
    progress: Progress = field(default_factory=Progress)
    # What videotl.load_model needs to rebuild and use the model from a checkpoint alone (the
    # resolved config, the model name, the class names, the videotl version), saved with each one.
    model_info: Dict[str, Any] = field(default_factory=dict)
