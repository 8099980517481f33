"""The GPU benchmark (``python tools/benchmark.py gpu``), meant to take about five minutes on one CUDA GPU.

Parts, each a function returning a JSON-ready dict (``--parts`` picks some; all by default):

- ``kernel``: the Triton vector attention against eq. 3 computed naively in float64 on the GPU
  (largest errors of the output and the three gradients, float32 and bfloat16 inputs), then
  fw and fw+bw time of Triton, the chunked PyTorch ops and the naive version at (batch, 512, 432),
  and fw+bw time of the Triton kernels with each block config there (the pinned one against the fastest).
- ``models``: fw (eval, no autograd) and training-step (forward, loss, backward, SGD step) clips/s
  and peak memory of the X(2+1)D-M baseline, the Charades TokenLearner model and the joint-MHSA
  model at T x H x W, under autocast, eager and ``torch.compile``-d.
- ``share``: the Vector Transformer's share of the TokenLearner model's training step, with the
  Triton kernels and with the chunked PyTorch ops (the attention timed alone at the shape and dtype
  it gets inside the model, times the number of layers, over the step time).
- ``loss``: the same number of training steps on the same random batches from the same weights
  in bfloat16 autocast and in float32; the final losses and their relative difference.

- ``decode``: training clips/s of CPU decoding in DataLoader workers (``DATA.DECODE_DEVICE cpu``)
  against torchcodec decoding on the GPU in the main process (``cuda``), on generated H.264
  videos, each batch moved to / produced on the GPU; "skipped: no CUDA" without one.

Every function takes the device, so the machinery runs on CPU at tiny sizes in the tests; the
command itself refuses to run without CUDA.
"""

import argparse
import copy
import functools
import os
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from videotl_tools._cli import parse_shape
from videotl_tools.harness.reports import Column, machine_info, markdown_table, table, yes_no

__all__ = [
    "MODELS",
    "PARTS",
    "TARGETS",
    "add_gpu_arguments",
    "check_kernel",
    "gradient_frames",
    "measure_decoding",
    "measure_loss",
    "measure_models",
    "measure_share",
    "gpu_rows",
    "relative_error",
    "render_markdown_section",
    "run_gpu",
    "target_rows",
    "time_configs",
    "time_kernels",
]

MODELS = {
    "X(2+1)D-M baseline": "configs/baselines/x2plus1d_m.yaml",
    "Charades TokenLearner model": "configs/charades_12fps.yaml",
    "Joint space-time MHSA model": "configs/ablations/joint_mhsa.yaml",
}
BASELINE, TOKENLEARNER_MODEL = "X(2+1)D-M baseline", "Charades TokenLearner model"
AMP_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": None}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], Any], *, device: torch.device, warmup: int, repeats: int) -> Dict[str, Any]:
    """Seconds per call of ``fn`` after ``warmup`` untimed calls (the first one, which compiles, is
    reported on its own), with the peak memory of the last call on CUDA."""
    first = None
    for index in range(warmup):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        if index == 0:
            first = time.perf_counter() - start
    times = []
    peak = None
    for index in range(repeats):
        last = index == repeats - 1
        if last and device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
            before = torch.cuda.memory_allocated(device)
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
        if last and device.type == "cuda":
            peak = torch.cuda.max_memory_allocated(device) - before
    return {"median_s": statistics.median(times), "times_s": times, "first_call_s": first, "peak_memory_bytes": peak}


# ---------------------------------------------------------------------------------------------
# kernel


def _attention(implementation: str) -> Callable:
    from videotl.models.vector_transformer import vector_attention, vector_attention_naive

    if implementation == "naive":
        return vector_attention_naive
    return lambda q, k, v: vector_attention(q, k, v, implementation=implementation)


def _attention_forward(fn: Callable, inputs: Sequence[torch.Tensor]) -> None:
    with torch.no_grad():
        fn(*inputs)


def _attention_forward_backward(fn: Callable, leaves: Sequence[torch.Tensor]) -> None:
    fn(*leaves).float().sum().backward()
    for leaf in leaves:
        leaf.grad = None  # each call allocates its gradients, as a training step does


def _max_errors(q, k, v, grad, implementation: str) -> Dict[str, float]:
    """Largest absolute error of the output and of grad q, k, v against float64 eq. 3 on the same
    inputs, each relative to the reference's largest magnitude. The output is the operator's own,
    in its compute dtype (float32 for half inputs: what the accumulation gives, before the public
    function rounds it to the inputs' dtype); the gradients come through the public function."""
    from videotl.models.vector_transformer import vector_attention, vector_attention_naive

    raw_out, _ = torch.ops.videotl.vector_attention(q, k, v, implementation, 64)
    leaves = [t.detach().clone().requires_grad_() for t in (q, k, v)]
    out = vector_attention(*leaves, implementation=implementation)
    got = [raw_out, *torch.autograd.grad(out, leaves, grad.to(out.dtype))]
    exact = [t.detach().double().requires_grad_() for t in (q, k, v)]
    reference = vector_attention_naive(*exact)
    want = [reference, *torch.autograd.grad(reference, exact, grad.double())]
    return {name: relative_error(a, b) for name, a, b in zip(("out", "grad_q", "grad_k", "grad_v"), got, want)}


def relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    """Largest absolute difference relative to the reference's largest magnitude."""
    got, want = got.detach().double(), want.detach().double().to(got.device)
    return float((got - want).abs().max() / want.abs().max().clamp_min(1e-30))


