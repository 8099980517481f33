"""Step hooks: code the training loop runs before and after each step.

A hook subclasses :class:`StepHook` and overrides either method; ``train(cfg, hooks=[...])`` runs
them on every rank, in the order given, after the built-in :class:`StepStats` (the ``train``
records of ``stats.jsonl``). Both methods receive the run's
:class:`~videotl.engine.state.TrainState` and the :class:`Step`:

- ``before_step`` runs once the batch is loaded and the step's learning rate is set, before the
  forward pass. It may set ``step.loss_weight`` and ``step.update``: gradient accumulation over
  ``k`` batches weighs each loss by ``1 / k`` and leaves ``update`` True on every ``k``-th step only.
- ``after_step`` runs after the optimizer step (or the held-back update), with ``step.loss`` and
  ``step.iter_time`` set: the place for an exponential moving average of the weights or a logger.
  The loss stays on the device until read: reading ``step.loss`` waits for the GPU (a host sync),
  which the loop itself does only every ``LOG_PERIOD`` steps; a hook that reads it at every step
  makes every step wait. ``step.loss_on_device`` is the same value without the wait.

Checkpoints hold the train state only: a hook that keeps state of its own (EMA weights) saves it
itself, and an accumulating hook updates at the last step of each epoch, where checkpoints fall.
"""

import math
from dataclasses import dataclass, field
from typing import Optional

import torch

from .run_log import StatsWriter, memory_mb
from .state import TrainState

__all__ = ["Step", "StepHook", "StepStats"]


@dataclass
class Step:
    """One training step as the hooks see it."""

    epoch: int  # the epoch, from 0
    index: int  # the step within the epoch, from 0
    steps: int  # the epoch's number of steps
    iteration: int  # the step over the whole run, from 0 (what the schedule is evaluated at)
    lr: float  # the learning rate the schedule set for this step
    data_time: float  # seconds spent waiting for the batch
    # A before_step hook may change these two. The backward pass runs on loss x loss_weight; with
    # update False the optimizer does not step and the next step adds its gradients to these.
    loss_weight: float = 1.0
    update: bool = True
    # Set for after_step: the loss (the mean over ranks, not weighted; a 0-d tensor on the device)
    # and the seconds since the previous step ended, the wait for the batch included.
    loss_on_device: Optional[torch.Tensor] = None
    iter_time: float = math.nan
    _loss: Optional[float] = field(default=None, init=False, repr=False)

    @property
    def loss(self) -> float:
        """The loss as a number: copied from the device at the first read (a host sync), then kept."""
        if self.loss_on_device is None:
            return math.nan
        if self._loss is None:
            self._loss = float(self.loss_on_device.item())
        return self._loss

    @loss.setter
    def loss(self, value: float) -> None:
        # For a caller that copied the loss to the host with other values in one transfer.
        self._loss = float(value)


class StepHook:
    """Code run around each training step; both methods do nothing unless overridden."""

    def before_step(self, state: TrainState, step: Step) -> None:
        pass

    def after_step(self, state: TrainState, step: Step) -> None:
        pass


class StepStats(StepHook):
    """The ``train`` records of ``stats.jsonl`` (and TensorBoard's ``train/`` scalars): one every
    ``period`` iterations and one at the last step of each epoch."""

    def __init__(self, stats: StatsWriter, *, period: int, device: torch.device) -> None:
        self.stats = stats
        self.period = period
        self.device = device

    def after_step(self, state: TrainState, step: Step) -> None:
        done = step.iteration + 1
        if done % self.period and step.index + 1 != step.steps:
            return
        record = {
            "type": "train",
            "epoch": step.epoch + 1,
            "iter": done,
            "loss": step.loss,
            "lr": step.lr,
            "data_time": step.data_time,
            "iter_time": step.iter_time,
            "memory_mb": memory_mb(self.device),
        }
        self.stats.write(record, step=done, prefix="train/")
