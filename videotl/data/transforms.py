"""Clip transforms on uint8 ``T x H x W x 3`` tensors, ending in a normalised float ``C x T x H x W``.

Training: random short-side scale (jitter) -> random square crop -> random horizontal flip ->
normalise. Test: short side = crop size -> one centre crop or three crops along the long side
(PySlowFast's ``uniform_crop``) -> normalise.

The datasets ask the decoder for the jittered short side directly (the clip is resized once,
while it is converted to RGB); :func:`short_side_scale` resizes clips that come at another size.
Resizing is :func:`videotl.data.resize.resize_frames`; crops are slices and need no library.
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import torch

from . import normalize_kernel
from .resize import output_size, resize_frames

__all__ = [
    "short_side_scale",
    "random_short_side",
    "random_crop",
    "random_crop_position",
    "uniform_crop",
    "horizontal_flip",
    "normalize",
    "TrainTransform",
    "EvalTransform",
]


def short_side_scale(clip: torch.Tensor, *, size: int) -> torch.Tensor:
    """Resize a ``T x H x W x 3`` uint8 clip so its short side is ``size`` (antialiased bilinear).

    The size rule and the resize are the decoders' (:mod:`videotl.data.resize`).
    """
    height, width = clip.shape[1:3]
    return resize_frames(clip, output_size(height, width, size))


def random_short_side(*, min_size: int, max_size: int, generator: Optional[torch.Generator] = None) -> int:
    """A short side drawn uniformly from the integers in ``[min_size, max_size]``."""
    return int(torch.randint(min_size, max_size + 1, (), generator=generator))


def random_crop_position(
    height: int, width: int, *, size: int, generator: Optional[torch.Generator] = None
) -> Tuple[int, int]:
    """``(top, left)`` of a uniformly random ``size x size`` crop of a ``height x width`` frame."""
    _check_fits(height, width, size)
    top = int(torch.randint(0, height - size + 1, (), generator=generator))
    left = int(torch.randint(0, width - size + 1, (), generator=generator))
    return top, left


def random_crop(clip: torch.Tensor, *, size: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """A ``size x size`` crop at a uniformly random position, the same for every frame."""
    top, left = random_crop_position(clip.shape[1], clip.shape[2], size=size, generator=generator)
    return clip[:, top : top + size, left : left + size]


def uniform_crop(clip: torch.Tensor, *, size: int, index: int) -> torch.Tensor:
    """PySlowFast's test crop: ``index`` 0, 1, 2 = start, centre, end of the long side."""
    if index not in (0, 1, 2):
        raise ValueError(f"crop index = {index}: must be 0, 1 or 2")
    height, width = clip.shape[1:3]
    _check_fits(height, width, size)
    top = (height - size) // 2
    left = (width - size) // 2
    if height > width:
        top = (0, top, height - size)[index]
    elif width > height:
        left = (0, left, width - size)[index]
    return clip[:, top : top + size, left : left + size]


def horizontal_flip(clip: torch.Tensor) -> torch.Tensor:
    """Mirror a ``T x H x W x 3`` clip left-right."""
    return clip.flip(2)


