"""Speed and peak memory of models, res5 modules and the Vector Transformer, on CPU or CUDA.

Two kinds of fresh Python process (``python -m videotl_tools.harness.model_benchmark --worker SPEC``):

- memory: one per case and mode; its first pass measures peak memory, so neither the allocator's
  caches nor another case's peak can leak into the number.
- timing: one per comparison group (whole models, res5 modules, Vector Transformers) and mode; it
  builds every case of the group and times them round-robin, one pass each per round
  (``warmup`` untimed rounds, then ``repeats`` timed ones), so a change in the machine's load
  hits every case of a comparison alike. Speed is ``batch / median time`` in clips/s.

Modes: ``fw`` (eval, no autograd: inference) and ``fwbw`` (train mode, ``out.sum().backward()``,
gradients dropped after each step as ``zero_grad(set_to_none=True)`` would).

Peak memory is the memory the pass needs above what is allocated before it (model, input):

- CUDA: ``torch.cuda.max_memory_allocated()`` minus ``memory_allocated()`` before the pass.
- CPU: the process's peak resident set size during the pass minus its resident size before it.
  The peak is reset right before the pass through ``/proc/self/clear_refs`` (Linux), so it is the
  pass's own high-water mark, not the build's. glibc's mmap threshold is fixed at 128 KiB in the
  memory worker (``mallopt``) so that every freed tensor goes back to the OS and the resident size
  follows the live tensors instead of malloc's caches (glibc would otherwise raise the threshold up
  to 32 MiB after the first frees). Where clear_refs cannot be written the method is ``ru_maxrss``
  over the whole fresh process, an upper bound, and the result says so.

Timing workers fix glibc's thresholds the other way: allocations up to 32 MiB (glibc's maximum)
come from the heap and the heap is never trimmed, so after the warm-up round a pass reuses memory
instead of page-faulting, whatever the allocation history (docs/benchmarks.md has what the small
threshold and glibc's adaptive default did to whole-network timings, and the control case in
``default_cases`` measures what remains).

Each comparison is reported twice: the ratio of the two cases' medians, and in how many rounds the
first case was the faster one (both ran in the same round, minutes apart at most, so a slow spell of
the machine hits both).
"""

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from videotl_tools._cli import parse_shape
from videotl_tools.harness.reports import Column, machine_info, markdown_table, table

__all__ = [
    "BenchmarkCase",
    "default_cases",
    "build_case",
    "run_case",
    "run_cases",
    "time_group",
    "measure_case_memory",
    "compare",
    "faster_rounds",
    "model_rows",
    "render_markdown_section",
    "add_model_arguments",
    "run_model",
]


@dataclass(frozen=True)
class BenchmarkCase:
    """One thing to time.

    ``group`` is ``"model"`` (a whole network on clips), ``"module"`` (``submodule`` of the built
    network on its own input) or ``"vector_attention"`` (eq. 3 alone on q, k, v of
    ``input_shape`` = (B, N, d), ``implementation`` ``"naive"``, ``"chunked"`` (the default path:
    fused C kernels on CPU) or ``"chunked_pytorch"`` (the same algorithm in PyTorch ops)).
    ``input_shape`` includes the batch.
    """

    name: str
    group: str
    input_shape: Tuple[int, ...]
    config: str = ""
    overrides: Tuple[str, ...] = ()
    submodule: str = ""
    implementation: str = ""
    chunk_size: int = 64
    # Channels-last (NDHWC) 3-D kernels and inputs, as TRAIN.CHANNELS_LAST trains.
    channels_last: bool = False

    @property
    def batch(self) -> int:
        return self.input_shape[0]


