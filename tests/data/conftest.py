"""Fixture videos written with PyAV: tiny (64x48), short (1-3 s), and every frame carries its index.

Frame ``i`` shows ``i`` in binary as 8 horizontal bands of 6 rows (band ``b`` white when bit ``b``
is set), so any horizontal crop or resize still tells which source frame a clip holds.
"""

import contextlib
import csv
import os
from fractions import Fraction
from pathlib import Path
from typing import Optional, Sequence

import av
import numpy as np
import pytest
import torch

from videotl.data import encoding

WIDTH, HEIGHT = 64, 48
BANDS = 8


def frame_image(index: int, width: int = WIDTH, height: int = HEIGHT) -> np.ndarray:
    image = np.zeros((height, width, 3), dtype=np.uint8)
    band = height // BANDS
    for bit in range(BANDS):
        if (index >> bit) & 1:
            image[bit * band : (bit + 1) * band] = 255
    return image


def frame_indices(clip: torch.Tensor) -> list:
    """Decode the index of every frame of a ``T x H x W x 3`` uint8 clip (any width, any height)."""
    clip = clip.float()
    height = clip.shape[1]
    result = []
    for frame in clip:
        value = 0
        for bit in range(BANDS):
            centre = int((bit + 0.5) * height / BANDS)
            if frame[centre].mean() > 128:
                value |= 1 << bit
        result.append(value)
    return result


def write_video(
    path: Path,
    *,
    rate,
    num_frames: int,
    pts_ms: Optional[Sequence[int]] = None,
    width: int = WIDTH,
    height: int = HEIGHT,
    faststart: bool = False,
) -> Path:
    """H.264 mp4 (with B-frames, so decode order differs from display order)."""
    return encoding.write_video(
        path,
        (frame_image(i, width, height) for i in range(num_frames)),
        rate=rate,
        pts=pts_ms,
        time_base=Fraction(1, 1000) if pts_ms is not None else None,
        options={"crf": "8", "g": "12", "bf": "2"},
        container_options={"movflags": "faststart"} if faststart else None,
    )


@contextlib.contextmanager
def registered_backend(name: str, backend):
    """``backend`` registered as decoding backend ``name`` for the block (the entry it replaces,
    if any, restored after)."""
    from videotl.data.decoding import BACKENDS

    replaced = BACKENDS.unregister(name) if name in BACKENDS else None
    BACKENDS.register(name, backend)
    try:
        yield backend
    finally:
        BACKENDS.unregister(name)
        if replaced is not None:
            BACKENDS.register(name, replaced)


class FailingGpuDecoders:
    """torchcodec's VideoDecoder as it behaves where NVDEC builds a decoder and then fails to
    decode: a real decoder, whose reads raise when it was asked for a GPU."""

    def __init__(self):
        from torchcodec.decoders import VideoDecoder

        self.real = VideoDecoder
        self.devices = []

    def __call__(self, path, *, device, **options):
        self.devices.append(device)
        decoder = self.real(path, device="cpu", **options)
        if device == "cpu":
            return decoder
        shell = type("GpuDecoder", (), {"metadata": decoder.metadata})()

        def fail(times):
            raise RuntimeError("CUDA error: an illegal memory access was encountered (NVDEC)")

        shell.get_frames_played_at = fail
        return shell


def _torchcodec_skip_reason():
    from videotl.data.decoding import torchcodec_unavailable_reason

    reason = torchcodec_unavailable_reason()
    # CI installs FFmpeg's libraries and sets this: there the torchcodec tests must run (and fail
    # loudly if torchcodec cannot load).
    if os.environ.get("VIDEOTL_REQUIRE_TORCHCODEC") == "1":
        return None
    return reason


TORCHCODEC_SKIP = _torchcodec_skip_reason()
# Every backend, for parametrize: torchcodec is skipped (with the reason) where FFmpeg's shared
# libraries are missing.
BACKENDS = [
    "decord",
    "pyav",
    pytest.param("torchcodec", marks=pytest.mark.skipif(TORCHCODEC_SKIP is not None, reason=str(TORCHCODEC_SKIP))),
]

RATES = {"30": Fraction(30), "29.97": Fraction(30000, 1001), "25": Fraction(25), "8": Fraction(8)}
VFR_PTS_MS = [0, 30, 50, 200, 210, 400, 500, 510, 520, 900, 1000, 1400]
VFR_LAST_MS = 1500  # the encoder gives the last frame a duration up to here


