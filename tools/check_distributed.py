#!/usr/bin/env python
"""Dry run of a multi-process launch: join the process group as training does, all-reduce, barrier.

    torchrun --nnodes 2 --nproc_per_node 8 --rdzv_backend c10d --rdzv_endpoint HOST:29500 \\
        tools/check_distributed.py [--cfg FILE] [--timeout SECONDS] [KEY VALUE ...]

Every rank joins the group from torchrun's environment (env://) with DEVICE and DIST_BACKEND of the
config, exactly as train_net does, then sums rank + 1 over all ranks (the result must be
W (W + 1) / 2) and waits at a barrier. Forming the group and each collective must finish within
--timeout seconds. Rank 0 prints one line per rank (host, backend, device, world size, NCCL
version); a rank that fails prints one line saying why, and the exit status is 1. One process
under ``torchrun --nproc_per_node 1`` forms a group of one, which tries the backend (NCCL on a
single GPU) as training on more GPUs would use it. Started without torchrun it checks only the device.
"""

import os
import socket
import sys
import time
from datetime import timedelta

import torch
import torch.distributed as dist

from videotl.engine import distributed as du
from videotl_tools._cli import add_config_arguments, config_from, make_parser, parse_args, run


class CheckFailed(Exception):
    """A step of the check failed; the message is the one line to print."""


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def _describe(ctx: du.DistContext, backend: str) -> str:
    device = str(ctx.device)
    if ctx.device.type == "cuda":
        device += f" ({torch.cuda.get_device_name(ctx.device)})"
    backend_text = backend
    if backend == "nccl":
        version = torch.cuda.nccl.version()
        backend_text += " (NCCL " + (".".join(map(str, version)) if isinstance(version, tuple) else str(version)) + ")"
    return (
        f"rank {ctx.rank}/{ctx.world_size} (local {ctx.local_rank}) on {socket.gethostname()}: backend {backend_text}, "
        f"device {device}"
    )


def _check(args) -> int:
    cfg = config_from(args)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    where = f"{os.environ.get('MASTER_ADDR', '?')}:{os.environ.get('MASTER_PORT', '?')}"
    who = f"rank {rank} of {world_size}"
    started = time.perf_counter()
    launched = "WORLD_SIZE" in os.environ
    try:
        ctx = du.init_distributed(
            device=cfg.DEVICE, backend=cfg.DIST_BACKEND, timeout_minutes=args.timeout / 60, group_of_one=launched
        )
    except (RuntimeError, OSError) as error:
        if not launched:
            raise CheckFailed(f"{_first_line(error)}") from None
        raise CheckFailed(
            f"{who}: the process group did not form at {where} within {args.timeout:g} s "
            f"(a rank did not start, or cannot reach MASTER_ADDR): {_first_line(error)}"
        ) from None
    backend = dist.get_backend() if dist.is_initialized() else du.resolve_backend(cfg.DIST_BACKEND, ctx.device)
    if not launched:
        print(
            f"one process (WORLD_SIZE is not set: start this with torchrun to check a process group); "
            f"device {ctx.device}, training would use {backend}"
        )
        return 0
    joined = time.perf_counter() - started
    # NCCL reduces CUDA tensors only; gloo here reduces CPU tensors, as DDP on CPU does.
    value = torch.tensor([float(ctx.rank + 1)], device=ctx.device if backend == "nccl" else "cpu")
    expected = world_size * (world_size + 1) / 2
    try:
        dist.all_reduce(value)
        total = float(value.item())
        if total != expected:
            raise CheckFailed(f"{who}: all-reduce of rank + 1 gave {total:g}, expected {expected:g}")
        start = time.perf_counter()
        if backend == "gloo":
            # Names the ranks that did not arrive instead of only timing out.
            dist.monitored_barrier(timeout=timedelta(seconds=args.timeout), wait_all_ranks=True)
        else:
            dist.barrier(device_ids=[ctx.local_rank] if ctx.device.type == "cuda" else None)
        waited = time.perf_counter() - start
        line = (
            f"{_describe(ctx, backend)}, world size {ctx.world_size}; joined in {joined:.1f} s, all-reduce "
            f"{total:g} (expected {expected:g}), barrier in {waited:.2f} s"
        )
        lines = du.all_gather_objects(line)
    except (RuntimeError, OSError) as error:
        raise CheckFailed(f"{who}: a collective failed within {args.timeout:g} s: {_first_line(error)}") from None
    if ctx.is_main:
        for line in lines:
            print(line)
        processes = f"{world_size} process{'es' if world_size > 1 else ''}"
        print(f"ok: {processes}, backend {backend}; training waits up to {cfg.DIST_TIMEOUT_MINUTES:g} min")
    return 0


def main(argv=None) -> int:
    parser = make_parser(__doc__)
    add_config_arguments(parser)
    parser.add_argument(
        "--timeout", type=float, default=60.0, help="seconds for forming the group and for each collective"
    )
    args = parse_args(parser, argv)
    if args.timeout <= 0:
        print(f"error: --timeout must be > 0, got {args.timeout:g}", file=sys.stderr)
        return 1

    def work() -> int:
        try:
            return _check(args)
        except CheckFailed as failure:
            print(f"error: {failure}", file=sys.stderr)
            return 1

    return run(work)


if __name__ == "__main__":
    sys.exit(main())