class _VectorAttentionOnly(nn.Module):
    """Eq. 3 without the projections, so naive and chunked are compared on the attention alone."""

    def __init__(self, *, implementation: str, chunk_size: int) -> None:
        super().__init__()
        if implementation not in ("naive", "chunked", "chunked_pytorch"):
            raise ValueError(f"implementation must be 'naive', 'chunked' or 'chunked_pytorch', got {implementation!r}")
        self.implementation = implementation
        self.chunk_size = chunk_size

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        from videotl.models.vector_transformer import vector_attention_chunked, vector_attention_naive

        if self.implementation == "naive":
            return vector_attention_naive(q, k, v)
        return vector_attention_chunked(
            q, k, v, chunk_size=self.chunk_size, cpu_kernels=self.implementation == "chunked"
        )


# On CUDA, or without a C compiler, "chunked" runs the PyTorch ops too.
VECTOR_ATTENTION_CASES = {
    "Vector Transformer, naive": "naive",
    "Vector Transformer, chunked": "chunked",
    "Vector Transformer, chunked (PyTorch ops)": "chunked_pytorch",
}


def default_cases(
    *,
    model_input: Tuple[int, ...] = (1, 3, 16, 128, 128),
    module_input: Tuple[int, ...] = (1, 432, 64, 8, 8),
    vector_attention_input: Tuple[int, ...] = (2, 512, 432),
) -> List[BenchmarkCase]:
    """The standard comparison: baseline, TokenLearner and joint-MHSA models and res5 modules,
    and the naive against the chunked Vector Transformer.

    The whole networks run at ``model_input`` (docs/benchmarks.md uses the paper's 64 x 256 x 256
    test view, where res5 is 64 x 8 x 8 as in the paper; at small inputs the res5 modules are a
    negligible share of the time); the token-axis layers are built for its clip length. The
    modules run at the paper's res5 input (T x H x W x C = 64 x 8 x 8 x 432).
    """
    frames = ("DATA.NUM_FRAMES", str(model_input[2]))
    middle = "stages.3.6.middle"
    models = [
        ("X(2+1)D-M baseline", "configs/baselines/x2plus1d_m.yaml"),
        # A control: the same network built again. How far its speed is from the first instance's is
        # what "no difference" looks like on this machine (allocator and cache effects included).
        ("X(2+1)D-M baseline, second instance", "configs/baselines/x2plus1d_m.yaml"),
        ("Charades TokenLearner model (Conv2D + TL)", "configs/charades_12fps.yaml"),
        ("AViD TokenLearner model (TL only)", "configs/avid.yaml"),
        ("Joint space-time MHSA model", "configs/ablations/joint_mhsa.yaml"),
    ]
    modules = [
        ("Conv2D + Conv1D (baseline block)", "configs/baselines/x2plus1d_m.yaml"),
        ("TokenLearner", "configs/ablations/tokenlearner.yaml"),
        ("Conv2D + TokenLearner", "configs/ablations/conv2d_tokenlearner.yaml"),
        ("Joint space-time MHSA", "configs/ablations/joint_mhsa.yaml"),
        ("Conv2D + joint space-time MHSA", "configs/ablations/conv2d_joint_mhsa.yaml"),
    ]
    cases = [BenchmarkCase(name, "model", model_input, config, frames) for name, config in models]
    cases += [
        BenchmarkCase(name, "module", module_input, config, ("DATA.NUM_FRAMES", str(module_input[2])), middle)
        for name, config in modules
    ]
    cases += [
        BenchmarkCase(name, "vector_attention", vector_attention_input, implementation=impl)
        for name, impl in VECTOR_ATTENTION_CASES.items()
    ]
    return cases


def build_case(case: BenchmarkCase, *, device: torch.device) -> Tuple[nn.Module, Tuple[torch.Tensor, ...]]:
    """The module and its inputs on ``device`` (inputs do not require grad)."""
    torch.manual_seed(0)
    if case.group == "vector_attention":
        module = _VectorAttentionOnly(implementation=case.implementation, chunk_size=case.chunk_size)
        # Scaled like LayerNorm-ed tokens through a 432-wide projection, so the softmax is realistic.
        inputs = tuple(torch.randn(case.input_shape, device=device) * 0.5 for _ in range(3))
        return module.to(device), inputs
    from videotl.config import load_config
    from videotl.models import build_model, to_channels_last_3d

    cfg = load_config(case.config, list(case.overrides))
    model = build_model(cfg)
    module = model.get_submodule(case.submodule) if case.submodule else model
    inputs = torch.randn(case.input_shape, device=device)
    if case.channels_last:
        module = to_channels_last_3d(module)
        inputs = inputs.contiguous(memory_format=torch.channels_last_3d)
    return module.to(device), (inputs,)


