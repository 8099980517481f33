"""Solver defaults: SGD with momentum, cosine decay with linear warm-up (the paper's appendix A.3)."""

from fvcore.common.config import CfgNode

from ._checks import require_choice, require_positive, require_range


def add_solver_defaults(cfg: CfgNode) -> None:
    cfg.SOLVER = CfgNode()
    cfg.SOLVER.OPTIMIZING_METHOD = "sgd"
    # Given per device and multiplied by the number of devices (Charades 0.8, AViD 0.025).
    cfg.SOLVER.BASE_LR_PER_DEVICE = 0.8
    cfg.SOLVER.LR_POLICY = "cosine"
    # Like the base rate, the end and warm-up start rates are per device (scaled by world size).
    cfg.SOLVER.COSINE_END_LR = 0.0
    # Linear warm-up length in epochs (fractions allowed); the schedule itself runs per iteration.
    cfg.SOLVER.WARMUP_EPOCHS = 0.0
    cfg.SOLVER.WARMUP_START_LR = 0.0
    cfg.SOLVER.MOMENTUM = 0.9
    cfg.SOLVER.NESTEROV = True
    cfg.SOLVER.WEIGHT_DECAY = 5e-5
    # Training length: MAX_ITER iterations when > 0 (the paper: 100k), else MAX_EPOCH epochs.
    cfg.SOLVER.MAX_EPOCH = 100
    cfg.SOLVER.MAX_ITER = 0
    # Gradient clipping by global L2 norm; 0 disables it.
    cfg.SOLVER.CLIP_GRAD_L2NORM = 0.0
    cfg.SOLVER.LABEL_SMOOTHING = 0.0


def validate_solver(cfg: CfgNode, errors: list) -> None:
    require_choice(errors, cfg, "SOLVER.OPTIMIZING_METHOD", ("sgd", "adamw"))
    require_choice(errors, cfg, "SOLVER.LR_POLICY", ("cosine", "constant"))
    require_positive(errors, cfg, "SOLVER.BASE_LR_PER_DEVICE")
    require_positive(errors, cfg, "SOLVER.COSINE_END_LR", allow_zero=True)
    require_positive(errors, cfg, "SOLVER.WARMUP_EPOCHS", allow_zero=True)
    require_positive(errors, cfg, "SOLVER.WARMUP_START_LR", allow_zero=True)
    require_range(errors, cfg, "SOLVER.MOMENTUM", 0.0, 1.0)
    require_positive(errors, cfg, "SOLVER.WEIGHT_DECAY", allow_zero=True)
    require_positive(errors, cfg, "SOLVER.MAX_EPOCH")
    require_positive(errors, cfg, "SOLVER.MAX_ITER", allow_zero=True)
    require_positive(errors, cfg, "SOLVER.CLIP_GRAD_L2NORM", allow_zero=True)
    require_range(errors, cfg, "SOLVER.LABEL_SMOOTHING", 0.0, 1.0)
    if cfg.SOLVER.LABEL_SMOOTHING > 0 and cfg.MODEL.LOSS_FUNC != "cross_entropy":
        errors.append(
            f"SOLVER.LABEL_SMOOTHING = {cfg.SOLVER.LABEL_SMOOTHING} applies to single-label training only, "
            f"but MODEL.LOSS_FUNC = {cfg.MODEL.LOSS_FUNC!r}"
        )
    if cfg.SOLVER.NESTEROV and cfg.SOLVER.OPTIMIZING_METHOD == "sgd" and cfg.SOLVER.MOMENTUM == 0:
        errors.append("SOLVER.NESTEROV = True needs SOLVER.MOMENTUM > 0")
    if cfg.SOLVER.COSINE_END_LR > cfg.SOLVER.BASE_LR_PER_DEVICE:
        errors.append("SOLVER.COSINE_END_LR exceeds SOLVER.BASE_LR_PER_DEVICE")