# Largest error, relative to the reference's scale, each input dtype may show: float32 arithmetic
# (with the GPU's fast exp) throughout; bfloat16 gradients are rounded to bfloat16 once at the end.
KERNEL_TOLERANCES = {"float32": {"out": 1e-4, "grad": 1e-4}, "bfloat16": {"out": 1e-4, "grad": 1e-2}}


def check_kernel(
    *, device: torch.device, implementation: str = "triton", shape: Tuple[int, int, int] = (1, 512, 432), seed: int = 0
) -> Dict[str, Any]:
    """``implementation`` against float64 eq. 3 at ``shape`` (B, N, d) and at a ragged small shape,
    for float32 and bfloat16 inputs."""
    generator = torch.Generator().manual_seed(seed)
    checks = []
    for dims in (tuple(shape), (2, 37, 27)):
        for dtype_name, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
            # Scaled like LayerNorm-ed tokens through a d-wide projection.
            q, k, v, grad = (
                (torch.randn(dims, generator=generator) * (0.5 if i < 3 else 1.0)).to(device, dtype) for i in range(4)
            )
            errors = _max_errors(q, k, v, grad, implementation)
            limits = KERNEL_TOLERANCES[dtype_name]
            ok = errors["out"] <= limits["out"] and all(
                errors[g] <= limits["grad"] for g in ("grad_q", "grad_k", "grad_v")
            )
            checks.append({"shape": list(dims), "dtype": dtype_name, "errors": errors, "within_tolerance": ok})
    return {"implementation": implementation, "tolerances": KERNEL_TOLERANCES, "checks": checks,
            "all_within_tolerance": all(c["within_tolerance"] for c in checks)}  # fmt: skip


def time_kernels(
    *,
    device: torch.device,
    shape: Tuple[int, int, int] = (8, 512, 432),
    implementations: Sequence[str] = ("triton", "pytorch", "naive"),
    dtypes: Sequence[str] = ("float32", "bfloat16"),
    warmup: int = 3,
    repeats: int = 10,
) -> Dict[str, Any]:
    """fw and fw+bw seconds of eq. 3 alone per implementation and input dtype (naive in float32 only:
    its attention tensor is the memory problem the others solve)."""
    rows = []
    for dtype_name in dtypes:
        dtype = AMP_DTYPES[dtype_name] or torch.float32
        q, k, v = (torch.randn(shape, device=device, dtype=dtype) * 0.5 for _ in range(3))
        for implementation in implementations:
            if implementation == "naive" and dtype != torch.float32:
                continue
            fn = _attention(implementation)
            leaves = [t.clone().requires_grad_() for t in (q, k, v)]
            forward = functools.partial(_attention_forward, fn, (q, k, v))
            forward_backward = functools.partial(_attention_forward_backward, fn, leaves)
            for mode, call in (("fw", forward), ("fwbw", forward_backward)):
                row = {"implementation": implementation, "dtype": dtype_name, "mode": mode}
                try:
                    row.update(_timed(call, device=device, warmup=warmup, repeats=repeats))
                except torch.OutOfMemoryError:
                    # The naive attention tensor may not fit a smaller GPU; the others always do.
                    row["error"] = "out of memory"
                    for leaf in leaves:
                        leaf.grad = None
                    torch.cuda.empty_cache()
                rows.append(row)
                took = f"{row['median_s'] * 1e3:9.3f} ms" if "median_s" in row else row["error"]
                print(f"  kernel {implementation:<8} {dtype_name:<9} {mode:<5} {took}")
    return {"shape": list(shape), "results": rows, "ratios": _kernel_ratios(rows)}


def time_configs(
    *,
    device: torch.device,
    shape: Tuple[int, int, int] = (8, 512, 432),
    dtype: str = "bfloat16",
    warmup: int = 3,
    repeats: int = 10,
    only_pinned: bool = False,
) -> Dict[str, Any]:
    """fw+bw seconds of the Triton kernels with each of their block configs at ``shape``, and the
    speed of the config pinned for that shape over the fastest one's: what pinning (rather than
    timing, which could pick differently on each rank) costs. ``only_pinned`` times the pinned one
    alone (one Triton compile instead of one per config; no ratio)."""
    from videotl.models import vector_attention_triton

    generator = torch.Generator().manual_seed(0)
    q, k, v, grad = ((torch.randn(shape, generator=generator) * 0.5).to(device, AMP_DTYPES[dtype]) for _ in range(4))
    pinned_config = vector_attention_triton.pinned_config(shape[1], shape[1], shape[2])
    rows = []
    for config in [pinned_config] if only_pinned else vector_attention_triton.CONFIGS:

        def call(config=config):
            out, lse = vector_attention_triton.forward(q, k, v, config=config)
            vector_attention_triton.backward(q, k, v, out, lse, grad, config=config)

        rows.append({"config": _config_name(config), **_timed(call, device=device, warmup=warmup, repeats=repeats)})
        print(f"  config {rows[-1]['config']:<18} fw+bw {rows[-1]['median_s'] * 1e3:9.3f} ms")
    pinned = _config_name(pinned_config)
    seconds = {row["config"]: row["median_s"] for row in rows}
    fastest = None if only_pinned else min(seconds, key=seconds.get)
    return {"shape": list(shape), "dtype": dtype, "results": rows, "pinned": pinned, "fastest": fastest,
            "pinned_vs_fastest_speed": None if only_pinned else seconds[fastest] / seconds[pinned]}  # fmt: skip


def _config_name(config) -> str:
    return f"{config.block_rows}x{config.block_stream}x{config.block_channels}, {config.num_warps} warps"


