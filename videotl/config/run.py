"""Defaults for a run: training and testing switches, devices, output, checkpoints, logging."""

from typing import List

from fvcore.common.config import CfgNode

from ._checks import lookup, require_choice, require_positive, require_range

# NumPy takes seeds below 2**32; the largest seed leaves room for the per-rank and per-epoch offsets.
MAX_RNG_SEED = 2**31 - 1


def add_run_defaults(cfg: CfgNode) -> None:
    cfg.OUTPUT_DIR = "./output"
    # Seeds Python, NumPy and torch (plus the rank on each process): 0 .. 2**31 - 1.
    cfg.RNG_SEED = 0
    # "auto" picks CUDA when present; AMP and channels-last apply on CUDA only.
    cfg.DEVICE = "auto"
    # Iterations between log lines, and between the step loop's reads of the loss from the device
    # (host syncs; the tqdm bar's count updates every step).
    cfg.LOG_PERIOD = 10
    # Process-group backend under torchrun: "auto" is NCCL on CUDA and gloo on CPU.
    cfg.DIST_BACKEND = "auto"
    # How long a rank waits at a collective (barrier, gather) for the others before the run fails.
    # Evaluation runs on every rank and the ranks meet only at its end, so the slowest shard (and
    # rank 0 writing a checkpoint or the results) sets the wait; a hung rank is found after this.
    cfg.DIST_TIMEOUT_MINUTES = 60.0

    cfg.TENSORBOARD = CfgNode()
    # Scalars (loss, lr, evaluation metrics) to OUTPUT_DIR/tensorboard, besides stats.jsonl.
    cfg.TENSORBOARD.ENABLE = True

    cfg.TRAIN = CfgNode()
    cfg.TRAIN.ENABLE = True
    cfg.TRAIN.DATASET = "charades"
    cfg.TRAIN.SPLIT = "train"
    cfg.TRAIN.BATCH_SIZE_PER_DEVICE = 4
    # Epochs between evaluations on the test views during training; 0 turns them off. The last
    # epoch is not forced: train_net tests the final weights anyway (TEST.ENABLE).
    cfg.TRAIN.EVAL_PERIOD = 1
    # Epochs between checkpoints (the last epoch always saves one). A killed job resumes from the
    # last checkpoint, so this bounds the work lost.
    cfg.TRAIN.CHECKPOINT_PERIOD = 1
    # Continue from the newest OUTPUT_DIR/checkpoints/checkpoint_epoch_XXXXX.pyth when there is one.
    cfg.TRAIN.AUTO_RESUME = True
    # A checkpoint to start from (fine-tuning); a model-only file is accepted. Ignored when
    # AUTO_RESUME finds a checkpoint of this run.
    cfg.TRAIN.CHECKPOINT_FILE_PATH = ""
    # Automatic mixed precision (CUDA only).
    cfg.TRAIN.MIXED_PRECISION = True
    # Autocast dtype: "auto" is bfloat16 where the GPU has it natively (Ampere and later), else
    # float16; only float16 uses a gradient scaler. Evaluation runs under the same autocast.
    cfg.TRAIN.AMP_DTYPE = "auto"
    # Channels-last (NDHWC) 3-D convolution kernels and inputs, in training and testing. Measured
    # faster on CPU (oneDNN, docs/benchmarks.md; the CPU demo sets it); off by default until a GPU
    # measurement shows cuDNN's grouped and depthwise 3-D kernels gain from it (docs/training.md).
    cfg.TRAIN.CHANNELS_LAST = False
    # Deterministic algorithms (bit-exact reruns and resumes on CPU, slower on CUDA).
    cfg.TRAIN.DETERMINISTIC = False

    _add_test_defaults(cfg)


def _add_test_defaults(cfg: CfgNode) -> None:
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
    # A videotl.evaluation.METRICS suite: "charades_map" (official mAP), "accuracy" (top-1 / top-5,
    # mean per-class); "auto" picks charades_map for multi-label data, accuracy otherwise.
    cfg.TEST.METRIC = "auto"
    # Weights to test; empty means the newest checkpoint in OUTPUT_DIR/checkpoints.
    cfg.TEST.CHECKPOINT_FILE_PATH = ""
    # test_net writes the score file (submission format), per-class CSV and PNG and metrics JSON.
    cfg.TEST.SAVE_RESULTS = True
    # Name of the score file in OUTPUT_DIR: one line "id s0 s1 ... s{C-1}" per scored video.
    cfg.TEST.SUBMISSION_FILE = "charades_submission.txt"

    cfg.BN = CfgNode()
    # SyncBatchNorm across processes under DDP.
    cfg.BN.SYNC = False


