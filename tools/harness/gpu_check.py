"""The checks behind ``tools/check_gpu.py``: every CUDA path of videotl run once on one GPU, each
reported in one line (name, pass or FAIL, what was measured), about five minutes in all.

- ``triton_kernel``: the Triton vector attention against eq. 3 in float64, the output and all
  three gradients, float32 and bfloat16 inputs, at 2 x 100 x 432 and 2 x 37 x 27 (token counts that
  fill no block);
- ``triton_edge_shapes``: a batch of 70,000 clips (more than CUDA's 65,535 programs on grid axes 1
  and 2) against eq. 3, and attention over no keys (zeros, zero gradients);
- ``triton_same_forward``: a second process computes the same forward bit for bit, as the ranks of
  a distributed run must (the block sizes are pinned per shape, never timed);
- ``bf16_training_eager`` / ``bf16_training_compiled``: 20 SGD steps of the Charades model at the
  demo's size (``configs/demo/synthetic_charades.yaml``) in bfloat16 autocast, eager and compiled
  as ``MODEL.COMPILE`` compiles it, against 20 eager float32 steps from the same weights on the
  same batches: final losses within 2%;
- ``cuda_decoding``: torchcodec on the GPU (NVDEC) against torchcodec on the CPU, every frame of a
  generated H.264 video: within 3 levels (torchcodec's own tolerance) and the frames on the GPU;
- ``cuda_decode_training``: :func:`videotl.engine.train` with ``DATA.DECODE_DEVICE cuda`` on a
  generated synthetic Charades: a few steps, no sample skipped, nothing decoded on the CPU instead;
- ``compiled_checkpoint``: a compiled model trained two steps, saved as the trainer saves it and
  reloaded into a fresh eager model: the same names, the same outputs;
- ``torchrun_nccl``: ``torchrun --nproc_per_node 1 tools/check_distributed.py`` with NCCL;
- ``gpu_benchmark``: ``tools/benchmark.py gpu`` at its shortest setting (``SHORTEST_BENCHMARK``).

Each check is a function of the device (and of sizes, the GPU's by default) returning
``(passed, value)``, so the tests run them on the CPU at tiny sizes (the Triton ones under
``TRITON_INTERPRET=1``): everything but the GPU itself.
"""

import contextlib
import hashlib
import json
import logging
import math
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, TextIO, Tuple

import numpy as np
import torch

from videotl_tools.harness import gpu_benchmark

__all__ = [
    "CHECKS",
    "CHECK_BUDGETS_S",
    "DEMO_CONFIG",
    "CheckContext",
    "SHORTEST_BENCHMARK",
    "TIME_BUDGET_S",
    "CheckResult",
    "check_bf16_training",
    "CheckOverBudget",
    "CheckSkipped",
    "check_compiled_checkpoint",
    "check_cuda_decode_training",
    "check_cuda_decoding",
    "check_gpu_benchmark",
    "check_torchrun",
    "check_triton_edge_shapes",
    "check_triton_kernel",
    "check_triton_same_forward",
    "forward_digest",
    "preflight",
    "preflight_line",
    "run_checks",
]

