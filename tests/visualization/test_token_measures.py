"""The token-map measures against hand computations."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from videotl.visualization import (
    TokenMapTally,
    map_correlation,
    measure_token_maps,
    motion_shares,
)


def _maps(values):
    return np.asarray(values, dtype=np.float64)


def test_motion_shares_counts_changed_pixels_per_cell():
    frames = np.zeros((3, 4, 4, 3), dtype=np.uint8)
    # Frame 1 changes the top-left 2x2 cell fully and one pixel of the bottom-right cell.
    frames[1, :2, :2] = 200
    frames[1, 3, 3, 0] = 200
    # Frame 2 returns to black: the same pixels change again.
    shares = motion_shares(frames, (3, 2, 2))
    # Frame 0 takes frame 1's motion; frames 1 and 2 their own change from the previous frame.
    expected_frame = np.array([[1.0, 0.0], [0.0, 0.25]])
    for t in range(3):
        np.testing.assert_allclose(shares[t], expected_frame)


def test_motion_shares_ignores_changes_under_the_threshold_and_pools_time():
    frames = np.zeros((4, 2, 2, 3), dtype=np.uint8)
    frames[1] = 20  # 0.078 of full scale: under the 0.1 threshold
    frames[3, 0, 0] = 255  # frame 3 alone moves, in one pixel of four
    shares = motion_shares(frames, (2, 1, 1))
    # Map frame 0 covers clip frames 0-1 (no motion); map frame 1 covers 2-3 (0 and 0.25).
    np.testing.assert_allclose(shares[:, 0, 0], [0.0, 0.125])


def test_uniform_attention_has_motion_ratio_one_and_border_ratio_one():
    tally = TokenMapTally("tl")
    motion = np.zeros((2, 3, 3))
    motion[:, 1, 1] = 1.0
    motion[1, 0, 0] = 0.5
    tally.add(np.full((2, 2, 3, 3), 1 / 9), motion)
    result = tally.result()
    assert result.motion_ratio == pytest.approx([1.0, 1.0])
    assert result.border_ratio == pytest.approx(1.0)
    assert math.isnan(result.correlation)  # constant maps have no correlation


def test_attention_on_the_only_moving_cell_reaches_one_over_the_share():
    motion = np.zeros((1, 3, 3))
    motion[0, 1, 1] = 1.0  # plain share 1/9
    maps = np.zeros((1, 2, 3, 3))
    maps[0, 0, 1, 1] = 1.0  # token 0: all on the moving centre
    maps[0, 1, 0, 0] = 1.0  # token 1: all on a still corner
    tally = TokenMapTally("tl")
    tally.add(maps, motion)
    result = tally.result()
    assert result.motion_ratio == pytest.approx([9.0, 0.0])
    assert result.median_motion_ratio == pytest.approx(4.5)
    # Ring = 8 of 9 cells: token 0 puts 0 on it, token 1 all of it -> (0 + 1) / (2 * 8/9).
    assert result.border_ratio == pytest.approx(9 / 16)
    assert result.peaks_on_motion == pytest.approx(0.5)
    assert result.cells_with_motion == pytest.approx(1 / 9)
    assert result.motion_share == pytest.approx(1 / 9)


def test_correlation_of_copies_is_one_and_of_opposites_minus_one():
    base = np.arange(9, dtype=np.float64).reshape(3, 3)
    copies = np.stack([base, 2 * base + 1])[None]  # (1, 2, 3, 3): an affine copy
    assert map_correlation(copies) == pytest.approx(1.0)
    opposites = np.stack([base, -base])[None]
    assert map_correlation(opposites) == pytest.approx(-1.0)
    three = np.stack([base, base, -base])[None]  # pairs: +1, -1, -1
    assert map_correlation(three) == pytest.approx(-1 / 3)


def test_correlation_matches_numpy_corrcoef_on_random_maps():
    rng = np.random.default_rng(0)
    maps = rng.random((4, 3, 5, 5))
    expected = np.mean(
        [
            np.corrcoef(maps[t, i].ravel(), maps[t, j].ravel())[0, 1]
            for t in range(4)
            for i, j in ((0, 1), (0, 2), (1, 2))
        ]
    )
    assert map_correlation(maps) == pytest.approx(expected)


def test_tally_pools_clips_by_frames():
    tally = TokenMapTally("tl")
    still = np.zeros((1, 1, 2))
    moving = np.ones((1, 1, 2))
    one_token = np.array([[[[1.0, 0.0]]]])  # (1, 1, 1, 2)
    tally.add(one_token, moving)
    tally.add(one_token, still)
    # weighted motion: 1 + 0 over plain: 1 + 0 -> ratio 1; half of the frames move.
    result = tally.result()
    assert result.motion_ratio == pytest.approx([1.0])
    assert result.motion_share == pytest.approx(0.5)
    assert math.isnan(result.border_ratio)  # a 1 x 2 grid is all border
    assert result.num_clips == 2


def test_tally_refuses_mismatched_grids():
    tally = TokenMapTally("tl")
    with pytest.raises(ValueError, match="differ"):
        tally.add(np.ones((2, 1, 3, 3)), np.ones((2, 2, 2)))
    with pytest.raises(ValueError, match="no clip"):
        TokenMapTally("empty").result()


class _MotionTokenizer(nn.Module):
    """A stand-in tokenizer returning (tokens, maps) as videotl's do: token 0 attends where its input
    changes from the previous frame, token 1 uniformly."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x):
        _, _, _, h, w = x.shape
        change = torch.cat([x[:, :, 1:2] - x[:, :, :1], x[:, :, 1:] - x[:, :, :-1]], dim=2).abs().amax(1)
        moving = (change > 0.5).float()  # (B, T, H, W)
        token0 = moving / moving.sum(dim=(-2, -1), keepdim=True).clamp_min(1)
        token1 = torch.full_like(token0, 1 / (h * w))
        return x * self.scale, torch.stack([token0, token1], dim=2)  # maps (B, T, S, H, W)


class _Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.tokenizer = _MotionTokenizer()

    def forward(self, x):
        return self.tokenizer(x)[0].mean()


def test_measure_token_maps_reads_the_model_and_the_clip(monkeypatch):
    import videotl.visualization.token_maps as token_maps

    monkeypatch.setattr(token_maps, "MAP_TOKENIZERS", (_MotionTokenizer,))
    model = _Model()
    clip = torch.zeros(3, 4, 4, 4)  # (C, T, H, W); mean 0 and std 1 leave the pixels in [0, 1]
    clip[:, 1:, 1, 1] = 1.0  # one pixel of 16 switches on at frame 1 and stays on
    clip[:, 2:, 2, 2] = 1.0  # another at frame 2
    (result,) = measure_token_maps(model, [clip], mean=(0, 0, 0), std=(1, 1, 1))
    assert result.module == "tokenizer"
    assert result.grid == [4, 4]
    # Moving pixels per frame (frame 0 takes frame 1's): 1, 1, 1, 0 of 16.
    assert result.motion_share == pytest.approx(3 / 64)
    # Token 0 puts all its attention on the moving pixel in frames 0-2 and none anywhere in frame 3
    # (an all-zero map), so its weighted share is 1 + 1 + 1 + 0 over a plain 3 / 16.
    assert result.motion_ratio[0] == pytest.approx(16.0)
    assert result.motion_ratio[1] == pytest.approx(1.0)
    assert model.training  # restored after the measurement
