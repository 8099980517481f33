"""The X3D family: X(2+1)D-M (the paper's backbone) and the X3D-M reference.

::

    clip (B, 3, T, H, W)
      -> stem: 1x3x3 conv 3 -> 24 (spatial stride 2) -> depthwise 5x1x1 conv -> BN -> ReLU
      -> res2 .. res5: bottleneck blocks (depths 3/5/11/7, widths 24/48/96/192, inner 54/108/216/432),
         spatial stride 2 in each stage's first block
      -> head: 1x1x1 conv 192 -> 432 -> BN -> ReLU -> global average pool -> linear 432 -> 2048
         -> ReLU -> dropout -> linear 2048 -> classes
      -> logits (B, classes)

No layer strides in time, so res5 sees all T frames at 1/32 of the input resolution.
"""

from collections import OrderedDict
from typing import Callable, Optional, Sequence

import torch
from torch import nn

from .blocks import (
    BottleneckBlock,
    DepthwiseConv3d,
    MiddleBuilder,
    create_conv2plus1d_middle,
    create_conv_bn_act,
    create_x3d_middle,
)


class VideoClassifier(nn.Module):
    """``stem -> stages -> head``; exposes the stages so tools can hook a stage's output.

    The model API every family shares: :meth:`forward_features` (clip -> res5 features),
    :meth:`forward_head` (features -> logits), :attr:`num_classes`, :meth:`reset_classifier`.
    """

    def __init__(self, *, stem: nn.Module, stages: nn.ModuleList, head: nn.Module) -> None:
        super().__init__()
        self.stem = stem
        self.stages = stages
        self.head = head

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, H, W) -> res5's output (B, C, T, H / 32, W / 32)."""
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return x

    def forward_head(self, features: torch.Tensor, *, pre_logits: bool = False) -> torch.Tensor:
        """Res5 features -> logits (B, classes), or the representation before the classifier."""
        if not pre_logits:
            return self.head(features)
        for name, layer in self.head.named_children():
            if name == "proj":
                break
            features = layer(features)
        return features

    @property
    def num_classes(self) -> int:
        return self.head.proj.out_features

    def reset_classifier(self, num_classes: int) -> None:
        """A new classifier for ``num_classes`` (fine-tuning on another label set); the rest is kept."""
        old = self.head.proj
        self.head.proj = nn.Linear(old.in_features, num_classes).to(old.weight.device, old.weight.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def create_x3d_stem(*, dim_out: int) -> nn.Sequential:
    """``1x3x3 conv 3 -> dim_out (spatial stride 2) -> depthwise 5x1x1 conv -> BN -> ReLU``."""
    return nn.Sequential(
        OrderedDict(
            conv_xy=nn.Conv3d(3, dim_out, (1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1), bias=False),
            conv_t=DepthwiseConv3d(dim_out, (5, 1, 1)),
            norm=nn.BatchNorm3d(dim_out),
            act=nn.ReLU(),
        )
    )


def create_x3d_head(
    *, dim_in: int, conv5_dim: int, head_dim: int, num_classes: int, dropout_rate: float
) -> nn.Sequential:
    """``1x1x1 conv -> BN -> ReLU -> global average pool -> linear (no bias) -> ReLU -> dropout -> linear``."""
    return nn.Sequential(
        OrderedDict(
            conv5=create_conv_bn_act(dim_in=dim_in, dim_out=conv5_dim, kernel=(1, 1, 1), activation=nn.ReLU()),
            pool=nn.AdaptiveAvgPool3d(1),
            flatten=nn.Flatten(1),
            lin5=nn.Linear(conv5_dim, head_dim, bias=False),
            act=nn.ReLU(),
            dropout=nn.Dropout(dropout_rate),
            proj=nn.Linear(head_dim, num_classes),
        )
    )


def create_x3d_family(
    *,
    middle_builder: Callable[[int, int], MiddleBuilder],
    stem_dim: int = 24,
    stage_dims: Sequence[int] = (24, 48, 96, 192),
    stage_depths: Sequence[int] = (3, 5, 11, 7),
    bottleneck_factor: float = 2.25,
    conv5_dim: int = 432,
    head_dim: int = 2048,
    num_classes: int = 400,
    dropout_rate: float = 0.5,
    res5_middle_builder: Optional[MiddleBuilder] = None,
    res5_converted_blocks: Sequence[int] = (),
    res5_middle_takes_stride: bool = True,
    spatial_strides: Sequence[int] = (2, 2, 2, 2),
) -> VideoClassifier:
    """Build an X3D-family network.

    ``spatial_strides`` holds the spatial stride of each stage's first block (X3D: 2 in every stage).

    ``middle_builder(stage, block)`` returns the builder of each block's middle (see
    ``blocks.py``). ``res5_middle_builder`` replaces the middle of the res5 blocks listed in
    ``res5_converted_blocks`` (negative indices count from the end).
    """
    if len(spatial_strides) != len(stage_dims):
        raise ValueError(f"spatial_strides has {len(spatial_strides)} entries for {len(stage_dims)} stages")
    stem = create_x3d_stem(dim_out=stem_dim)
    depth5 = stage_depths[-1]
    converted = {index % depth5 for index in res5_converted_blocks}
    stages = nn.ModuleList()
    dim_in = stem_dim
    for stage_index, (dim_out, depth, stage_stride) in enumerate(zip(stage_dims, stage_depths, spatial_strides)):
        dim_inner = int(round(dim_out * bottleneck_factor))
        blocks = []
        for block_index in range(depth):
            builder, takes_stride = middle_builder(stage_index, block_index), True
            if stage_index == len(stage_dims) - 1 and block_index in converted and res5_middle_builder is not None:
                builder, takes_stride = res5_middle_builder, res5_middle_takes_stride
            blocks.append(
                BottleneckBlock(
                    dim_in=dim_in,
                    dim_inner=dim_inner,
                    dim_out=dim_out,
                    stride=stage_stride if block_index == 0 else 1,
                    middle_builder=builder,
                    middle_takes_stride=takes_stride,
                )
            )
            dim_in = dim_out
        stages.append(nn.Sequential(*blocks))
    head = create_x3d_head(
        dim_in=dim_in, conv5_dim=conv5_dim, head_dim=head_dim, num_classes=num_classes, dropout_rate=dropout_rate
    )
    return VideoClassifier(stem=stem, stages=stages, head=head)


def x2plus1d_middles(stage: int, block: int) -> MiddleBuilder:
    """Every X(2+1)D block: full 1x3x3 conv then full 3x1x1 conv."""
    return create_conv2plus1d_middle


def x3d_middles(se_ratio: float) -> Callable[[int, int], MiddleBuilder]:
    """X3D blocks: depthwise 3x3x3 with SE on every other block (indices 0, 2, 4, ...)."""

    def middles(stage: int, block: int) -> MiddleBuilder:
        ratio = se_ratio if block % 2 == 0 else 0.0
        return lambda *, dim, stride: create_x3d_middle(dim=dim, stride=stride, se_ratio=ratio)

    return middles
