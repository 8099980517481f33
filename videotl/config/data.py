"""Data defaults: decoding, clip sampling, transforms and the data loader."""

from fvcore.common.config import CfgNode

from ._checks import require_choice, require_positive, require_range


def add_data_defaults(cfg: CfgNode) -> None:
    cfg.DATA = CfgNode()
    # Dataset root: annotation files and the video folder live here (see datasets/DATASETS.md).
    cfg.DATA.PATH_TO_DATA_DIR = ""
    cfg.DATA.NUM_FRAMES = 64
    # Clips are sampled by time at this rate, whatever the source frame rate.
    cfg.DATA.TARGET_FPS = 12.0
    cfg.DATA.MULTI_LABEL = True
    # "pyav", "decord", "torchcodec" or a backend registered in videotl.data.decoding.BACKENDS
    # (datasets/DATASETS.md, "Your own reader"): the same frames from each (decord and torchcodec fall
    # back to PyAV per file where their frame index disagrees with the container's). "pyav", the
    # default (videotl.data.decoding.DEFAULT_BACKEND), is the fastest exact reader on the data
    # benchmark (docs/benchmarks.md, "Data pipeline"); torchcodec needs FFmpeg's shared libraries.
    cfg.DATA.DECODING_BACKEND = "pyav"
    # The dtype clips cross to the device in: "uint8" (a quarter of the bytes; normalised on the
    # device, to the same values), "float32" (normalised in the loader's workers), or "auto":
    # uint8 when training and testing run on CUDA, float32 on the CPU (where the workers normalise
    # in parallel).
    cfg.DATA.INPUT_DTYPE = "auto"
    # Where videos are decoded: "cpu" (DataLoader workers) or "cuda" (needs DECODING_BACKEND
    # torchcodec): the workers only plan each clip (video, start, crop / scale / flip draws) and
    # the main process decodes and transforms the batch on its GPU, the next batch on a side
    # stream; never in workers (one CUDA context per process). The same batches as "cpu". Helps
    # when the CPU cores cannot decode as fast as the GPU trains (docs/training.md, "GPU decoding").
    # Without CUDA in a run it is an error; torchcodec without CUDA support decodes on the CPU, logged.
    cfg.DATA.DECODE_DEVICE = "cpu"
    # Apply a video's display matrix (a phone video shot upright is stored sideways with a 90
    # degree rotation): frames come as players show them, on every backend. False keeps the
    # stored orientation (FFmpeg's -noautorotate); sizes and crops then refer to the stored frame.
    cfg.DATA.AUTOROTATE = True
    # Seconds one clip (segments mode: one segment) or one probe may take; a video past it is
    # skipped like an unreadable one. 0 = no limit.
    cfg.DATA.DECODE_TIMEOUT_SEC = 60.0
    # Keep probe results (duration, frame count) in a manifest per video folder under
    # $VIDEOTL_CACHE_DIR (default ~/.cache/videotl), so later runs and DDP ranks skip probing.
    cfg.DATA.PROBE_CACHE = True
    # Video folder relative to PATH_TO_DATA_DIR; "" = the dataset's default (Charades:
    # Charades_v1_480, else Charades_v1; AViD: videos).
    cfg.DATA.VIDEO_DIR = ""
    # Training labels: "clip" = classes whose annotated intervals overlap the clip (Charades);
    # "video" = every class of the video. Evaluation always uses video-level labels.
    cfg.DATA.TRAIN_LABELS = "clip"
    # With clip labels: the fraction of the clip's frames that must show an action for its class to
    # label the clip; 0 = any overlap of the clip's time window (PySlowFast's Charades rule).
    cfg.DATA.TRAIN_LABEL_MIN_COVERAGE = 0.0
    # CSV datasets: paths in <split>.csv are relative to PATH_PREFIX (default: PATH_TO_DATA_DIR).
    cfg.DATA.PATH_PREFIX = ""
    cfg.DATA.PATH_LABEL_SEPARATOR = " "
    # AViD label rules (see datasets/DATASETS.md): "none" labels are dropped or kept as a class;
    # empty labels and names outside the class list are dropped or stop with an error.
    cfg.DATA.AVID_NONE_LABEL = "drop"
    cfg.DATA.AVID_UNKNOWN_LABEL = "drop"
    # A training sample tries this many videos (the drawn one, then replacements) before it gives up.
    cfg.DATA.MAX_SKIP_ATTEMPTS = 20
    cfg.DATA.TRAIN_JITTER_SCALES = [256, 320]
    cfg.DATA.TRAIN_CROP_SIZE = 224
    cfg.DATA.TEST_CROP_SIZE = 256
    cfg.DATA.RANDOM_FLIP = True
    cfg.DATA.MEAN = [0.45, 0.45, 0.45]
    cfg.DATA.STD = [0.225, 0.225, 0.225]

    _add_loader_defaults(cfg)