def _read_status_kb(key: str) -> int:
    with open("/proc/self/status") as handle:
        return int(re.search(rf"^{key}:\s+(\d+) kB", handle.read(), re.MULTILINE).group(1))


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
        return True
    except OSError:
        return False


def _step(module: nn.Module, inputs: Sequence[torch.Tensor], backward: bool) -> None:
    if backward:
        module(*inputs).sum().backward()
        for tensor in list(module.parameters()) + list(inputs):
            tensor.grad = None  # optimizer.zero_grad(set_to_none=True): each step allocates its gradients
    else:
        with torch.no_grad():
            module(*inputs)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_peak_memory(
    module: nn.Module, inputs: Sequence[torch.Tensor], *, backward: bool, device: torch.device
) -> Dict[str, Any]:
    """Peak memory of one pass above what is allocated before it (see the module docstring)."""
    if device.type == "cuda":
        _sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        _step(module, inputs, backward)
        _sync(device)
        peak = torch.cuda.max_memory_allocated(device) - before
        return {
            "peak_memory_bytes": peak,
            "memory_method": "cuda max_memory_allocated minus memory_allocated before the pass",
        }
    exact = _reset_peak_rss()
    before_kb = _read_status_kb("VmRSS")
    _step(module, inputs, backward)
    if exact:
        peak_kb = _read_status_kb("VmHWM")
        method = "cpu peak RSS during the pass (VmHWM reset through /proc/self/clear_refs) minus RSS before it"
    else:
        peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        method = "cpu ru_maxrss of the fresh process minus RSS before the pass (upper bound: includes the build's peak)"
    return {"peak_memory_bytes": max(0, peak_kb - before_kb) * 1024, "memory_method": method}


def time_passes(
    module: nn.Module,
    inputs: Sequence[torch.Tensor],
    *,
    backward: bool,
    device: torch.device,
    warmup: int,
    repeats: int,
) -> List[float]:
    """Seconds per pass for ``repeats`` passes after ``warmup`` untimed ones."""
    for _ in range(warmup):
        _step(module, inputs, backward)
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        _step(module, inputs, backward)
        _sync(device)
        times.append(time.perf_counter() - start)
    return times


def run_case(
    case: BenchmarkCase, *, mode: str, device: str = "cpu", warmup: int = 1, repeats: int = 5
) -> Dict[str, Any]:
    """Measure one case in this process: peak memory of the first pass, then the timed passes.

    ``mode`` is ``"fw"`` (eval, no autograd) or ``"fwbw"`` (train mode, forward + backward).
    """
    torch_device = torch.device(device)
    module, inputs = _prepare(case, mode=mode, device=torch_device)
    backward = mode == "fwbw"
    memory = measure_peak_memory(module, inputs, backward=backward, device=torch_device)
    times = time_passes(module, inputs, backward=backward, device=torch_device, warmup=warmup, repeats=repeats)
    return _result(case, mode=mode, device=device, times=times, warmup=warmup, memory=memory)


def _result(
    case: BenchmarkCase, *, mode: str, device: str, times: List[float], warmup: int, memory: Dict[str, Any]
) -> Dict[str, Any]:
    """One case and mode's record: timings, their median as clips/s, and the memory measurement."""
    median = statistics.median(times)
    return {
        "case": asdict(case),
        "mode": mode,
        "device": device,
        "batch": case.batch,
        "median_s": median,
        "clips_per_s": case.batch / median,
        "times_s": times,
        "warmup": warmup,
        **memory,
    }