def _kernel_ratios(rows: Sequence[Dict[str, Any]]) -> Dict[str, float]:
    """Speed of Triton over the chunked PyTorch ops and over naive, per dtype and mode."""
    by = {(r["implementation"], r["dtype"], r["mode"]): r["median_s"] for r in rows if "median_s" in r}
    ratios = {}
    for (implementation, dtype, mode), seconds in by.items():
        if implementation == "triton":
            for other in ("pytorch", "naive"):
                if (other, dtype, mode) in by:
                    ratios[f"triton_vs_{other}_{dtype}_{mode}"] = by[(other, dtype, mode)] / seconds
    return ratios


# ---------------------------------------------------------------------------------------------
# models


def _build(config: str, *, frames: int, overrides: Sequence[str], device: torch.device):
    from videotl.config import load_config
    from videotl.engine.solver import build_loss, build_optimizer
    from videotl.models import build_model, to_channels_last_3d

    cfg = load_config(config, ["DATA.NUM_FRAMES", str(frames), *overrides])
    torch.manual_seed(0)
    model = build_model(cfg).to(device)
    # The layout training uses (videotl.engine.run.model_on).
    if cfg.TRAIN.CHANNELS_LAST:
        model = to_channels_last_3d(model)
    return cfg, model, build_optimizer(model, cfg=cfg), build_loss(cfg)


def _batch(cfg, *, batch: int, clip: Tuple[int, int, int], device: torch.device, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randn((batch, 3, *clip), generator=generator).to(device)
    if cfg.TRAIN.CHANNELS_LAST:
        inputs = inputs.contiguous(memory_format=torch.channels_last_3d)
    if cfg.MODEL.LOSS_FUNC == "bce_logits":
        labels = (torch.rand((batch, cfg.MODEL.NUM_CLASSES), generator=generator) < 0.05).float()
    else:
        labels = torch.randint(cfg.MODEL.NUM_CLASSES, (batch,), generator=generator)
    return inputs, labels.to(device)


def _train_step(model, optimizer, loss_fn, inputs, labels, *, device, amp_dtype) -> torch.Tensor:
    """One training step as the trainer takes it (without a gradient scaler: no float16 here)."""
    from videotl.engine.precision import autocast

    with autocast(device, amp_dtype):
        logits = model(inputs)
    loss = loss_fn(logits.float(), labels)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.detach()


def _forward(model, inputs, *, device, amp_dtype) -> None:
    from videotl.engine.precision import autocast

    with torch.no_grad(), autocast(device, amp_dtype):
        model(inputs)


def measure_models(
    *,
    device: torch.device,
    models: Dict[str, str] = MODELS,
    clip: Tuple[int, int, int] = (64, 224, 224),
    batch: int = 8,
    amp_dtype: Optional[torch.dtype] = torch.bfloat16,
    variants: Sequence[str] = ("eager", "compiled"),
    compile_backend: str = "inductor",
    overrides: Sequence[str] = (),
    warmup: int = 3,
    repeats: int = 10,
) -> Dict[str, Any]:
    """fw and training-step clips/s and peak memory per model and variant (see the module doc).
    The compiled variant's first call, which compiles, is reported as ``first_call_s``."""
    rows = []
    for name, config in models.items():
        for variant in variants:
            cfg, model, optimizer, loss_fn = _build(config, frames=clip[0], overrides=overrides, device=device)
            inputs, labels = _batch(cfg, batch=batch, clip=clip, device=device)
            torch._dynamo.reset()
            runner = torch.compile(model, dynamic=False, backend=compile_backend) if variant == "compiled" else model
            calls = {
                "fw": functools.partial(_forward, runner, inputs, device=device, amp_dtype=amp_dtype),
                "fwbw": functools.partial(
                    _train_step, runner, optimizer, loss_fn, inputs, labels, device=device, amp_dtype=amp_dtype
                ),
            }
            for mode, call in calls.items():
                model.train(mode == "fwbw")
                result = _timed(call, device=device, warmup=warmup, repeats=repeats)
                result["clips_per_s"] = batch / result["median_s"]
                rows.append({"model": name, "config": config, "variant": variant, "mode": mode, **result})
                print(f"  {name:<30} {variant:<8} {mode:<5} {result['clips_per_s']:8.2f} clips/s")
            del model, optimizer, runner, calls
            if device.type == "cuda":
                torch.cuda.empty_cache()
    return {"clip": list(clip), "batch": batch, "amp_dtype": _dtype_name(amp_dtype), "results": rows,
            "ratios": _model_ratios(rows)}  # fmt: skip


def _model_ratios(rows: Sequence[Dict[str, Any]]) -> Dict[str, float]:
    """TokenLearner model over baseline speed, and compiled over eager speed, per mode."""
    by = {(r["model"], r["variant"], r["mode"]): r["clips_per_s"] for r in rows}
    ratios = {}
    for (model, variant, mode), speed in by.items():
        if model == TOKENLEARNER_MODEL and (BASELINE, variant, mode) in by:
            ratios[f"tl_model_vs_baseline_speed_{variant}_{mode}"] = speed / by[(BASELINE, variant, mode)]
        if variant == "compiled" and (model, "eager", mode) in by:
            ratios[f"compiled_vs_eager_speed_{_slug(model)}_{mode}"] = speed / by[(model, "eager", mode)]
    return ratios


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name.lower()).strip("_").replace("__", "_")


def _dtype_name(dtype: Optional[torch.dtype]) -> str:
    return str(dtype).removeprefix("torch.") if dtype is not None else "float32"


# ---------------------------------------------------------------------------------------------
# share


