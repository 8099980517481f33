"""The Vector Transformer of the paper's appendix A.1 (eq. 3).

For tokens ``z`` (B, N, C) with projections ``q = f_q(z)``, ``k = f_k(z)``, ``v = f_v(z)`` of width d::

    y_i = sum_j softmax_j(q_i * k_j) * v_j          (all products per channel)

i.e. multi-head attention with one head per channel. The attention *tensor* is N x N x d: at
N = 512 tokens and d = 432 it is 113M floats (450 MB) per clip, and autograd keeps more than one
copy of it. ``vector_attention`` never stores it: it saves only q, k, v, the output and the
per-(query, channel) log-sum-exp, and backward recomputes the probabilities from those.

Three implementations of that one algorithm sit behind one ``torch.library`` operator
(``videotl::vector_attention``, with its backward and fake kernels, so ``torch.compile`` traces it
without a graph break):

- the fused Triton kernels of ``vector_attention_triton``, the default on CUDA;
- the fused C kernels of ``vector_attention_cpu``, the default on CPU in float32 (far faster than
  the PyTorch ops there; docs/benchmarks.md);
- chunked PyTorch ops, ``chunk_size`` query rows of the attention tensor at a time, in forward and
  backward: the fallback (no Triton, no C compiler, other dtypes) and the reference.

When the query / key width d differs from the value width C, eq. 3's gamma (a linear map d -> C
of every pairwise product, inside the softmax) does not reduce to the softmax, and
``vector_attention_projected_*`` compute it in PyTorch ops.
"""

import contextlib
import contextvars
import functools
import logging
from typing import Iterator, Tuple

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from . import vector_attention_cpu, vector_attention_triton
from .attention import Mlp

logger = logging.getLogger(__name__)


