"""Multi-head self-attention over a token axis, the one attention used by every MHSA variant."""

import torch
import torch.nn.functional as F
from torch import nn


class MultiHeadSelfAttention(nn.Module):
    """Standard scaled dot-product self-attention on (B, N, C) tokens.

    ::

        x -> qkv linear (C -> 3d) -> split heads -> softmax(q k^T / sqrt(d/h)) v -> merge -> linear (d -> C)

    Runs through ``F.scaled_dot_product_attention`` so fused kernels are used where available.
    """

    def __init__(self, *, dim: int, num_heads: int, attention_dim: int = 0, qkv_bias: bool = True) -> None:
        super().__init__()
        attention_dim = attention_dim or dim
        if attention_dim % num_heads:
            raise ValueError(f"attention width {attention_dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * attention_dim, bias=qkv_bias)
        self.proj = nn.Linear(attention_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, _ = x.shape
        q, k, v = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, -1))


class Mlp(nn.Module):
    """``linear (C -> hidden) -> GELU -> linear (hidden -> out)``."""

    def __init__(self, *, dim: int, hidden_dim: int, out_dim: int = 0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, out_dim or dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))
