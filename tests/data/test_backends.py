"""Decoding backends through the registry: a user's own reader (the DATASETS.md example) chosen by
the config and trained with, and the fallback to PyAV decided for made-up backends."""

import re
from pathlib import Path

import av
import pytest
import torch
from PIL import Image
from torch import nn

from videotl import engine
from videotl.config import ConfigError
from videotl.data import build_dataset, iter_segments, read_clip
from videotl.data.decoding import BACKENDS, BackendReader, CannotReadExactly, DecodingBackend, PyAVBackend

from .conftest import frame_indices, registered_backend, write_charades

DATASETS_MD = Path(__file__).resolve().parents[2] / "datasets" / "DATASETS.md"


def _frame_folder_example() -> str:
    """The Python block of DATASETS.md's "Your own reader"."""
    section = DATASETS_MD.read_text().split("### Your own reader", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def _extract_frames(video: Path) -> None:
    """What ``ffmpeg -i video -fps_mode passthrough video.frames/%06d.png`` writes."""
    folder = Path(f"{video}.frames")
    folder.mkdir(exist_ok=True)
    with av.open(str(video)) as container:
        for index, frame in enumerate(container.decode(video=0), start=1):
            Image.fromarray(frame.to_ndarray(format="rgb24")).save(folder / f"{index:06d}.png")


@pytest.fixture
def frame_folder(tmp_path):
    """The example's backend registered as ``frame_folder``; a Charades root whose readable videos
    have their frames extracted."""
    root = write_charades(tmp_path / "charades")
    for name in ("AAA01", "CCC03"):
        _extract_frames(root / "Charades_v1_480" / f"{name}.mp4")
    exec(compile(_frame_folder_example(), str(DATASETS_MD), "exec"), {})
    try:
        yield root
    finally:
        BACKENDS.unregister("frame_folder")


def _linear_model(cfg):
    frames, size = cfg.DATA.NUM_FRAMES, cfg.DATA.TRAIN_CROP_SIZE
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * frames * size * size, cfg.MODEL.NUM_CLASSES))


def test_a_registered_backend_is_chosen_by_the_config_and_trains_a_step(
    frame_folder, charades_cfg, tmp_path, monkeypatch, caplog
):
    backend, opened = BACKENDS.get("frame_folder"), []
    real_open = backend.open
    monkeypatch.setattr(backend, "open", lambda path, *a, **k: opened.append(path) or real_open(path, *a, **k))
    video = frame_folder / "Charades_v1_480" / "AAA01.mp4"
    clip = read_clip(video, 0.5, num_frames=6, fps=12.0, backend="frame_folder", size=32)
    assert frame_indices(clip) == frame_indices(read_clip(video, 0.5, num_frames=6, fps=12.0, backend="pyav", size=32))
    cfg = charades_cfg(
        "DATA.PATH_TO_DATA_DIR", str(frame_folder), "DATA.DECODING_BACKEND", "frame_folder",
        "OUTPUT_DIR", str(tmp_path / "run"), "SOLVER.MAX_ITER", "1", "TRAIN.EVAL_PERIOD", "0",
        "TENSORBOARD.ENABLE", "False",
    )  # fmt: skip
    assert build_dataset(cfg, "train", "train").reader.backend == "frame_folder"
    opened.clear()
    with caplog.at_level("WARNING", logger="videotl.data"):
        summary = engine.train(cfg, build_model_fn=_linear_model)
    # One step of a batch of 2 clips, each read by the frame folder reader (none handed to PyAV).
    assert summary["iterations"] == 1 and len(opened) >= 2
    assert not [r for r in caplog.records if "read with PyAV instead" in r.getMessage()]


def test_an_unknown_backend_names_the_registered_ones(charades_cfg, videos):
    with pytest.raises(ValueError, match=r"backend = 'framefolder': must be one of \('decord', 'pyav', 'torchcodec'\)"):
        read_clip(videos["30"], 0.0, num_frames=2, backend="framefolder")
    with pytest.raises(ConfigError, match=r"DATA.DECODING_BACKEND = 'framefolder': must be one of 'decord', 'pyav'"):
        charades_cfg("DATA.DECODING_BACKEND", "framefolder")


class _Refusing(DecodingBackend):
    """A backend that cannot read any file exactly: every read is PyAV's."""

    def cannot_read_exactly(self, info):
        return "it reads nothing exactly"

    def open(self, path, info, **options):
        raise AssertionError("a backend that cannot read the file must not be opened")


class _FailingAfter(DecodingBackend):
    """PyAV's reader, whose frame index turns out wrong after ``budget`` segments."""

    def __init__(self, budget):
        self.budget = budget

    def open(self, path, info, **options):
        return _ReaderFailingAfter(PyAVBackend().open(path, info, **options), self.budget)


class _ReaderFailingAfter(BackendReader):
    def __init__(self, reader, budget):
        self.reader, self.budget = reader, budget

    def frames_at(self, sorted_times, out_hw):
        return self.reader.frames_at(sorted_times, out_hw)

    def segments(self, times, out_hw, frames_per_segment):
        for served, segment in enumerate(self.reader.segments(times, out_hw, frames_per_segment)):
            if served == self.budget:
                raise CannotReadExactly("its index is off from here")
            yield segment


def test_a_backend_that_cannot_read_a_file_exactly_hands_it_to_pyav_once(videos, caplog):
    with registered_backend("refusing", _Refusing()), caplog.at_level("WARNING", logger="videotl.data"):
        first = read_clip(videos["25"], 0.3, num_frames=5, fps=12.0, backend="refusing")
        read_clip(videos["25"], 0.9, num_frames=5, fps=12.0, backend="refusing")
        segments = [clip for _, clip in iter_segments(videos["25"], num_frames=8, fps=12.0, backend="refusing")]
    assert torch.equal(first, read_clip(videos["25"], 0.3, num_frames=5, fps=12.0, backend="pyav"))
    assert [frame_indices(c) for c in segments] == [
        frame_indices(c) for _, c in iter_segments(videos["25"], num_frames=8, fps=12.0, backend="pyav")
    ]
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1 and "refusing cannot read" in messages[0] and "(it reads nothing exactly)" in messages[0]


def test_segments_after_a_backend_fails_midway_come_from_pyav(videos, caplog):
    expected = [frame_indices(c) for _, c in iter_segments(videos["30"], num_frames=4, fps=12.0, backend="pyav")]
    with registered_backend("failing_after_two", _FailingAfter(2)), caplog.at_level("WARNING", logger="videotl.data"):
        got = [
            frame_indices(c)
            for _, c in iter_segments(videos["30"], num_frames=4, fps=12.0, backend="failing_after_two")
        ]
    assert got == expected and len(got) == 6
    assert sum("its index is off from here" in r.getMessage() for r in caplog.records) == 1