def cuda_only_settings(cfg: CfgNode) -> List[str]:
    """The settings of ``cfg`` that cannot run without CUDA, one message each ("KEY = value needs
    CUDA ..."): checked here for DEVICE cpu, and by the engine when DEVICE auto finds no GPU."""
    found = []
    if cfg.DIST_BACKEND == "nccl":
        found.append("DIST_BACKEND = 'nccl' needs CUDA")
    if cfg.TRAIN.MIXED_PRECISION and cfg.TRAIN.AMP_DTYPE != "auto":
        found.append(
            f"TRAIN.AMP_DTYPE = {cfg.TRAIN.AMP_DTYPE!r} needs CUDA (mixed precision applies on CUDA only: leave it "
            "'auto' or set TRAIN.MIXED_PRECISION False)"
        )
    if cfg.TOKENLEARNER.ATTENTION_IMPL == "triton":
        found.append("TOKENLEARNER.ATTENTION_IMPL = 'triton' needs CUDA ('auto' runs the fused C kernels on CPU)")
    if cfg.DATA.DECODE_DEVICE == "cuda":
        found.append("DATA.DECODE_DEVICE = 'cuda' needs CUDA")
    return found


def validate_run(cfg: CfgNode, errors: list) -> None:
    require_range(errors, cfg, "RNG_SEED", 0, MAX_RNG_SEED)
    require_choice(errors, cfg, "DEVICE", ("auto", "cpu", "cuda"))
    require_positive(errors, cfg, "LOG_PERIOD")
    from ..data.build import DATASETS
    from ..evaluation.metrics import METRICS

    for key in ("TRAIN.DATASET", "TEST.DATASET"):
        name = lookup(cfg, key)
        if name not in DATASETS:
            errors.append(f"{key} = {name!r}: must be one of {', '.join(map(repr, DATASETS.names()))}")
    if cfg.TEST.METRIC != "auto" and cfg.TEST.METRIC not in METRICS:
        errors.append(
            f"TEST.METRIC = {cfg.TEST.METRIC!r}: must be 'auto' or one of {', '.join(map(repr, METRICS.names()))}"
        )
    require_positive(errors, cfg, "TRAIN.BATCH_SIZE_PER_DEVICE")
    require_choice(errors, cfg, "DIST_BACKEND", ("auto", "gloo", "nccl"))
    require_positive(errors, cfg, "DIST_TIMEOUT_MINUTES")
    require_positive(errors, cfg, "TRAIN.EVAL_PERIOD", allow_zero=True)
    require_positive(errors, cfg, "TRAIN.CHECKPOINT_PERIOD")
    require_positive(errors, cfg, "TEST.BATCH_SIZE_PER_DEVICE")
    require_choice(errors, cfg, "TEST.MODE", ("views", "segments"))
    require_positive(errors, cfg, "TEST.NUM_ENSEMBLE_VIEWS")
    require_choice(errors, cfg, "TEST.NUM_SPATIAL_CROPS", (1, 3))
    require_choice(errors, cfg, "TEST.ENSEMBLE_METHOD", ("max", "mean"))
    name = cfg.TEST.SUBMISSION_FILE
    if not name or "/" in name or "\\" in name or name in (".", ".."):
        errors.append(f"TEST.SUBMISSION_FILE = {name!r}: must be a plain file name (it lives in OUTPUT_DIR)")
    if cfg.BN.SYNC and cfg.DEVICE == "cpu":
        errors.append("BN.SYNC = True needs CUDA (PyTorch's SyncBatchNorm has no CPU version), but DEVICE = 'cpu'")
    require_choice(errors, cfg, "TRAIN.AMP_DTYPE", ("auto", "bfloat16", "float16"))
    if cfg.DEVICE == "cpu":
        errors.extend(f"{problem}, but DEVICE = 'cpu'" for problem in cuda_only_settings(cfg))
    if not cfg.OUTPUT_DIR:
        errors.append("OUTPUT_DIR is empty: give a folder for logs and checkpoints")
