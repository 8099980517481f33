"""Fused Triton kernels of the Vector Transformer's attention (eq. 3), the GPU counterpart of
``csrc/vector_attention.c``::

    y_ic = sum_j p_ijc v_jc,   p_ijc = exp(q_ic k_jc - lse_ic),   lse_ic = log sum_j exp(q_ic k_jc)

Three kernels, each a grid of (batch x blocks of rows, blocks of channels) programs that stream
over the other side's rows once; nothing of the N x N x d attention tensor is ever stored. The
batch shares grid axis 0 with the row blocks (CUDA allows 2^31 - 1 programs there, 65,535 on the
other two axes), so any batch launches in one grid:

- forward, per block of queries: out and the log-sum-exp. The softmax is an online one whose peak
  is known before the pass (``vector_transformer.softmax_peak``: for fixed q_ic the logit is linear
  in k_jc, so its max over j is q_ic max_j k_jc or q_ic min_j k_jc), so no running rescale is needed
  and every exponent is <= 0;
- backward, per block of queries: grad q = sum_j p g (v_j - y_i) k_j;
- backward, per block of keys: grad v = sum_i p g and grad k = sum_i p g (v_j - y_i) q_i.

Backward recomputes p from the saved log-sum-exp (what is saved: q, k, v, out, lse, as on CPU).
Splitting backward by side costs one more exp per (i, j, c) than the CPU kernels' single pass, but
needs no atomics, so gradients are deterministic. Each program keeps (rows x keys x channels)
accumulators and reduces them over the streamed axis once at the end, which keeps cross-thread
reductions out of the loop.

Arithmetic is float32 whatever the inputs (bfloat16 and float16 under autocast are converted on
load), float64 for float64 inputs; out and lse are returned in that compute dtype, gradients in
the inputs' dtypes.

The block sizes are pinned per shape: :func:`pinned_config` picks one of ``CONFIGS`` from the shape
alone, so every process (each rank of a distributed run, a resumed run) launches the same blocks
and computes the same numbers. Timing the configurations (Triton's autotuner) could pick
differently in each, and the blocks decide the order of the float sums. The kernels are defined on
first use, so ``TRITON_INTERPRET=1`` (Triton's CPU interpreter, for tests) only needs to be set
before that first use.
"""

import contextlib
import functools
import importlib.util
import math
import os
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Optional, Tuple

import torch

__all__ = [
    "CONFIGS",
    "MAX_GRID",
    "KernelConfig",
    "backward",
    "forward",
    "interpreting",
    "launch_grid",
    "no_keys_result",
    "pinned_config",
    "triton_applies",
]


@dataclass(frozen=True)
class KernelConfig:
    """Block sizes of one launch: rows of the program's own side, rows streamed per step, channels."""

    block_rows: int
    block_stream: int
    block_channels: int
    num_warps: int = 4


# The block sizes pinned_config chooses from; every one is tested under the interpreter. A block
# holds block_rows x block_stream x block_channels values per accumulator.
CONFIGS: Tuple[KernelConfig, ...] = (
    KernelConfig(16, 16, 16, 4),
    KernelConfig(32, 8, 16, 4),
    KernelConfig(16, 8, 32, 4),
    KernelConfig(32, 16, 16, 8),
    KernelConfig(64, 4, 16, 4),
    KernelConfig(16, 16, 32, 8),
)
# CUDA's limits on the number of programs along each grid axis.
MAX_GRID = (2**31 - 1, 65535, 65535)


def triton_installed() -> bool:
    return importlib.util.find_spec("triton") is not None


