"""Token generators: TokenLearner (eq. 1), its v1.1 form, and the paper's alternatives.

Every tokenizer maps a feature volume X of shape (B, C, T, H, W) to ``(tokens, maps)``:
``tokens`` is (B, T*S, C) ordered frame by frame (token ``t*S + s``), and ``maps`` is the
(B, T, S, H, W) spatial weighting that made each token, or ``None`` when a tokenizer has none.
Visualisation and the mask-unpooling fuser read ``maps``.
"""

import math
from typing import Callable, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .attention import GELU_TANH, Mlp, lecun_normal_

TokensAndMaps = Tuple[torch.Tensor, Optional[torch.Tensor]]


def _frames(x: torch.Tensor) -> torch.Tensor:
    """(B, C, T, H, W) -> (B*T, C, H, W)."""
    b, c, t, h, w = x.shape
    return x.transpose(1, 2).reshape(b * t, c, h, w)


class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channels (dim 1) of a (N, C, ...) map, as Scenic's LayerNorm on NHWC."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.movedim(1, -1)).movedim(-1, 1)


def pointwise_conv(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """A conv with a 1 x 1 (x 1) kernel on (B, C, *positions), as one matrix product per clip:
    (S, C) @ (C, positions). The same result as ``conv2d`` / ``conv3d``; on CPU their backward for
    such a kernel is much slower than this product (docs/benchmarks.md)."""
    b, c = x.shape[:2]
    out = torch.matmul(weight.reshape(weight.shape[0], c), x.reshape(b, c, -1))
    if bias is not None:
        out = out + bias.unsqueeze(-1)
    return out.reshape(b, weight.shape[0], *x.shape[2:])


def _conv2d_per_frame(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """``conv`` on every frame of (B, C, T, H, W), as a 3D conv with a 1 x k x k kernel: the same
    result as on ``_frames(x)``, without copying the volume into frame order."""
    if conv.kernel_size == (1, 1) and conv.stride == (1, 1) and conv.padding == (0, 0) and conv.groups == 1:
        return pointwise_conv(x, conv.weight, conv.bias)
    return F.conv3d(
        x,
        conv.weight.unsqueeze(2),
        conv.bias,
        stride=(1, *conv.stride),
        padding=(0, *conv.padding),
        dilation=(1, *conv.dilation),
        groups=conv.groups,
    )


class TokenLearner(nn.Module):
    """TokenLearner, the paper's form (eq. 1)::

        X_t -> [LayerNorm] -> alpha: conv (C -> S) [-> GELU -> conv (S -> S)] x (layers - 1) -> sigmoid
            -> A_t (S x H x W);   z_i = rho(X_t * A_t,i)  with rho = spatial mean (or sum)

    The video model uses one conv (``alpha_layers=1``); the ViT model four 3x3 convs with GELU
    in between (``alpha_layers=4, alpha_kernel=3``; ``act_layer``, default the tanh GELU of the
    official code). The official Scenic code normalises the input with LayerNorm and sums; both are
    options here.
    """

    def __init__(
        self,
        *,
        dim: int,
        num_tokens: int = 8,
        alpha_layers: int = 1,
        alpha_kernel: int = 1,
        pooling: str = "mean",
        use_layernorm: bool = False,
        act_layer: Callable[[], nn.Module] = GELU_TANH,
    ) -> None:
        super().__init__()
        if pooling not in ("mean", "sum"):
            raise ValueError(f"pooling must be 'mean' or 'sum', got {pooling!r}")
        self.num_tokens = num_tokens
        self.pooling = pooling
        self.norm = ChannelLayerNorm(dim, eps=1e-6) if use_layernorm else nn.Identity()
        layers = []
        for index in range(alpha_layers):
            if index:
                layers.append(act_layer())
            layers.append(
                nn.Conv2d(
                    dim if index == 0 else num_tokens, num_tokens, alpha_kernel, padding=alpha_kernel // 2, bias=False
                )
            )
        self.alpha = nn.Sequential(*layers)

    def reset_parameters_like_flax(self) -> None:
        """Flax's ``nn.Conv`` init: lecun-normal kernels (the convs have no bias)."""
        for layer in self.alpha:
            if isinstance(layer, nn.Conv2d):
                lecun_normal_(layer.weight)

    def forward(self, x: torch.Tensor) -> TokensAndMaps:
        b, c, t, h, w = x.shape
        logits = self.norm(x)
        for layer in self.alpha:
            logits = _conv2d_per_frame(layer, logits) if isinstance(layer, nn.Conv2d) else layer(logits)
        maps = torch.sigmoid(logits)  # (B, S, T, H, W)
        tokens = torch.einsum("bsthw,bcthw->btsc", maps, x)
        if self.pooling == "mean":
            tokens = tokens / (h * w)
        return tokens.reshape(b, t * self.num_tokens, c), maps.transpose(1, 2)


class TokenLearnerV11(nn.Module):
    """TokenLearner v1.1 (Scenic's ``TokenLearnerModuleV11``)::

        X_t -> LayerNorm -> MLP (C -> hidden -> S, act, dropout) -> softmax over the H*W positions
            -> A_t;   z_i = sum_x A_t,i(x) X_t(x)

    ``act_layer`` defaults to the tanh GELU and ``dropout`` sits inside the MLP, as in Scenic.
    """

    def __init__(
        self,
        *,
        dim: int,
        num_tokens: int = 8,
        hidden_dim: int = 64,
        act_layer: Callable[[], nn.Module] = GELU_TANH,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.num_tokens = num_tokens
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim=dim, hidden_dim=hidden_dim, out_dim=num_tokens, act_layer=act_layer, dropout=dropout)

    def reset_parameters_like_flax(self) -> None:
        self.mlp.reset_parameters_like_flax()

    def forward(self, x: torch.Tensor) -> TokensAndMaps:
        b, c, t, h, w = x.shape
        positions = _frames(x).flatten(2).transpose(1, 2)  # (B*T, HW, C)
        logits = self.mlp(self.norm(positions))  # (B*T, HW, S)
        maps = torch.softmax(logits.transpose(1, 2), dim=-1)  # (B*T, S, HW)
        tokens = maps @ positions
        return tokens.reshape(b, t * self.num_tokens, c), maps.reshape(b, t, self.num_tokens, h, w)


def grid_shape(num_tokens: int) -> Tuple[int, int]:
    """The most square rows x cols grid with rows * cols == num_tokens (8 -> 2 x 4)."""
    rows = int(math.isqrt(num_tokens))
    while num_tokens % rows:
        rows -= 1
    return rows, num_tokens // rows


class FixedGridTokenizer(nn.Module):
    """Ablation (1): split each frame on a fixed grid into S regions and average each one.

    ::

        X_t -> adaptive average pool to a rows x cols grid (rows * cols = S) -> S tokens
    """

    def __init__(self, *, num_tokens: int = 8) -> None:
        super().__init__()
        self.num_tokens = num_tokens
        self.grid = grid_shape(num_tokens)

    def forward(self, x: torch.Tensor) -> TokensAndMaps:
        b, c, t, h, w = x.shape
        pooled = F.adaptive_avg_pool2d(_frames(x), self.grid)  # (B*T, C, rows, cols)
        tokens = pooled.flatten(2).transpose(1, 2).reshape(b, t * self.num_tokens, c)
        # Each token's region as its map, so the grid can be drawn like a learned attention.
        ones = torch.eye(self.num_tokens, device=x.device, dtype=x.dtype).reshape(self.num_tokens, 1, *self.grid)
        masks = F.interpolate(ones, size=(h, w), mode="nearest").reshape(1, 1, self.num_tokens, h, w)
        return tokens, masks.expand(b, t, -1, -1, -1)


class DenseTokenizer(nn.Module):
    """Ablation (2): generate tokens directly with a fully connected layer over the positions.

    ::

        X_t (H*W x C) -> linear over the H*W axis (H*W -> S) -> S x C tokens

    The positions are resampled to the ``spatial_size`` the layer was built for, so one model
    serves the training (224 -> 7 x 7) and testing (256 -> 8 x 8) resolutions.
    """

    def __init__(self, *, num_tokens: int = 8, spatial_size: Tuple[int, int] = (7, 7)) -> None:
        super().__init__()
        self.num_tokens = num_tokens
        self.spatial_size = tuple(spatial_size)
        self.generate = nn.Linear(self.spatial_size[0] * self.spatial_size[1], num_tokens)

    def forward(self, x: torch.Tensor) -> TokensAndMaps:
        b, c, t, _, _ = x.shape
        frames = _frames(x)
        if frames.shape[-2:] != self.spatial_size:
            frames = F.interpolate(frames, size=self.spatial_size, mode="bilinear", align_corners=False)
        tokens = self.generate(frames.flatten(2)).transpose(1, 2)  # (B*T, S, C)
        return tokens.reshape(b, t * self.num_tokens, c), None


class PoolMlpTokenizer(nn.Module):
    """Ablation (3): global average pooling per frame, then an MLP generates the S tokens.

    ::

        X_t -> spatial mean (C) -> linear (C -> C) -> GELU -> linear (C -> S*C) -> S x C tokens
    """

    def __init__(self, *, dim: int, num_tokens: int = 8) -> None:
        super().__init__()
        self.num_tokens = num_tokens
        self.mlp = Mlp(dim=dim, hidden_dim=dim, out_dim=dim * num_tokens)

    def forward(self, x: torch.Tensor) -> TokensAndMaps:
        b, c, t, _, _ = x.shape
        pooled = x.mean(dim=(3, 4)).transpose(1, 2)  # (B, T, C)
        return self.mlp(pooled).reshape(b, t * self.num_tokens, c), None