def _attention_calls(model: nn.Module, inputs, *, device, amp_dtype) -> List[Tuple[Tuple[int, ...], torch.dtype]]:
    """(shape, dtype) of q at every Vector Transformer call of one forward pass."""
    from videotl.models.vector_transformer import VectorAttention

    calls = []
    hooks = [
        module.f_q.register_forward_hook(lambda m, args, out: calls.append((tuple(out.shape), out.dtype)))
        for module in model.modules()
        if isinstance(module, VectorAttention)
    ]
    try:
        _forward(model, inputs, device=device, amp_dtype=amp_dtype)
    finally:
        for hook in hooks:
            hook.remove()
    return calls


def measure_share(
    *,
    device: torch.device,
    config: str = MODELS[TOKENLEARNER_MODEL],
    clip: Tuple[int, int, int] = (64, 224, 224),
    batch: int = 8,
    amp_dtype: Optional[torch.dtype] = torch.bfloat16,
    implementations: Sequence[str] = ("triton", "pytorch"),
    overrides: Sequence[str] = (),
    warmup: int = 3,
    repeats: int = 10,
) -> Dict[str, Any]:
    """The Vector Transformer's share of a training step per implementation (see the module doc)."""
    rows = []
    for implementation in implementations:
        cfg, model, optimizer, loss_fn = _build(
            config,
            frames=clip[0],
            overrides=[*overrides, "TOKENLEARNER.ATTENTION_IMPL", implementation],
            device=device,
        )
        inputs, labels = _batch(cfg, batch=batch, clip=clip, device=device)
        calls = _attention_calls(model, inputs, device=device, amp_dtype=amp_dtype)
        if not calls:
            raise ValueError(f"{config} has no Vector Transformer: nothing to take a share of")
        model.train()
        step = _timed(
            functools.partial(
                _train_step, model, optimizer, loss_fn, inputs, labels, device=device, amp_dtype=amp_dtype
            ),
            device=device,
            warmup=warmup,
            repeats=repeats,
        )
        attention_s = 0.0
        for shape, dtype in calls:
            q, k, v = (torch.randn(shape, device=device, dtype=dtype).requires_grad_() for _ in range(3))
            call = functools.partial(_attention_forward_backward, _attention(implementation), (q, k, v))
            attention_s += _timed(call, device=device, warmup=warmup, repeats=repeats)["median_s"]
        rows.append({
            "implementation": implementation,
            "attention_calls": [{"shape": list(s), "dtype": _dtype_name(d)} for s, d in calls],
            "step_s": step["median_s"],
            "attention_fwbw_s": attention_s,
            "share_of_step": attention_s / step["median_s"],
        })  # fmt: skip
        print(
            f"  share {implementation:<8} step {step['median_s'] * 1e3:8.1f} ms, attention {attention_s * 1e3:8.2f} ms"
        )
        del model, optimizer
    by = {r["implementation"]: r for r in rows}
    ratios = {}
    if "triton" in by and "pytorch" in by:
        ratios["triton_vs_pytorch_attention_speed"] = (
            by["pytorch"]["attention_fwbw_s"] / by["triton"]["attention_fwbw_s"]
        )
        ratios["triton_vs_pytorch_step_speed"] = by["pytorch"]["step_s"] / by["triton"]["step_s"]
    return {"config": config, "clip": list(clip), "batch": batch, "amp_dtype": _dtype_name(amp_dtype),
            "results": rows, "ratios": ratios}  # fmt: skip


# ---------------------------------------------------------------------------------------------
# loss


def measure_loss(
    *,
    device: torch.device,
    config: str = MODELS[TOKENLEARNER_MODEL],
    clip: Tuple[int, int, int] = (64, 224, 224),
    batch: int = 8,
    steps: int = 50,
    distinct_batches: int = 4,
    lr: float = 0.05,
    amp_dtype: torch.dtype = torch.bfloat16,
    overrides: Sequence[str] = (),
    final_window: int = 5,
    compile_options: Optional[Dict[str, Any]] = None,
) -> Dict[str, Any]:
    """``steps`` SGD steps in ``amp_dtype`` autocast and in float32, from the same weights over the
    same ``distinct_batches`` random batches (cycled, so the loss can fall), with the same dropout
    draws. The final loss is the mean over the last ``final_window`` steps. With
    ``compile_options`` the ``amp_dtype`` run's model is compiled in place with them, as
    ``MODEL.COMPILE`` compiles it; the float32 reference stays eager."""
    cfg, model, _, loss_fn = _build(config, frames=clip[0], overrides=overrides, device=device)
    reference = copy.deepcopy(model)
    if compile_options is not None:
        torch._dynamo.reset()
        model.compile(**compile_options)
    batches = [_batch(cfg, batch=batch, clip=clip, device=device, seed=1 + i) for i in range(distinct_batches)]
    curves = {}
    for name, dtype, net in ((_dtype_name(amp_dtype), amp_dtype, model), ("float32", None, reference)):
        net.train()
        optimizer = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9)
        torch.manual_seed(0)
        losses = []
        for step in range(steps):
            inputs, labels = batches[step % distinct_batches]
            losses.append(float(_train_step(net, optimizer, loss_fn, inputs, labels, device=device, amp_dtype=dtype)))
        curves[name] = losses
        print(f"  loss {name:<9} first {losses[0]:.4f} last {losses[-1]:.4f}")
    low, full = curves[_dtype_name(amp_dtype)], curves["float32"]
    window = min(final_window, steps)
    final_low, final_full = statistics.mean(low[-window:]), statistics.mean(full[-window:])
    return {"config": config, "clip": list(clip), "batch": batch, "steps": steps, "lr": lr,
            "compiled": compile_options is not None, "distinct_batches": distinct_batches, "losses": curves,
            "final_window": window,
            "final_loss": {_dtype_name(amp_dtype): final_low, "float32": final_full},
            "relative_difference": abs(final_low - final_full) / abs(final_full)}  # fmt: skip


