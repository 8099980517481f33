"""Kill-and-resume: a training process killed with SIGKILL and restarted ends with the same weights."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import fakes
import pytest
import torch

# Tests that use the session fixture reference_run run on one xdist worker, which builds it once.
pytestmark = pytest.mark.xdist_group("reference_run")

HERE = Path(__file__).resolve().parent
RUN = [sys.executable, str(HERE / "run_fake.py"), "train"]
ARGS = fakes.CHECKPOINTED_RUN


def _env(sleep):
    return fakes.subprocess_env(sleep)


def _final_model(output_dir):
    state = torch.load(output_dir / "checkpoints" / "checkpoint_epoch_00004.pyth", weights_only=True)
    return state["model"], state


def test_sigkill_and_restart_gives_identical_weights(tmp_path, reference_run):
    killed = tmp_path / "killed"
    command = RUN + ARGS + ["OUTPUT_DIR", str(killed)]
    # Slow samples (20 ms each) so the kill lands inside epoch 3, after checkpoint 2 exists.
    process = subprocess.Popen(command, env=_env(0.02), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        second = killed / "checkpoints" / "checkpoint_epoch_00002.pyth"
        deadline = time.time() + 120
        while not second.exists():
            assert process.poll() is None, "the training process ended before it could be killed"
            assert time.time() < deadline, "no second checkpoint after 120 s"
            time.sleep(0.01)
        time.sleep(0.15)
        assert process.poll() is None, "the run finished before the kill"
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait()
    assert process.returncode == -signal.SIGKILL
    names = sorted(p.name for p in (killed / "checkpoints").iterdir() if not p.name.startswith("."))
    assert "checkpoint_epoch_00004.pyth" not in names

    restarted = subprocess.run(command, env=_env(0), capture_output=True, text=True)
    assert restarted.returncode == 0, restarted.stderr[-3000:]
    assert "resumed from" in restarted.stdout and "checkpoint_epoch_0000" in restarted.stdout

    expected, expected_state = _final_model(reference_run)
    actual, actual_state = _final_model(killed)
    assert expected.keys() == actual.keys()
    for key in expected:
        assert torch.equal(expected[key], actual[key]), key
    for a, b in zip(expected_state["optimizer"]["state"].values(), actual_state["optimizer"]["state"].values()):
        assert torch.equal(a["momentum_buffer"], b["momentum_buffer"])
    # The statistics file survived the kill as whole lines.
    import json

    for line in (killed / "stats.jsonl").read_text().splitlines():
        json.loads(line)


def _train_in_process(output_dir, *overrides):
    import fakes

    from videotl import engine
    from videotl.config import load_config

    cfg = load_config("", fakes.TINY + ["OUTPUT_DIR", str(output_dir), "TRAIN.EVAL_PERIOD", "0", *overrides])
    return engine.train(cfg, build_model_fn=fakes.build_model, build_loader_fn=fakes.build_loader)


def test_resume_skips_damaged_newest_checkpoints_and_says_so(tmp_path):
    reference = tmp_path / "reference"
    _train_in_process(reference, "SOLVER.MAX_EPOCH", "3")

    run = tmp_path / "run"
    _train_in_process(run, "SOLVER.MAX_EPOCH", "3")
    folder = run / "checkpoints"
    # Epoch 3 truncated (a disk that failed under it), epoch 2 empty: epoch 1 is the newest that reads.
    third = folder / "checkpoint_epoch_00003.pyth"
    third.write_bytes(third.read_bytes()[:1000])
    (folder / "checkpoint_epoch_00002.pyth").write_bytes(b"")
    _train_in_process(run, "SOLVER.MAX_EPOCH", "3")
    log = (run / "log.txt").read_text()
    assert f"cannot read checkpoint {third}: " in log
    assert f"cannot read checkpoint {folder / 'checkpoint_epoch_00002.pyth'}: the file is empty (0 bytes)" in log
    assert "skipping it, resuming from the newest checkpoint that reads" in log
    assert f"resumed from {folder / 'checkpoint_epoch_00001.pyth'} (epoch 1, iteration 6)" in log
    # Epochs 2 and 3 trained again: the same weights as the run that never broke.
    expected = torch.load(reference / "checkpoints" / "checkpoint_epoch_00003.pyth", weights_only=True)["model"]
    actual = torch.load(third, weights_only=True)["model"]
    for key in expected:
        assert torch.equal(expected[key], actual[key]), key


def test_resume_with_no_readable_checkpoint_names_them_all(tmp_path):
    import pytest

    from videotl.engine.checkpoint import CheckpointError

    folder = tmp_path / "run" / "checkpoints"
    folder.mkdir(parents=True)
    (folder / "checkpoint_epoch_00001.pyth").write_bytes(b"")
    (folder / "checkpoint_epoch_00002.pyth").write_bytes(b"PK\x03\x04 not an archive")
    with pytest.raises(CheckpointError) as raised:
        _train_in_process(tmp_path / "run")
    message = str(raised.value)
    assert message.startswith(f"no checkpoint in {folder} can be read: checkpoint_epoch_00002.pyth (")
    assert "checkpoint_epoch_00001.pyth (the file is empty (0 bytes))" in message
    assert "TRAIN.AUTO_RESUME False" in message and "\n" not in message