# What the whole command may take on one GPU.
TIME_BUDGET_S = 300.0
# Seconds each check may take on a fresh machine, its first Triton and inductor compiles included;
# they add up to TIME_BUDGET_S. A check still running at its budget is stopped and fails, so one
# that hangs (a deadlocked collective, a stuck decoder) cannot hold the rest back.
CHECK_BUDGETS_S: Dict[str, float] = {
    "triton_kernel": 25.0,
    "triton_edge_shapes": 15.0,
    "triton_same_forward": 25.0,
    "bf16_training_eager": 20.0,
    "bf16_training_compiled": 50.0,
    "cuda_decoding": 10.0,
    "cuda_decode_training": 25.0,
    "compiled_checkpoint": 40.0,
    "torchrun_nccl": 30.0,
    "gpu_benchmark": 60.0,
}
# The Charades model at a small size: the demo's scaled-down X(2+1)D with TokenLearner (16 x 80 x 80 clips).
DEMO_CONFIG = "configs/demo/synthetic_charades.yaml"
DEMO_CLIP = (16, 80, 80)
# tools/benchmark.py gpu with every part at its least work: small clips, eager models only, few steps.
SHORTEST_BENCHMARK = (
    "--input", "8x112x112", "--batch", "2", "--variants", "eager", "--steps", "5", "--warmup", "1", "--repeats", "3",
    "--kernel-configs", "pinned", "--decode-videos", "4", "--decode-size", "240x320",
)  # fmt: skip
# Largest error relative to the reference's scale for float32 arithmetic (as the kernel check's).
FLOAT32_TOLERANCE = gpu_benchmark.KERNEL_TOLERANCES["float32"]["out"]
# The compiled eval forward against the eager one, relative to the largest logit: both convolve in
# TF32 on recent GPUs, which rounds differently once compiled kernels fuse the elementwise ops.
COMPILED_EVAL_TOLERANCE = 1e-2
# Levels of 255 that GPU and CPU decoding may differ by: torchcodec's own test tolerance for CUDA.
DECODE_TOLERANCE = 3
LOSS_TOLERANCE = 0.02
# What videotl.data logs when a read does not happen where it was asked to (decoding.fallback, the
# torchcodec backend).
FALLBACK_SIGNS = ("cannot decode on", "CUDA is not available", "read with PyAV instead")

Outcome = Tuple[bool, str]


class CheckOverBudget(Exception):
    """Raised inside a check when its time budget runs out."""


class CheckSkipped(Exception):
    """Raised by a check that this machine cannot run (a library or tool it lacks): the check is
    reported as skipped, with the reason, and does not fail the run."""


@dataclass(frozen=True)
class CheckResult:
    name: str
    passed: bool
    value: str
    seconds: float
    skipped: bool = False

    def line(self) -> str:
        status = "skip" if self.skipped else "pass" if self.passed else "FAIL"
        return f"{self.name:<24} {status}  {self.value} [{self.seconds:.1f} s]"


def preflight() -> Dict[str, str]:
    """What this machine has and lacks for the checks, by name: the C compiler and Python headers
    Triton builds its launcher with, FFmpeg's libraries and a CUDA build of torchcodec for GPU
    decoding, NVDEC's library (``libnvcuvid``). Each value says what was found, or ``""``."""
    import ctypes.util
    import sysconfig

    headers = Path(sysconfig.get_paths()["include"]) / "Python.h"
    found = {
        "C compiler": preflight_compiler(),
        "Python headers": str(headers) if headers.is_file() else "",
        "FFmpeg libraries": ctypes.util.find_library("avcodec") or "",
        "NVDEC library": ctypes.util.find_library("nvcuvid") or "",
    }
    from videotl.data.decoding import torchcodec_unavailable_reason

    found["torchcodec"] = "" if torchcodec_unavailable_reason() else "importable"
    return found


def preflight_line(found: Dict[str, str]) -> str:
    has = [f"{name} ({value})" for name, value in found.items() if value]
    lacks = [name for name, value in found.items() if not value]
    return f"has: {', '.join(has) or 'none'}; lacks: {', '.join(lacks) or 'nothing'}"


# --------------------------------------------------------------------------------------- Triton


def _require_triton() -> None:
    """Skip a Triton check where Triton cannot run: not installed, or no C compiler to build its launcher."""
    from videotl.models import vector_attention_triton

    if not vector_attention_triton.triton_installed():
        raise CheckSkipped("Triton is not installed (pip install triton)")
    if not preflight_compiler():
        raise CheckSkipped("no C compiler (cc, gcc or clang): Triton cannot build its kernel launcher")


def preflight_compiler() -> str:
    return next((name for name in ("cc", "gcc", "clang") if shutil.which(name)), "")


