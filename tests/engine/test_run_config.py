"""Validation of the run and solver keys the engine adds."""

import pytest

from videotl.config import ConfigError, load_config


def test_defaults_load():
    cfg = load_config("")
    assert cfg.TEST.SUBMISSION_FILE == "charades_submission.txt" and cfg.TEST.SAVE_RESULTS
    assert cfg.DIST_BACKEND == "auto" and cfg.TENSORBOARD.ENABLE and not cfg.TRAIN.CHANNELS_LAST
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


def test_small_shared_memory_stops_the_run_in_one_line(tmp_path, monkeypatch):
    import shutil
    import sys
    from collections import namedtuple

    from videotl.engine import run as run_module

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(64 * 2**20, 0, 64 * 2**20))
    # The Charades config's batch: 4 clips x 3 x 64 x 224 x 224 float32 = 147 MiB; two workers keep
    # two each in flight and one more is handed over: 5 x 147 = 735 MiB.
    cfg = load_config("configs/charades_12fps.yaml", ["DATA_LOADER.NUM_WORKERS", "2", "DATA.INPUT_DTYPE", "float32"])
    with pytest.raises(ConfigError) as raised:
        run_module.check_shared_memory(cfg, shm=str(tmp_path))
    message = str(raised.value)
    assert (
        message.startswith(f"{tmp_path} has 64 MB free, but 2 loader workers need about 735 MB") and "\n" not in message
    )
    # Clips that cross as uint8 take a quarter: 5 x 36.75 MiB.
    cfg = load_config("configs/charades_12fps.yaml", ["DATA_LOADER.NUM_WORKERS", "2", "DATA.INPUT_DTYPE", "uint8"])
    with pytest.raises(ConfigError, match="2 loader workers need about 184 MB"):
        run_module.check_shared_memory(cfg, shm=str(tmp_path))
    assert "--shm-size" in message and "DATA_LOADER.SHARING_STRATEGY file_system" in message
    # Either way out passes: no workers, or the file-system strategy.
    run_module.check_shared_memory(
        load_config("configs/charades_12fps.yaml", ["DATA_LOADER.NUM_WORKERS", "0"]), shm=str(tmp_path)
    )
    try:
        run_module.check_shared_memory(
            load_config("configs/charades_12fps.yaml", ["DATA_LOADER.SHARING_STRATEGY", "file_system"]),
            shm=str(tmp_path),
        )
        import torch.multiprocessing as mp

        assert mp.get_sharing_strategy() == "file_system"
    finally:
        import torch.multiprocessing as mp

        mp.set_sharing_strategy("file_descriptor")