def vector_attention_naive(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Eq. 3 as written: builds the full (B, N, N, d) attention tensor. Reference implementation."""
    weights = torch.softmax(q.unsqueeze(2) * k.unsqueeze(1), dim=2)
    return (weights * v.unsqueeze(1)).sum(dim=2)


def softmax_peak(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """``max_j q_ic * k_jc`` for every (query, channel), without forming the N x N x d products:
    for fixed q_ic the product is linear (and its rounding monotone) in k_jc, so the max sits at
    ``max_j k_jc`` when q_ic >= 0 and at ``min_j k_jc`` otherwise. Exactly what ``amax`` would give."""
    return torch.where(q >= 0, q * k.amax(dim=1, keepdim=True), q * k.amin(dim=1, keepdim=True))


def _chunked_forward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, chunk_size: int):
    """The output and log-sum-exp of eq. 3 in PyTorch ops, ``chunk_size`` query rows at a time."""
    peak = softmax_peak(q, k)
    out = torch.empty_like(q)
    norm = torch.empty_like(q)
    for start in range(0, q.shape[1], chunk_size):
        rows = slice(start, start + chunk_size)
        logits = q[:, rows].unsqueeze(2) * k.unsqueeze(1)  # (B, c, N, d)
        weights = logits.sub_(peak[:, rows].unsqueeze(2)).exp_()
        norm[:, rows] = weights.sum(dim=2)
        # sum_j p_ij * v_j as multiply-then-sum, in place: on CPU einsum turns this (and the
        # three contractions in backward) into d-batched matrix-vector products, which are slower.
        out[:, rows] = weights.mul_(v.unsqueeze(1)).sum(dim=2) / norm[:, rows]
    return out, peak + norm.log()


def _chunked_backward(q, k, v, out, lse, grad_out, chunk_size: int):
    grad_q = torch.empty_like(q)
    grad_k = torch.zeros_like(k)
    grad_v = torch.zeros_like(v)
    for start in range(0, q.shape[1], chunk_size):
        rows = slice(start, start + chunk_size)
        q_c, g_c = q[:, rows], grad_out[:, rows]
        weights = (q_c.unsqueeze(2) * k.unsqueeze(1)).sub_(lse[:, rows].unsqueeze(2)).exp_()  # (B, c, N, d)
        grad_v += (weights * g_c.unsqueeze(2)).sum(dim=1)
        # d logits = p * (dL/dp - sum_j p dL/dp) = p * g_i * (v_j - y_i)
        grad_logits = weights.mul_(g_c.unsqueeze(2)).mul_(v.unsqueeze(1) - out[:, rows].unsqueeze(2))
        grad_q[:, rows] = (grad_logits * k.unsqueeze(1)).sum(dim=2)
        grad_k += grad_logits.mul_(q_c.unsqueeze(2)).sum(dim=1)
    return grad_q, grad_k, grad_v


# What ``implementation`` may ask for. "auto": the Triton kernels on CUDA, the fused C kernels on
# CPU in float32, the chunked PyTorch ops otherwise; "triton" and "pytorch" force one of them.
IMPLEMENTATIONS = ("auto", "triton", "pytorch")
# Internal requests besides those: the C kernels where they apply, else PyTorch ops (never Triton).
_REQUESTS = IMPLEMENTATIONS + ("cpu_kernels",)


@functools.cache
def _warn_no_triton() -> None:
    logger.warning(
        "triton is not installed: the Vector Transformer runs on chunked PyTorch ops on CUDA, "
        "exact but slower than the fused kernels."
    )


def resolve_implementation(implementation: str, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> str:
    """Which kernels ``implementation`` runs on these tensors: "triton", "cpu_kernels" or "pytorch"."""
    if implementation not in _REQUESTS:
        raise ValueError(
            f"implementation must be one of {', '.join(map(repr, IMPLEMENTATIONS))}, got {implementation!r}"
        )
    if implementation == "triton":
        if not vector_attention_triton.triton_applies(q, k, v):
            raise RuntimeError(
                "implementation 'triton' needs triton and CUDA tensors (or CPU tensors with TRITON_INTERPRET=1), "
                f"got {q.device} tensors" + ("" if vector_attention_triton.triton_installed() else " and no triton")
            )
        return "triton"
    if implementation == "pytorch":
        return "pytorch"
    if implementation == "auto" and q.is_cuda:
        if vector_attention_triton.triton_applies(q, k, v):
            return "triton"
        if not vector_attention_triton.triton_installed():
            _warn_no_triton()
        return "pytorch"
    # The C kernels read float32, which half inputs are converted to (_computing).
    on_cpu = all(t.device.type == "cpu" for t in (q, k, v))
    if on_cpu and vector_attention_triton.compute_dtype(q.dtype) == torch.float32:
        return "cpu_kernels" if vector_attention_cpu.load_kernels() is not None else "pytorch"
    return "pytorch"


def _computing(dtype: torch.dtype, *tensors: torch.Tensor):
    """The tensors in the compute dtype: float32 for half inputs (the softmax over N products needs
    the range), float64 for float64."""
    compute = vector_attention_triton.compute_dtype(dtype)
    return [t.to(compute) for t in tensors]


@torch.library.custom_op("videotl::vector_attention", mutates_args=())
def _vector_attention_op(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, implementation: str, chunk_size: int
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Eq. 3: the output and the per-(query, channel) log-sum-exp, in the compute dtype. One
    operator for all three implementations, so that ``torch.compile`` sees a single opaque call and
    the choice happens when it runs."""
    # Contiguous results whatever the inputs' strides, as the fake below promises (inductor plans
    # its buffers from the fake's strides).
    out, lse = _vector_attention_forward(q, k, v, implementation, chunk_size)
    return out.contiguous(), lse.contiguous()


def _vector_attention_forward(q, k, v, implementation: str, chunk_size: int) -> Tuple[torch.Tensor, torch.Tensor]:
    path = resolve_implementation(implementation, q, k, v)
    if q.numel() == 0 or k.shape[1] == 0:
        # No query, or no key to attend to: every implementation returns the empty sums.
        return vector_attention_triton.no_keys_result(q)
    if path == "triton":
        return vector_attention_triton.forward(q, k, v)
    q, k, v = _computing(q.dtype, q, k, v)
    if path == "cpu_kernels":
        return vector_attention_cpu.fused_forward(q, k, v)
    return _chunked_forward(q, k, v, chunk_size)


@_vector_attention_op.register_fake
def _vector_attention_fake(q, k, v, implementation, chunk_size):
    out = q.new_empty(q.shape, dtype=vector_attention_triton.compute_dtype(q.dtype))
    return out, torch.empty_like(out)


@torch.library.custom_op("videotl::vector_attention_backward", mutates_args=())
def _vector_attention_backward_op(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    out: torch.Tensor,
    lse: torch.Tensor,
    grad_out: torch.Tensor,
    implementation: str,
    chunk_size: int,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients of eq. 3 with respect to q, k, v (in their dtypes, contiguous), recomputing the
    attention from the saved log-sum-exp with the implementation the forward pass used."""
    grads = _vector_attention_gradients(q, k, v, out, lse, grad_out, implementation, chunk_size)
    return tuple(g.contiguous() for g in grads)


def _vector_attention_gradients(q, k, v, out, lse, grad_out, implementation: str, chunk_size: int):
    path = resolve_implementation(implementation, q, k, v)
    if q.numel() == 0 or k.numel() == 0:
        return torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)
    if path == "triton":
        return vector_attention_triton.backward(q, k, v, out, lse, grad_out)
    dtypes = (q.dtype, k.dtype, v.dtype)
    q_c, k_c, v_c, out, lse, grad_out = _computing(q.dtype, q, k, v, out, lse, grad_out)
    if path == "cpu_kernels":
        grads = vector_attention_cpu.fused_backward(q_c, k_c, v_c, out, lse, grad_out)
    else:
        grads = _chunked_backward(q_c, k_c, v_c, out, lse, grad_out, chunk_size)
    return tuple(g.to(dtype) for g, dtype in zip(grads, dtypes))


@_vector_attention_backward_op.register_fake
def _vector_attention_backward_fake(q, k, v, out, lse, grad_out, implementation, chunk_size):
    return q.new_empty(q.shape), k.new_empty(k.shape), v.new_empty(v.shape)


def _setup_context(ctx, inputs, output) -> None:
    q, k, v, implementation, chunk_size = inputs
    out, lse = output
    ctx.save_for_backward(q, k, v, out, lse)
    ctx.implementation, ctx.chunk_size = implementation, chunk_size
    ctx.mark_non_differentiable(lse)


def _backward(ctx, grad_out, grad_lse):
    # The log-sum-exp is an internal output (never returned by ``vector_attention``): no gradient.
    q, k, v, out, lse = ctx.saved_tensors
    grads = torch.ops.videotl.vector_attention_backward(q, k, v, out, lse, grad_out, ctx.implementation, ctx.chunk_size)
    return (*grads, None, None)


torch.library.register_autograd("videotl::vector_attention", _backward, setup_context=_setup_context)


def vector_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, implementation: str = "auto", chunk_size: int = 64
) -> torch.Tensor:
    """Eq. 3, exactly as ``vector_attention_naive``, without ever storing the attention tensor.

    ``implementation`` (see ``IMPLEMENTATIONS``) picks the kernels; ``chunk_size`` is the query
    chunk of the PyTorch ops. Half-precision inputs (autocast) are computed in float32 and the
    output is returned in the inputs' dtype. Under ``torch.export`` and ONNX export, and inside
    :func:`exportable_ops` (for a TorchScript trace), it runs the chunked computation in plain
    differentiable ops, which every exporter can follow.
    """
    if q.shape[-1] != v.shape[-1] or k.shape[-1] != v.shape[-1]:
        raise ValueError(
            f"vector_attention takes q, k and v of one width (gamma reduced to the softmax); got widths "
            f"{q.shape[-1]}, {k.shape[-1]}, {v.shape[-1]}: unequal widths need vector_attention_projected_chunked"
        )
    if _exporting():
        return _chunked_forward_ops(q, k, v, chunk_size)
    out, _ = torch.ops.videotl.vector_attention(q, k, v, implementation, chunk_size)
    return out.to(q.dtype)


def vector_attention_chunked(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, chunk_size: int = 64, cpu_kernels: bool = True
) -> torch.Tensor:
    """Eq. 3 by the chunked algorithm of the module doc, never by Triton: the fused C kernels on
    CPU in float32 (``cpu_kernels=False`` keeps to PyTorch ops there too), PyTorch ops elsewhere."""
    return vector_attention(q, k, v, implementation="cpu_kernels" if cpu_kernels else "pytorch", chunk_size=chunk_size)


_EXPORTABLE = contextvars.ContextVar("videotl_exportable_ops", default=False)


@contextlib.contextmanager
def exportable_ops() -> Iterator[None]:
    """Within this block the Vector Transformer runs in plain PyTorch ops (no custom autograd
    function, no C kernels), so that ``torch.jit.trace`` records a graph TorchScript can save."""
    token = _EXPORTABLE.set(True)
    try:
        yield
    finally:
        _EXPORTABLE.reset(token)


def _exporting() -> bool:
    return _EXPORTABLE.get() or torch.compiler.is_exporting() or torch.onnx.is_in_onnx_export()


def _chunked_forward_ops(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, chunk_size: int) -> torch.Tensor:
    """Eq. 3 chunk by chunk of queries, out of place: the form that tracing and export record."""
    peak = softmax_peak(q, k)
    rows = []
    for start in range(0, q.shape[1], chunk_size):
        q_c, peak_c = q[:, start : start + chunk_size], peak[:, start : start + chunk_size]
        weights = torch.exp(q_c.unsqueeze(2) * k.unsqueeze(1) - peak_c.unsqueeze(2))  # (B, c, N, d)
        rows.append((weights * v.unsqueeze(1)).sum(dim=2) / weights.sum(dim=2))
    return torch.cat(rows, dim=1)


def vector_attention_projected_naive(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, gamma: torch.Tensor
) -> torch.Tensor:
    """Eq. 3 with widths that differ, as written: ``y_i = sum_j softmax_j(gamma(q_i * k_j)) * v_j``.

    ``q``, ``k`` are (B, N, d), ``v`` is (B, N, C) and ``gamma`` the (C, d) weight of the linear map
    over channels that is applied to every pairwise product before the softmax. Builds the full
    (B, N, N, C) tensor: a reference implementation.
    """
    logits = torch.einsum("bid,bjd,cd->bijc", q, k, gamma)
    return (torch.softmax(logits, dim=2) * v.unsqueeze(1)).sum(dim=2)


def vector_attention_projected_chunked(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, gamma: torch.Tensor, *, chunk_size: int = 64
) -> torch.Tensor:
    """:func:`vector_attention_projected_naive`, ``chunk_size`` query rows at a time; each chunk is
    recomputed in backward (activation checkpointing), so memory stays at one chunk's tensor."""
    rows = []
    for start in range(0, q.shape[1], chunk_size):
        q_c = q[:, start : start + chunk_size]
        if torch.is_grad_enabled() and not _exporting():
            rows.append(checkpoint(vector_attention_projected_naive, q_c, k, v, gamma, use_reentrant=False))
        else:
            rows.append(vector_attention_projected_naive(q_c, k, v, gamma))
    return torch.cat(rows, dim=1)


class VectorAttention(nn.Module):
    """The Vector Transformer's attention (eq. 3)::

        z -> f_q, f_k (C -> d), f_v (C -> C) -> y_i = sum_j softmax_j(gamma(f_q(z_i) * f_k(z_j))) * f_v(z_j)

    ``gamma`` is "an extra projection layer to match the channel dimensionality followed by a
    softmax function over j": a linear map d -> C over the channels of every pairwise product,
    inside the softmax. With equal widths (``attention_dim`` 0 or ``dim``, the paper's models) it
    reduces to the softmax alone, and the chunked path (fused kernels on CPU) runs; with unequal
    widths the projected form runs in PyTorch ops. ``implementation`` is one of ``IMPLEMENTATIONS``
    ("auto": Triton on CUDA, the C kernels on CPU); ``chunk_size`` is the query chunk of the PyTorch
    ops, and 0 uses the naive implementations.
    """

    def __init__(self, *, dim: int, attention_dim: int = 0, chunk_size: int = 64, implementation: str = "auto") -> None:
        super().__init__()
        if implementation not in IMPLEMENTATIONS:
            raise ValueError(
                f"implementation must be one of {', '.join(map(repr, IMPLEMENTATIONS))}, got {implementation!r}"
            )
        if chunk_size == 0 and implementation != "auto":
            raise ValueError(
                f"chunk_size = 0 builds the naive implementation; implementation {implementation!r} needs chunk_size > 0"
            )
        attention_dim = attention_dim or dim
        self.chunk_size = chunk_size
        self.implementation = implementation
        self.f_q = nn.Linear(dim, attention_dim, bias=False)
        self.f_k = nn.Linear(dim, attention_dim, bias=False)
        self.f_v = nn.Linear(dim, dim, bias=False)
        self.gamma = nn.Linear(attention_dim, dim, bias=False) if attention_dim != dim else nn.Identity()

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        q, k, v = self.f_q(z), self.f_k(z), self.f_v(z)
        if isinstance(self.gamma, nn.Linear):
            if self.chunk_size:
                return vector_attention_projected_chunked(q, k, v, self.gamma.weight, chunk_size=self.chunk_size)
            return vector_attention_projected_naive(q, k, v, self.gamma.weight)
        if self.chunk_size:
            return vector_attention(q, k, v, implementation=self.implementation, chunk_size=self.chunk_size)
        return vector_attention_naive(q, k, v)


class TokenTransformerLayer(nn.Module):
    """A pre-norm transformer layer on the learned tokens (B, N, C)::

        z -> LayerNorm -> attention (vector or multi-head) -> + z -> [LayerNorm -> MLP -> +]

    The MLP is optional (``mlp_ratio = 0`` leaves it out, which matches the paper's module
    parameter count of 0.81M at C = 432).
    """

    def __init__(self, *, dim: int, attention: nn.Module, mlp_ratio: float = 0.0, eps: float = 1e-6) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=eps)
        self.attention = attention
        if mlp_ratio > 0:
            self.mlp_norm = nn.LayerNorm(dim, eps=eps)
            self.mlp = Mlp(dim=dim, hidden_dim=int(round(dim * mlp_ratio)))
        else:
            self.mlp_norm = None
            self.mlp = None

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        z = z + self.attention(self.norm(z))
        if self.mlp is not None:
            z = z + self.mlp(self.mlp_norm(z))
        return z