def check_triton_kernel(*, device: torch.device, shape: Tuple[int, int, int] = (2, 100, 432)) -> Outcome:
    """The kernel check of ``tools/benchmark.py gpu`` at ``shape`` (B, N, d) and at 2 x 37 x 27."""
    _require_triton()
    result = gpu_benchmark.check_kernel(device=device, implementation="triton", shape=shape)
    worst: Dict[Tuple[str, str], float] = {}
    for check in result["checks"]:
        for name, error in check["errors"].items():
            key = (check["dtype"], "out" if name == "out" else "grad")
            worst[key] = max(worst.get(key, 0.0), error)
    limits = result["tolerances"]
    errors = ", ".join(
        f"{dtype} {kind} {error:.1e} (<= {limits[dtype][kind]:g})" for (dtype, kind), error in worst.items()
    )
    shapes = " and ".join(dict.fromkeys("x".join(map(str, check["shape"])) for check in result["checks"]))
    return result["all_within_tolerance"], f"largest errors against float64 eq. 3: {errors}; at {shapes}"


def check_triton_edge_shapes(*, device: torch.device, batch: int = 70_000) -> Outcome:
    """``batch`` clips of 3 tokens x 4 channels against float64 eq. 3 (forward and gradients), and
    5 queries over no keys."""
    _require_triton()
    from videotl.models.vector_transformer import vector_attention, vector_attention_naive

    generator = torch.Generator().manual_seed(0)
    q, k, v, grad = (torch.randn(batch, 3, 4, generator=generator).to(device) for _ in range(4))
    leaves = [t.clone().requires_grad_() for t in (q, k, v)]
    out = vector_attention(*leaves, implementation="triton")
    got = [out, *torch.autograd.grad(out, leaves, grad)]
    exact = [t.double().requires_grad_() for t in (q, k, v)]
    reference = vector_attention_naive(*exact)
    want = [reference, *torch.autograd.grad(reference, exact, grad.double())]
    error = max(gpu_benchmark.relative_error(a, b) for a, b in zip(got, want))

    queries = torch.randn(2, 5, 4, device=device, requires_grad=True)
    no_keys = torch.zeros(2, 0, 4, device=device, requires_grad=True)
    empty = vector_attention(queries, no_keys, no_keys, implementation="triton")
    empty.sum().backward()
    zeros = bool((empty == 0).all()) and bool((queries.grad == 0).all())
    passed = error <= FLOAT32_TOLERANCE and zeros
    return passed, (
        f"batch {batch:,}: largest error {error:.1e} (<= {FLOAT32_TOLERANCE:g}); no keys: "
        + ("zeros and zero gradients" if zeros else "NOT zeros")
    )


def forward_digest(device: str, shape: Sequence[int]) -> str:
    """SHA-256 of the Triton forward's output and log-sum-exp on seeded float32 inputs."""
    from videotl.models import vector_attention_triton

    generator = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(tuple(shape), generator=generator).to(device) for _ in range(3))
    out, lse = vector_attention_triton.forward(q, k, v)
    return hashlib.sha256(out.cpu().numpy().tobytes() + lse.cpu().numpy().tobytes()).hexdigest()


def check_triton_same_forward(
    *, device: torch.device, shape: Tuple[int, int, int] = (2, 512, 432), timeout: float = 120.0
) -> Outcome:
    """This process's forward digest against a fresh process's, as two ranks would compute it."""
    _require_triton()
    from videotl.models import vector_attention_triton

    here = forward_digest(str(device), shape)
    code = f"from videotl_tools.harness.gpu_check import forward_digest; print(forward_digest({str(device)!r}, {tuple(shape)!r}))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        return False, f"the second process failed: {_last_line(result.stderr or result.stdout)}"
    there = result.stdout.strip().splitlines()[-1]
    config = vector_attention_triton.pinned_config(shape[1], shape[1], shape[2])
    blocks = f"{config.block_rows}x{config.block_stream}x{config.block_channels}, {config.num_warps} warps"
    size = "x".join(map(str, shape))
    if here != there:
        return False, f"a second process computed another forward at {size} (blocks {blocks})"
    return True, f"a second process computed the same forward at {size}, bit for bit (blocks {blocks})"


