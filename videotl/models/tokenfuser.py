"""Token fusers: TokenFuser (eq. 2) and the paper's alternatives.

Each fuser takes the processed tokens Y (B, T*S, C), the volume X (B, C, T, H, W) that the
tokenizer read, and the tokenizer's maps (or ``None``), and returns a volume shaped like X that
already includes the residual X (eq. 2: ``X^{j+1} = B_w Y_t + X^j``).
"""

from typing import Optional

import torch
from torch import nn

from .tokenlearner import pointwise_conv


class TokenFuser(nn.Module):
    """TokenFuser (eq. 2)::

        Y -> LayerNorm -> linear over the token axis (S*T -> S*T, or S -> S per frame) -> LayerNorm -> Y'
        X_t -> beta: 1x1 conv (C -> S) -> sigmoid -> B_w (H*W x S)
        out_t = B_w Y'_t + X_t

    The token-axis map is zero-initialised, as in the official code, so a new block starts as the
    identity and training grows it.
    """

    def __init__(self, *, dim: int, num_tokens: int, num_frames: int, mix: str = "all") -> None:
        super().__init__()
        if mix not in ("all", "frame"):
            raise ValueError(f"mix must be 'all' or 'frame', got {mix!r}")
        self.num_tokens = num_tokens
        self.num_frames = num_frames
        self.mix = mix
        mixed = num_tokens * num_frames if mix == "all" else num_tokens
        self.token_norm = nn.LayerNorm(dim, eps=1e-6)
        self.token_mix = nn.Linear(mixed, mixed, bias=False)
        nn.init.zeros_(self.token_mix.weight)
        self.mixed_norm = nn.LayerNorm(dim, eps=1e-6)
        self.beta = nn.Conv3d(dim, num_tokens, kernel_size=1)

    def forward(self, tokens: torch.Tensor, x: torch.Tensor, maps: Optional[torch.Tensor] = None) -> torch.Tensor:
        b, c, t, h, w = x.shape
        if self.mix == "all" and t != self.num_frames:
            raise ValueError(
                f"TokenFuser was built for {self.num_frames} frames (its token map is "
                f"{self.num_tokens * self.num_frames} x {self.num_tokens * self.num_frames}) but got {t}"
            )
        y = self.token_norm(tokens)
        if self.mix == "all":
            y = self.token_mix(y.transpose(1, 2)).transpose(1, 2)
        else:
            y = self.token_mix(y.reshape(b, t, self.num_tokens, c).transpose(2, 3)).transpose(2, 3)
        y = self.mixed_norm(y).reshape(b, t, self.num_tokens, c)
        weights = torch.sigmoid(pointwise_conv(x, self.beta.weight, self.beta.bias))  # (B, S, T, H, W)
        fused = torch.einsum("bsthw,btsc->bcthw", weights, y)
        return x + fused  # x first: the sum takes x's contiguous layout, not the einsum's permuted one


class BroadcastFuser(nn.Module):
    """Ablation: every position of frame t receives the mean of that frame's S tokens.

    ::

        Y_t (S x C) -> mean over S -> broadcast to H x W -> + X_t
    """

    def __init__(self, *, num_tokens: int) -> None:
        super().__init__()
        self.num_tokens = num_tokens

    def forward(self, tokens: torch.Tensor, x: torch.Tensor, maps: Optional[torch.Tensor] = None) -> torch.Tensor:
        b, c, t, _, _ = x.shape
        per_frame = tokens.reshape(b, t, self.num_tokens, c).mean(dim=2)  # (B, T, C)
        return x + per_frame.transpose(1, 2)[..., None, None]


class MaskUnpoolFuser(nn.Module):
    """Ablation: put each token back where the TokenLearner took it from.

    ::

        out_t(x) = sum_i alpha_i(x) * y_i + X_t(x)      (alpha: the TokenLearner's own maps)
    """

    def __init__(self, *, num_tokens: int) -> None:
        super().__init__()
        self.num_tokens = num_tokens

    def forward(self, tokens: torch.Tensor, x: torch.Tensor, maps: Optional[torch.Tensor] = None) -> torch.Tensor:
        if maps is None:
            raise ValueError("MaskUnpoolFuser needs the tokenizer's attention maps, and this tokenizer gives none")
        b, c, t, _, _ = x.shape
        y = tokens.reshape(b, t, self.num_tokens, c)
        return x + torch.einsum("btshw,btsc->bcthw", maps, y)
