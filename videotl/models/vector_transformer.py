"""The Vector Transformer of the paper's appendix A.1 (eq. 3).

For tokens ``z`` (B, N, C) with projections ``q = f_q(z)``, ``k = f_k(z)``, ``v = f_v(z)`` of width d::

    y_i = sum_j softmax_j(q_i * k_j) * v_j          (all products per channel)

i.e. multi-head attention with one head per channel. The attention *tensor* is N x N x d: at
N = 512 tokens and d = 432 it is 113M floats (450 MB) per clip, and autograd keeps more than one
copy of it. ``vector_attention_chunked`` never holds more than ``chunk_size`` query rows of it, in
the forward or the backward pass, by saving only the per-(query, channel) log-sum-exp and
recomputing the probabilities chunk by chunk in backward.

On CPU in float32 the same function runs the fused C kernels of ``vector_attention_cpu`` (one
pass over the keys per block of queries, nothing of the attention tensor stored), 20-30x
faster than the PyTorch ops, which remain the path on CUDA, for other dtypes, and where no C
compiler is available.
"""

import contextlib
import contextvars
from typing import Iterator

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from . import vector_attention_cpu
from .attention import Mlp


def vector_attention_naive(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Eq. 3 as written: builds the full (B, N, N, d) attention tensor. Reference implementation."""
    weights = torch.softmax(q.unsqueeze(2) * k.unsqueeze(1), dim=2)
    return (weights * v.unsqueeze(1)).sum(dim=2)


def softmax_peak(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """``max_j q_ic * k_jc`` for every (query, channel), without forming the N x N x d products:
    for fixed q_ic the product is linear (and its rounding monotone) in k_jc, so the max sits at
    ``max_j k_jc`` when q_ic >= 0 and at ``min_j k_jc`` otherwise. Exactly what ``amax`` would give."""
    return torch.where(q >= 0, q * k.amax(dim=1, keepdim=True), q * k.amin(dim=1, keepdim=True))


class _ChunkedVectorAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, chunk_size: int, cpu_kernels: bool):
        ctx.chunk_size = chunk_size
        ctx.cpu_kernels = cpu_kernels and vector_attention_cpu.kernels_apply(q, k, v)
        if ctx.cpu_kernels:
            out, lse = vector_attention_cpu.fused_forward(q, k, v)
        else:
            peak = softmax_peak(q, k)
            out = torch.empty_like(q)
            norm = torch.empty_like(q)
            for start in range(0, q.shape[1], chunk_size):
                rows = slice(start, start + chunk_size)
                logits = q[:, rows].unsqueeze(2) * k.unsqueeze(1)  # (B, c, N, d)
                weights = logits.sub_(peak[:, rows].unsqueeze(2)).exp_()
                norm[:, rows] = weights.sum(dim=2)
                # sum_j p_ij * v_j as multiply-then-sum, in place: on CPU einsum turns this (and the
                # three contractions in backward) into d-batched matrix-vector products, 3-5x slower.
                out[:, rows] = weights.mul_(v.unsqueeze(1)).sum(dim=2) / norm[:, rows]
            lse = peak + norm.log()
        ctx.save_for_backward(q, k, v, out, lse)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        q, k, v, out, lse = ctx.saved_tensors
        if ctx.cpu_kernels and vector_attention_cpu.kernels_apply(grad_out):
            return (*vector_attention_cpu.fused_backward(q, k, v, out, lse, grad_out), None, None)
        grad_q = torch.empty_like(q)
        grad_k = torch.zeros_like(k)
        grad_v = torch.zeros_like(v)
        for start in range(0, q.shape[1], ctx.chunk_size):
            rows = slice(start, start + ctx.chunk_size)
            q_c, g_c = q[:, rows], grad_out[:, rows]
            weights = (q_c.unsqueeze(2) * k.unsqueeze(1)).sub_(lse[:, rows].unsqueeze(2)).exp_()  # (B, c, N, d)
            grad_v += (weights * g_c.unsqueeze(2)).sum(dim=1)
            # d logits = p * (dL/dp - sum_j p dL/dp) = p * g_i * (v_j - y_i)
            grad_logits = weights.mul_(g_c.unsqueeze(2)).mul_(v.unsqueeze(1) - out[:, rows].unsqueeze(2))
            grad_q[:, rows] = (grad_logits * k.unsqueeze(1)).sum(dim=2)
            grad_k += grad_logits.mul_(q_c.unsqueeze(2)).sum(dim=1)
        return grad_q, grad_k, grad_v, None, None


def vector_attention_chunked(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, chunk_size: int = 64, cpu_kernels: bool = True
) -> torch.Tensor:
    """Eq. 3, exactly as ``vector_attention_naive``, at a fraction of its memory (see module doc).

    ``cpu_kernels=False`` keeps to PyTorch ops on CPU too (the fused kernels are the default there).
    Under CUDA autocast it computes in float32: the softmax over N products needs the range.
    Under ``torch.export`` and ONNX export, and inside :func:`exportable_ops` (for a TorchScript
    trace), it runs the same chunked computation in plain differentiable ops, which every exporter
    can follow; otherwise it is one autograd function (which the FLOP counter recognises).
    """
    if q.shape[-1] != v.shape[-1] or k.shape[-1] != v.shape[-1]:
        raise ValueError(
            f"vector_attention_chunked takes q, k and v of one width (gamma reduced to the softmax); got widths "
            f"{q.shape[-1]}, {k.shape[-1]}, {v.shape[-1]}: unequal widths need vector_attention_projected_chunked"
        )
    if _exporting():
        return _chunked_forward_ops(q, k, v, chunk_size)
    if q.is_cuda and torch.is_autocast_enabled("cuda"):
        with torch.autocast("cuda", enabled=False):
            return _ChunkedVectorAttention.apply(q.float(), k.float(), v.float(), chunk_size, cpu_kernels)
    return _ChunkedVectorAttention.apply(q, k, v, chunk_size, cpu_kernels)


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
    widths the projected form runs in PyTorch ops. ``chunk_size = 0`` uses the naive implementations.
    """

    def __init__(self, *, dim: int, attention_dim: int = 0, chunk_size: int = 64) -> None:
        super().__init__()
        attention_dim = attention_dim or dim
        self.chunk_size = chunk_size
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
            return vector_attention_chunked(q, k, v, chunk_size=self.chunk_size)
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
