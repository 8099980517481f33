"""Residual blocks of the X3D family and the res5 modules that replace their convolutions.

A bottleneck block is ``conv_a -> middle -> conv_c`` around a shortcut; the families and the
paper's ablations differ only in ``middle``:

- X(2+1)D:  1x3x3 conv -> BN -> ReLU -> 3x1x1 conv -> BN -> ReLU       (full convs, no SE, no swish)
- X3D:      depthwise 3x3x3 conv -> BN -> [SE] -> swish
- res5 with a transformer module: [spatial op -> BN -> ReLU] -> temporal op -> BN -> ReLU, where the
  temporal op is TokenLearner -> Vector Transformer -> TokenFuser (or an ablation) and the spatial
  op a 1x3x3 conv, a spatial transformer, or nothing.
"""

from collections import OrderedDict
from typing import Callable, Optional, Tuple

import torch
from torch import nn

from .attention import Mlp, MultiHeadSelfAttention

MiddleBuilder = Callable[..., nn.Module]


def _bfloat16_on_cpu(x: torch.Tensor) -> bool:
    """Whether a convolution of ``x`` computes in bfloat16 on the CPU (as ``x`` or under autocast)."""
    if x.device.type != "cpu":
        return False
    dtype = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else x.dtype
    return dtype == torch.bfloat16


