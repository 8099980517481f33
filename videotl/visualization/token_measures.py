"""Numbers for what TokenLearner's maps show: do the tokens look at what moves, and does each
token look somewhere else?

For one map-producing module and a set of clips:

- **motion ratio** of token i: the attention-weighted share of moving pixels over their plain
  share, ``sum_t sum_x A_t,i(x) m_t(x) / sum_x A_t,i(x)`` over ``sum_t mean_x m_t(x)``, where
  ``m_t(x)`` is the share of moving pixels in map cell x of frame t, taken from the clip itself
  (a pixel moves when its value changes by more than ``motion_threshold`` from the previous frame).
  1 = the token looks everywhere alike (or at random); ``1 / share`` = it looks only where things move.
- **correlation**: the Pearson correlation of two tokens' maps over the cells of a frame, averaged
  over every pair of tokens, frame and clip. 1 = the tokens are copies of each other.
- **border ratio**: the attention on the outermost ring of cells over the ring's share of the
  cells (1 = no preference for the frame's border, where convolutions see zero padding).
- **peaks on motion**: the share of (token, frame) pairs whose most attended cell holds motion,
  beside the share of cells that hold motion (what random peaks would reach).
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass
from typing import Dict, Iterable, List, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .token_maps import capture_token_maps, denormalize

__all__ = [
    "MOTION_THRESHOLD",
    "TokenMapMeasures",
    "TokenMapTally",
    "map_correlation",
    "measure_token_maps",
    "motion_shares",
]

# A pixel moves when one of its channels changes by more than this (in [0, 1]) from the last frame:
# above codec noise and slow background drift, below any object's edge.
MOTION_THRESHOLD = 0.1


def motion_shares(frames: np.ndarray, grid: Sequence[int], *, threshold: float = MOTION_THRESHOLD) -> np.ndarray:
    """The share of moving pixels in each cell of a ``grid`` = (T_map, h, w) over the clip.

    Args:
        frames: uint8 (T, H, W, 3) clip frames. Frame 0 takes its motion from frame 1.
        grid: the maps' (T_map, h, w); each map frame covers ``T / T_map`` clip frames and each
            cell the pixels adaptive average pooling gives it.
    Returns:
        float64 (T_map, h, w) in [0, 1].
    """
    if len(frames) < 2:
        raise ValueError("motion needs at least two frames")
    pixels = torch.as_tensor(np.asarray(frames), dtype=torch.float32) / 255.0
    change = (pixels[1:] - pixels[:-1]).abs().amax(dim=-1)  # (T - 1, H, W)
    moving = (torch.cat([change[:1], change]) > threshold).float()  # (T, H, W)
    num_map_frames, height, width = (int(v) for v in grid)
    cells = F.adaptive_avg_pool2d(moving[:, None], (height, width))[:, 0]  # (T, h, w)
    in_time = F.adaptive_avg_pool1d(cells.flatten(1).T[None], num_map_frames)[0].T  # (T_map, h*w)
    return in_time.reshape(num_map_frames, height, width).double().numpy()


def map_correlation(maps: np.ndarray) -> float:
    """Mean Pearson correlation over cells between every pair of tokens, frame by frame.

    Args:
        maps: (T, S, h, w) attention maps of one clip.
    Returns:
        The mean over frames and token pairs whose maps both vary in that frame; NaN when none do
        (or S < 2).
    """
    maps = np.asarray(maps, dtype=np.float64)
    flat = maps.reshape(maps.shape[0], maps.shape[1], -1)
    centred = flat - flat.mean(axis=-1, keepdims=True)
    norms = np.sqrt((centred**2).sum(axis=-1))
    values = []
    for i, j in itertools.combinations(range(flat.shape[1]), 2):
        both = (norms[:, i] > 1e-12) & (norms[:, j] > 1e-12)
        if both.any():
            dots = (centred[both, i] * centred[both, j]).sum(axis=-1)
            values.extend(dots / (norms[both, i] * norms[both, j]))
    return float(np.mean(values)) if values else float("nan")


def _ring(height: int, width: int) -> np.ndarray:
    ring = np.zeros((height, width), dtype=bool)
    ring[0, :] = ring[-1, :] = ring[:, 0] = ring[:, -1] = True
    return ring


@dataclass
class TokenMapMeasures:
    """The measures of one module over all clips (see the module's docstring).

    Attributes:
        module: the tokenizer's name in the model.
        grid: the map's (h, w).
        motion_ratio: per token.
        median_motion_ratio: the median token's.
        correlation: mean pairwise map correlation.
        border_ratio: attention on the outer ring of cells over the ring's share (NaN for grids
            under 3 x 3, which are all ring).
        peaks_on_motion / cells_with_motion: share of token peaks on moving cells; share of moving
            cells.
        motion_share: the plain share of moving pixels, over all frames.
        num_clips: clips measured.
    """

    module: str
    grid: List[int]
    motion_ratio: List[float]
    median_motion_ratio: float
    correlation: float
    border_ratio: float
    peaks_on_motion: float
    cells_with_motion: float
    motion_share: float
    num_clips: int

    def to_dict(self) -> Dict[str, object]:
        return asdict(self)

    def summary(self) -> str:
        ratios = ", ".join(f"{value:.2f}" for value in self.motion_ratio)
        return (
            f"{self.module} ({self.grid[0]}x{self.grid[1]} grid, {self.num_clips} clips): median token's motion "
            f"ratio {self.median_motion_ratio:.2f} (tokens {ratios}; 1 = blind to motion), mean pairwise map "
            f"correlation {self.correlation:.2f} (1 = identical tokens), border ratio {self.border_ratio:.2f}, "
            f"peaks on moving cells {self.peaks_on_motion:.2f} (moving cells {self.cells_with_motion:.2f})"
        )


class TokenMapTally:
    """Accumulates one module's maps and motion, clip by clip."""

    def __init__(self, module: str) -> None:
        self.module = module
        self.grid: List[int] = []
        self.weighted = None  # per token: sum over frames of the attention-weighted motion share
        self.plain = 0.0  # sum over frames of the plain motion share
        self.correlations: List[float] = []
        self.border, self.border_area = 0.0, 0.0
        self.peaks_hit, self.peaks, self.moving_cells, self.cells = 0, 0, 0, 0
        self.num_clips, self.frames = 0, 0

    def add(self, maps: np.ndarray, motion: np.ndarray) -> None:
        """One clip: ``maps`` (T, S, h, w) and ``motion`` (T, h, w) from :func:`motion_shares`."""
        maps = np.asarray(maps, dtype=np.float64)
        motion = np.asarray(motion, dtype=np.float64)
        if maps.shape[0] != motion.shape[0] or maps.shape[2:] != motion.shape[1:]:
            raise ValueError(f"maps {maps.shape} and motion {motion.shape} differ in frames or cells")
        num_tokens, height, width = maps.shape[1:]
        self.grid = [height, width]
        mass = maps.sum(axis=(2, 3))  # (T, S)
        weighted = (maps * motion[:, None]).sum(axis=(2, 3)) / np.maximum(mass, 1e-12)
        self.weighted = weighted.sum(axis=0) + (0.0 if self.weighted is None else self.weighted)
        self.plain += float(motion.mean(axis=(1, 2)).sum())
        correlation = map_correlation(maps)
        if not np.isnan(correlation):
            self.correlations.append(correlation)
        if height >= 3 and width >= 3:
            ring = _ring(height, width)
            self.border += float((maps[..., ring].sum(axis=-1) / np.maximum(mass, 1e-12)).sum())
            self.border_area += ring.mean() * mass.size
        peaks = maps.reshape(*maps.shape[:2], -1).argmax(axis=-1)  # (T, S)
        moving = motion.reshape(motion.shape[0], -1) > 0
        self.peaks_hit += int(np.take_along_axis(moving, peaks, axis=1).sum())
        self.peaks += peaks.size
        self.moving_cells += int(moving.sum())
        self.cells += moving.size
        self.num_clips += 1
        self.frames += motion.shape[0]

    def result(self) -> TokenMapMeasures:
        if not self.num_clips:
            raise ValueError(f"no clip was measured for {self.module}")
        ratio = (self.weighted / self.plain).tolist() if self.plain > 0 else [float("nan")] * len(self.weighted)
        return TokenMapMeasures(
            module=self.module,
            grid=self.grid,
            motion_ratio=[float(v) for v in ratio],
            median_motion_ratio=float(np.median(ratio)),
            correlation=float(np.mean(self.correlations)) if self.correlations else float("nan"),
            border_ratio=self.border / self.border_area if self.border_area else float("nan"),
            peaks_on_motion=self.peaks_hit / self.peaks,
            cells_with_motion=self.moving_cells / self.cells,
            motion_share=self.plain / self.frames,
            num_clips=self.num_clips,
        )


