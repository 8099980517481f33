"""The synthetic Charades generator: official layout, labels = placed intervals, exact frame rates,
pixels that follow the labels, determinism, atomic reruns, and the Charades loader reading it."""

import csv
import re
from fractions import Fraction

import av
import numpy as np
import pytest

from videotl.data.datasets.charades import load_charades
from videotl.data.synthetic_charades import (
    SYNTHETIC_CLASSES,
    SyntheticAction,
    SyntheticVideo,
    encode_video,
    generate_synthetic_charades,
    is_generated,
    plan_synthetic_charades,
)

OFFICIAL_COLUMNS = ["id", "subject", "scene", "quality", "relevance", "verified", "script", "objects",
                    "descriptions", "actions", "length"]
TINY = dict(seed=3, num_train=4, num_test=2, min_seconds=3.0, max_seconds=5.0)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic_charades")
    dataset = generate_synthetic_charades(root, num_workers=0, progress=False, **TINY)
    return root, dataset


def _parse_actions(field):
    """Independent parse of the Charades ``actions`` field."""
    out = []
    for item in filter(None, field.split(";")):
        code, start, end = item.split(" ")
        assert re.fullmatch(r"c\d{3}", code)
        out.append((int(code[1:]), float(start), float(end)))
    return out


def _assert_same_intervals(actual, expected):
    """(label, start, end) triples: the same labels in the same order, the times to float precision
    (pytest.approx compares flat sequences only)."""
    assert [label for label, _, _ in actual] == [label for label, _, _ in expected]
    flat = [t for _, start, end in actual for t in (start, end)]
    assert flat == pytest.approx([t for _, start, end in expected for t in (start, end)])


def test_layout_and_csv_columns(tiny):
    root, dataset = tiny
    lines = (root / "Charades_v1_classes.txt").read_text().splitlines()
    assert lines == [f"c{i:03d} {name}" for i, name in enumerate(SYNTHETIC_CLASSES)]
    assert 10 <= len(lines) <= 20
    for split, videos in (("train", dataset.train), ("test", dataset.test)):
        with open(root / f"Charades_v1_{split}.csv", newline="") as handle:
            reader = csv.DictReader(handle)
            rows = list(reader)
        assert reader.fieldnames == OFFICIAL_COLUMNS
        assert [r["id"] for r in rows] == [v.video_id for v in videos]
        for row, video in zip(rows, videos):
            assert re.fullmatch(r"[A-Z0-9]{5}", row["id"])
            assert (root / "Charades_v1_480" / f"{row['id']}.mp4").is_file()
            # Labels in the file are exactly the intervals the generator placed.
            placed = [(a.label, a.start, a.end) for a in video.actions]
            _assert_same_intervals(_parse_actions(row["actions"]), placed)
            assert float(row["length"]) == pytest.approx(video.num_frames / float(video.fps), abs=0.006)
            for _, start, end in placed:
                assert 0.0 <= start < end <= float(row["length"]) + 1e-9
    ids = [v.video_id for v in dataset.videos]
    assert len(set(ids)) == len(ids)
    assert is_generated(root, dataset)


def test_charades_loader_reads_the_labels(tiny):
    root, dataset = tiny
    for split in ("train", "test"):
        records, names = load_charades(root, split)
        assert names == list(SYNTHETIC_CLASSES)
        truth = {v.video_id: v for v in dataset.split(split)}
        assert [r.video_id for r in records] == [v.video_id for v in dataset.split(split)]
        for record in records:
            video = truth[record.video_id]
            assert record.labels == tuple(sorted({a.label for a in video.actions}))
            _assert_same_intervals(sorted(record.intervals), sorted((a.label, a.start, a.end) for a in video.actions))
            assert record.path.is_file()


@pytest.mark.parametrize("rate", [Fraction(24), Fraction(25), Fraction(30), Fraction(30000, 1001)])
def test_videos_decode_at_the_advertised_rate(tmp_path, rate):
    video = SyntheticVideo(
        video_id="RATE0", split="train", fps=rate, width=112, height=84, num_frames=int(round(1.5 * rate)),
        actions=(SyntheticAction(label=0, start=0.2, end=1.2, slot=0, period=1.0, phase=0.0, offset=0.0),), seed=1,
    )
    path = tmp_path / "v.mp4"
    encode_video(video, path)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert stream.average_rate == rate
        assert stream.guessed_rate == rate
        frames = list(container.decode(stream))
    assert all(f.format.name == "yuv420p" for f in frames)
    assert (frames[0].width, frames[0].height) == (112, 84)
    assert len(frames) == round(1.5 * float(rate))
    # Frame i is shown at exactly i / rate.
    times = [Fraction(f.pts) * f.time_base for f in frames]
    assert times == [Fraction(i) / rate for i in range(len(frames))]


