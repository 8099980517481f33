"""Validation of the run and solver keys the engine adds."""

import pytest

from videotl.config import ConfigError, load_config


def test_defaults_load():
    cfg = load_config("")
    assert cfg.TEST.SUBMISSION_FILE == "charades_submission.txt" and cfg.TEST.SAVE_RESULTS
    assert cfg.DIST_BACKEND == "auto" and cfg.TENSORBOARD.ENABLE and cfg.TRAIN.CHANNELS_LAST
    assert load_config("", ["TRAIN.EVAL_PERIOD", "0"]).TRAIN.EVAL_PERIOD == 0


def test_cpu_runs_keep_the_cuda_defaults():
    # Mixed precision is on by default and simply does not apply on CPU; only an explicit CUDA-only
    # value is an error there.
    cfg = load_config("", ["DEVICE", "cpu"])
    assert cfg.TRAIN.MIXED_PRECISION and cfg.TRAIN.AMP_DTYPE == "auto" and not cfg.MODEL.COMPILE
    assert cfg.TOKENLEARNER.ATTENTION_IMPL == "auto" and cfg.DATA.DECODE_DEVICE == "cpu"
    assert load_config("", ["DEVICE", "cpu", "TRAIN.MIXED_PRECISION", "False", "TRAIN.AMP_DTYPE", "float16"])


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["TEST.SUBMISSION_FILE", "out/sub.txt"], "TEST.SUBMISSION_FILE"),
        (["TEST.SUBMISSION_FILE", "''"], "TEST.SUBMISSION_FILE"),
        (["DEVICE", "cpu", "BN.SYNC", "True"], "BN.SYNC"),
        (["DEVICE", "cpu", "DIST_BACKEND", "nccl"], "DIST_BACKEND"),
        (["DIST_BACKEND", "mpi"], "DIST_BACKEND"),
        (["DIST_TIMEOUT_MINUTES", "0"], "DIST_TIMEOUT_MINUTES"),
        (["DEVICE", "cpu", "TRAIN.AMP_DTYPE", "float16"], "TRAIN.AMP_DTYPE = 'float16' needs CUDA"),
        (["TRAIN.AMP_DTYPE", "float8"], "TRAIN.AMP_DTYPE = 'float8'"),
        (
            ["DEVICE", "cpu", "TOKENLEARNER.ATTENTION_IMPL", "triton"],
            "TOKENLEARNER.ATTENTION_IMPL = 'triton' needs CUDA",
        ),
        (["TOKENLEARNER.ATTENTION_IMPL", "cuda"], "TOKENLEARNER.ATTENTION_IMPL = 'cuda'"),
        (["TOKENLEARNER.CHUNK_SIZE", "0", "TOKENLEARNER.ATTENTION_IMPL", "pytorch"], "TOKENLEARNER.CHUNK_SIZE = 0"),
        (["DATA.DECODE_DEVICE", "cuda"], "DATA.DECODE_DEVICE = 'cuda'"),
        (["DATA.DECODE_DEVICE", "gpu"], "DATA.DECODE_DEVICE = 'gpu'"),
        (["MODEL.COMPILE", "1"], "MODEL.COMPILE"),
        (["TRAIN.EVAL_PERIOD", "-1"], "TRAIN.EVAL_PERIOD"),
        (["TRAIN.CHECKPOINT_PERIOD", "0"], "TRAIN.CHECKPOINT_PERIOD"),
        (["SOLVER.MOMENTUM", "0"], "SOLVER.NESTEROV"),
        (["TENSORBOARD.ENABLE", "yes please"], "TENSORBOARD.ENABLE"),
    ],
)
def test_bad_values_name_their_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config("", overrides)
