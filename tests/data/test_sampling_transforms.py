import pytest
import torch

from videotl.data import normalize_kernel
from videotl.data.sampling import (
    clip_times,
    frame_indices_at,
    num_target_frames,
    random_clip_start,
    segment_count,
    segment_starts,
    uniform_clip_starts,
)
from videotl.data.transforms import (
    EvalTransform,
    TrainTransform,
    horizontal_flip,
    normalize,
    random_crop,
    short_side_scale,
    uniform_crop,
)


def test_grids():
    assert list(clip_times(1.0, num_frames=3, fps=4.0)) == [1.0, 1.25, 1.5]
    assert num_target_frames(30.0, fps=12.0) == 360
    assert segment_count(30.0, num_frames=64, fps=12.0) == 6  # 360 / 64 = 5.6
    assert segment_count(64 / 12, num_frames=64, fps=12.0) == 1
    assert segment_count(0.01, num_frames=64, fps=12.0) == 1
    assert segment_starts(12.0, num_frames=64, fps=12.0) == pytest.approx([0.0, 64 / 12, 128 / 12])
    stamps = torch.tensor([0.0, 0.1, 0.25]).numpy()
    assert list(frame_indices_at(stamps, [-1.0, 0.0, 0.09, 0.1, 0.3], eps=1e-4)) == [0, 0, 0, 1, 2]


def test_clip_starts():
    # 10 s video, 2 s clips (24 frames at 12 fps): starts lie in [0, 8].
    assert uniform_clip_starts(10.0, num_frames=24, fps=12.0, num_clips=1) == pytest.approx([4.0])
    assert uniform_clip_starts(10.0, num_frames=24, fps=12.0, num_clips=3) == pytest.approx([0.0, 4.0, 8.0])
    assert uniform_clip_starts(1.0, num_frames=24, fps=12.0, num_clips=2) == [0.0, 0.0]
    generator = torch.Generator().manual_seed(0)
    starts = [random_clip_start(10.0, num_frames=24, fps=12.0, generator=generator) for _ in range(200)]
    assert 0.0 <= min(starts) and max(starts) <= 8.0 and max(starts) > 7.0 and min(starts) < 1.0
    assert random_clip_start(1.0, num_frames=24, fps=12.0) == 0.0
    # Starts lie on the 12 fps grid (a file transcoded to 12 fps holds every sampled time).
    assert all(abs(s * 12 - round(s * 12)) < 1e-9 for s in starts) and len({round(s * 12) for s in starts}) > 50
    # 4 clips over [0, 7.5]: 2.5 and 5.0 are on the grid, 7.5 too; 3 clips over [0, 7.6]: 3.8 -> 45 / 12.
    assert uniform_clip_starts(9.5, num_frames=24, fps=12.0, num_clips=4) == pytest.approx([0.0, 2.5, 5.0, 7.5])
    assert uniform_clip_starts(9.6, num_frames=24, fps=12.0, num_clips=3) == pytest.approx([0.0, 45 / 12, 91 / 12])


def test_normalize_by_hand():
    clip = torch.tensor([0, 255, 51], dtype=torch.uint8).view(1, 1, 1, 3)
    out = normalize(clip, mean=[0.5, 0.0, 0.1], std=[0.5, 1.0, 0.2])
    assert out.shape == (3, 1, 1, 1) and out.dtype == torch.float32
    assert out.flatten().tolist() == pytest.approx([-1.0, 1.0, 0.5])


def test_normalize_into_a_given_tensor():
    clip = torch.randint(0, 256, (2, 3, 5, 3), dtype=torch.uint8)
    mean, std = [0.45, 0.4, 0.5], [0.225, 0.25, 0.2]
    by_hand = (clip.double().permute(3, 0, 1, 2) / 255 - torch.tensor(mean, dtype=torch.float64).view(3, 1, 1, 1)) / (
        torch.tensor(std, dtype=torch.float64).view(3, 1, 1, 1)
    )
    out = torch.full((3, 2, 3, 5), float("nan"))
    assert normalize(clip, mean=mean, std=std, out=out) is out
    assert torch.allclose(out.double(), by_hand, atol=1e-6, rtol=0)
    assert torch.equal(normalize(clip, mean=mean, std=std), out)
    with pytest.raises(ValueError, match="needs float32"):
        normalize(clip, mean=mean, std=std, out=torch.empty(3, 2, 3, 4))


def _elementwise_reference(clip, mean, std):
    # The formula normalize documents, in float32, one whole-tensor op after another.
    mean_t, std_t = torch.tensor(mean), torch.tensor(std)
    scale, shift = (1.0 / (255.0 * std_t)).view(3, 1, 1, 1), (-mean_t / std_t).view(3, 1, 1, 1)
    return clip.permute(3, 0, 1, 2).float() * scale + shift