def measure_case_memory(case: BenchmarkCase, *, mode: str, device: str = "cpu") -> Dict[str, Any]:
    """Peak memory of the first ``mode`` pass of ``case`` in this (fresh) process."""
    torch_device = torch.device(device)
    module, inputs = _prepare(case, mode=mode, device=torch_device)
    return measure_peak_memory(module, inputs, backward=mode == "fwbw", device=torch_device)


def _prepare(case: BenchmarkCase, *, mode: str, device: torch.device) -> Tuple[nn.Module, Tuple[torch.Tensor, ...]]:
    if mode not in ("fw", "fwbw"):
        raise ValueError(f"mode must be 'fw' or 'fwbw', got {mode!r}")
    module, inputs = build_case(case, device=device)
    backward = mode == "fwbw"
    module.train(backward)
    if backward:
        inputs = tuple(x.requires_grad_(case.group == "vector_attention") for x in inputs)
    return module, inputs


def time_group(
    cases: Sequence[BenchmarkCase], *, mode: str, device: str = "cpu", warmup: int = 1, repeats: int = 5
) -> Dict[str, List[float]]:
    """Seconds per pass of each case, timed round-robin (see the module docstring); the order
    rotates every round, so that no case always runs right after the same other one."""
    torch_device = torch.device(device)
    prepared = [(case, *_prepare(case, mode=mode, device=torch_device)) for case in cases]
    times: Dict[str, List[float]] = {case.name: [] for case in cases}
    for round_index in range(warmup + repeats):
        shift = round_index % len(prepared)
        for case, module, inputs in prepared[shift:] + prepared[:shift]:
            seconds = time_passes(module, inputs, backward=mode == "fwbw", device=torch_device, warmup=0, repeats=1)[0]
            if round_index >= warmup:
                times[case.name].append(seconds)
    return times