# ---------------------------------------------------------------------------------------------
# decoding


def _decode_epoch(loader, device: torch.device, epoch: int) -> Tuple[int, float]:
    loader.sampler.set_epoch(epoch)
    _sync(device)
    start = time.perf_counter()
    clips = 0
    for batch in loader:
        inputs = batch["inputs"].to(device, non_blocking=True)
        clips += inputs.shape[0]
    _sync(device)
    return clips, time.perf_counter() - start


def gradient_frames(count: int, height: int, width: int, *, seed: int = 0) -> Iterator[np.ndarray]:
    """``count`` RGB frames of moving colour gradients (``height x width x 3`` uint8): cheap to
    make, not trivially compressible, and a different pattern per ``seed``."""
    rows = np.arange(height, dtype=np.int32)[:, None]
    columns = np.arange(width, dtype=np.int32)[None, :]
    for i in range(count):
        channels = [(rows * (c + 1) + columns * (seed + 2) + 7 * i * (c + 1)) % 256 for c in range(3)]
        yield np.stack(channels, -1).astype(np.uint8)


def measure_decoding(
    *,
    device: torch.device,
    num_videos: int = 16,
    repeats_per_video: int = 4,
    seconds: float = 4.0,
    source: Tuple[int, int] = (480, 640),
    num_frames: int = 64,
    crop: int = 224,
    batch: int = 8,
    workers: Optional[int] = None,
    require_cuda: bool = True,
) -> Dict[str, Any]:
    """Training clips/s with CPU decoding in ``workers`` DataLoader workers and with torchcodec
    decoding on ``device`` in the main process, over ``num_videos`` generated ``source`` (H x W)
    30 fps videos (each listed ``repeats_per_video`` times), after one untimed epoch each.
    ``{"skipped": "no CUDA"}`` when ``device`` is not a CUDA device (unless ``require_cuda`` is
    False, as in the tests, which run the same machinery on the CPU)."""
    import tempfile

    from videotl.config import load_config
    from videotl.data.build import dataset_from_records
    from videotl.data.datasets.base import VideoRecord
    from videotl.data.decoding import torchcodec_unavailable_reason
    from videotl.data.device_decode import build_main_process_loader
    from videotl.data.encoding import write_video
    from videotl.data.pipeline import build_loader

    if require_cuda and device.type != "cuda":
        return {"skipped": "no CUDA"}
    reason = torchcodec_unavailable_reason()
    if reason:
        return {"skipped": reason}
    workers = workers if workers is not None else min(8, os.cpu_count() or 1)
    height, width = source
    short = min(height, width)
    results: Dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="videotl_decode_bench_") as folder:
        records = []
        frame_count = int(round(seconds * 30))
        for v in range(num_videos):
            frames = gradient_frames(frame_count, height, width, seed=v)
            path = write_video(Path(folder) / f"video_{v:02d}.mp4", frames, rate=30, options={"preset": "veryfast"})
            records += [VideoRecord(f"video_{v:02d}_{r}", path, (0,)) for r in range(repeats_per_video)]
        cfg = load_config(
            "",
            [
                "DATA.DECODING_BACKEND", "torchcodec", "DATA.NUM_FRAMES", str(num_frames),
                "DATA.TRAIN_JITTER_SCALES", f"[{min(crop, short)}, {short}]", "DATA.TRAIN_CROP_SIZE", str(crop),
                "DATA.PROBE_CACHE", "False", "DATA_LOADER.NUM_WORKERS", str(workers),
                "TRAIN.BATCH_SIZE_PER_DEVICE", str(batch), "MODEL.NUM_CLASSES", "1",
            ],
        )  # fmt: skip
        for name in ("cpu_workers", "gpu_main_process"):
            dataset = dataset_from_records(cfg, records, ["class 0"], mode="train")
            if name == "cpu_workers":
                loader = build_loader(cfg, "train", "train", dataset=dataset)
            else:
                loader = build_main_process_loader(cfg, "train", "train", device=device, dataset=dataset)
            _decode_epoch(loader, device, 0)
            clips, elapsed = _decode_epoch(loader, device, 1)
            results[name] = {"clips": clips, "seconds": elapsed, "clips_per_s": clips / elapsed}
            print(f"  decode {name:<17} {clips / elapsed:8.1f} clips/s")
            del loader
    return {
        "device": str(device),
        "workers": workers,
        "videos": num_videos,
        "source": f"{width}x{height} 30 fps H.264, {seconds:g} s",
        "clip": [num_frames, crop, crop],
        "batch": batch,
        "results": results,
        "gpu_vs_cpu": results["gpu_main_process"]["clips_per_s"] / results["cpu_workers"]["clips_per_s"],
    }


# ---------------------------------------------------------------------------------------------
# targets and report

# The targets: (text, check) per key of ``_target_values``.
TARGETS = {
    "tl_model_vs_baseline_step_speed": (">= 1.05 (paper compute ratio 532 / 487 = 1.09)", lambda v: v >= 1.05),
    "triton_vs_pytorch_attention_speed": (">= 10", lambda v: v >= 10.0),
    "triton_share_of_step": ("<= 0.05", lambda v: v <= 0.05),
    "bf16_vs_fp32_loss_relative_difference": ("<= 0.02", lambda v: v <= 0.02),
    "kernel_matches_naive": ("all within tolerance", lambda v: bool(v)),
}


