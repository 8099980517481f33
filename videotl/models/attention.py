"""Multi-head self-attention and the MLP, the two layers every transformer variant shares, with
the initialisers of the official (flax) code.

Activations are arguments (``act_layer``, as in timm): the exact GELU is ``nn.GELU``, flax's
``nn.gelu`` is the tanh approximation, :data:`GELU_TANH`.
"""

import functools
import math
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["GELU_TANH", "Mlp", "MultiHeadSelfAttention", "lecun_normal_", "xavier_uniform_"]

# Flax's default GELU (``flax.linen.gelu``, approximate=True).
GELU_TANH: Callable[[], nn.Module] = functools.partial(nn.GELU, approximate="tanh")

# Flax's truncated normal draws from [-2, 2] standard deviations and rescales so that the kept
# values have the requested variance: stddev / 0.87962566103423978 before truncation.
_TRUNCATED_NORMAL_STD_FACTOR = 0.87962566103423978


def lecun_normal_(tensor: torch.Tensor, *, fan_in: int = 0) -> torch.Tensor:
    """Flax's default kernel init (``lecun_normal``): truncated normal of variance 1 / fan_in.

    ``fan_in`` defaults to the PyTorch layout's (all dimensions but the first).
    """
    fan_in = fan_in or math.prod(tensor.shape[1:])
    std = math.sqrt(1.0 / fan_in) / _TRUNCATED_NORMAL_STD_FACTOR
    with torch.no_grad():
        return nn.init.trunc_normal_(tensor, mean=0.0, std=std, a=-2 * std, b=2 * std)


def xavier_uniform_(tensor: torch.Tensor, *, fan_in: int, fan_out: int) -> torch.Tensor:
    """Xavier-uniform with explicit fans (a fused weight holding several projections is initialised
    per projection, as flax initialises each of them)."""
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    with torch.no_grad():
        return tensor.uniform_(-bound, bound)


class MultiHeadSelfAttention(nn.Module):
    """Standard scaled dot-product self-attention on (B, N, C) tokens.

    ::

        x -> qkv linear (C -> 3d) -> split heads -> dropout(softmax(q k^T / sqrt(d/h))) v -> merge -> linear (d -> C)

    Runs through ``F.scaled_dot_product_attention`` so fused kernels are used where available.
    ``attention_dropout`` drops attention weights in training (flax's ``dropout_rate`` of
    ``MultiHeadDotProductAttention``). The fused q / k / v weight is initialised per projection, like
    three separate (C, d) kernels.
    """

    def __init__(
        self, *, dim: int, num_heads: int, attention_dim: int = 0, qkv_bias: bool = True, attention_dropout: float = 0.0
    ) -> None:
        super().__init__()
        attention_dim = attention_dim or dim
        if attention_dim % num_heads:
            raise ValueError(f"attention width {attention_dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.attention_dropout = attention_dropout
        self.qkv = nn.Linear(dim, 3 * attention_dim, bias=qkv_bias)
        self.proj = nn.Linear(attention_dim, dim)

    def reset_parameters_like_flax(self) -> None:
        """Xavier-uniform per projection and zero biases, as flax's attention initialises them."""
        dim, attention_dim = self.qkv.in_features, self.proj.in_features
        for part in self.qkv.weight.data.split(attention_dim, dim=0):
            xavier_uniform_(part, fan_in=dim, fan_out=attention_dim)
        xavier_uniform_(self.proj.weight.data, fan_in=attention_dim, fan_out=dim)
        for bias in (self.qkv.bias, self.proj.bias):
            if bias is not None:
                nn.init.zeros_(bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, _ = x.shape
        q, k, v = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        dropout = self.attention_dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout)
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, -1))


class Mlp(nn.Module):
    """``linear (C -> hidden) -> act -> dropout -> linear (hidden -> out) -> dropout``.

    The two dropouts are where flax's ``MlpBlock`` has them (``hidden_dropout`` defaults to
    ``dropout``); ``act_layer`` builds the activation (``nn.GELU`` exact, :data:`GELU_TANH` as flax).
    """

    def __init__(
        self,
        *,
        dim: int,
        hidden_dim: int,
        out_dim: int = 0,
        act_layer: Callable[[], nn.Module] = nn.GELU,
        dropout: float = 0.0,
        hidden_dropout: Optional[float] = None,
    ) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = act_layer()
        self.drop1 = nn.Dropout(dropout if hidden_dropout is None else hidden_dropout)
        self.fc2 = nn.Linear(hidden_dim, out_dim or dim)
        self.drop2 = nn.Dropout(dropout)

    def reset_parameters_like_flax(self) -> None:
        """Xavier-uniform kernels and N(0, 1e-6) biases, flax's ``MlpBlock`` initialisers."""
        for linear in (self.fc1, self.fc2):
            nn.init.xavier_uniform_(linear.weight)
            nn.init.normal_(linear.bias, std=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop2(self.fc2(self.drop1(self.act(self.fc1(x)))))
