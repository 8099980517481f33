"""Channels-last (NDHWC) storage for video models."""

import itertools

import torch
from torch import nn

__all__ = ["to_channels_last_3d", "to_contiguous"]


def to_channels_last_3d(model: nn.Module) -> nn.Module:
    """Store every 5-D parameter and buffer of ``model`` (the 3-D convolution kernels) channels-last,
    in place, and return the model.

    PyTorch's CPU (oneDNN) and CUDA (cuDNN) 3-D convolutions have kernels for NDHWC tensors;
    inputs should be made ``channels_last_3d`` too. ``Module.to(memory_format=...)`` cannot be
    used: it refuses a model that also holds 4-D weights, such as TokenLearner's 1x1 Conv2D or a
    ViT patch embedding.
    """
    for tensor in itertools.chain(model.parameters(), model.buffers()):
        if tensor.dim() == 5:
            tensor.data = tensor.data.contiguous(memory_format=torch.channels_last_3d)
    return model


def to_contiguous(model: nn.Module) -> nn.Module:
    """Store every parameter and buffer of ``model`` in PyTorch's default (contiguous) layout, in
    place, and return the model: what an exported file should hold, whatever layout trained it."""
    for tensor in itertools.chain(model.parameters(), model.buffers()):
        if not tensor.is_contiguous():
            tensor.data = tensor.data.contiguous()
    return model
