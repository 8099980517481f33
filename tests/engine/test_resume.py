"""Kill-and-resume: a training process killed with SIGKILL and restarted ends with the same weights."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
RUN = [sys.executable, str(HERE / "run_fake.py"), "train"]
# 4 epochs of 6 iterations, a checkpoint and an evaluation after each, one loader worker:
# resuming must restore the loader's seeds, the sampler order, dropout and the optimizer.
ARGS = [
    "SOLVER.MAX_EPOCH",
    "4",
    "TRAIN.CHECKPOINT_PERIOD",
    "1",
    "TRAIN.EVAL_PERIOD",
    "1",
    "DATA_LOADER.NUM_WORKERS",
    "1",
]


def _env(sleep):
    env = dict(os.environ, OMP_NUM_THREADS="1", FAKE_SLEEP=str(sleep))
    env.pop("WORLD_SIZE", None)
    return env


def _final_model(output_dir):
    state = torch.load(output_dir / "checkpoints" / "checkpoint_epoch_00004.pyth", weights_only=True)
    return state["model"], state


def test_sigkill_and_restart_gives_identical_weights(tmp_path):
    reference = tmp_path / "reference"
    subprocess.run(RUN + ARGS + ["OUTPUT_DIR", str(reference)], env=_env(0), check=True, capture_output=True)

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

    expected, expected_state = _final_model(reference)
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
