"""The one resize: its output-size rule and its pixels, against hand computations."""

import pytest
import torch

from videotl.data import read_frames_at
from videotl.data.resize import output_size, resize_frames
from videotl.data.transforms import short_side_scale

from .conftest import TORCHCODEC_SKIP


def test_output_size_rule():
    # Short side is the request, long side rounded to nearest (Python's round: halves to even).
    assert output_size(48, 64, 24) == (24, 32)
    assert output_size(64, 48, 24) == (32, 24)
    assert output_size(45, 100, 32) == (32, 71)  # 100 * 32 / 45 = 71.11
    assert output_size(45, 100, 34) == (34, 76)  # 100 * 34 / 45 = 75.56
    assert output_size(4, 10, 3) == (3, 8)  # 7.5 -> 8
    assert output_size(4, 26, 1) == (1, 6)  # 6.5 -> 6
    assert output_size(50, 50, 20) == (20, 20)
    assert output_size(1000, 1, 1) == (1000, 1)
    assert output_size(48, 64, None) == (48, 64)
    assert output_size(48, 64, (40, 30)) == (40, 30)


def test_resize_frames_bilinear_values():
    # Upscaling 0, 100 to width 4 (half-pixel centres): output centres at input x = -0.25,
    # 0.25, 0.75, 1.25, clamped at the edges -> 0, 25, 75, 100.
    row = torch.tensor([0, 100], dtype=torch.uint8).reshape(1, 1, 2, 1).expand(1, 2, 2, 3)
    out = resize_frames(row, (2, 4))
    assert out.shape == (1, 2, 4, 3) and out.is_contiguous()
    assert out[0, :, :, 0].tolist() == [[0, 25, 75, 100]] * 2
    assert torch.equal(out[..., 0], out[..., 2])
    # Halving with antialiasing: a triangle filter two input pixels wide, weights renormalised
    # at the border. Output 0 (centre x = 0.5): pixels 0, 1, 2 weigh 3/7, 3/7, 1/7 -> 400/7 = 57.1.
    # Output 1 (centre x = 2.5): pixels 1, 2, 3 weigh 1/7, 3/7, 3/7 -> 1280/7 = 182.9.
    row = torch.tensor([0, 80, 160, 240], dtype=torch.uint8).reshape(1, 1, 4, 1).expand(2, 1, 4, 3)
    out = resize_frames(row, (1, 2))
    assert out.shape == (2, 1, 2, 3)
    assert out[0, 0, :, 1].tolist() == [57, 183]
    float_row = row.float()
    assert resize_frames(float_row, (1, 2))[0, 0, :, 1].tolist() == pytest.approx([400 / 7, 1280 / 7], abs=1e-4)


def test_resize_frames_keeps_frames_at_size():
    clip = torch.zeros(2, 48, 64, 3, dtype=torch.uint8)
    assert resize_frames(clip, (48, 64)) is clip
    assert short_side_scale(clip, size=48) is clip


def test_decoders_and_transforms_share_the_resize(videos):
    times = [0.0, 0.5, 1.0]
    full = read_frames_at(videos["30"], times, backend="pyav")
    wanted = resize_frames(full, output_size(48, 64, 20))
    assert wanted.shape == (3, 20, 27, 3)
    assert torch.equal(short_side_scale(full, size=20), wanted)
    # PyAV scales the YUV picture itself (a decoder option); the other decoders resize in torch.
    for backend in ["decord"] + (["torchcodec"] if TORCHCODEC_SKIP is None else []):
        assert torch.equal(read_frames_at(videos["30"], times, backend=backend, size=20), wanted)
