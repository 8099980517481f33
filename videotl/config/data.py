"""Data defaults: decoding, clip sampling, transforms and the data loader."""

from fvcore.common.config import CfgNode

from ._checks import require_choice, require_positive

DATASETS = ("charades", "avid", "csv")


def add_data_defaults(cfg: CfgNode) -> None:
    cfg.DATA = CfgNode()
    # Dataset root: annotation files and the video folder live here (see datasets/DATASETS.md).
    cfg.DATA.PATH_TO_DATA_DIR = ""
    cfg.DATA.NUM_FRAMES = 64
    # Clips are sampled by time at this rate, whatever the source frame rate.
    cfg.DATA.TARGET_FPS = 12.0
    cfg.DATA.MULTI_LABEL = True
    cfg.DATA.DECODING_BACKEND = "decord"
    cfg.DATA.TRAIN_JITTER_SCALES = [256, 320]
    cfg.DATA.TRAIN_CROP_SIZE = 224
    cfg.DATA.TEST_CROP_SIZE = 256
    cfg.DATA.RANDOM_FLIP = True
    cfg.DATA.MEAN = [0.45, 0.45, 0.45]
    cfg.DATA.STD = [0.225, 0.225, 0.225]

    cfg.DATA_LOADER = CfgNode()
    cfg.DATA_LOADER.NUM_WORKERS = 2
    cfg.DATA_LOADER.PIN_MEMORY = True


def validate_data(cfg: CfgNode, errors: list) -> None:
    require_positive(errors, cfg, "DATA.NUM_FRAMES")
    require_positive(errors, cfg, "DATA.TARGET_FPS")
    require_choice(errors, cfg, "DATA.DECODING_BACKEND", ("decord", "pyav"))
    require_positive(errors, cfg, "DATA.TRAIN_JITTER_SCALES")
    require_positive(errors, cfg, "DATA.TRAIN_CROP_SIZE")
    require_positive(errors, cfg, "DATA.TEST_CROP_SIZE")
    require_positive(errors, cfg, "DATA.STD")
    require_positive(errors, cfg, "DATA_LOADER.NUM_WORKERS", allow_zero=True)
    scales = cfg.DATA.TRAIN_JITTER_SCALES
    if len(scales) != 2 or scales[0] > scales[1]:
        errors.append(f"DATA.TRAIN_JITTER_SCALES = {scales!r}: must be [min, max] with min <= max")
    elif cfg.DATA.TRAIN_CROP_SIZE > scales[0]:
        errors.append(
            f"DATA.TRAIN_CROP_SIZE = {cfg.DATA.TRAIN_CROP_SIZE} exceeds the smallest short side "
            f"DATA.TRAIN_JITTER_SCALES[0] = {scales[0]}"
        )
    for key in ("MEAN", "STD"):
        if len(cfg.DATA[key]) != 3:
            errors.append(f"DATA.{key} = {cfg.DATA[key]!r}: must have 3 values (RGB)")
    if cfg.DATA.MULTI_LABEL != (cfg.MODEL.LOSS_FUNC == "bce_logits"):
        errors.append(
            f"DATA.MULTI_LABEL = {cfg.DATA.MULTI_LABEL} does not fit MODEL.LOSS_FUNC = {cfg.MODEL.LOSS_FUNC!r}: "
            "multi-label data trains with 'bce_logits', single-label with 'cross_entropy'"
        )