def _target_values(payload: Dict[str, Any]) -> Dict[str, Dict[str, Any]]:
    """Each target's measured value (with where it comes from); absent when its part did not run."""
    values: Dict[str, Dict[str, Any]] = {}
    kernel = payload.get("kernel_check")
    if kernel:
        values["kernel_matches_naive"] = {"value": kernel["all_within_tolerance"], "from": "kernel check"}
    models = payload.get("models", {}).get("ratios", {})
    for variant in ("eager", "compiled"):
        key = f"tl_model_vs_baseline_speed_{variant}_fwbw"
        if key in models:
            values[f"tl_model_vs_baseline_step_speed ({variant})"] = {"value": models[key], "from": key}
    share = payload.get("share", {})
    ratios = share.get("ratios", {})
    if "triton_vs_pytorch_attention_speed" in ratios:
        values["triton_vs_pytorch_attention_speed"] = {
            "value": ratios["triton_vs_pytorch_attention_speed"],
            "from": "attention fw+bw at the model's shape",
        }
    for row in share.get("results", []):
        if row["implementation"] == "triton":
            values["triton_share_of_step"] = {"value": row["share_of_step"], "from": "share"}
    loss = payload.get("loss")
    if loss:
        values["bf16_vs_fp32_loss_relative_difference"] = {
            "value": loss["relative_difference"],
            "from": f"mean of the last {loss['final_window']} of {loss['steps']} steps",
        }
    return values


def target_rows(payload: Dict[str, Any]) -> List[Dict[str, Any]]:
    """One row per target that was measured: name, value, target text, met."""
    rows = []
    for name, measured in _target_values(payload).items():
        text, check = TARGETS[name.split(" (")[0]]
        rows.append({"target": name, "value": measured["value"], "from": measured["from"], "wanted": text,
                     "met": check(measured["value"])})  # fmt: skip
    return rows


