"""The fused CPU kernel of :func:`videotl.data.transforms.normalize` (``csrc/normalize.c``).

One pass over the pixels: each uint8 value is read once and its float32 written once into its
channel-first place, where PyTorch ops need several passes (a strided copy, then the scale and
the shift). Compiled on first use like the Vector Transformer's kernels
(:mod:`videotl.utils.native`); without a compiler, or with ``VIDEOTL_CPU_KERNELS=0``,
:func:`normalize` uses PyTorch ops and gives the same values.
"""

from __future__ import annotations

import ctypes
import functools
import logging
from pathlib import Path
from typing import Optional, Sequence

import torch

from ..utils.native import load_native

__all__ = ["load_kernel", "kernel_applies", "normalize_frames"]

logger = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("csrc") / "normalize.c"
# No fused multiply-adds: the product and the sum are rounded apart, as PyTorch's mul_ and add_ do.
_BASE_FLAGS = ("-std=c11", "-O3", "-ffp-contract=off", "-fPIC", "-shared")


@functools.cache
def load_kernel() -> Optional[ctypes.CDLL]:
    """The compiled library, or None (logged once) when it cannot be had."""
    return load_native(
        SOURCE,
        _open_kernel,
        base_flags=_BASE_FLAGS,
        what="the normalise kernel",
        fallback="clips are normalised with PyTorch ops (same values, slower).",
        logger=logger,
        # Every DataLoader worker would say it again: not a warning.
        missing_compiler_level=logging.INFO,
    )


def _open_kernel(path: Path) -> ctypes.CDLL:
    library = ctypes.CDLL(str(path))
    pointer, size = ctypes.c_void_p, ctypes.c_int64
    library.normalize_frames.argtypes = [pointer] + [size] * 5 + [pointer] * 3
    library.normalize_frames.restype = None
    return library


def kernel_applies(clip: torch.Tensor, out: torch.Tensor) -> bool:
    """Whether the kernel can normalise ``clip`` (uint8 ``T x H x W x 3``) into ``out``: both on
    the CPU, pixels packed in each row, ``out`` contiguous, library available."""
    if clip.device.type != "cpu" or out.device.type != "cpu" or clip.dtype != torch.uint8:
        return False
    if clip.dim() != 4 or clip.shape[3] != 3 or clip.stride(3) != 1 or clip.stride(2) != 3:
        return False
    return out.is_contiguous() and load_kernel() is not None


def normalize_frames(clip: torch.Tensor, scale: Sequence[float], shift: Sequence[float], out: torch.Tensor) -> None:
    """``out[c, t, h, w] = float(clip[t, h, w, c]) * scale[c] + shift[c]`` in float32 (see
    :func:`kernel_applies` for what ``clip`` and ``out`` must be)."""
    frames, height, width = clip.shape[:3]
    if out.numel() == 0:
        return
    scales = torch.tensor(scale, dtype=torch.float32)
    shifts = torch.tensor(shift, dtype=torch.float32)
    load_kernel().normalize_frames(
        clip.data_ptr(),
        frames,
        height,
        width,
        clip.stride(0),
        clip.stride(1),
        out.data_ptr(),
        scales.data_ptr(),
        shifts.data_ptr(),
    )