# ------------------------------------------------------------------------------------- training


def check_bf16_training(
    *,
    device: torch.device,
    compiled: bool,
    steps: int = 20,
    clip: Tuple[int, int, int] = DEMO_CLIP,
    batch: int = 4,
    overrides: Sequence[str] = (),
    compile_options: Optional[Dict[str, Any]] = None,
) -> Outcome:
    """``tools/benchmark.py gpu``'s loss comparison on the demo's Charades model; ``compiled``
    compiles the bfloat16 run with the trainer's options (``compile_options`` replaces them)."""
    from videotl.engine.trainer import COMPILE_OPTIONS

    if compiled and device.type == "cuda":
        # Inductor writes Triton kernels for CUDA and builds them as the Triton checks do.
        _require_triton()
    options = dict(COMPILE_OPTIONS if compile_options is None else compile_options)
    result = gpu_benchmark.measure_loss(
        device=device, config=DEMO_CONFIG, clip=clip, batch=batch, steps=steps, amp_dtype=torch.bfloat16,
        overrides=overrides, compile_options=options if compiled else None,
    )  # fmt: skip
    low, full = result["final_loss"]["bfloat16"], result["final_loss"]["float32"]
    difference = result["relative_difference"]
    passed = math.isfinite(difference) and difference <= LOSS_TOLERANCE
    return passed, (
        f"{steps} steps: bf16 loss {low:.4f}, fp32 {full:.4f} (last {result['final_window']} steps): "
        f"{difference:.2%} apart (<= {LOSS_TOLERANCE:.0%})"
    )


def check_compiled_checkpoint(
    *,
    device: torch.device,
    workdir: Path,
    clip: Tuple[int, int, int] = DEMO_CLIP,
    batch: int = 4,
    overrides: Sequence[str] = (),
) -> Outcome:
    """Two bfloat16 steps of the demo's model compiled as ``MODEL.COMPILE`` does, its weights saved
    as the trainer saves them and reloaded into a fresh, eager model (strict names); then eval
    outputs: reloaded against the saved model's own forward (bit for bit) and its compiled one."""
    from videotl.engine.checkpoint import load_weights, save_checkpoint, unwrap_model
    from videotl.engine.trainer import COMPILE_OPTIONS

    cfg, model, optimizer, loss_fn = gpu_benchmark._build(
        DEMO_CONFIG, frames=clip[0], overrides=overrides, device=device
    )
    model.compile(**COMPILE_OPTIONS)
    inputs, labels = gpu_benchmark._batch(cfg, batch=batch, clip=clip, device=device)
    model.train()
    for _ in range(2):
        gpu_benchmark._train_step(model, optimizer, loss_fn, inputs, labels, device=device, amp_dtype=torch.bfloat16)
    path = save_checkpoint(Path(workdir) / "compiled_checkpoint.pyth", {"model": unwrap_model(model).state_dict()})
    names = list(unwrap_model(model).state_dict())
    prefixed = [name for name in names if name.startswith(("_orig_mod.", "module."))]
    _, fresh, _, _ = gpu_benchmark._build(DEMO_CONFIG, frames=clip[0], overrides=overrides, device=device)
    load_weights(fresh, path)
    model.eval()
    fresh.eval()
    with torch.no_grad():
        reloaded = fresh(inputs)
        # forward() skips the compiled call: the saved weights, run eagerly.
        eager_error = gpu_benchmark.relative_error(model.forward(inputs), reloaded)
        compiled_error = gpu_benchmark.relative_error(model(inputs), reloaded)
    # Within float32 rounding rather than bit for bit: cuDNN may pick another algorithm for the new model.
    passed = not prefixed and eager_error <= FLOAT32_TOLERANCE and compiled_error <= COMPILED_EVAL_TOLERANCE
    value = f"{len(names)} tensors saved and reloaded by name"
    if prefixed:
        value = f"{len(prefixed)} saved names carry a wrapper's prefix ({prefixed[0]})"
    same = "bit for bit" if eager_error == 0.0 else f"within {eager_error:.1e} (<= {FLOAT32_TOLERANCE:g})"
    return passed, (
        f"{value}; the reloaded model's outputs equal the saved model's {same}; its compiled eval forward "
        f"within {compiled_error:.1e} (<= {COMPILED_EVAL_TOLERANCE:g})"
    )