def test_generated_set_has_mixed_rates_and_sizes():
    dataset = plan_synthetic_charades(seed=0, num_train=40, num_test=10)
    assert {v.fps for v in dataset.videos} == {Fraction(24), Fraction(25), Fraction(30), Fraction(30000, 1001)}
    assert len({(v.width, v.height) for v in dataset.videos}) >= 2
    assert all(15.0 <= v.duration <= 40.0 for v in dataset.videos)
    # Several actions per video, and some of them overlap in time.
    assert np.mean([len(v.actions) for v in dataset.videos]) >= 3
    overlapping = sum(
        any(a.start < b.end and b.start < a.end for i, a in enumerate(v.actions) for b in v.actions[i + 1:])
        for v in dataset.videos
    )
    assert overlapping >= len(dataset.videos) // 2
    assert 0.15 < dataset.positive_rate("test") < 0.5


def _decode_rgb(path):
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return [(float(f.pts * f.time_base), f.to_ndarray(format="rgb24").astype(np.int32))
                for f in container.decode(stream)]


def _mask(frame, colour, tolerance=60):
    return np.abs(frame - np.asarray(colour)).max(axis=-1) < tolerance


def test_pixels_follow_the_intervals_and_the_direction(tmp_path):
    # Square moving up (c000) on the left during [0.5, 1.5); disc growing (c002) on the right
    # during [1.0, 2.0). One cycle lasts the whole interval, starting at the bottom / smallest.
    video = SyntheticVideo(
        video_id="PIXEL", split="train", fps=Fraction(25), width=128, height=96, num_frames=60,
        actions=(
            SyntheticAction(label=0, start=0.5, end=1.5, slot=0, period=1.0, phase=0.0, offset=0.0),
            SyntheticAction(label=2, start=1.0, end=2.0, slot=1, period=1.0, phase=0.0, offset=0.0),
        ),
        seed=5,
    )
    encode_video(video, tmp_path / "p.mp4")
    frames = _decode_rgb(tmp_path / "p.mp4")
    red, yellow = (235, 45, 45), (250, 220, 30)
    centre = video.width // 2
    square_rows, disc_areas = [], []
    for time, frame in frames:
        in_square = 0.5 <= time < 1.5
        in_disc = 1.0 <= time < 2.0
        reds, yellows = _mask(frame, red), _mask(frame, yellow)
        assert (reds.sum() > 50) == in_square, time
        assert (yellows.sum() > 10) == in_disc, time
        if in_square:
            assert reds[:, centre:].sum() == 0  # left slot only
            square_rows.append(np.nonzero(reds)[0].mean())
        if in_disc:
            assert yellows[:, :centre].sum() == 0  # right slot only
            disc_areas.append(yellows.sum())
    # Moving up: the square's row falls (image rows grow downwards); growing: the area rises.
    assert np.all(np.diff(square_rows) < 0)
    assert np.all(np.diff(disc_areas) >= 0) and disc_areas[-1] > 4 * disc_areas[0]
    # The backward member of the pair plays the same cycle in reverse.
    down = SyntheticVideo(**{**video.__dict__, "actions": (SyntheticAction(1, 0.5, 1.5, 0, 1.0, 0.0, 0.0),)})
    encode_video(down, tmp_path / "d.mp4")
    rows = [np.nonzero(_mask(f, red))[0].mean() for t, f in _decode_rgb(tmp_path / "d.mp4") if 0.5 <= t < 1.5]
    assert np.all(np.diff(rows) > 0)


def test_deterministic_by_seed(tmp_path, tiny):
    root, dataset = tiny
    again = generate_synthetic_charades(tmp_path, num_workers=0, progress=False, **TINY)
    assert again == dataset
    for name in ("Charades_v1_train.csv", "Charades_v1_test.csv", "Charades_v1_classes.txt"):
        assert (tmp_path / name).read_bytes() == (root / name).read_bytes()
    first = dataset.train[0].video_id
    assert (tmp_path / "Charades_v1_480" / f"{first}.mp4").read_bytes() == (
        root / "Charades_v1_480" / f"{first}.mp4"
    ).read_bytes()
    other = plan_synthetic_charades(**{**TINY, "seed": 4})
    assert [v.video_id for v in other.videos] != [v.video_id for v in dataset.videos]
    # Adding videos leaves the existing ones unchanged.
    more = plan_synthetic_charades(**{**TINY, "num_train": 6})
    assert more.train[: len(dataset.train)] == dataset.train and more.test == dataset.test


def test_rerun_skips_complete_videos_and_redoes_missing_ones(tmp_path):
    settings = dict(seed=1, num_train=2, num_test=1, min_seconds=2.0, max_seconds=3.0, num_workers=0, progress=False)
    dataset = generate_synthetic_charades(tmp_path, **settings)
    paths = [tmp_path / "Charades_v1_480" / f"{v.video_id}.mp4" for v in dataset.videos]
    kept, removed = paths[0], paths[1]
    content = removed.read_bytes()
    mtime = kept.stat().st_mtime_ns
    removed.unlink()
    # A leftover temporary file of an interrupted write is not mistaken for a video.
    (removed.parent / f".{removed.name}.abc.tmp").write_bytes(b"partial")
    assert not is_generated(tmp_path, dataset)
    generate_synthetic_charades(tmp_path, **settings)
    assert kept.stat().st_mtime_ns == mtime
    assert removed.read_bytes() == content
    assert is_generated(tmp_path, dataset)
    with pytest.raises(FileExistsError, match="other settings"):
        generate_synthetic_charades(tmp_path, **{**settings, "seed": 2})