def normalize(
    clip: torch.Tensor, *, mean: Sequence[float], std: Sequence[float], out: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """uint8 ``T x H x W x 3`` -> float32 ``3 x T x H x W``, ``(x / 255 - mean) / std`` per channel,
    on the clip's device.

    Computed as ``x * scale + shift`` in float32, each rounded apart. On the CPU one pass of a
    compiled kernel (:mod:`videotl.data.normalize_kernel`) where a C compiler is available, else
    a matrix product per frame; every path gives the same values.

    Args:
        out: a float32 ``3 x T x H x W`` tensor on the clip's device to write into (a slot of a
            batch, so that batching needs no copy); None allocates one.
    """
    scale, shift = _scale_and_shift(mean, std)
    shape = (3,) + tuple(clip.shape[:3])
    if out is None:
        out = torch.empty(shape, dtype=torch.float32, device=clip.device)
    elif tuple(out.shape) != shape or out.dtype != torch.float32 or out.device != clip.device:
        raise ValueError(
            f"out is {out.dtype} {tuple(out.shape)} on {out.device}: needs float32 {shape} on {clip.device}"
        )
    if normalize_kernel.kernel_applies(clip, out):
        normalize_kernel.normalize_frames(clip, scale, shift, out)
        return out
    if clip.device.type == "cpu" and out.is_contiguous() and _exact_float32_matmul():
        _normalize_by_matmul(clip, scale, shift, out)
        return out
    # One channel at a time: the uint8 -> float32 copy and the in-place float ops each take
    # PyTorch's fast paths, where a single mixed-dtype op over the channels-last view does not.
    for channel in range(3):
        plane = out[channel]
        plane.copy_(clip[..., channel])
        plane.mul_(scale[channel]).add_(shift[channel])
    return out


def _scale_and_shift(mean: Sequence[float], std: Sequence[float]) -> Tuple[List[float], List[float]]:
    """``x * scale + shift`` instead of divide, subtract, divide. The constants are float32 values
    computed on the CPU, so a clip on any device gets the same results."""
    mean_t = torch.as_tensor(mean, dtype=torch.float32)
    std_t = torch.as_tensor(std, dtype=torch.float32)
    return (1.0 / (255.0 * std_t)).tolist(), (-mean_t / std_t).tolist()


def channels_first(clip: torch.Tensor, *, out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """uint8 ``T x H x W x 3`` -> uint8 ``3 x T x H x W``, not normalised: what crosses to the device
    under ``DATA.INPUT_DTYPE uint8`` (a quarter of float32's bytes); :func:`normalize_batch` finishes
    it there. ``out``: a uint8 ``3 x T x H x W`` slot to write into."""
    moved = clip.permute(3, 0, 1, 2)
    if out is None:
        return moved.contiguous()
    return out.copy_(moved)


def normalize_batch(inputs: torch.Tensor, *, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 ``B x 3 x T x H x W`` (from :func:`channels_first`) -> float32, normalised on the
    inputs' device with the float32 operations of :func:`normalize`, so the values are the same."""
    scale, shift = _scale_and_shift(mean, std)
    out = inputs.to(torch.float32)
    # Python scalars, as normalize's per-channel path: no host-to-device copy of the constants, which
    # from pageable memory would make the step wait for the GPU.
    for channel in range(3):
        out[:, channel].mul_(scale[channel]).add_(shift[channel])
    return out


def _normalize_by_matmul(clip: torch.Tensor, scale: Sequence[float], shift: Sequence[float], out: torch.Tensor) -> None:
    """:func:`normalize` on the CPU, one frame at a time: the frame as float32 ``(H W) x 3``, times
    the diagonal matrix of the scales, is the channel-first scaled frame in one pass (the matrix
    product does the channels-last to channels-first transposition far faster than a strided
    copy), then the shift is added while the frame is in the cache.

    The values are the ones of the elementwise path: each output is one float32 product
    ``x * scale`` (the other two terms are exact zeros) plus ``shift``.
    """
    frames, height, width = clip.shape[:3]
    if out.numel() == 0:
        return
    weights = torch.diag(torch.tensor(scale, dtype=torch.float32))
    shifts = torch.tensor(shift, dtype=torch.float32).view(3, 1)
    frame = torch.empty((height * width, 3), dtype=torch.float32)
    for index in range(frames):
        frame.view(height, width, 3).copy_(clip[index])
        target = out[:, index].view(3, height * width)
        torch.mm(weights, frame.t(), out=target)
        target.add_(shifts)


def _exact_float32_matmul() -> bool:
    # Matrix products in reduced precision (bf16 / tf32 inputs) would round the scales.
    if torch.get_float32_matmul_precision() != "highest":
        return False
    mkldnn = getattr(getattr(torch.backends, "mkldnn", None), "matmul", None)
    return getattr(mkldnn, "fp32_precision", "none") in ("none", "ieee")


def _check_fits(height: int, width: int, size: int) -> None:
    if size > height or size > width:
        raise ValueError(f"crop {size} does not fit a {height}x{width} clip")


class TrainTransform:
    """Training augmentation: jittered short side, random crop, random flip, normalise.

    Call :meth:`short_side` first to choose the scale (the dataset decodes to it), then call the
    transform with the clip and the same generator. ``normalise`` False leaves the clip uint8
    (:func:`channels_first`), to be normalised on the device (``DATA.INPUT_DTYPE``).
    """

    def __init__(
        self,
        *,
        jitter_scales: Tuple[int, int],
        crop_size: int,
        random_flip: bool,
        mean: Sequence[float],
        std: Sequence[float],
        normalise: bool = True,
    ):
        self.jitter_scales = (int(jitter_scales[0]), int(jitter_scales[1]))
        self.crop_size = int(crop_size)
        self.random_flip = bool(random_flip)
        self.mean = tuple(mean)
        self.std = tuple(std)
        self.normalise = bool(normalise)

    def short_side(self, generator: Optional[torch.Generator] = None) -> int:
        return random_short_side(min_size=self.jitter_scales[0], max_size=self.jitter_scales[1], generator=generator)

    def draw(self, height: int, width: int, *, generator: Optional[torch.Generator] = None) -> Tuple[int, int, bool]:
        """The random choices for a ``height x width`` clip (at its short side already):
        ``(top, left, flip)``, drawn in the order :meth:`__call__` draws them."""
        top, left = random_crop_position(height, width, size=self.crop_size, generator=generator)
        flip = self.random_flip and bool(torch.rand((), generator=generator) < 0.5)
        return top, left, flip

    def apply(self, clip: torch.Tensor, *, short_side: int, top: int, left: int, flip: bool) -> torch.Tensor:
        """The transform with its random choices given (from :meth:`draw`), on any device."""
        clip = short_side_scale(clip, size=short_side)
        _check_fits(clip.shape[1], clip.shape[2], self.crop_size)
        clip = clip[:, top : top + self.crop_size, left : left + self.crop_size]
        if flip:
            clip = horizontal_flip(clip)
        return normalize(clip, mean=self.mean, std=self.std) if self.normalise else channels_first(clip)

    def __call__(
        self, clip: torch.Tensor, *, short_side: int, generator: Optional[torch.Generator] = None
    ) -> torch.Tensor:
        height, width = output_size(clip.shape[1], clip.shape[2], short_side)
        top, left, flip = self.draw(height, width, generator=generator)
        return self.apply(clip, short_side=short_side, top=top, left=left, flip=flip)


class EvalTransform:
    """Test preprocessing: short side = ``crop_size``, crop ``index`` of ``num_crops``, normalise
    (or, with ``normalise`` False, leave uint8 for the device, as :class:`TrainTransform`).

    One crop is the centre; three are PySlowFast's start / centre / end of the long side.
    """

    __test__ = False  # not a pytest test class, despite the name

    def __init__(
        self, *, crop_size: int, num_crops: int, mean: Sequence[float], std: Sequence[float], normalise: bool = True
    ):
        if num_crops not in (1, 3):
            raise ValueError(f"num_crops = {num_crops}: must be 1 or 3")
        self.crop_size = int(crop_size)
        self.num_crops = num_crops
        self.mean = tuple(mean)
        self.std = tuple(std)
        self.normalise = bool(normalise)

    @property
    def short_side(self) -> int:
        return self.crop_size

    def __call__(
        self, clip: torch.Tensor, *, crop_index: Optional[int] = None, out: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """``crop_index`` 0..2 picks one of three crops; None (or one crop) is the centre.
        ``out``: where to write the result (see :func:`normalize`)."""
        clip = short_side_scale(clip, size=self.crop_size)
        index = 1 if self.num_crops == 1 or crop_index is None else crop_index
        clip = uniform_crop(clip, size=self.crop_size, index=index)
        if not self.normalise:
            return channels_first(clip, out=out)
        return normalize(clip, mean=self.mean, std=self.std, out=out)
