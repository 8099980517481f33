"""Optimizer, learning-rate schedule and loss, as in the paper's appendix A.3."""

import math
from typing import Dict

import torch
from fvcore.common.config import CfgNode
from torch import nn

__all__ = ["build_optimizer", "LRSchedule", "build_schedule", "build_loss", "SigmoidCrossEntropy"]


def build_optimizer(model: nn.Module, *, cfg: CfgNode) -> torch.optim.Optimizer:
    """SGD with (Nesterov) momentum or AdamW over the trainable parameters.

    The learning rate is set by :class:`LRSchedule` before every step; the one given here only
    initialises the optimizer.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    solver = cfg.SOLVER
    if solver.OPTIMIZING_METHOD == "sgd":
        return torch.optim.SGD(
            params,
            lr=solver.BASE_LR_PER_DEVICE,
            momentum=solver.MOMENTUM,
            nesterov=solver.NESTEROV,
            weight_decay=solver.WEIGHT_DECAY,
        )
    return torch.optim.AdamW(params, lr=solver.BASE_LR_PER_DEVICE, weight_decay=solver.WEIGHT_DECAY)


class LRSchedule:
    """Cosine decay (or a constant rate) with linear warm-up, evaluated per iteration.

    All rates are already scaled by the number of devices. The only state is the iteration last
    applied, so a resumed run continues on the same curve.

    Args:
        base_lr: peak rate, reached at the end of warm-up.
        end_lr: rate at the last iteration (cosine).
        warmup_iters: iterations of linear warm-up from ``warmup_start_lr``.
        total_iters: iterations of the whole run.
        policy: ``"cosine"`` or ``"constant"``.
    """

    def __init__(
        self,
        *,
        base_lr: float,
        end_lr: float,
        warmup_start_lr: float,
        warmup_iters: int,
        total_iters: int,
        policy: str = "cosine",
    ) -> None:
        if total_iters <= 0:
            raise ValueError(f"total_iters = {total_iters}: the run has no iteration")
        if policy not in ("cosine", "constant"):
            raise ValueError(f"LR policy {policy!r}: must be 'cosine' or 'constant'")
        self.base_lr = base_lr
        self.end_lr = end_lr
        self.warmup_start_lr = warmup_start_lr
        self.warmup_iters = min(warmup_iters, total_iters)
        self.total_iters = total_iters
        self.policy = policy
        self.last_iteration = -1

    def _main_lr(self, iteration: int) -> float:
        if self.policy == "constant":
            return self.base_lr
        progress = min(iteration / self.total_iters, 1.0)
        return self.end_lr + (self.base_lr - self.end_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))

    def lr_at(self, iteration: int) -> float:
        if iteration < self.warmup_iters:
            # Linear from the warm-up start to where the main curve stands when warm-up ends.
            target = self._main_lr(self.warmup_iters)
            return self.warmup_start_lr + (target - self.warmup_start_lr) * iteration / self.warmup_iters
        return self._main_lr(iteration)

    def apply(self, optimizer: torch.optim.Optimizer, iteration: int) -> float:
        lr = self.lr_at(iteration)
        for group in optimizer.param_groups:
            group["lr"] = lr
        self.last_iteration = iteration
        return lr

    def state_dict(self) -> Dict[str, float]:
        return {
            "last_iteration": self.last_iteration,
            "total_iters": self.total_iters,
            "warmup_iters": self.warmup_iters,
            "base_lr": self.base_lr,
        }

    def load_state_dict(self, state: Dict[str, float]) -> None:
        if int(state["total_iters"]) != self.total_iters:
            raise ValueError(
                f"the checkpoint's schedule runs {state['total_iters']} iterations but this run has "
                f"{self.total_iters}: resume with the same SOLVER, batch size and world size"
            )
        self.last_iteration = int(state["last_iteration"])


def build_schedule(*, cfg: CfgNode, iters_per_epoch: int, total_iters: int, world_size: int) -> LRSchedule:
    """The schedule of ``cfg.SOLVER`` with every rate multiplied by ``world_size``."""
    solver = cfg.SOLVER
    return LRSchedule(
        base_lr=solver.BASE_LR_PER_DEVICE * world_size,
        end_lr=solver.COSINE_END_LR * world_size,
        warmup_start_lr=solver.WARMUP_START_LR * world_size,
        warmup_iters=int(round(solver.WARMUP_EPOCHS * iters_per_epoch)),
        total_iters=total_iters,
        policy=solver.LR_POLICY,
    )


class SigmoidCrossEntropy(nn.BCEWithLogitsLoss):
    """BCE-with-logits on multi-hot (B, K) targets, or on class indices (B,) as one-hot targets
    (``bce_one_hot``: a sigmoid head on single-label data, the official TokenLearner ImageNet setting)."""

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if target.dim() == logits.dim() - 1:
            target = nn.functional.one_hot(target.long(), logits.shape[-1]).to(logits.dtype)
        return super().forward(logits, target)


def build_loss(cfg: CfgNode) -> nn.Module:
    """BCE-with-logits on multi-hot targets (``bce_logits``) or on one-hot targets of single-label
    data (``bce_one_hot``), or cross-entropy with label smoothing on class indices."""
    if cfg.MODEL.LOSS_FUNC in ("bce_logits", "bce_one_hot"):
        return SigmoidCrossEntropy()
    if cfg.MODEL.LOSS_FUNC == "cross_entropy":
        return nn.CrossEntropyLoss(label_smoothing=cfg.SOLVER.LABEL_SMOOTHING)
    raise ValueError(f"MODEL.LOSS_FUNC = {cfg.MODEL.LOSS_FUNC!r}: no such loss")