# ------------------------------------------------------------------------------------- decoding


@contextlib.contextmanager
def _warnings_of(logger_name: str) -> Iterator[List[str]]:
    """The warnings the logger (and its children) emit inside the block."""
    messages: List[str] = []

    class Collect(logging.Handler):
        def emit(self, record):
            messages.append(record.getMessage())

    handler = Collect(logging.WARNING)
    logger = logging.getLogger(logger_name)
    logger.addHandler(handler)
    try:
        yield messages
    finally:
        logger.removeHandler(handler)


def check_cuda_decoding(
    *, device: torch.device, workdir: Path, frames: int = 48, size: Tuple[int, int] = (240, 320)
) -> Outcome:
    """Every frame of a generated ``size`` (H x W) 30 fps H.264 video, torchcodec on ``device``
    against torchcodec on the CPU."""
    from videotl.data.decoding import read_frames_at, torchcodec_unavailable_reason
    from videotl.data.encoding import write_video

    reason = torchcodec_unavailable_reason()
    if reason:
        raise CheckSkipped(reason)
    height, width = size
    path = write_video(
        Path(workdir) / "decode_check.mp4",
        gpu_benchmark.gradient_frames(frames, height, width),
        rate=30,
        options={"preset": "veryfast"},
    )
    times = np.arange(frames) / 30.0
    with _warnings_of("videotl.data") as warnings:
        on_device = read_frames_at(path, times, backend="torchcodec", device=device)
    on_cpu = read_frames_at(path, times, backend="torchcodec", device="cpu")
    if on_device.device.type != device.type:
        why = warnings[0] if warnings else "see the log"
        return False, f"decoded on {on_device.device}, not {device}: torchcodec fell back to the CPU ({why})"
    difference = (on_device.cpu().int() - on_cpu.int()).abs()
    largest = int(difference.max())
    return largest <= DECODE_TOLERANCE, (
        f"{frames} frames {width}x{height}: largest difference from CPU decoding {largest} levels "
        f"(<= {DECODE_TOLERANCE}), mean {float(difference.float().mean()):.2f}"
    )


def check_cuda_decode_training(
    *,
    device: torch.device,
    workdir: Path,
    steps: int = 4,
    overrides: Sequence[str] = (),
    encoding_workers: Optional[int] = None,
) -> Outcome:
    """:func:`videotl.engine.train` with decoding on ``device`` in the main process for ``steps``
    steps on 8 generated synthetic Charades videos. On CUDA that is ``DATA.DECODE_DEVICE cuda``;
    on the CPU (the tests) the same main-process loader decodes on the CPU."""
    from videotl.config import load_config
    from videotl.data.decoding import torchcodec_unavailable_reason
    from videotl.data.device_decode import build_main_process_loader
    from videotl.engine import train
    from videotl_tools.harness.synthetic_charades import generate_synthetic_charades

    reason = torchcodec_unavailable_reason()
    if reason:
        raise CheckSkipped(reason)
    root = Path(workdir) / "synthetic_charades"
    generate_synthetic_charades(
        root,
        seed=0,
        num_train=8,
        num_test=2,
        min_seconds=3.0,
        max_seconds=4.0,
        num_workers=encoding_workers,
        progress=False,
    )
    where = ["DEVICE", "cuda", "DATA.DECODE_DEVICE", "cuda"] if device.type == "cuda" else ["DEVICE", "cpu"]
    cfg = load_config(
        DEMO_CONFIG,
        [
            *where, "DATA.PATH_TO_DATA_DIR", str(root), "DATA.DECODING_BACKEND", "torchcodec",
            "OUTPUT_DIR", str(Path(workdir) / "decode_training"), "SOLVER.MAX_ITER", str(steps),
            "TRAIN.BATCH_SIZE_PER_DEVICE", "2", "TRAIN.EVAL_PERIOD", "0", "TRAIN.AUTO_RESUME", "False",
            "TENSORBOARD.ENABLE", "False", *overrides,
        ],
    )  # fmt: skip

    def main_process_loader(cfg, split, mode, *, distributed=False):
        return build_main_process_loader(cfg, split, mode, device=device, distributed=distributed)

    with _warnings_of("videotl.data") as warnings:
        summary = train(cfg, build_loader_fn=None if device.type == "cuda" else main_process_loader)
    # Reads that left the GPU: torchcodec on the CPU, or PyAV for a file torchcodec could not read exactly.
    fell_back = [message for message in warnings if any(sign in message for sign in FALLBACK_SIGNS)]
    stats = [json.loads(line) for line in (Path(cfg.OUTPUT_DIR) / "stats.jsonl").read_text().splitlines()]
    losses = [row["loss"] for row in stats if row.get("type") == "train"]
    passed = summary["iterations"] == steps and summary["skipped_samples"] == 0 and not fell_back
    value = (
        f"{summary['iterations']} steps decoding on {device} in the main process, last loss {losses[-1]:.4f}, "
        f"{summary['skipped_samples']} samples skipped"
    )
    if fell_back:
        value += f"; decoded on the CPU instead: {fell_back[0]}"
    return passed, value


