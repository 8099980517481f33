"""Multi-process launch: tools/check_distributed.py with 2 gloo processes, and the SLURM template."""

import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from videotl_tools import check_distributed

ROOT = Path(__file__).resolve().parents[2]


def _env(**extra):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    env.update(extra)
    return env


def _check(*args, env, torchrun=False, nproc=2, timeout=300):
    tool = ["-m", "videotl_tools.check_distributed", *args]
    if torchrun:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *tool]
    else:
        command = [sys.executable, *tool]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def test_two_gloo_processes_pass_the_check():
    result = _check("DEVICE", "cpu", "--timeout", "60", env=_env(), torchrun=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    # Rank 0 prints every rank's line, in rank order, then the verdict.
    ranks = [line for line in lines if line.startswith("rank ")]
    assert [line.split(" (")[0] for line in ranks] == ["rank 0/2", "rank 1/2"]
    for line in ranks:
        assert "backend gloo, device cpu, world size 2" in line and "all-reduce 3 (expected 3)" in line
    assert lines[-1] == "ok: 2 processes, backend gloo; training waits up to 60 min"


def test_one_process_under_torchrun_forms_a_group_of_one():
    # torchrun --nproc_per_node 1: the only way to try NCCL on a machine with one GPU.
    result = _check("DEVICE", "cpu", "--timeout", "60", env=_env(), torchrun=True, nproc=1)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("rank 0/1 (local 0) on ") and "all-reduce 1 (expected 1)" in lines[0]
    assert lines[-1] == "ok: 1 process, backend gloo; training waits up to 60 min"


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_missing_rank_fails_in_one_line_within_the_timeout():
    # Rank 0 of 2 alone: rank 1 never comes.
    port = _free_port()
    env = _env(WORLD_SIZE="2", RANK="0", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    result = _check("DEVICE", "cpu", "--timeout", "2", env=env, timeout=120)
    assert result.returncode == 1, result.stdout + result.stderr
    error = result.stderr.strip()
    assert "\n" not in error and "Traceback" not in error
    assert error.startswith(f"error: rank 0 of 2: the process group did not form at 127.0.0.1:{port} within 2 s")


@pytest.fixture
def one_process(monkeypatch):
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)


def test_without_torchrun_it_checks_one_process(one_process, capsys):
    assert check_distributed.main(["DEVICE", "cpu"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("one process (WORLD_SIZE is not set") and "training would use gloo" in out


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_on_a_cpu_machine_is_one_line(one_process, capsys):
    assert check_distributed.main(["DEVICE", "cuda"]) == 1
    assert capsys.readouterr().err == "error: DEVICE = 'cuda' but torch finds no CUDA device\n"


def _stub(folder: Path, name: str, body: str) -> None:
    path = folder / name
    path.write_text("#!/bin/bash\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def test_slurm_template_derives_the_rendezvous_and_calls_torchrun(tmp_path):
    # scontrol expands the node list; srun records its command line instead of running it.
    log = tmp_path / "srun.log"
    _stub(
        tmp_path,
        "scontrol",
        'test "$1 $2" = "show hostnames" && test "$3" = "gpu[017-018]" && printf "gpu017\\ngpu018\\n"\n',
    )
    _stub(tmp_path, "srun", f'echo "$*" >> {log}\n')
    env = dict(os.environ, PATH=f"{tmp_path}:{os.environ['PATH']}", SLURM_JOB_NODELIST="gpu[017-018]",
               SLURM_JOB_NUM_NODES="2", SLURM_JOB_ID="4242", SLURM_GPUS_ON_NODE="4", SLURM_CPUS_PER_TASK="32")  # fmt: skip
    env.pop("OMP_NUM_THREADS", None)
    args = ["--cfg", "configs/charades_12fps.yaml", "OUTPUT_DIR", "/shared/runs/c12"]
    result = subprocess.run(["bash", str(ROOT / "tools/slurm/train.sbatch"), *args], env=env, capture_output=True,
                            text=True, cwd=tmp_path, timeout=60)  # fmt: skip
    assert result.returncode == 0, result.stderr
    check, train = log.read_text().splitlines()
    common = "--ntasks=2 --ntasks-per-node=1 --kill-on-bad-exit=1 torchrun --nnodes 2 --nproc_per_node 4"
    assert check == (
        f"{common} --rdzv_id 4242-check --rdzv_backend c10d --rdzv_endpoint gpu017:29501 "
        "tools/check_distributed.py --cfg configs/charades_12fps.yaml OUTPUT_DIR /shared/runs/c12"
    )
    assert train == (
        f"{common} --rdzv_id 4242-train --rdzv_backend c10d --rdzv_endpoint gpu017:29500 "
        "tools/train_net.py --cfg configs/charades_12fps.yaml OUTPUT_DIR /shared/runs/c12"
    )
    assert "2 nodes x 4 processes, rendezvous at gpu017:29500" in result.stdout

    # Outside a SLURM job it says so instead of calling torchrun with empty values.
    bare = {k: v for k, v in env.items() if not k.startswith("SLURM_")}
    outside = subprocess.run(["bash", str(ROOT / "tools/slurm/train.sbatch")], env=bare, capture_output=True, text=True)
    assert outside.returncode == 1 and "submit this with sbatch" in outside.stderr
