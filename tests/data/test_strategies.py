"""Sampling strategies on their own, against hand-computed starts, crops, views, segments and labels."""

import pytest
import torch

from videotl.data.strategies import ClipPlan, MultiViewClips, RandomClip, WholeVideoSegments, clip_classes
from videotl.data.transforms import EvalTransform, TrainTransform

NORM = {"mean": (0.5,) * 3, "std": (0.5,) * 3}


def _train(jitter=(32, 32), crop=32, flip=True, **kwargs):
    transform = TrainTransform(jitter_scales=jitter, crop_size=crop, random_flip=flip, **NORM)
    return RandomClip(8, 12.0, transform, **kwargs)


def test_random_clip_starts_cover_the_grid_points_where_the_clip_fits():
    strategy = _train()
    # 2 s at 12 fps, 8 frames: the last start whose 8th frame (start + 7/12) is before 2 s is
    # 16/12; a uniform draw over [0, 16/12) moved down onto the grid gives 0, 1/12, ..., 15/12.
    starts = set()
    for seed in range(400):
        plan = strategy.plan(
            0, duration=2.0, frame_size=(48, 64), labels=(0,), generator=torch.Generator().manual_seed(seed)
        )
        starts.add(round(plan.start_sec * 12, 6))
    assert starts == {float(k) for k in range(16)}
    # A video shorter than a clip starts at 0.
    plan = strategy.plan(0, duration=0.3, frame_size=(48, 64), labels=(0,), generator=torch.Generator().manual_seed(1))
    assert plan.start_sec == 0.0


def test_random_clip_crop_fits_the_scaled_frame_and_every_position_occurs():
    # A 48x64 frame at short side 32 is 32x43 (64 * 32 / 48 = 42.67, rounded): a 32 crop has
    # top 0 and left 0..11.
    strategy = _train()
    lefts, flips = set(), set()
    for seed in range(300):
        plan = strategy.plan(
            3, duration=2.0, frame_size=(48, 64), labels=(2,), generator=torch.Generator().manual_seed(seed)
        )
        top, left = plan.crop
        assert top == 0 and plan.short_side == 32 and (plan.video_index, plan.view_index) == (3, 0)
        lefts.add(left)
        flips.add(plan.flip)
    assert lefts == set(range(12)) and flips == {False, True}
    unflipped = _train(flip=False)
    assert not any(
        unflipped.plan(
            0, duration=2.0, frame_size=(48, 64), labels=(0,), generator=torch.Generator().manual_seed(s)
        ).flip
        for s in range(50)
    )


def test_random_clip_draws_short_side_start_crop_flip_in_that_order():
    strategy = _train(jitter=(36, 44))
    plan = strategy.plan(0, duration=3.0, frame_size=(48, 64), labels=(0,), generator=torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)
    short = int(torch.randint(36, 45, (), generator=g))
    draw = float(torch.rand((), dtype=torch.float64, generator=g))
    last = 3.0 - 8 / 12
    start = int(draw * last * 12 + 1e-6) / 12
    width = round(64 * short / 48)
    top = int(torch.randint(0, short - 32 + 1, (), generator=g))
    left = int(torch.randint(0, width - 32 + 1, (), generator=g))
    flip = bool(torch.rand((), generator=g) < 0.5)
    assert plan == ClipPlan(0, 0, start, short, (0,), crop=(top, left), flip=flip)


def test_clip_labels_by_overlap_and_by_coverage():
    # c1 over [0, 1], c3 over [1.5, 3]; 8 frames at 12 fps from 0.92: c1 on its first frame only
    # (0.92 < 1), c3 on its last only (0.92 + 7/12 = 1.503 >= 1.5).
    intervals = [(1, 0.0, 1.0), (3, 1.5, 3.0)]
    start = 1.5 - 7 / 12 + 0.001
    assert clip_classes(intervals, start, num_frames=8, fps=12, min_coverage=0.0) == [1, 3]
    assert clip_classes(intervals, start, num_frames=8, fps=12, min_coverage=0.125) == [1, 3]
    assert clip_classes(intervals, start, num_frames=8, fps=12, min_coverage=0.25) == []
    # A window that ends exactly where an action starts does not overlap it.
    assert clip_classes([(2, 8 / 12, 2.0)], 0.0, num_frames=8, fps=12, min_coverage=0.0) == []
    # Abutting intervals of one class: times 0, 1/12, ..., 5/12 lie in [0, 0.5): 6 of 8 frames.
    abutting = [(2, 0.0, 0.25), (2, 0.25, 0.5)]
    assert clip_classes(abutting, 0.0, num_frames=8, fps=12, min_coverage=0.75) == [2]
    assert clip_classes(abutting, 0.0, num_frames=8, fps=12, min_coverage=0.8) == []
    # Overlapping intervals of one class count a frame once: [0, 0.3) holds 4 of the 8 times.
    overlapping = [(4, 0.0, 0.3), (4, 0.1, 0.3)]
    assert clip_classes(overlapping, 0.0, num_frames=8, fps=12, min_coverage=0.5) == [4]
    assert clip_classes(overlapping, 0.0, num_frames=8, fps=12, min_coverage=0.51) == []