# ------------------------------------------------------------------------------ subprocess checks


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def _clean_env() -> Dict[str, str]:
    env = dict(os.environ)
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    return env


def check_torchrun(*, device: torch.device, log: Optional[TextIO] = None, timeout: float = 120.0) -> Outcome:
    """``torchrun --standalone --nproc_per_node 1 tools/check_distributed.py`` with NCCL on CUDA
    (gloo on the CPU): a process group of one, an all-reduce and a barrier."""
    backend = "nccl" if device.type == "cuda" else "gloo"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1",
        "-m", "videotl_tools.check_distributed", "DEVICE", device.type, "DIST_BACKEND", backend, "--timeout", "60",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=_clean_env())
    if log is not None:
        log.write(result.stdout + result.stderr)
    lines = result.stdout.strip().splitlines()
    verdict = f"ok: 1 process, backend {backend}"
    if result.returncode != 0 or not any(line.startswith(verdict) for line in lines):
        return False, f"exit status {result.returncode}: {_last_line(result.stderr or result.stdout)}"
    rank = next(line for line in lines if line.startswith("rank 0/1"))
    return True, rank.split(": ", 1)[-1]


def check_gpu_benchmark(*, workdir: Path, log: Optional[TextIO] = None, timeout: float = 240.0) -> Outcome:
    """``tools/benchmark.py gpu`` with ``SHORTEST_BENCHMARK``: every part runs to the end and the
    kernel check holds; its targets are printed, not judged (they are meant for the full sizes)."""
    output = Path(workdir) / "benchmark_gpu.json"
    command = [sys.executable, "-m", "videotl_tools.benchmark", "gpu", *SHORTEST_BENCHMARK, "--output", str(output)]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=_clean_env())
    except subprocess.TimeoutExpired:
        return False, f"did not finish within {timeout:.0f} s"
    if log is not None:
        log.write(result.stdout + result.stderr)
    if result.returncode != 0 or not output.is_file():
        return False, f"exit status {result.returncode}: {_last_line(result.stderr or result.stdout)}"
    payload = json.loads(output.read_text())
    targets = {row["target"]: row for row in payload["targets"]}
    kernel = targets.get("kernel_matches_naive")
    summary = ", ".join(f"{name} {gpu_benchmark._number(row['value'])}" for name, row in targets.items())
    configs = payload.get("kernel_configs")
    if configs and configs.get("pinned_vs_fastest_speed") is not None:
        summary += f"; pinned block config {configs['pinned_vs_fastest_speed']:.2f}x the fastest's speed"
    return bool(kernel and kernel["met"]), f"all parts in {payload['seconds']:.0f} s ({output}): {summary}"


