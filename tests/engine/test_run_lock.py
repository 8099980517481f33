"""One run per OUTPUT_DIR: real processes competing for a folder, a lock the kernel frees on death."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from videotl.engine.output_dir import LOCK_FILE, run_lock

HERE = Path(__file__).resolve().parent
RUN = [sys.executable, str(HERE / "run_fake.py")]


def _env(sleep=0.0):
    env = dict(os.environ, OMP_NUM_THREADS="1", FAKE_SLEEP=str(sleep))
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    return env


def _wait_for(condition, process, what, timeout=120):
    deadline = time.time() + timeout
    while not condition():
        assert process.poll() is None, f"the first run ended before {what}"
        assert time.time() < deadline, f"no {what} after {timeout} s"
        time.sleep(0.02)


def test_a_second_run_on_the_folder_stops_at_once_and_the_first_is_untouched(tmp_path):
    out = tmp_path / "run"
    args = ["train", "OUTPUT_DIR", str(out), "SOLVER.MAX_EPOCH", "3", "DATA_LOADER.NUM_WORKERS", "1"]
    first = subprocess.Popen(RUN + args, env=_env(0.03), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # The second run imports everything meanwhile and starts the moment the gate file appears.
    gate = tmp_path / "go"
    second = subprocess.Popen(
        RUN + args,
        env=dict(_env(), FAKE_START_AFTER=str(gate)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # Inside the first epoch's steps: the lock is held and the folder has its files.
        _wait_for(lambda: (out / "stats.jsonl").exists() and (out / "stats.jsonl").stat().st_size, first, "training")
        gate.touch()
        started = time.time()
        second_out, second_err = second.communicate(timeout=120)
        waited = time.time() - started
        assert first.poll() is None, "the first run was not running any more when the second stopped"
    finally:
        second.kill()
        stdout, stderr = first.communicate(timeout=300)
    assert first.returncode == 0, stderr[-3000:]

    assert second.returncode == 1
    lines = second_err.strip().splitlines()
    assert len(lines) == 1, second_err
    message = lines[0]
    assert message.startswith(f"error: OUTPUT_DIR {out} is in use by another run")
    assert f"PID {first.pid} on {socket.gethostname()}, started 20" in message
    assert "choose another OUTPUT_DIR" in message
    # It stopped before building anything: no model summary, no training line of its own.
    assert "training" not in second_out
    assert waited < 20

    # The first run's files are its own: whole lines, one record per iteration, every checkpoint.
    records = [json.loads(line) for line in (out / "stats.jsonl").read_text().splitlines()]
    assert [r["iter"] for r in records if r["type"] == "train"] == list(range(2, 19, 2))
    assert [r["epoch"] for r in records if r["type"] == "train_epoch"] == [1, 2, 3]
    names = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert names == [f"checkpoint_epoch_{e:05d}.pyth" for e in (1, 2, 3)]
    log = (out / "log.txt").read_text()
    assert log.count("training TinyVideoNet") == 1 and "in use by another run" not in log

    # The lock died with its holder: the folder is free again (the SIGKILL case is below).
    with run_lock(out):
        pass


def test_sigkilled_holder_leaves_no_lock_even_with_a_worker_alive(tmp_path):
    # The lock file stays behind with the dead run's details; the kernel dropped the lock itself.
    out = tmp_path / "run"
    args = ["train", "OUTPUT_DIR", str(out), "SOLVER.MAX_EPOCH", "2", "DATA_LOADER.NUM_WORKERS", "2"]
    process = subprocess.Popen(RUN + args, env=_env(0.05), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(lambda: (out / "stats.jsonl").exists() and (out / "stats.jsonl").stat().st_size, process, "training")
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait()
    holder = json.loads((out / LOCK_FILE).read_text())
    assert holder["pid"] == process.pid
    # Right away, while the orphaned DataLoader workers may still be shutting down.
    with run_lock(out):
        pass


def _free_in_another_process(out):
    """Whether another process can take the folder's lock now (a bare flock: no videotl import)."""
    code = (
        "import fcntl, sys\n"
        f"handle = open({str(out / LOCK_FILE)!r}, 'a')\n"
        "try:\n    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
        "except BlockingIOError:\n    sys.exit(3)\n"
    )
    return subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0


def test_lock_is_reentrant_in_one_process_and_exclusive_across_processes(tmp_path):
    out = tmp_path / "run"
    with run_lock(out):
        with run_lock(out):  # train_net holds it around train(), which takes it again
            pass
        # Still held after the inner block: the outer one owns it.
        holder = json.loads((out / LOCK_FILE).read_text())
        assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
        assert not _free_in_another_process(out)
        probe = [
            sys.executable,
            "-c",
            f"from videotl.engine.output_dir import run_lock\nwith run_lock({str(out)!r}): pass",
        ]
        other = subprocess.run(probe, capture_output=True, text=True, timeout=120)
        assert other.returncode != 0 and "RunLockError" in other.stderr and f"PID {os.getpid()}" in other.stderr
    assert _free_in_another_process(out)
    with run_lock(out, enabled=False):  # DDP ranks other than 0 take no lock
        assert _free_in_another_process(out)
    # An error inside the block releases the lock too.
    with pytest.raises(ValueError):
        with run_lock(out):
            raise ValueError("inside")
    assert _free_in_another_process(out)


def test_ddp_ranks_all_stop_with_the_message_when_the_folder_is_held(tmp_path):
    out = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        str(HERE / "run_fake.py"),
        "train",
        "OUTPUT_DIR",
        str(out),
        "SOLVER.MAX_EPOCH",
        "1",
    ]
    with run_lock(out):
        result = subprocess.run(command, env=_env(), capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert result.returncode != 0
    assert result.stderr.count(f"error: OUTPUT_DIR {out} is in use by another run (PID {os.getpid()}") == 2
    # (torchrun adds its own report of the failed ranks; nothing comes from videotl's frames.)
    assert "videotl/engine" not in result.stderr
    assert not (out / "stats.jsonl").exists()
