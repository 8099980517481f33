"""Defaults for a run: training and testing switches, devices, output, checkpoints, logging."""

from fvcore.common.config import CfgNode

from ._checks import require_choice, require_positive
from .data import DATASETS


def add_run_defaults(cfg: CfgNode) -> None:
    cfg.OUTPUT_DIR = "./output"
    cfg.RNG_SEED = 0
    # "auto" picks CUDA when present; AMP and channels-last apply on CUDA only.
    cfg.DEVICE = "auto"
    # Iterations between log lines (the tqdm bar updates every step).
    cfg.LOG_PERIOD = 10

    cfg.TRAIN = CfgNode()
    cfg.TRAIN.ENABLE = True
    cfg.TRAIN.DATASET = "charades"
    cfg.TRAIN.SPLIT = "train"
    cfg.TRAIN.BATCH_SIZE_PER_DEVICE = 4
    cfg.TRAIN.EVAL_PERIOD = 1
    cfg.TRAIN.CHECKPOINT_PERIOD = 1
    cfg.TRAIN.AUTO_RESUME = True
    # A checkpoint to start from (fine-tuning); a model-only file is accepted.
    cfg.TRAIN.CHECKPOINT_FILE_PATH = ""
    cfg.TRAIN.MIXED_PRECISION = True
    cfg.TRAIN.DETERMINISTIC = False

    cfg.TEST = CfgNode()
    cfg.TEST.ENABLE = True
    cfg.TEST.DATASET = "charades"
    cfg.TEST.SPLIT = "test"
    cfg.TEST.BATCH_SIZE_PER_DEVICE = 4
    # "views": V temporal clips x C spatial crops per video; "segments": every 64-frame segment.
    cfg.TEST.MODE = "segments"
    cfg.TEST.NUM_ENSEMBLE_VIEWS = 1
    cfg.TEST.NUM_SPATIAL_CROPS = 1
    cfg.TEST.ENSEMBLE_METHOD = "max"
    cfg.TEST.CHECKPOINT_FILE_PATH = ""

    cfg.BN = CfgNode()
    # SyncBatchNorm across processes under DDP.
    cfg.BN.SYNC = False


def validate_run(cfg: CfgNode, errors: list) -> None:
    require_choice(errors, cfg, "DEVICE", ("auto", "cpu", "cuda"))
    require_positive(errors, cfg, "LOG_PERIOD")
    require_choice(errors, cfg, "TRAIN.DATASET", DATASETS)
    require_choice(errors, cfg, "TEST.DATASET", DATASETS)
    require_positive(errors, cfg, "TRAIN.BATCH_SIZE_PER_DEVICE")
    require_positive(errors, cfg, "TRAIN.EVAL_PERIOD")
    require_positive(errors, cfg, "TRAIN.CHECKPOINT_PERIOD")
    require_positive(errors, cfg, "TEST.BATCH_SIZE_PER_DEVICE")
    require_choice(errors, cfg, "TEST.MODE", ("views", "segments"))
    require_positive(errors, cfg, "TEST.NUM_ENSEMBLE_VIEWS")
    require_choice(errors, cfg, "TEST.NUM_SPATIAL_CROPS", (1, 3))
    require_choice(errors, cfg, "TEST.ENSEMBLE_METHOD", ("max", "mean"))
    if not cfg.OUTPUT_DIR:
        errors.append("OUTPUT_DIR is empty: give a folder for logs and checkpoints")