@pytest.mark.parametrize("path", ["kernel", "matmul", "elementwise"])
def test_normalize_is_bit_exact_on_every_value(path, monkeypatch):
    # Every uint8 value in every channel, a crop view (not contiguous) of odd size, frames of
    # their own content, through each of normalize's CPU paths: the compiled kernel, the matrix
    # product (no kernel), the elementwise ops (no kernel, reduced-precision matrix products).
    if path == "kernel":
        if normalize_kernel.load_kernel() is None:
            pytest.skip("no C compiler: the normalise kernel cannot be built here")
    else:
        monkeypatch.setattr(normalize_kernel, "load_kernel", lambda: None)
    generator = torch.Generator().manual_seed(3)
    full = torch.randint(0, 256, (5, 19, 23, 3), dtype=torch.uint8, generator=generator)
    full[0].view(-1, 3)[:256] = torch.arange(256, dtype=torch.uint8).view(256, 1)
    full[1].view(-1, 3)[:256] = torch.arange(255, -1, -1, dtype=torch.uint8).view(256, 1)
    clip = full[:, 1:18, 2:21]
    mean, std = [0.45, 0.4, 0.5], [0.225, 0.25, 0.2]
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("high" if path == "elementwise" else "highest")
    try:
        into = torch.full((3, 5, 17, 19), float("nan"))
        assert normalize(clip, mean=mean, std=std, out=into) is into
        allocated = normalize(clip, mean=mean, std=std)
        batch = torch.full((2, 3, 5, 17, 19), float("nan"))
        normalize(clip, mean=mean, std=std, out=batch[1])
        empty = normalize(clip[:0], mean=mean, std=std)
        # Pixels not packed in their rows (every other column): not the kernel's layout.
        spaced = normalize(full[:, :, ::2], mean=mean, std=std)
    finally:
        torch.set_float32_matmul_precision(previous)
    expected = _elementwise_reference(clip, mean, std)
    assert torch.equal(into, expected) and torch.equal(allocated, expected) and torch.equal(batch[1], expected)
    assert torch.isnan(batch[0]).all()
    assert empty.shape == (3, 0, 17, 19)
    assert torch.equal(spaced, _elementwise_reference(full[:, :, ::2], mean, std))


def _columns(width=10, height=4, frames=2):
    # Pixel value = column index, so a crop's left edge can be read back.
    row = torch.arange(width, dtype=torch.uint8)
    return row.view(1, 1, width, 1).expand(frames, height, width, 3).contiguous()


def test_crops_and_flip():
    clip = _columns()
    assert [int(uniform_crop(clip, size=4, index=i)[0, 0, 0, 0]) for i in range(3)] == [0, 3, 6]
    portrait = clip.transpose(1, 2)  # 10 high, 4 wide, value = row: crops move down
    assert [int(uniform_crop(portrait, size=4, index=i)[0, 0, 0, 0]) for i in range(3)] == [0, 3, 6]
    flipped = horizontal_flip(clip)
    assert flipped[0, 0, :, 0].tolist() == list(range(9, -1, -1))
    crop = random_crop(clip, size=4, generator=torch.Generator().manual_seed(1))
    left = int(crop[0, 0, 0, 0])
    assert crop.shape == (2, 4, 4, 3) and crop[0, 0, :, 0].tolist() == list(range(left, left + 4))
    with pytest.raises(ValueError, match="does not fit"):
        uniform_crop(clip, size=5, index=0)


def test_short_side_scale():
    clip = torch.zeros(2, 48, 64, 3, dtype=torch.uint8)
    assert short_side_scale(clip, size=24).shape == (2, 24, 32, 3)
    assert short_side_scale(clip.transpose(1, 2), size=24).shape == (2, 32, 24, 3)
    assert short_side_scale(clip, size=48) is clip


def test_train_and_test_transforms_shapes():
    clip = torch.randint(0, 256, (4, 48, 64, 3), dtype=torch.uint8)
    train = TrainTransform(jitter_scales=(40, 48), crop_size=32, random_flip=True, mean=[0.45] * 3, std=[0.225] * 3)
    side = train.short_side()
    assert 40 <= side <= 48
    assert train(clip, short_side=side).shape == (3, 4, 32, 32)
    test = EvalTransform(crop_size=32, num_crops=3, mean=[0.45] * 3, std=[0.225] * 3)
    crops = [test(clip, crop_index=i) for i in range(3)]
    assert all(c.shape == (3, 4, 32, 32) for c in crops)
    assert not torch.equal(crops[0], crops[2])


def test_test_transform_defaults_to_the_centre_crop():
    clip = torch.randint(0, 256, (2, 32, 64, 3), dtype=torch.uint8)
    three = EvalTransform(crop_size=32, num_crops=3, mean=[0.45] * 3, std=[0.225] * 3)
    one = EvalTransform(crop_size=32, num_crops=1, mean=[0.45] * 3, std=[0.225] * 3)
    centre = normalize(clip[:, :, 16:48], mean=[0.45] * 3, std=[0.225] * 3)
    assert torch.equal(three(clip), centre) and torch.equal(one(clip, crop_index=0), centre)
    assert torch.equal(three(clip, crop_index=2), normalize(clip[:, :, 32:], mean=[0.45] * 3, std=[0.225] * 3))