def interpreting() -> bool:
    """Whether Triton kernels run in its CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def triton_applies(*tensors: torch.Tensor) -> bool:
    """Whether the kernels can run on these tensors: Triton installed and the tensors on a CUDA
    device (or on CPU under the interpreter), in a floating dtype the kernels read."""
    if not triton_installed():
        return False
    dtypes = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
    if not all(t.dtype in dtypes for t in tensors):
        return False
    if all(t.is_cuda for t in tensors):
        return True
    return interpreting() and all(t.device.type == "cpu" for t in tensors)


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


@functools.cache
def _kernels(interpreted: bool) -> SimpleNamespace:
    """The jitted kernels, defined here so that ``TRITON_INTERPRET`` is read when they are first
    needed (Triton decides at decoration time whether a kernel is compiled or interpreted). The
    cache is keyed by that choice, so a test that turns the interpreter on gets its own kernels."""
    return SimpleNamespace(
        forward=_forward_kernel(interpreted),
        grad_q=_grad_q_kernel(interpreted),
        grad_kv=_grad_kv_kernel(interpreted),
    )


@functools.cache
def _forward_kernel(interpreted: bool):
    """The forward kernel, jitted as :func:`_kernels` says."""
    import triton
    import triton.language as tl

    @triton.jit
    def forward_kernel(
        q_ptr, k_ptr, v_ptr, k_max_ptr, k_min_ptr, out_ptr, lse_ptr, n_q, n_k, dim,
        ACC: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
    ):  # fmt: skip
        # Axis 0 numbers (clip, block of rows) pairs, clip-major.
        row_blocks = tl.cdiv(n_q, BLOCK_M)
        batch = (tl.program_id(0) // row_blocks).to(tl.int64)
        rows = (tl.program_id(0) % row_blocks) * BLOCK_M + tl.arange(0, BLOCK_M)
        channels = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
        channel_ok = channels < dim
        row_mask = (rows < n_q)[:, None] & channel_ok[None, :]
        at = batch * n_q * dim + rows[:, None] * dim + channels[None, :]
        q = tl.load(q_ptr + at, mask=row_mask, other=0.0).to(ACC)
        k_max = tl.load(k_max_ptr + batch * dim + channels, mask=channel_ok, other=0.0).to(ACC)
        k_min = tl.load(k_min_ptr + batch * dim + channels, mask=channel_ok, other=0.0).to(ACC)
        peak = tl.where(q >= 0, q * k_max[None, :], q * k_min[None, :])
        norm = tl.zeros((BLOCK_M, BLOCK_N, BLOCK_D), dtype=ACC)
        acc = tl.zeros((BLOCK_M, BLOCK_N, BLOCK_D), dtype=ACC)
        keys_base = batch * n_k * dim
        for start in range(0, n_k, BLOCK_N):
            keys = start + tl.arange(0, BLOCK_N)
            key_ok = keys < n_k
            key_at = keys_base + keys[:, None] * dim + channels[None, :]
            key_mask = key_ok[:, None] & channel_ok[None, :]
            k = tl.load(k_ptr + key_at, mask=key_mask, other=0.0).to(ACC)
            v = tl.load(v_ptr + key_at, mask=key_mask, other=0.0).to(ACC)
            e = tl.exp(q[:, None, :] * k[None, :, :] - peak[:, None, :])
            e = tl.where(key_ok[None, :, None], e, 0.0)
            norm += e
            acc += e * v[None, :, :]
        total = tl.sum(norm, axis=1)
        tl.store(out_ptr + at, tl.sum(acc, axis=1) / total, mask=row_mask)
        tl.store(lse_ptr + at, peak + tl.log(total), mask=row_mask)

    return forward_kernel


@functools.cache
def _grad_q_kernel(interpreted: bool):
    """The query-gradient kernel, jitted as :func:`_kernels` says."""
    import triton
    import triton.language as tl

    @triton.jit
    def grad_q_kernel(
        q_ptr, k_ptr, v_ptr, out_ptr, lse_ptr, grad_out_ptr, grad_q_ptr, n_q, n_k, dim,
        ACC: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
    ):  # fmt: skip
        row_blocks = tl.cdiv(n_q, BLOCK_M)
        batch = (tl.program_id(0) // row_blocks).to(tl.int64)
        rows = (tl.program_id(0) % row_blocks) * BLOCK_M + tl.arange(0, BLOCK_M)
        channels = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
        channel_ok = channels < dim
        row_mask = (rows < n_q)[:, None] & channel_ok[None, :]
        at = batch * n_q * dim + rows[:, None] * dim + channels[None, :]
        q = tl.load(q_ptr + at, mask=row_mask, other=0.0).to(ACC)
        lse = tl.load(lse_ptr + at, mask=row_mask, other=0.0).to(ACC)
        y = tl.load(out_ptr + at, mask=row_mask, other=0.0).to(ACC)
        g = tl.load(grad_out_ptr + at, mask=row_mask, other=0.0).to(ACC)
        acc = tl.zeros((BLOCK_M, BLOCK_N, BLOCK_D), dtype=ACC)
        keys_base = batch * n_k * dim
        for start in range(0, n_k, BLOCK_N):
            keys = start + tl.arange(0, BLOCK_N)
            key_ok = keys < n_k
            key_at = keys_base + keys[:, None] * dim + channels[None, :]
            key_mask = key_ok[:, None] & channel_ok[None, :]
            k = tl.load(k_ptr + key_at, mask=key_mask, other=0.0).to(ACC)
            v = tl.load(v_ptr + key_at, mask=key_mask, other=0.0).to(ACC)
            p = tl.exp(q[:, None, :] * k[None, :, :] - lse[:, None, :])
            p = tl.where(key_ok[None, :, None], p, 0.0)
            # d logit = p g (v_j - y_i); g is a factor of every term and is applied once at the end.
            acc += p * (v[None, :, :] - y[:, None, :]) * k[None, :, :]
        grad_q = g * tl.sum(acc, axis=1)
        tl.store(grad_q_ptr + at, grad_q.to(grad_q_ptr.dtype.element_ty), mask=row_mask)

    return grad_q_kernel


@functools.cache
def _grad_kv_kernel(interpreted: bool):
    """The key- and value-gradient kernel, jitted as :func:`_kernels` says."""
    import triton
    import triton.language as tl

    @triton.jit
    def grad_kv_kernel(
        q_ptr, k_ptr, v_ptr, out_ptr, lse_ptr, grad_out_ptr, grad_k_ptr, grad_v_ptr, n_q, n_k, dim,
        ACC: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
    ):  # fmt: skip
        # BLOCK_N keys per program; queries stream past in steps of BLOCK_M.
        key_blocks = tl.cdiv(n_k, BLOCK_N)
        batch = (tl.program_id(0) // key_blocks).to(tl.int64)
        keys = (tl.program_id(0) % key_blocks) * BLOCK_N + tl.arange(0, BLOCK_N)
        channels = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
        channel_ok = channels < dim
        key_mask = (keys < n_k)[:, None] & channel_ok[None, :]
        key_at = batch * n_k * dim + keys[:, None] * dim + channels[None, :]
        k = tl.load(k_ptr + key_at, mask=key_mask, other=0.0).to(ACC)
        v = tl.load(v_ptr + key_at, mask=key_mask, other=0.0).to(ACC)
        acc_k = tl.zeros((BLOCK_M, BLOCK_N, BLOCK_D), dtype=ACC)
        acc_v = tl.zeros((BLOCK_M, BLOCK_N, BLOCK_D), dtype=ACC)
        rows_base = batch * n_q * dim
        for start in range(0, n_q, BLOCK_M):
            rows = start + tl.arange(0, BLOCK_M)
            row_mask = (rows < n_q)[:, None] & channel_ok[None, :]
            at = rows_base + rows[:, None] * dim + channels[None, :]
            q = tl.load(q_ptr + at, mask=row_mask, other=0.0).to(ACC)
            lse = tl.load(lse_ptr + at, mask=row_mask, other=0.0).to(ACC)
            y = tl.load(out_ptr + at, mask=row_mask, other=0.0).to(ACC)
            # Rows past the end read g = 0 (and p = 1 from q = lse = 0): they add nothing.
            g = tl.load(grad_out_ptr + at, mask=row_mask, other=0.0).to(ACC)
            p_g = tl.exp(q[:, None, :] * k[None, :, :] - lse[:, None, :]) * g[:, None, :]
            acc_v += p_g
            acc_k += p_g * (v[None, :, :] - y[:, None, :]) * q[:, None, :]
        tl.store(grad_k_ptr + key_at, tl.sum(acc_k, axis=0).to(grad_k_ptr.dtype.element_ty), mask=key_mask)
        tl.store(grad_v_ptr + key_at, tl.sum(acc_v, axis=0).to(grad_v_ptr.dtype.element_ty), mask=key_mask)

    return grad_kv_kernel


def _blocks(config: KernelConfig, *, rows: str, stream: str) -> dict:
    return {rows: config.block_rows, stream: config.block_stream, "BLOCK_D": config.block_channels}


def _acc_dtype(dtype: torch.dtype):
    import triton.language as tl

    return tl.float64 if dtype == torch.float64 else tl.float32


def _check(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    if q.dim() != 3 or k.dim() != 3 or k.shape != v.shape or q.shape[0] != k.shape[0] or q.shape[2] != k.shape[2]:
        raise ValueError(
            f"vector attention needs q (B, N, d) and k, v (B, M, d), got {tuple(q.shape)}, {tuple(k.shape)}, "
            f"{tuple(v.shape)}"
        )
    if not triton_applies(q, k, v):
        raise RuntimeError(
            "the Triton vector attention needs triton and CUDA tensors (or CPU tensors with TRITON_INTERPRET=1), "
            f"got {q.device} {q.dtype}" + ("" if triton_installed() else "; triton is not installed")
        )


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _padded(size: int, block: int) -> int:
    return _cdiv(size, block) * block


def pinned_config(n_q: int, n_k: int, dim: int) -> KernelConfig:
    """The block sizes every launch at this shape uses: the config of ``CONFIGS`` whose three
    kernels compute the fewest masked (padding) lanes, the first such in ``CONFIGS`` on a tie.

    Work is counted as the rows of a program's own side x the streamed rows x the channels, each
    rounded up to its block: twice with queries as rows (forward, grad q), once with keys (grad k, v).
    A function of the shape alone, so every process picks the same blocks.
    """

    def padded_work(config: KernelConfig) -> int:
        rows, stream = config.block_rows, config.block_stream
        queries_first = _padded(n_q, rows) * _padded(n_k, stream)
        keys_first = _padded(n_k, rows) * _padded(n_q, stream)
        return (2 * queries_first + keys_first) * _padded(dim, config.block_channels)

    return min(CONFIGS, key=padded_work)


def launch_grid(rows: int, dim: int, batch: int, *, block_rows: int, block_channels: int) -> Tuple[int, int, int]:
    """The grid of a launch over ``batch`` clips of ``rows`` rows (the program's own side) and
    ``dim`` channels: batch x row blocks on axis 0, channel blocks on axis 1. Raises ValueError
    where CUDA could not launch it (``MAX_GRID``)."""
    grid = (batch * _cdiv(rows, block_rows), _cdiv(dim, block_channels), 1)
    for axis, (size, limit) in enumerate(zip(grid, MAX_GRID)):
        if size > limit:
            raise ValueError(
                f"vector attention over {batch:,} x {rows:,} rows x {dim:,} channels needs {size:,} programs on "
                f"grid axis {axis}, more than CUDA's {limit:,}" + ("; split the batch" if axis == 0 else "")
            )
    return grid


def no_keys_result(q: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Eq. 3's output and log-sum-exp where there are no keys: sums over nothing, so zeros and
    -inf (what ``vector_attention_naive`` gives), in the compute dtype."""
    out = torch.zeros(q.shape, dtype=compute_dtype(q.dtype), device=q.device)
    return out, torch.full_like(out, -math.inf)


def forward(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, config: Optional[KernelConfig] = None
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Eq. 3 for q (B, N, d), k and v (B, M, d): the output and the per-(query, channel)
    log-sum-exp, both in the compute dtype. ``config`` fixes the block sizes (else
    :func:`pinned_config` of the shape)."""
    _check(q, k, v)
    q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
    batch, n_q, dim = q.shape
    n_k = k.shape[1]
    if q.numel() == 0 or n_k == 0:
        return no_keys_result(q)
    config = config or pinned_config(n_q, n_k, dim)
    out = torch.empty(q.shape, dtype=compute_dtype(q.dtype), device=q.device)
    lse = torch.empty_like(out)
    k_max, k_min = k.amax(dim=1).contiguous(), k.amin(dim=1).contiguous()
    grid = launch_grid(n_q, dim, batch, block_rows=config.block_rows, block_channels=config.block_channels)
    row_blocks = _blocks(config, rows="BLOCK_M", stream="BLOCK_N")
    with torch.cuda.device(q.device) if q.is_cuda else contextlib.nullcontext():
        _kernels(interpreting()).forward[grid](
            q, k, v, k_max, k_min, out, lse, n_q, n_k, dim, ACC=_acc_dtype(q.dtype), **row_blocks,
            num_warps=config.num_warps,
        )  # fmt: skip
    return out, lse


def backward(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    out: torch.Tensor,
    lse: torch.Tensor,
    grad_out: torch.Tensor,
    *,
    config: Optional[KernelConfig] = None,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients of eq. 3 with respect to q, k and v (in their dtypes), from what ``forward`` saved."""
    _check(q, k, v)
    q, k, v, out, lse, grad_out = (t.contiguous() for t in (q, k, v, out, lse, grad_out))
    batch, n_q, dim = q.shape
    n_k = k.shape[1]
    grad_q, grad_k, grad_v = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    if q.numel() == 0 or k.numel() == 0:
        return grad_q.zero_(), grad_k.zero_(), grad_v.zero_()
    config = config or pinned_config(n_q, n_k, dim)
    kernels = _kernels(interpreting())
    acc = _acc_dtype(q.dtype)
    # The grad kv kernel's own side is the keys: its rows block is config.block_rows of keys.
    query_grid = launch_grid(n_q, dim, batch, block_rows=config.block_rows, block_channels=config.block_channels)
    key_grid = launch_grid(n_k, dim, batch, block_rows=config.block_rows, block_channels=config.block_channels)
    row_blocks = _blocks(config, rows="BLOCK_M", stream="BLOCK_N")
    key_blocks = _blocks(config, rows="BLOCK_N", stream="BLOCK_M")
    with torch.cuda.device(q.device) if q.is_cuda else contextlib.nullcontext():
        kernels.grad_q[query_grid](
            q, k, v, out, lse, grad_out, grad_q, n_q, n_k, dim, ACC=acc, **row_blocks, num_warps=config.num_warps
        )  # fmt: skip
        kernels.grad_kv[key_grid](
            q, k, v, out, lse, grad_out, grad_k, grad_v, n_q, n_k, dim, ACC=acc, **key_blocks,
            num_warps=config.num_warps,
        )  # fmt: skip
    return grad_q, grad_k, grad_v