def _number(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _mib(value: Optional[int]) -> Optional[float]:
    return None if value is None else value / 2**20


def _ms(timing: Dict[str, Any]) -> Optional[float]:
    return timing["median_s"] * 1e3 if "median_s" in timing else None


def _pairs(results: Sequence[Dict[str, Any]], first: str, second: str) -> Iterator[Tuple[Any, Any, Dict[str, Dict]]]:
    """``(first, second, {mode: result})`` per distinct (``first``, ``second``) of ``results``, in order."""
    by = {(r[first], r[second], r["mode"]): r for r in results}
    for a, b in dict.fromkeys((r[first], r[second]) for r in results):
        yield a, b, {mode: by.get((a, b, mode), {}) for mode in ("fw", "fwbw")}


def gpu_rows(payload: Dict[str, Any]) -> List[Dict[str, Any]]:
    """The rows of a run's tables (:mod:`videotl_tools.harness.reports`): ``targets``,
    ``kernel_check`` (largest errors relative to the reference's largest magnitude),
    ``kernel_timing`` (per implementation and input dtype; ``*_error`` where a mode did not run),
    ``kernel_configs``, ``models`` (per model and variant; step = a training step) and ``share``."""
    rows = [{"table": "targets", **row} for row in target_rows(payload)]
    for check in (payload.get("kernel_check") or {}).get("checks", []):
        errors = {f"{name}_relative_error": value for name, value in check["errors"].items()}
        rows.append({"table": "kernel_check", "shape": list(check["shape"]), "dtype": check["dtype"], **errors,
                     "within_tolerance": check["within_tolerance"]})  # fmt: skip
    for implementation, dtype, by_mode in _pairs(
        (payload.get("kernel_timing") or {}).get("results", []), "implementation", "dtype"
    ):
        fw, fwbw = by_mode["fw"], by_mode["fwbw"]
        rows.append({"table": "kernel_timing", "implementation": implementation, "dtype": dtype,
                     "fw_ms": _ms(fw), "fw_error": fw.get("error"), "fwbw_ms": _ms(fwbw), "fwbw_error": fwbw.get("error"),
                     "fwbw_peak_mib": _mib(fwbw.get("peak_memory_bytes"))})  # fmt: skip
    for row in (payload.get("kernel_configs") or {}).get("results", []):
        rows.append({"table": "kernel_configs", "config": row["config"], "fwbw_ms": _ms(row)})
    for model, variant, by_mode in _pairs((payload.get("models") or {}).get("results", []), "model", "variant"):
        fw, step = by_mode["fw"], by_mode["fwbw"]
        rows.append({"table": "models", "model": model, "variant": variant,
                     "fw_clips_per_s": fw.get("clips_per_s"), "fw_peak_mib": _mib(fw.get("peak_memory_bytes")),
                     "step_clips_per_s": step.get("clips_per_s"), "step_peak_mib": _mib(step.get("peak_memory_bytes")),
                     "first_step_s": step.get("first_call_s")})  # fmt: skip
    for row in (payload.get("share") or {}).get("results", []):
        rows.append({"table": "share", "implementation": row["implementation"], "step_ms": row["step_s"] * 1e3,
                     "attention_fwbw_ms": row["attention_fwbw_s"] * 1e3, "share_of_step": row["share_of_step"]})  # fmt: skip
    return rows


def _ms_or_error(mode: str) -> Column:
    def cell(row: Dict[str, Any]) -> str:
        return f"{row[f'{mode}_ms']:.3f}" if row.get(f"{mode}_ms") is not None else row.get(f"{mode}_error") or "—"

    return Column(f"{'fw+bw' if mode == 'fwbw' else mode} ms", cell)


TABLE_COLUMNS = {
    "targets": [
        Column("Target", "{target}", "left"),
        Column("Value", lambda row: _number(row["value"])),
        Column("Wanted", "{wanted}", "left"),
        Column("Met", yes_no("met"), "left"),
        Column("From", "{from}", "left"),
    ],
    "kernel_check": [
        Column("Shape", lambda row: "x".join(map(str, row["shape"])), "left"),
        Column("Inputs", "{dtype}", "left"),
        *(
            Column(title, f"{{{name}_relative_error:.1e}}")
            for title, name in (("out", "out"), ("grad q", "grad_q"), ("grad k", "grad_k"), ("grad v", "grad_v"))
        ),  # fmt: skip
        Column("Within tolerance", yes_no("within_tolerance"), "left"),
    ],
    "kernel_timing": [
        Column("Implementation", "{implementation}", "left"),
        Column("Inputs", "{dtype}", "left"),
        _ms_or_error("fw"),
        _ms_or_error("fwbw"),
        Column("fw+bw peak MiB", "{fwbw_peak_mib:,.0f}", missing="—"),
    ],
    "kernel_configs": [
        Column("Blocks (rows x streamed x channels)", "{config}", "left"),
        Column("fw+bw ms", "{fwbw_ms:.3f}", missing="—"),
    ],
    "models": [
        Column("Model", "{model}", "left"),
        Column("Variant", "{variant}", "left"),
        Column("fw clips/s", "{fw_clips_per_s:.2f}", missing="—"),
        Column("fw peak MiB", "{fw_peak_mib:,.0f}", missing="—"),
        Column("step clips/s", "{step_clips_per_s:.2f}", missing="—"),
        Column("step peak MiB", "{step_peak_mib:,.0f}", missing="—"),
        Column("first step s", "{first_step_s:.1f}", missing="—"),
    ],
    "share": [
        Column("Implementation", "{implementation}", "left"),
        Column("Step ms", "{step_ms:.1f}"),
        Column("Attention ms (all layers)", "{attention_fwbw_ms:.2f}"),
        Column("Share", "{share_of_step:.1%}"),
    ],
}


def _captions(payload: Dict[str, Any]) -> Dict[str, str]:
    """The line above each table, for the parts that ran."""
    captions = {"targets": ""}
    kernel, kernels = payload.get("kernel_check"), payload.get("kernel_timing")
    if kernel:
        captions["kernel_check"] = (
            f"Kernel check ({kernel['implementation']} against float64 eq. 3; largest error relative to the "
            "reference's largest magnitude):"
        )
    if kernels:
        captions["kernel_timing"] = f"Vector attention alone at {'x'.join(map(str, kernels['shape']))} (B x N x d):"
    configs, models = payload.get("kernel_configs"), payload.get("models")
    if configs and configs.get("pinned_vs_fastest_speed") is None:
        captions["kernel_configs"] = (
            f"The Triton kernels' block config pinned for {'x'.join(map(str, configs['shape']))} ({configs['dtype']}), "
            f"{configs['pinned']}, timed alone (--kernel-configs pinned), fw+bw:"
        )
    elif configs:
        captions["kernel_configs"] = (
            f"The Triton kernels' block configs, fw+bw at {'x'.join(map(str, configs['shape']))} ({configs['dtype']}); "
            f"the one pinned for this shape, {configs['pinned']}, runs at {configs['pinned_vs_fastest_speed']:.2f}x "
            f"the fastest's speed ({configs['fastest']}):"
        )
    if models:
        captions["models"] = (
            f"Whole networks at {'x'.join(map(str, models['clip']))}, batch {models['batch']}, "
            f"{models['amp_dtype']} autocast; fw = eval without autograd, step = forward, loss, backward, SGD step:"
        )
    if payload.get("share"):
        captions["share"] = (
            "The Vector Transformer's share of the TokenLearner model's training step (its calls timed alone, "
            "fw+bw, at the shape and dtype they get in the model):"
        )
    return captions


def _loss_and_decoding(payload: Dict[str, Any]) -> List[str]:
    """The sentences on the loss comparison and on decoding, for the parts that ran."""
    lines = []
    loss = payload.get("loss")
    if loss:
        finals = ", ".join(f"{name} {value:.4f}" for name, value in loss["final_loss"].items())
        lines += [
            f"Loss after {loss['steps']} SGD steps (lr {loss['lr']}, momentum 0.9) on {loss['distinct_batches']} "
            f"random batches, mean of the last {loss['final_window']}: {finals}; relative difference "
            f"{loss['relative_difference']:.2%}.",
            "",
        ]
    decoding = payload.get("decoding")
    if decoding and "skipped" in decoding:
        lines.append(f"GPU decoding against CPU decoding: skipped: {decoding['skipped']}.")
    elif decoding:
        cpu, gpu = decoding["results"]["cpu_workers"], decoding["results"]["gpu_main_process"]
        lines.append(
            f"Decoding training clips ({'x'.join(map(str, decoding['clip']))}, batch {decoding['batch']}) from "
            f"{decoding['videos']} videos of {decoding['source']}: CPU decoding in {decoding['workers']} DataLoader "
            f"workers {cpu['clips_per_s']:.1f} clips/s, GPU decoding in the main process {gpu['clips_per_s']:.1f} "
            f"clips/s ({decoding['gpu_vs_cpu']:.2f}x)."
        )
    return lines


def render_markdown_section(payload: Dict[str, Any]) -> str:
    """The "GPU" section of docs/benchmarks.md from a ``run_gpu`` result: its tables are
    :func:`gpu_rows` through :func:`~videotl_tools.harness.reports.markdown_table`."""
    machine = payload["machine"]
    lines = [
        "## GPU",
        "",
        "Generated by:",
        "",
        "```",
        payload.get("command", "python tools/benchmark.py gpu"),
        "```",
        "",
        f"GPU: {machine.get('gpu', '?')}; torch {machine['torch']}, triton {payload.get('triton', '?')}, "
        f"CUDA {payload.get('cuda_version', '?')}; {machine['cpu_count']} CPU cores. Medians of "
        f"{payload['repeats']} timed calls after {payload['warmup']} untimed ones (the first of which "
        "compiles, reported as first call).",
        "",
    ]
    rows = gpu_rows(payload)
    for name, caption in _captions(payload).items():
        if table(rows, name):
            lines += [caption, ""] if caption else []
            lines += [markdown_table(table(rows, name), TABLE_COLUMNS[name]), ""]
    return "\n".join(lines + _loss_and_decoding(payload)) + "\n"


# ---------------------------------------------------------------------------------------------
# tools/benchmark.py ``gpu`` subcommand.

PARTS = ("kernel", "models", "share", "loss", "decode")


def add_gpu_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS), help="what to run (default: all)")
    parser.add_argument("--input", type=parse_shape, default=(64, 224, 224), help="T x H x W of the clips")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--amp-dtype", choices=("bfloat16", "float16"), default="bfloat16")
    parser.add_argument("--variants", nargs="+", choices=("eager", "compiled"), default=["eager", "compiled"])
    parser.add_argument("--compile-backend", default="inductor", help="torch.compile backend of the compiled variant")
    parser.add_argument("--steps", type=int, default=50, help="training steps of the loss comparison")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--output", default="benchmark_gpu.json")
    parser.add_argument(
        "--kernel-configs", choices=("all", "pinned"), default="all",
        help="time every Triton block config (default) or only the one pinned for the shape",
    )  # fmt: skip
    parser.add_argument("--decode-videos", type=int, default=16, help="generated videos of the decode part")
    parser.add_argument("--decode-size", type=parse_shape, default=(480, 640), help="H x W of those videos")