# ---------------------------------------------------------------------------------------- runner


@dataclass(frozen=True)
class CheckContext:
    """What a check gets: the device, a folder of its own files, the log and its time budget."""

    device: torch.device
    workdir: Path
    log: TextIO
    budget_s: float


# In the order they run: the kernels first (everything else runs them), the benchmark last.
CHECKS: Dict[str, Callable[[CheckContext], Outcome]] = {
    "triton_kernel": lambda c: check_triton_kernel(device=c.device),
    "triton_edge_shapes": lambda c: check_triton_edge_shapes(device=c.device),
    "triton_same_forward": lambda c: check_triton_same_forward(device=c.device),
    "bf16_training_eager": lambda c: check_bf16_training(device=c.device, compiled=False),
    "bf16_training_compiled": lambda c: check_bf16_training(device=c.device, compiled=True),
    "cuda_decoding": lambda c: check_cuda_decoding(device=c.device, workdir=c.workdir),
    "cuda_decode_training": lambda c: check_cuda_decode_training(device=c.device, workdir=c.workdir),
    "compiled_checkpoint": lambda c: check_compiled_checkpoint(device=c.device, workdir=c.workdir),
    "torchrun_nccl": lambda c: check_torchrun(device=c.device, log=c.log, timeout=c.budget_s),
    "gpu_benchmark": lambda c: check_gpu_benchmark(workdir=c.workdir, log=c.log, timeout=c.budget_s),
}


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


@contextlib.contextmanager
def _stopped_after(seconds: float) -> Iterator[None]:
    """Raise :class:`CheckOverBudget` in the block once ``seconds`` have passed (a real-time timer;
    only the main thread can take its signal, elsewhere the block runs unbounded)."""
    if threading.current_thread() is not threading.main_thread() or seconds <= 0:
        yield
        return

    def stop(signum, frame):
        raise CheckOverBudget(f"stopped at its {seconds:g} s budget")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _run_one(name: str, check: Callable[[CheckContext], Outcome], context: CheckContext) -> CheckResult:
    begin, skipped = time.perf_counter(), False
    try:
        with contextlib.redirect_stdout(context.log), contextlib.redirect_stderr(context.log):
            print(f"===== {name} (budget {context.budget_s:.0f} s)", flush=True)
            with _stopped_after(context.budget_s):
                passed, value = check(context)
                if context.device.type == "cuda":
                    # A kernel's error surfaces at the next synchronisation: within its own check.
                    torch.cuda.synchronize(context.device)
    except CheckSkipped as reason:
        passed, value, skipped = True, f"skipped: {reason}", True
    except Exception as error:  # a check that raises has failed; the next one still runs
        passed, value = False, _first_line(error)
        context.log.write(f"{name} raised {error!r}\n")
    return CheckResult(name, passed, value, time.perf_counter() - begin, skipped)


def run_checks(
    *,
    device: torch.device,
    workdir: Path,
    log: TextIO,
    names: Optional[Sequence[str]] = None,
    checks: Optional[Dict[str, Callable[[CheckContext], Outcome]]] = None,
    budgets_s: Optional[Dict[str, float]] = None,
    report: Callable[[CheckResult], None] = lambda result: print(result.line(), flush=True),
) -> List[CheckResult]:
    """Run the checks (``names`` of ``CHECKS``, all by default) in order, each within its budget
    (``CHECK_BUDGETS_S``; a check with none gets ``TIME_BUDGET_S``), each one's own output
    (training logs, progress bars, subprocess output) going to ``log``; ``report`` gets each
    result as it comes."""
    checks = CHECKS if checks is None else checks
    budgets_s = CHECK_BUDGETS_S if budgets_s is None else budgets_s
    results = []
    for name in names or list(checks):
        context = CheckContext(device, Path(workdir), log, budgets_s.get(name, TIME_BUDGET_S))
        result = _run_one(name, checks[name], context)
        report(result)
        results.append(result)
    return results