def _spawn(spec: Dict[str, Any], env: Dict[str, str]) -> Any:
    process = subprocess.run(
        [sys.executable, "-m", "videotl_tools.harness.model_benchmark", "--worker", json.dumps(spec)],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    if process.returncode != 0:
        raise RuntimeError(f"benchmark worker {spec['task']} failed:\n{process.stderr[-4000:]}")
    return json.loads(process.stdout.strip().splitlines()[-1])


def run_cases(
    cases: Sequence[BenchmarkCase],
    *,
    device: str = "cpu",
    warmup: int = 1,
    repeats: int = 5,
    threads: Optional[int] = None,
    modes: Sequence[str] = ("fw", "fwbw"),
    log=print,
) -> List[Dict[str, Any]]:
    """Memory of every case and mode in its own fresh process, then the timing of each group
    (cases sharing ``group``) round-robin in one fresh process per group and mode."""
    env = dict(os.environ)
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    base = {"device": device, "threads": threads}
    memory = {}
    for case in cases:
        for mode in modes:
            memory[case.name, mode] = _spawn({**base, "task": "memory", "case": asdict(case), "mode": mode}, env)
            log(f"{case.name:<45} {mode:<5} peak {memory[case.name, mode]['peak_memory_bytes'] / 2**20:9.1f} MiB")
    groups: Dict[str, List[BenchmarkCase]] = {}
    for case in cases:
        groups.setdefault(case.group, []).append(case)
    results = []
    for members in groups.values():
        for mode in modes:
            spec = {
                **base,
                "task": "time",
                "cases": [asdict(c) for c in members],
                "mode": mode,
                "warmup": warmup,
                "repeats": repeats,
            }
            times = _spawn(spec, env)
            for case in members:
                result = _result(
                    case,
                    mode=mode,
                    device=device,
                    times=times[case.name],
                    warmup=warmup,
                    memory=memory[case.name, mode],
                )
                results.append(result)
                log(
                    f"{case.name:<45} {mode:<5} {result['clips_per_s']:9.3f} clips/s  "
                    f"median {result['median_s'] * 1e3:9.1f} ms"
                )
    return results


def _find(results: Sequence[Dict[str, Any]], name: str, mode: str) -> Optional[Dict[str, Any]]:
    return next((r for r in results if r["case"]["name"] == name and r["mode"] == mode), None)


# Speed comparisons: (first, second) case names; the ratio is the first's clips/s over the second's.
SPEED_PAIRS = {
    "baseline_second_instance_vs_baseline_speed": ("X(2+1)D-M baseline, second instance", "X(2+1)D-M baseline"),
    "charades_tl_model_vs_baseline_speed": ("Charades TokenLearner model (Conv2D + TL)", "X(2+1)D-M baseline"),
    "avid_tl_model_vs_baseline_speed": ("AViD TokenLearner model (TL only)", "X(2+1)D-M baseline"),
    "tl_model_vs_joint_mhsa_model_speed": ("AViD TokenLearner model (TL only)", "Joint space-time MHSA model"),
    "tl_module_vs_joint_mhsa_module_speed": ("TokenLearner", "Joint space-time MHSA"),
    "conv2d_tl_module_vs_conv2d_joint_mhsa_module_speed": ("Conv2D + TokenLearner", "Conv2D + joint space-time MHSA"),
    "tl_module_vs_conv2d_conv1d_module_speed": ("TokenLearner", "Conv2D + Conv1D (baseline block)"),
    "conv2d_tl_module_vs_conv2d_conv1d_module_speed": ("Conv2D + TokenLearner", "Conv2D + Conv1D (baseline block)"),
}


CHANNELS_LAST_SUFFIX = " (channels-last)"


def _speed_pairs(results: Sequence[Dict[str, Any]]):
    """``(key_mode, first, second)`` for each speed comparison whose two cases ran in that mode,
    and each channels-last case against the same case in the default layout."""
    for key, (first, second) in SPEED_PAIRS.items():
        for mode in ("fw", "fwbw"):
            a, b = _find(results, first, mode), _find(results, second, mode)
            if a and b:
                yield f"{key}_{mode}", a, b
    for a in results:
        name = a["case"]["name"]
        if name.endswith(CHANNELS_LAST_SUFFIX):
            b = _find(results, name[: -len(CHANNELS_LAST_SUFFIX)], a["mode"])
            if b:
                yield f"{b['case']['name']}: channels_last_vs_contiguous_speed_{a['mode']}", a, b


def compare(results: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
    """The speed targets from a run of ``default_cases``: speed ratios (> 1: faster) and the
    chunked / naive Vector Transformer time and peak-memory ratios."""
    out: Dict[str, Any] = {key: a["clips_per_s"] / b["clips_per_s"] for key, a, b in _speed_pairs(results)}
    for mode in ("fw", "fwbw"):
        naive = _find(results, "Vector Transformer, naive", mode)
        for key, name in (
            ("chunked", "Vector Transformer, chunked"),
            ("chunked_pytorch", "Vector Transformer, chunked (PyTorch ops)"),
        ):
            chunked = _find(results, name, mode)
            if naive and chunked:
                out[f"vector_attention_{key}_over_naive_time_{mode}"] = chunked["median_s"] / naive["median_s"]
                if naive["peak_memory_bytes"]:
                    out[f"vector_attention_{key}_over_naive_peak_memory_{mode}"] = (
                        chunked["peak_memory_bytes"] / naive["peak_memory_bytes"]
                    )
    return out


def faster_rounds(results: Sequence[Dict[str, Any]]) -> Dict[str, Tuple[int, int]]:
    """For each speed comparison and mode: (rounds in which the first case was faster, rounds).

    Round r of both cases is ``times_s[r]``: the cases of a group are timed one pass each per round.
    """
    out: Dict[str, Tuple[int, int]] = {}
    for key, a, b in _speed_pairs(results):
        if a.get("times_s") and len(a["times_s"]) == len(b.get("times_s", ())):
            wins = sum(ta / a["batch"] < tb / b["batch"] for ta, tb in zip(a["times_s"], b["times_s"]))
            out[key] = (wins, len(a["times_s"]))
    return out


# The speed targets (docs/benchmarks.md): text and check, per comparison key.
TARGETS = {
    "avid_tl_model_vs_baseline_speed": ("> 1 + control (paper compute ratio 532 / 487 = 1.09)", lambda v: v > 1.0),
    "charades_tl_model_vs_baseline_speed": ("> 1 + control", lambda v: v > 1.0),
    "tl_module_vs_joint_mhsa_module_speed": (">= 5", lambda v: v >= 5.0),
    "vector_attention_chunked_over_naive_time": ("<= 1.3", lambda v: v <= 1.3),
    "vector_attention_chunked_over_naive_peak_memory": ("<= 0.25", lambda v: v <= 0.25),
}
# Whole-network targets count as met only by more than the control's distance from 1 (the same
# network built twice), in the same mode: a smaller difference is not resolved on that machine.
CONTROL = "baseline_second_instance_vs_baseline_speed"
NEEDS_CONTROL = ("avid_tl_model_vs_baseline_speed", "charades_tl_model_vs_baseline_speed")


def target_met(ratios: Dict[str, float], key: str, mode: str) -> Optional[bool]:
    """Whether comparison ``key`` meets its target in ``mode``; None without a target or a value."""
    value = ratios.get(f"{key}_{mode}")
    if key not in TARGETS or value is None:
        return None
    if key in NEEDS_CONTROL:
        value -= abs(ratios.get(f"{CONTROL}_{mode}", 1.0) - 1.0)
    return TARGETS[key][1](value)


MODES = ("fw", "fwbw")


def model_rows(payload: Dict[str, Any]) -> List[Dict[str, Any]]:
    """The rows of a run's tables (:mod:`videotl_tools.harness.reports`): ``cases`` (one per case:
    clips/s, median ms and peak MiB in each mode it ran in) and ``comparisons`` (one per comparison:
    the ratio in each mode, in how many of the timed rounds the first case was faster, the target
    and whether each mode meets it)."""
    results = payload["results"]
    rows = []
    for name in dict.fromkeys(r["case"]["name"] for r in results):
        measured = {mode: _find(results, name, mode) for mode in MODES}
        case = next(r for r in measured.values() if r)["case"]
        row = {"table": "cases", "case": name, "input_shape": list(case["input_shape"]), "submodule": case["submodule"]}
        for mode, result in measured.items():
            if result:
                row[f"{mode}_clips_per_s"] = result["clips_per_s"]
                row[f"{mode}_median_ms"] = result["median_s"] * 1e3
                row[f"{mode}_peak_mib"] = result["peak_memory_bytes"] / 2**20
        rows.append(row)
    ratios, rounds = payload.get("comparison", {}), payload.get("faster_rounds", {})
    for key in dict.fromkeys(key.rsplit("_", 1)[0] for key in ratios):
        row = {"table": "comparisons", "comparison": key, "target": TARGETS.get(key, ("", None))[0]}
        for mode in MODES:
            row[f"{mode}_ratio"] = ratios.get(f"{key}_{mode}")
            row[f"{mode}_faster_rounds"], row[f"{mode}_rounds"] = rounds.get(f"{key}_{mode}") or (None, None)
            row[f"{mode}_met"] = target_met(ratios, key, mode)
        rows.append(row)
    return rows


def _rounds_cell(row: Dict[str, Any]) -> str:
    return " / ".join(
        f"{row[f'{mode}_faster_rounds']} of {row[f'{mode}_rounds']}" for mode in MODES if row.get(f"{mode}_rounds")
    )


def _met_cell(row: Dict[str, Any]) -> str:
    if not row["target"]:
        return ""
    return " / ".join("—" if row[f"{mode}_met"] is None else ("yes" if row[f"{mode}_met"] else "no") for mode in MODES)


CASE_COLUMNS = [
    Column("Case", "{case}", "left"),
    Column(
        "Input (with batch)",
        lambda row: "x".join(map(str, row["input_shape"])) + (f" `{row['submodule']}`" if row["submodule"] else ""),
        "left",
    ),
] + [
    Column(f"{label} {title}", f"{{{mode}_{field}:{spec}}}", missing="—")
    for mode, label in (("fw", "fw"), ("fwbw", "fw+bw"))
    for title, field, spec in (
        ("clips/s", "clips_per_s", ".3f"),
        ("median ms", "median_ms", ",.1f"),
        ("peak MiB", "peak_mib", ",.1f"),
    )
]
COMPARISON_COLUMNS = [
    Column("Comparison", "{comparison}", "left"),
    Column("fw", "{fw_ratio:.2f}", missing="—"),
    Column("fw+bw", "{fwbw_ratio:.2f}", missing="—"),
    Column("Faster in rounds (fw / fw+bw)", _rounds_cell, "left"),
    Column("Target", "{target}", "left"),
    Column("Met (fw / fw+bw)", _met_cell, "left"),
]


def render_markdown_section(payload: Dict[str, Any]) -> str:
    """The "Model" section of docs/benchmarks.md from a ``run_model`` result: its tables are
    :func:`model_rows` through :func:`~videotl_tools.harness.reports.markdown_table`."""
    machine = payload["machine"]
    results = payload["results"]
    rows = model_rows(payload)
    lines = [
        "## Model",
        "",
        "Generated by:",
        "",
        "```",
        payload["command"],
        "```",
        "",
        f"Machine: {machine.get('gpu') or machine.get('cpu')}; {machine['cpu_count']} CPU cores, {machine['threads']} torch "
        f"thread(s), torch {machine['torch']}, {machine['platform']}. Load average when the run started: "
        f"{', '.join(f'{x:.1f}' for x in machine['load_average_at_start'])} "
        "(the cores are shared with other work: expect noise; medians are reported).",
        "",
        "Vector Transformer on CPU: "
        + (
            "the fused C kernels (`videotl/models/csrc/vector_attention.c`) in every TokenLearner case and in "
            "`Vector Transformer, chunked`; `chunked (PyTorch ops)` is the same algorithm without them."
            if machine.get("vector_attention_cpu_kernels")
            else "PyTorch ops (the fused C kernels were not available: no C compiler, or turned off)."
        ),
        "",
        "Peak memory: the first pass of each case and mode in a fresh process, "
        + (results[0]["memory_method"] if results else "")
        + ". Speed: the cases of each block (whole models, res5 "
        f"modules, Vector Transformers) are built in one fresh process and timed round-robin, one pass each per round "
        "(the order rotating each round), "
        f"{payload['warmup']} untimed round(s) then {payload['repeats']} timed; clips/s = batch / median. fw = eval mode "
        "without autograd; fw+bw = train mode, `out.sum().backward()`.",
        "",
        markdown_table(table(rows, "cases"), CASE_COLUMNS),
    ]
    if payload.get("comparison"):
        lines += [
            "",
            "Ratios: `_speed` = clips/s of the first over the second, from the medians (> 1: the first is "
            "faster); `_time` and `_peak_memory` = chunked over naive. Rounds: in how many timed rounds the first "
            "was the faster of the two. Control: `baseline_second_instance_vs_baseline_speed`, the same network "
            "built twice; a whole-network target is met only by more than the control's distance from 1.",
            "",
            markdown_table(table(rows, "comparisons"), COMPARISON_COLUMNS),
        ]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# tools/benchmark.py ``model`` subcommand.


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cfg", default=None, help="config of the model to time (default: the standard comparison suite)"
    )
    parser.add_argument(
        "--input",
        type=parse_shape,
        default=None,
        help="T x H x W of the clip (default 16x128x128); with --module, the module's full input shape",
    )
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument(
        "--memory-format",
        choices=("contiguous", "channels_last", "both"),
        default="contiguous",
        help="with --cfg: the 3-D kernels' and inputs' layout; 'both' times the two, interleaved",
    )
    parser.add_argument("--module", default="", help="time only this submodule (dotted name, e.g. stages.3.6.middle)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads per measurement (default: torch's)"
    )
    parser.add_argument("--output", default="benchmark_model.json")
    parser.add_argument("overrides", nargs="*", help="KEY VALUE config overrides (with --cfg)")


def run_model(args: argparse.Namespace) -> Dict[str, Any]:
    if args.cfg:
        if args.module:
            if not args.input:
                raise SystemExit("--module needs --input with the module's full input shape")
            shape, overrides = args.input, tuple(args.overrides)
        else:
            frames, height, width = args.input or (16, 128, 128)
            shape, overrides = (args.batch, 3, frames, height, width), (*args.overrides, "DATA.NUM_FRAMES", str(frames))
        group = "module" if args.module else "model"
        name = Path(args.cfg).stem + (f" {args.module}" if args.module else "")
        layouts = {"contiguous": [False], "channels_last": [True], "both": [False, True]}[args.memory_format]
        cases = [
            BenchmarkCase(
                name + (CHANNELS_LAST_SUFFIX if channels_last else ""),
                group,
                shape,
                args.cfg,
                overrides,
                args.module,
                channels_last=channels_last,
            )
            for channels_last in layouts
        ]
    else:
        if args.memory_format != "contiguous":
            raise SystemExit("--memory-format needs --cfg: the standard comparison times the default layout")
        frames, height, width = args.input or (16, 128, 128)
        cases = default_cases(model_input=(args.batch, 3, frames, height, width))
    machine = machine_info(device=args.device, threads=args.threads)
    results = run_cases(cases, device=args.device, warmup=args.warmup, repeats=args.repeats, threads=args.threads)
    payload = {
        "machine": machine,
        "warmup": args.warmup,
        "repeats": args.repeats,
        "results": results,
        "comparison": compare(results),
        "faster_rounds": faster_rounds(results),
        "load_average_at_end": os.getloadavg(),
    }
    for key, value in payload["comparison"].items():
        print(f"{key:<60} {value:7.3f}")
    return payload


def _fix_malloc(*, mmap_threshold: int, trim_threshold: int) -> None:
    """glibc only: fixed thresholds instead of glibc's adaptive ones (see module doc)."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, mmap_threshold)  # M_MMAP_THRESHOLD: larger allocations are mmapped, unmapped on free
        libc.mallopt(-1, trim_threshold)  # M_TRIM_THRESHOLD: free heap top above this goes back to the OS
    except (OSError, AttributeError):
        pass


def _case(data: Dict[str, Any]) -> BenchmarkCase:
    return BenchmarkCase(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


def _worker(spec: Dict[str, Any]) -> None:
    if spec["device"] == "cpu":
        if spec["task"] == "memory":
            _fix_malloc(mmap_threshold=128 * 1024, trim_threshold=128 * 1024)
        else:
            _fix_malloc(mmap_threshold=32 * 2**20, trim_threshold=2**31 - 1)  # glibc's largest mmap threshold
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    if spec["task"] == "memory":
        result = measure_case_memory(_case(spec["case"]), mode=spec["mode"], device=spec["device"])
    else:
        cases = [_case(data) for data in spec["cases"]]
        result = time_group(
            cases, mode=spec["mode"], device=spec["device"], warmup=spec["warmup"], repeats=spec["repeats"]
        )
    print(json.dumps(result))


if __name__ == "__main__":
    worker = argparse.ArgumentParser()
    worker.add_argument("--worker", required=True, help="JSON spec of one measurement (internal)")
    _worker(json.loads(worker.parse_args().worker))