def measure_token_maps(
    model: nn.Module,
    clips: Iterable[torch.Tensor],
    *,
    mean: Sequence[float],
    std: Sequence[float],
    motion_threshold: float = MOTION_THRESHOLD,
) -> List[TokenMapMeasures]:
    """Measure every map-producing tokenizer of ``model`` on ``clips``.

    Args:
        clips: normalised clips (C, T, H, W), exactly as the model receives them; motion is taken
            from their denormalised pixels, so it is the motion the model saw.
        mean / std: the normalisation (``DATA.MEAN`` / ``DATA.STD``).
    Returns:
        One :class:`TokenMapMeasures` per module, in execution order.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    tallies: Dict[str, TokenMapTally] = {}
    try:
        for clip in clips:
            with torch.no_grad(), capture_token_maps(model) as captured:
                model(clip.unsqueeze(0).to(device))
            frames = denormalize(clip.cpu(), mean=mean, std=std)
            for entry in captured:
                maps = entry.maps[0].numpy()  # (T, S, h, w)
                motion = motion_shares(frames, (maps.shape[0], *maps.shape[2:]), threshold=motion_threshold)
                tallies.setdefault(entry.name, TokenMapTally(entry.name)).add(maps, motion)
    finally:
        model.train(was_training)
    return [tally.result() for tally in tallies.values()]