class DepthwiseConv3d(nn.Conv3d):
    """A channelwise 3-D conv (``groups = in_channels = out_channels``), the kernels of X3D.

    PyTorch's oneDNN CPU kernel gives a wrong (at times uninitialised, NaN) weight gradient for a
    bfloat16 channels-last input with more than one frame but fewer than the temporal kernel; such
    an input is made contiguous first, where the kernel is right. Nothing else changes.
    """

    def __init__(self, dim: int, kernel: Tuple[int, int, int], *, stride: Tuple[int, int, int] = (1, 1, 1)) -> None:
        padding = tuple(k // 2 for k in kernel)
        super().__init__(dim, dim, kernel, stride=stride, padding=padding, groups=dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if 1 < x.shape[2] < self.kernel_size[0] and torch.is_grad_enabled() and _bfloat16_on_cpu(x):
            x = x.contiguous()
        return super().forward(x)


def create_conv_bn_act(
    *,
    dim_in: int,
    dim_out: int,
    kernel: Tuple[int, int, int],
    stride: Tuple[int, int, int] = (1, 1, 1),
    activation: Optional[nn.Module] = None,
) -> nn.Sequential:
    """``conv (no bias) -> BN -> activation`` with 'same' padding; a full conv (channelwise ones
    are :class:`DepthwiseConv3d`)."""
    padding = tuple(k // 2 for k in kernel)
    layers = OrderedDict(
        conv=nn.Conv3d(dim_in, dim_out, kernel, stride=stride, padding=padding, bias=False),
        norm=nn.BatchNorm3d(dim_out),
    )
    if activation is not None:
        layers["act"] = activation
    return nn.Sequential(layers)


class Swish(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(x)


class SqueezeExcitation(nn.Module):
    """``x -> global average pool -> 1x1x1 conv (C -> r) -> ReLU -> 1x1x1 conv (r -> C) -> sigmoid -> * x``."""

    def __init__(self, *, dim: int, reduced_dim: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv3d(dim, reduced_dim, 1), nn.ReLU(), nn.Conv3d(reduced_dim, dim, 1), nn.Sigmoid()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.block(x.mean(dim=(2, 3, 4), keepdim=True))


def se_width(dim: int, ratio: float, divisor: int = 8) -> int:
    """X3D's rounding of the SE width (pytorchvideo's ``round_width`` with min width 8)."""
    width = dim * ratio
    rounded = max(divisor, int(width + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * width else rounded


def create_conv2plus1d_middle(*, dim: int, stride: int) -> nn.Sequential:
    """X(2+1)D: ``1x3x3 conv (stride) -> BN -> ReLU -> 3x1x1 conv -> BN -> ReLU``, both full (groups 1)."""
    return nn.Sequential(
        OrderedDict(
            spatial=create_conv_bn_act(
                dim_in=dim, dim_out=dim, kernel=(1, 3, 3), stride=(1, stride, stride), activation=nn.ReLU()
            ),
            temporal=create_conv_bn_act(dim_in=dim, dim_out=dim, kernel=(3, 1, 1), activation=nn.ReLU()),
        )
    )


def create_x3d_middle(*, dim: int, stride: int, se_ratio: float = 0.0) -> nn.Sequential:
    """X3D: ``depthwise 3x3x3 conv (stride) -> BN -> [SE] -> swish``."""
    return nn.Sequential(
        OrderedDict(
            conv=DepthwiseConv3d(dim, (3, 3, 3), stride=(1, stride, stride)),
            norm=nn.BatchNorm3d(dim),
            se=SqueezeExcitation(dim=dim, reduced_dim=se_width(dim, se_ratio)) if se_ratio > 0 else nn.Identity(),
            act=Swish(),
        )
    )


class BottleneckBlock(nn.Module):
    """An (inverted) bottleneck residual block::

        x -> conv_a 1x1x1 (stride when the middle cannot take it) -> BN -> ReLU -> middle
          -> conv_c 1x1x1 -> BN -> (+ shortcut(x)) -> ReLU

    ``shortcut`` is a strided 1x1x1 conv when the width or resolution changes (with BN when the
    width changes, as in pytorchvideo's X3D), else the identity.
    """

    def __init__(
        self,
        *,
        dim_in: int,
        dim_inner: int,
        dim_out: int,
        stride: int,
        middle_builder: MiddleBuilder,
        middle_takes_stride: bool = True,
    ) -> None:
        super().__init__()
        if dim_in != dim_out or stride != 1:
            layers = OrderedDict(conv=nn.Conv3d(dim_in, dim_out, 1, stride=(1, stride, stride), bias=False))
            if dim_in != dim_out:
                layers["norm"] = nn.BatchNorm3d(dim_out)
            self.shortcut = nn.Sequential(layers)
        else:
            self.shortcut = nn.Identity()
        stride_a = 1 if middle_takes_stride else stride
        self.conv_a = create_conv_bn_act(
            dim_in=dim_in, dim_out=dim_inner, kernel=(1, 1, 1), stride=(1, stride_a, stride_a), activation=nn.ReLU()
        )
        self.middle = middle_builder(dim=dim_inner, stride=stride if middle_takes_stride else 1)
        self.conv_c = create_conv_bn_act(dim_in=dim_inner, dim_out=dim_out, kernel=(1, 1, 1))
        self.activation = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.shortcut(x) + self.conv_c(self.middle(self.conv_a(x))))


# ---------------------------------------------------------------------------------------------
# res5 modules: shape-preserving operations on (B, C, T, H, W) that take a conv's place.


class TokenLearnerModule(nn.Module):
    """TokenLearner -> token transformer -> fuser, the paper's res5 temporal module (Fig. 9)::

    X (B, C, T, H, W) -> tokenizer -> Z (B, T*S, C) [+ maps] -> transformer -> Y -> fuser(Y, X, maps) -> X'
    """

    def __init__(self, *, tokenizer: nn.Module, transformer: nn.Module, fuser: nn.Module) -> None:
        super().__init__()
        self.tokenizer = tokenizer
        self.transformer = transformer
        self.fuser = fuser

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens, maps = self.tokenizer(x)
        return self.fuser(self.transformer(tokens), x, maps)


class AxisSelfAttention(nn.Module):
    """Pre-norm residual multi-head self-attention over chosen axes of (B, C, T, H, W)::

    axes "thw": joint space-time (T*H*W tokens)   "hw": per frame (H*W)   "t": per position (T)
    x -> tokens -> LayerNorm -> MHSA -> + tokens -> back to (B, C, T, H, W)
    """

    def __init__(self, *, dim: int, num_heads: int, axes: str) -> None:
        super().__init__()
        if axes not in ("thw", "hw", "t"):
            raise ValueError(f"axes must be 'thw', 'hw' or 't', got {axes!r}")
        self.axes = axes
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.attention = MultiHeadSelfAttention(dim=dim, num_heads=num_heads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        channels_last = x.permute(0, 2, 3, 4, 1)  # (B, T, H, W, C)
        if self.axes == "thw":
            tokens = channels_last.reshape(b, t * h * w, c)
        elif self.axes == "hw":
            tokens = channels_last.reshape(b * t, h * w, c)
        else:
            tokens = channels_last.permute(0, 2, 3, 1, 4).reshape(b * h * w, t, c)
        tokens = tokens + self.attention(self.norm(tokens))
        if self.axes == "t":
            return tokens.reshape(b, h, w, t, c).permute(0, 4, 3, 1, 2)
        return tokens.reshape(b, t, h, w, c).permute(0, 4, 1, 2, 3)


class TemporalMlpMixer(nn.Module):
    """MLP-Mixer along time at every position::

    x -> LayerNorm -> MLP over the T axis (T -> T -> T) -> + x -> LayerNorm -> MLP over C (C -> C -> C) -> + x
    """

    def __init__(self, *, dim: int, num_frames: int) -> None:
        super().__init__()
        self.num_frames = num_frames
        self.token_norm = nn.LayerNorm(dim, eps=1e-6)
        self.token_mlp = Mlp(dim=num_frames, hidden_dim=num_frames)
        self.channel_norm = nn.LayerNorm(dim, eps=1e-6)
        self.channel_mlp = Mlp(dim=dim, hidden_dim=dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        if t != self.num_frames:
            raise ValueError(f"TemporalMlpMixer was built for {self.num_frames} frames but got {t}")
        tokens = x.permute(0, 3, 4, 2, 1).reshape(b * h * w, t, c)
        tokens = tokens + self.token_mlp(self.token_norm(tokens).transpose(1, 2)).transpose(1, 2)
        tokens = tokens + self.channel_mlp(self.channel_norm(tokens))
        return tokens.reshape(b, h, w, t, c).permute(0, 4, 3, 1, 2)


def create_res5_middle(
    *,
    dim: int,
    stride: int,
    spatial_op: Optional[Callable[..., nn.Module]],
    temporal_op: Callable[..., nn.Module],
) -> nn.Sequential:
    """A converted res5 middle::

        [spatial op (1x3x3 conv, stride | spatial MHSA) -> BN -> ReLU] -> temporal op -> BN -> ReLU

    The ops come as builders called with ``dim=`` (and the spatial one with ``stride=``).
    ``spatial_op=None`` drops the spatial unit (the AViD model); the block then strides in conv_a.
    """
    layers = OrderedDict()
    if spatial_op is not None:
        layers["spatial"] = nn.Sequential(
            OrderedDict(op=spatial_op(dim=dim, stride=stride), norm=nn.BatchNorm3d(dim), act=nn.ReLU())
        )
    elif stride != 1:
        raise ValueError("a res5 middle without a spatial op cannot stride: let conv_a take the stride")
    layers["temporal"] = nn.Sequential(OrderedDict(op=temporal_op(dim=dim), norm=nn.BatchNorm3d(dim), act=nn.ReLU()))
    return nn.Sequential(layers)