def _check_arguments(args: argparse.Namespace) -> None:
    for name in ("batch", "steps", "warmup", "repeats", "decode_videos"):
        if getattr(args, name) < (0 if name == "warmup" else 1):
            raise SystemExit(
                f"error: --{name.replace('_', '-')} must be {'>= 0' if name == 'warmup' else '>= 1'}, got {getattr(args, name)}"
            )
    if len(args.input) != 3:
        raise SystemExit(f"error: --input takes T x H x W, got {'x'.join(map(str, args.input))}")
    if len(args.decode_size) != 2:
        raise SystemExit(f"error: --decode-size takes H x W, got {'x'.join(map(str, args.decode_size))}")


def run_gpu(args: argparse.Namespace) -> Dict[str, Any]:
    _check_arguments(args)
    if not torch.cuda.is_available():
        raise SystemExit(
            "error: the gpu benchmark needs a CUDA GPU and torch finds none (torch.cuda.is_available() is False)"
        )
    device = torch.device("cuda", torch.cuda.current_device())
    amp_dtype = AMP_DTYPES[args.amp_dtype]
    clip, timing = tuple(args.input), {"warmup": args.warmup, "repeats": args.repeats}
    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = None
    payload: Dict[str, Any] = {
        "machine": machine_info(device=str(device)),
        "triton": triton_version,
        "cuda_version": torch.version.cuda,
        "tf32": {"matmul": torch.backends.cuda.matmul.allow_tf32, "cudnn": torch.backends.cudnn.allow_tf32},
        **timing,
    }
    started = time.perf_counter()
    if "kernel" in args.parts:
        print("kernel: Triton against float64 eq. 3, then timings")
        payload["kernel_check"] = check_kernel(device=device)
        payload["kernel_timing"] = time_kernels(device=device, shape=(args.batch, 512, 432), **timing)
        payload["kernel_configs"] = time_configs(
            device=device, shape=(args.batch, 512, 432), only_pinned=args.kernel_configs == "pinned", **timing
        )
    if "models" in args.parts:
        print(f"models at {'x'.join(map(str, clip))}, batch {args.batch}, {args.amp_dtype}")
        payload["models"] = measure_models(
            device=device, clip=clip, batch=args.batch, amp_dtype=amp_dtype, variants=args.variants,
            compile_backend=args.compile_backend, **timing,
        )  # fmt: skip
    if "share" in args.parts:
        print("share of the Vector Transformer in a training step")
        payload["share"] = measure_share(device=device, clip=clip, batch=args.batch, amp_dtype=amp_dtype, **timing)
    if "loss" in args.parts:
        print(f"loss: {args.steps} steps in {args.amp_dtype} and float32")
        payload["loss"] = measure_loss(
            device=device, clip=clip, batch=args.batch, steps=args.steps, amp_dtype=amp_dtype
        )
    if "decode" in args.parts:
        print("decode: CPU decoding in workers against GPU decoding in the main process")
        payload["decoding"] = measure_decoding(
            device=device, batch=args.batch, num_videos=args.decode_videos, source=tuple(args.decode_size)
        )
    payload["seconds"] = time.perf_counter() - started
    payload["targets"] = target_rows(payload)
    for row in payload["targets"]:
        print(
            f"{row['target']:<48} {_number(row['value']):>8}  wanted {row['wanted']:<45} {'met' if row['met'] else 'NOT met'}"
        )
    payload["load_average_at_end"] = os.getloadavg()
    return payload
