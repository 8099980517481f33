"""The one resize of decoded frames: the output-size rule and the torch-side resize.

Every resize of ``T x H x W x C`` frames in videotl (decord's and torchcodec's frames in the
decoders, :func:`videotl.data.transforms.short_side_scale` in the clip transforms) goes through
:func:`resize_frames` with a size from :func:`output_size`, so the decoders and the transforms
agree on both the size and the pixels. PyAV's scaling of the YUV picture (swscale) is a decoder
option that takes the same :func:`output_size`.
"""

from __future__ import annotations

from typing import Tuple, Union

import torch

__all__ = ["Size", "output_size", "resize_frames"]

Size = Union[None, int, Tuple[int, int]]


def output_size(height: int, width: int, size: Size) -> Tuple[int, int]:
    """The (height, width) a clip of ``height x width`` is resized to for a ``size`` request.

    ``None`` keeps the source size, an int is the short side (aspect ratio kept, long side
    rounded to the nearest integer, at least 1), a pair is ``(height, width)``.
    """
    if size is None:
        return height, width
    if isinstance(size, int):
        if height <= width:
            return size, max(1, int(round(width * size / height)))
        return max(1, int(round(height * size / width))), size
    out_h, out_w = size
    return int(out_h), int(out_w)


def resize_frames(frames: torch.Tensor, out_hw: Tuple[int, int]) -> torch.Tensor:
    """Resize ``T x H x W x C`` frames to ``out_hw`` with torchvision's antialiased bilinear resize.

    Frames already at ``out_hw`` come back as they are. Works on any device; the result is
    contiguous ``T x H' x W' x C``.
    """
    out_hw = (int(out_hw[0]), int(out_hw[1]))
    if tuple(frames.shape[1:3]) == out_hw:
        return frames
    from torchvision.transforms.v2 import functional as F

    # A channels-last view of T x H x W x C takes torchvision's fast uint8 path.
    resized = F.resize(frames.permute(0, 3, 1, 2), list(out_hw), antialias=True)
    return resized.permute(0, 2, 3, 1).contiguous()
