"""Token fusers: TokenFuser (eq. 2) and the paper's alternatives.

Each fuser takes the processed tokens Y (B, T*S, C), the volume X (B, C, T, H, W) that the
tokenizer read, and the tokenizer's maps (or ``None``), and returns a volume shaped like X that
already includes the residual X (eq. 2: ``X^{j+1} = B_w Y_t + X^j``).
"""

from typing import Callable, Optional

import torch
from torch import nn

from .attention import GELU_TANH, Mlp
from .tokenlearner import pointwise_conv


class TokenFuser(nn.Module):
    """TokenFuser (eq. 2), for feature volumes (the video model) and token sequences (ViT / ViViT)::

        Y -> LayerNorm -> linear over the token axis (S*T -> S*T with mix="all", S -> S per frame with
             mix="frame"; zero-initialised, bias optional) -> LayerNorm -> Y'
        X_t -> beta -> sigmoid -> B_w (H*W x S)       beta = "linear": a linear map C -> S (the paper)
                                                      beta = "mlp": LayerNorm -> MLP (C -> 64 -> S) (Scenic)
        out_t = dropout(B_w Y'_t) + X_t                (eq. 2 with its residual)

    X is a volume (B, C, T, H, W) (the video model) or a token sequence (B, T*N, C) with
    ``num_frames=T`` (ViT / ViViT; Scenic adds the same residual outside its fuser). The zero token
    map makes a new fuser output X, so a converted block starts as the identity.
    """

    def __init__(
        self,
        *,
        dim: int,
        num_tokens: int,
        num_frames: int = 1,
        mix: str = "all",
        weights: str = "linear",
        mix_bias: bool = False,
        hidden_dim: int = 64,
        act_layer: Callable[[], nn.Module] = GELU_TANH,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if mix not in ("all", "frame"):
            raise ValueError(f"mix must be 'all' or 'frame', got {mix!r}")
        if weights not in ("linear", "mlp"):
            raise ValueError(f"weights must be 'linear' or 'mlp', got {weights!r}")
        self.num_tokens = num_tokens
        self.num_frames = num_frames
        self.mix = mix
        self.weights = weights
        mixed = num_tokens * num_frames if mix == "all" else num_tokens
        self.token_norm = nn.LayerNorm(dim, eps=1e-6)
        self.token_mix = nn.Linear(mixed, mixed, bias=mix_bias)
        nn.init.zeros_(self.token_mix.weight)
        if mix_bias:
            nn.init.zeros_(self.token_mix.bias)
        self.mixed_norm = nn.LayerNorm(dim, eps=1e-6)
        if weights == "linear":
            self.input_norm: nn.Module = nn.Identity()
            self.beta: nn.Module = nn.Linear(dim, num_tokens)
        else:
            self.input_norm = nn.LayerNorm(dim, eps=1e-6)
            self.beta = Mlp(dim=dim, hidden_dim=hidden_dim, out_dim=num_tokens, act_layer=act_layer, dropout=dropout)
        self.drop = nn.Dropout(dropout)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Checkpoints written before beta was a linear map hold it as a 1x1x1 conv of the same values.
        key = prefix + "beta.weight"
        if self.weights == "linear" and key in state_dict and state_dict[key].dim() == 5:
            state_dict[key] = state_dict[key].flatten(1)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def reset_parameters_like_flax(self) -> None:
        """Flax's initialisers for the mixing-weight MLP (the token map stays zero)."""
        if isinstance(self.beta, Mlp):
            self.beta.reset_parameters_like_flax()

    def _mixed_tokens(self, tokens: torch.Tensor, num_frames: int) -> torch.Tensor:
        """(B, T*S, C) processed tokens -> Y' (B, T, S, C)."""
        b, _, c = tokens.shape
        s = self.num_tokens
        if self.mix == "all" and num_frames != self.num_frames:
            raise ValueError(
                f"TokenFuser was built for {self.num_frames} frames (its token map is "
                f"{s * self.num_frames} x {s * self.num_frames}) but got {num_frames}"
            )
        y = self.token_norm(tokens)
        if self.mix == "all":
            y = self.token_mix(y.transpose(1, 2)).transpose(1, 2)
        else:
            y = self.token_mix(y.reshape(b, num_frames, s, c).transpose(2, 3)).transpose(2, 3)
        return self.mixed_norm(y).reshape(b, num_frames, s, c)

    def _position_weights(self, positions: torch.Tensor) -> torch.Tensor:
        """B_w for (..., N, C) positions -> (..., N, S)."""
        return torch.sigmoid(self.beta(self.input_norm(positions)))

    def forward(
        self,
        tokens: torch.Tensor,
        x: torch.Tensor,
        maps: Optional[torch.Tensor] = None,
        *,
        num_frames: Optional[int] = None,
    ) -> torch.Tensor:
        if x.dim() == 3:
            return self._fuse_sequence(tokens, x, num_frames=num_frames or 1)
        b, c, t, h, w = x.shape
        y = self._mixed_tokens(tokens, t)
        if self.weights == "linear":
            # In x's own layout: one (S, C) @ (C, T*H*W) product per clip, no channels-last copy.
            weights = torch.sigmoid(pointwise_conv(x, self.beta.weight, self.beta.bias))  # (B, S, T, H, W)
        else:
            positions = x.permute(0, 2, 3, 4, 1).reshape(b, t, h * w, c)
            weights = self._position_weights(positions).reshape(b, t, h, w, -1).permute(0, 4, 1, 2, 3)
        fused = self.drop(torch.einsum("bsthw,btsc->bcthw", weights, y))
        return x + fused  # x first: the sum takes x's contiguous layout, not the einsum's permuted one

    def _fuse_sequence(self, tokens: torch.Tensor, original: torch.Tensor, *, num_frames: int) -> torch.Tensor:
        b, _, c = tokens.shape
        y = self._mixed_tokens(tokens, num_frames).reshape(b * num_frames, self.num_tokens, c)
        frames = original.reshape(b * num_frames, -1, c)  # (B*T, N, C)
        return original + self.drop(self._position_weights(frames) @ y).reshape(b, -1, c)


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