def _add_loader_defaults(cfg: CfgNode) -> None:
    cfg.DATA_LOADER = CfgNode()
    cfg.DATA_LOADER.NUM_WORKERS = 2
    # Pinned only when CUDA is available.
    cfg.DATA_LOADER.PIN_MEMORY = True
    # Decoder threads per clip; 0 = one inside DataLoader workers, the decoder's default otherwise.
    cfg.DATA_LOADER.DECODER_THREADS = 0
    # How workers hand batches over: "file_descriptor" (PyTorch's default on Linux, through shared
    # memory in /dev/shm) or "file_system" (file names; for containers whose /dev/shm is small).
    cfg.DATA_LOADER.SHARING_STRATEGY = "file_descriptor"


def validate_data(cfg: CfgNode, errors: list) -> None:
    # Imported at check time, as run.py imports the dataset registry: loading the config loads no decoder.
    from ..data.decoding import BACKENDS

    require_positive(errors, cfg, "DATA.NUM_FRAMES")
    require_positive(errors, cfg, "DATA.TARGET_FPS")
    require_choice(errors, cfg, "DATA.DECODING_BACKEND", BACKENDS.names())
    require_positive(errors, cfg, "DATA.DECODE_TIMEOUT_SEC", allow_zero=True)
    require_choice(errors, cfg, "DATA.DECODE_DEVICE", ("cpu", "cuda"))
    require_choice(errors, cfg, "DATA.INPUT_DTYPE", ("auto", "uint8", "float32"))
    require_choice(errors, cfg, "DATA_LOADER.SHARING_STRATEGY", ("file_descriptor", "file_system"))
    if cfg.DATA.DECODE_DEVICE == "cuda" and cfg.DATA.DECODING_BACKEND != "torchcodec":
        errors.append(
            f"DATA.DECODE_DEVICE = 'cuda' needs DATA.DECODING_BACKEND = 'torchcodec', not "
            f"{cfg.DATA.DECODING_BACKEND!r} (only torchcodec decodes on the GPU)"
        )
    require_positive(errors, cfg, "DATA.TRAIN_JITTER_SCALES")
    require_positive(errors, cfg, "DATA.TRAIN_CROP_SIZE")
    require_positive(errors, cfg, "DATA.TEST_CROP_SIZE")
    require_positive(errors, cfg, "DATA.STD")
    require_positive(errors, cfg, "DATA_LOADER.NUM_WORKERS", allow_zero=True)
    require_positive(errors, cfg, "DATA_LOADER.DECODER_THREADS", allow_zero=True)
    require_choice(errors, cfg, "DATA.TRAIN_LABELS", ("clip", "video"))
    require_range(errors, cfg, "DATA.TRAIN_LABEL_MIN_COVERAGE", 0.0, 1.0)
    require_choice(errors, cfg, "DATA.AVID_NONE_LABEL", ("drop", "class"))
    require_choice(errors, cfg, "DATA.AVID_UNKNOWN_LABEL", ("drop", "error"))
    require_positive(errors, cfg, "DATA.MAX_SKIP_ATTEMPTS")
    separator = cfg.DATA.PATH_LABEL_SEPARATOR
    if len(separator) != 1 or separator == ",":
        errors.append(
            f"DATA.PATH_LABEL_SEPARATOR = {separator!r}: must be one character other than ',' "
            "(commas separate the labels of a multi-label line)"
        )
    if not cfg.DATA.MULTI_LABEL and "charades" in (cfg.TRAIN.DATASET, cfg.TEST.DATASET):
        errors.append("DATA.MULTI_LABEL = False, but Charades is multi-label: set DATA.MULTI_LABEL True")
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
            "multi-label data trains with 'bce_logits', single-label with 'cross_entropy' (or 'bce_one_hot')"
        )