@pytest.fixture(scope="session")
def videos(tmp_path_factory):
    """name -> path of the decoding fixtures (2 s indexed videos at each rate, VFR, 1 s, broken)."""
    root = tmp_path_factory.mktemp("videos")
    out = {}
    for name, rate in RATES.items():
        out[name] = write_video(root / f"rate_{name}.mp4", rate=rate, num_frames=int(round(2 * rate)))
    out["vfr"] = write_video(root / "vfr.mp4", rate=10, num_frames=len(VFR_PTS_MS), pts_ms=VFR_PTS_MS)
    out["one_second"] = write_video(root / "one_second.mp4", rate=30, num_frames=30)
    (root / "empty.mp4").write_bytes(b"")
    out["empty"] = root / "empty.mp4"
    (root / "text.mp4").write_text("this is not a video\n")
    out["text"] = root / "text.mp4"
    whole = write_video(root / "whole.mp4", rate=30, num_frames=60).read_bytes()
    (root / "truncated.mp4").write_bytes(whole[: len(whole) // 2])
    out["truncated"] = root / "truncated.mp4"
    whole = write_video(root / "whole_faststart.mp4", rate=30, num_frames=60, faststart=True).read_bytes()
    (root / "truncated_faststart.mp4").write_bytes(whole[: len(whole) // 2])
    out["truncated_faststart"] = root / "truncated_faststart.mp4"
    return out


def _images(count, offset=0):
    return (frame_image(i + offset) for i in range(count))


# name -> (presentation time in seconds from the first shown frame, frame index shown) of each
# frame of the real-world timestamp fixtures below.
ODD_TIMELINES = {
    # MPEG-4 Part 2 with B-frames in AVI (as in UCF101 / HMDB51): the first PTS is 1, not 0.
    "mpeg4_avi": [(Fraction(i, 30), i) for i in range(60)],
    # A raw H.264 elementary stream: no timestamps at all, 30 fps in the stream header.
    "raw_h264": [(Fraction(i, 30), i) for i in range(60)],
    # Intra-only frames stored out of presentation order (blocks of 3 stored 2, 0, 1).
    "stored_out_of_order": [(Fraction(round(i * 1000 / 30), 1000), i) for i in range(30)],
    # PTS starting at 10^12 ms (31 years): decord would abort the process on it.
    "huge_pts": [(Fraction(round(i * 1000 / 30), 1000), i) for i in range(45)],
    # Negative PTS: MP4 keeps them behind an edit list that hides the frames before 0.
    "edit_list": None,  # measured from the file in the fixture (the muxer decides what it hides)
}


@pytest.fixture(scope="session")
def odd_videos(tmp_path_factory):
    """name -> (path, timeline) of files whose timestamps trip decoders (see ODD_TIMELINES)."""
    root = tmp_path_factory.mktemp("odd_videos")
    h264 = {"crf": "8", "g": "12", "bf": "2"}
    out = {}
    out["mpeg4_avi"] = encoding.write_video(
        root / "mpeg4_bframes.avi", _images(60), rate=30, codec="mpeg4", options={"bf": "2", "g": "12", "qscale": "2"}
    )
    out["raw_h264"] = encoding.write_video(root / "raw.h264", _images(60), rate=30, options=h264)
    order = [j for block in range(0, 30, 3) for j in (block + 2, block, block + 1)]
    out["stored_out_of_order"] = encoding.write_video(
        root / "stored_out_of_order.mkv",
        _images(30),
        rate=30,
        codec="mjpeg",
        pix_fmt="yuvj420p",
        pts=[round(i * 1000 / 30) for i in range(30)],
        time_base=Fraction(1, 1000),
        storage_order=order,
    )
    out["huge_pts"] = encoding.write_video(
        root / "huge_pts.mkv",
        _images(45),
        rate=30,
        pts=[10**12 + round(i * 1000 / 30) for i in range(45)],
        time_base=Fraction(1, 1000),
        options=h264,
    )
    out["edit_list"] = encoding.write_video(
        root / "edit_list.mp4",
        _images(60),
        rate=30,
        pts=[round(i * 1000 / 30) - 1000 for i in range(60)],
        time_base=Fraction(1, 1000),
        options=h264,
    )
    timelines = dict(ODD_TIMELINES)
    timelines["edit_list"] = shown_frames(out["edit_list"])
    return {name: (path, timelines[name]) for name, path in out.items()}


def shown_frames(path):
    """(time from the first shown frame, index) of every frame FFmpeg shows, by a plain decode."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [
            (f.pts, frame_indices(torch.from_numpy(f.to_ndarray(format="rgb24"))[None])[0])
            for f in container.decode(stream)
        ]
        base = stream.time_base
    zero = min(p for p, _ in frames)
    return sorted((Fraction(p - zero) * base, index) for p, index in frames)


CHARADES_COLUMNS = [
    "id",
    "subject",
    "scene",
    "quality",
    "relevance",
    "verified",
    "script",
    "objects",
    "descriptions",
    "actions",
    "length",
]
CHARADES_CLASSES = [
    "Holding some clothes",
    "Putting clothes somewhere",
    "Taking a laptop",
    "Opening a door",
    "Sitting down",
]
# id -> (rate, seconds, actions); BROKEN is a text file named .mp4.
CHARADES_VIDEOS = {
    "AAA01": (Fraction(30), 3, "c001 0.00 1.00;c003 1.50 3.00"),
    "BBB02": (Fraction(25), 2, "c000 0.50 1.20"),
    "CCC03": (Fraction(30000, 1001), 2, ""),
    "BROKE": (None, 0, "c004 0.00 2.00"),
}
CHARADES_SPLITS = {"train": ["AAA01", "BBB02", "BROKE"], "test": ["AAA01", "CCC03", "BROKE"]}


def write_charades(root: Path) -> Path:
    videos = root / "Charades_v1_480"
    videos.mkdir(parents=True)
    (root / "Charades_v1_classes.txt").write_text(
        "".join(f"c{i:03d} {name}\n" for i, name in enumerate(CHARADES_CLASSES))
    )
    for video_id, (rate, seconds, _) in CHARADES_VIDEOS.items():
        if rate is None:
            (videos / f"{video_id}.mp4").write_text("not a video")
        else:
            write_video(videos / f"{video_id}.mp4", rate=rate, num_frames=int(round(seconds * rate)))
    for split, ids in CHARADES_SPLITS.items():
        with open(root / f"Charades_v1_{split}.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(CHARADES_COLUMNS)
            for video_id in ids:
                actions = CHARADES_VIDEOS[video_id][2]
                writer.writerow(
                    [
                        video_id,
                        "S1",
                        "Kitchen",
                        "6",
                        "7",
                        "Yes",
                        "A person walks, then sits.",
                        "chair;door",
                        "The person opens a door, sits down.",
                        actions,
                        "3.00",
                    ]
                )
    return root


@pytest.fixture(scope="session")
def charades_root(tmp_path_factory):
    return write_charades(tmp_path_factory.mktemp("charades"))


SMALL = [
    "DATA.NUM_FRAMES",
    "8",
    "DATA.TRAIN_JITTER_SCALES",
    "[40, 48]",
    "DATA.TRAIN_CROP_SIZE",
    "32",
    "DATA.TEST_CROP_SIZE",
    "32",
    "DATA_LOADER.NUM_WORKERS",
    "0",
    "TRAIN.BATCH_SIZE_PER_DEVICE",
    "2",
    "TEST.BATCH_SIZE_PER_DEVICE",
    "2",
]


@pytest.fixture
def charades_cfg(charades_root):
    from videotl.config import load_config

    def make(*overrides):
        return load_config(
            "",
            SMALL
            + ["DATA.PATH_TO_DATA_DIR", str(charades_root), "MODEL.NUM_CLASSES", str(len(CHARADES_CLASSES))]
            + list(overrides),
        )

    return make


# The default config's DATA.MEAN and DATA.STD.
MEAN, STD = 0.45, 0.225


def _frames(inputs):
    """The uint8 frames a normalised batch was made from (normalisation is exact to invert here)."""
    return ((inputs * STD + MEAN) * 255).round().clamp(0, 255).to(torch.uint8)


def decoded_epochs(loader, seed, epochs=2):
    """Each epoch's batches of a train loader, torch's random state seeded with ``seed`` first."""
    torch.manual_seed(seed)
    out = []
    for epoch in range(epochs):
        loader.sampler.set_epoch(epoch)
        out.append(list(loader))
    return out


def assert_same_batches(expected, actual):
    """Equal batch lists: the same keys in the same order, equal tensors (dtype too) and values."""
    assert len(expected) == len(actual) and len(expected) > 0
    for want, got in zip(expected, actual):
        assert list(want) == list(got)  # same keys, in the same order
        assert torch.equal(_frames(want["inputs"]), _frames(got["inputs"]))
        for key in want:
            if isinstance(want[key], torch.Tensor):
                assert want[key].dtype == got[key].dtype and torch.equal(want[key], got[key]), key
            else:
                assert want[key] == got[key], key


def fail_to_decode(monkeypatch, name):
    """Reading the clips of the video file ``name`` raises, as a file that probes but cannot be decoded."""
    from videotl.data.datasets.base import VideoDataset
    from videotl.data.decoding import VideoDecodeError

    original = VideoDataset._read

    def read(self, path, start, short_side, device="cpu"):
        if path.name == name:
            raise VideoDecodeError(path, "planted decode failure")
        return original(self, path, start, short_side, device=device)

    monkeypatch.setattr(VideoDataset, "_read", read)
