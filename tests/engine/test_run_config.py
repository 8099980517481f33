"""Validation of the run and solver keys the engine adds."""

import pytest

from videotl.config import ConfigError, load_config


def test_defaults_load():
    cfg = load_config("")
    assert cfg.TEST.SUBMISSION_FILE == "charades_submission.txt" and cfg.TEST.SAVE_RESULTS
    assert cfg.DIST_BACKEND == "auto" and cfg.TENSORBOARD.ENABLE and cfg.TRAIN.CHANNELS_LAST
    assert load_config("", ["TRAIN.EVAL_PERIOD", "0"]).TRAIN.EVAL_PERIOD == 0


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["TEST.SUBMISSION_FILE", "out/sub.txt"], "TEST.SUBMISSION_FILE"),
        (["TEST.SUBMISSION_FILE", "''"], "TEST.SUBMISSION_FILE"),
        (["DEVICE", "cpu", "BN.SYNC", "True"], "BN.SYNC"),
        (["DEVICE", "cpu", "DIST_BACKEND", "nccl"], "DIST_BACKEND"),
        (["DIST_BACKEND", "mpi"], "DIST_BACKEND"),
        (["TRAIN.EVAL_PERIOD", "-1"], "TRAIN.EVAL_PERIOD"),
        (["TRAIN.CHECKPOINT_PERIOD", "0"], "TRAIN.CHECKPOINT_PERIOD"),
        (["SOLVER.MOMENTUM", "0"], "SOLVER.NESTEROV"),
        (["TENSORBOARD.ENABLE", "yes please"], "TENSORBOARD.ENABLE"),
    ],
)
def test_bad_values_name_their_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config("", overrides)