def test_random_clip_labels_follow_the_rule_it_is_given():
    intervals = ((1, 0.0, 1.0), (3, 1.5, 3.0))
    args = {"duration": 3.0, "frame_size": (48, 64), "labels": (1, 3), "intervals": intervals}
    by_clip = _train(clip_labels=True, min_coverage=0.0)
    for seed in range(30):
        plan = by_clip.plan(0, generator=torch.Generator().manual_seed(seed), **args)
        end = plan.start_sec + 8 / 12
        assert plan.classes == tuple(([1] if plan.start_sec < 1.0 else []) + ([3] if end > 1.5 else []))
    by_video = _train(clip_labels=False)
    assert by_video.plan(0, generator=torch.Generator().manual_seed(0), **args).classes == (1, 3)
    # No intervals: the video's labels, whatever the rule.
    no_intervals = dict(args, intervals=())
    assert by_clip.plan(0, generator=torch.Generator().manual_seed(0), **no_intervals).classes == (1, 3)
    with pytest.raises(ValueError, match="clip_label_min_coverage"):
        _train(clip_labels=True, min_coverage=1.5)


def test_multi_view_clips_spread_views_and_crops():
    transform = EvalTransform(crop_size=32, num_crops=3, **NORM)
    strategy = MultiViewClips(8, 12.0, transform, num_views=3, num_crops=3)
    assert strategy.views_per_video == 9
    # 10 s: the last start is 10 - 8/12 = 112/12; the middle one is 56/12.
    expected = [(0.0, 0), (0.0, 1), (0.0, 2), (56 / 12, 0), (56 / 12, 1), (56 / 12, 2)]
    expected += [(112 / 12, 0), (112 / 12, 1), (112 / 12, 2)]
    plans = [strategy.plan(4, v, duration=10.0, labels=(2,)) for v in range(9)]
    # pytest.approx takes flat sequences only (9.2, which CI installs, refuses nested ones).
    assert [p.start_sec for p in plans] == pytest.approx([start for start, _ in expected])
    assert [p.crop_index for p in plans] == [crop for _, crop in expected]
    assert all(p.valid and p.short_side == 32 and p.video_index == 4 and p.classes == (2,) for p in plans)
    assert [p.view_index for p in plans] == list(range(9))
    # One view is centred: (10 - 8/12) / 2 = 4.667 s, on the grid at 56/12.
    single = MultiViewClips(8, 12.0, transform, num_views=1, num_crops=1)
    assert single.plan(0, 0, duration=10.0, labels=(0,)).start_sec == pytest.approx(56 / 12)
    # An unprobeable video: an invalid plan from 0.
    broken = strategy.plan(1, 7, duration=None, labels=(0,))
    assert (broken.valid, broken.start_sec, broken.crop_index) == (False, 0.0, 1)


def test_whole_video_segments_cover_the_video():
    strategy = WholeVideoSegments(8, 12.0, EvalTransform(crop_size=32, num_crops=1, **NORM))
    # 2 s at 12 fps: 24 sample times, 3 segments of 8; 2.01 s: 25 times, a 4th segment.
    assert strategy.count(2.0) == 3 and strategy.count(2.01) == 4 and strategy.count(0.1) == 1
    assert strategy.count(None) == 1
    assert [bound for segment in strategy.ranges(3) for bound in segment] == pytest.approx(
        [0, 2 / 3, 2 / 3, 4 / 3, 4 / 3, 2]
    )
