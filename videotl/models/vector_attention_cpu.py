"""The fused CPU kernels of the Vector Transformer's attention (``csrc/vector_attention.c``).

The kernels are plain C, compiled on first use with the machine's C compiler (``$CC``, else
``cc`` / ``gcc`` / ``clang``) for the machine's own instruction set, and cached under
``$VIDEOTL_CACHE_DIR/kernels`` (default ``~/.cache/videotl/kernels``), keyed by the source, the
flags, the compiler and the CPU. Without a compiler the Vector Transformer runs on PyTorch ops, which is
exact but far slower on CPU (docs/benchmarks.md); a warning says so once. ``VIDEOTL_CPU_KERNELS=0`` turns the
kernels off.

Calls go through ``ctypes``, which releases the GIL, so query rows are split across
``torch.get_num_threads()`` Python threads.
"""

import ctypes
import functools
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

import torch

from ..utils.native import NATIVE_FLAG_SETS, build_library, load_native

logger = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("csrc") / "vector_attention.c"
# ISO C mode turns off fused multiply-adds by default; the kernels need them to be fast.
_BASE_FLAGS = ("-std=c11", "-O3", "-ffp-contract=fast", "-fPIC", "-shared")


def build_kernels(compiler: str, flag_sets: Sequence[Tuple[str, ...]] = NATIVE_FLAG_SETS) -> Path:
    """Compile ``csrc/vector_attention.c`` into the cache (atomically) and return the library path.

    ``flag_sets`` are tried in order. Raises ``RuntimeError`` with the compiler's messages if none
    compiles.
    """
    return build_library(
        SOURCE, compiler, base_flags=_BASE_FLAGS, flag_sets=flag_sets, what="the Vector Transformer CPU kernels"
    )


@functools.cache
def load_kernels() -> Optional[ctypes.CDLL]:
    """The compiled library, or None (with one warning saying why) when it cannot be had."""
    return load_native(
        SOURCE,
        open_kernels,
        base_flags=_BASE_FLAGS,
        what="the Vector Transformer CPU kernels",
        fallback="the Vector Transformer runs on PyTorch ops, exact but far slower on CPU.",
        logger=logger,
    )


def open_kernels(path: Path) -> ctypes.CDLL:
    """Load a built library and declare its functions' signatures."""
    library = ctypes.CDLL(str(path))
    pointer, size = ctypes.c_void_p, ctypes.c_int64
    library.vector_attention_forward.argtypes = [pointer] * 7 + [size] * 5
    library.vector_attention_forward.restype = ctypes.c_int
    library.vector_attention_backward.argtypes = [pointer] * 9 + [size] * 5
    library.vector_attention_backward.restype = ctypes.c_int
    return library


def kernels_apply(*tensors: torch.Tensor) -> bool:
    """Whether the fused kernels can compute on these tensors (CPU float32, library available)."""
    if not all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors):
        return False
    return load_kernels() is not None


@functools.cache
def _pool(workers: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="videotl-vector-attention")


# A forked child inherits the pools but not their threads; it must make its own.
os.register_at_fork(after_in_child=_pool.cache_clear)


def _split_rows(total: int, parts: int) -> List[Tuple[int, int]]:
    bounds = [total * p // parts for p in range(parts + 1)]
    return [(bounds[p], bounds[p + 1]) for p in range(parts) if bounds[p] < bounds[p + 1]]


def _run_split(call: Callable[[int, int, int], int], total_rows: int, workers: int) -> None:
    """``call(part, row_begin, row_end)`` over ``workers`` row ranges, in threads when more than one."""
    ranges = _split_rows(total_rows, workers)
    if len(ranges) == 1:
        codes: Sequence[int] = [call(0, *ranges[0])]
    else:
        codes = list(_pool(len(ranges)).map(lambda part: call(part, *ranges[part]), range(len(ranges))))
    if any(codes):
        raise MemoryError("the Vector Transformer CPU kernel could not allocate its row buffers")


def _workers(rows: int) -> int:
    # At least 8 query rows per thread: the kernels process rows in blocks of up to 8.
    return max(1, min(torch.get_num_threads(), rows // 8))


def _require_equal_widths(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    # The kernels compute eq. 3 with gamma reduced to the softmax: one width for q, k and v.
    if q.dim() != 3 or k.shape != v.shape or q.shape[0] != k.shape[0] or q.shape[2] != k.shape[2]:
        raise ValueError(
            f"the fused vector attention kernels take q (B, N, d), k and v (B, M, d) of one width d; got "
            f"q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}"
        )


def fused_forward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Eq. 3 for (B, N, d) float32 CPU tensors: returns the output and the per-(query, channel)
    log-sum-exp that ``fused_backward`` needs. The kernel takes each softmax's peak from the
    keys' per-channel extremes, as ``vector_transformer.softmax_peak`` explains."""
    _require_equal_widths(q, k, v)
    library = load_kernels()
    q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
    k_max, k_min = k.amax(dim=1).contiguous(), k.amin(dim=1).contiguous()
    batch, n_q, dim = q.shape
    n_k = k.shape[1]
    out, lse = torch.empty_like(q), torch.empty_like(q)
    args = [t.data_ptr() for t in (q, k, v, k_max, k_min, out, lse)]
    _run_split(
        lambda part, begin, end: library.vector_attention_forward(*args, n_q, n_k, dim, begin, end),
        batch * n_q,
        _workers(batch * n_q),
    )
    return out, lse


def fused_backward(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor, lse: torch.Tensor, grad_out: torch.Tensor
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients of eq. 3 with respect to q, k and v, recomputing the attention from ``lse``."""
    _require_equal_widths(q, k, v)
    library = load_kernels()
    q, k, v, out, lse, grad_out = (t.contiguous() for t in (q, k, v, out, lse, grad_out))
    batch, n_q, dim = q.shape
    n_k = k.shape[1]
    workers = _workers(batch * n_q)
    grad_q = torch.empty_like(q)
    # Every thread sums over its own query rows into its own key-side buffers; they add up after.
    grad_k_parts = k.new_zeros((workers, *k.shape))
    grad_v_parts = v.new_zeros((workers, *v.shape))
    inputs = [t.data_ptr() for t in (q, k, v, out, lse, grad_out, grad_q)]
    _run_split(
        lambda part, begin, end: library.vector_attention_backward(
            *inputs, grad_k_parts[part].data_ptr(), grad_v_parts[part].data_ptr(), n_q, n_k, dim, begin, end
        ),
        batch * n_q,
        workers,
    )
    return grad_q, grad_k_parts.sum(dim=0), grad_v_parts.sum(dim=0)
