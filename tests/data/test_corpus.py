"""Every backend against FFmpeg's own frame list, on a format corpus the FFmpeg command line made
(tests/data/ffmpeg_corpus.py): the frame on screen at each time, its pixels within a few levels,
the displayed orientation, and what the probe reports."""

import logging
import subprocess
import sys
import textwrap
from fractions import Fraction

import numpy as np
import pytest
import torch

from videotl.data import VideoDecodeError, probe, read_frames_at
from videotl.data.decoding import iter_segments

from . import ffmpeg_corpus as corpus
from .conftest import BACKENDS, TORCHCODEC_SKIP

# The corpus is made once per worker: keep its tests on one.
pytestmark = pytest.mark.xdist_group("ffmpeg_corpus")

# "Within a few levels" of the command line's RGB (0 on this machine's FFmpeg builds).
LEVELS = 3
NAMES = list(corpus.SPECS)
ROTATED = [name for name, spec in corpus.SPECS.items() if spec.turns]
COLOUR = ["h264_cfr", "h264_10bit", "full_range", "bt709", "bt601", "odd_size", "mjpeg", "rotate90"]


@pytest.fixture(scope="session")
def ffmpeg_files(tmp_path_factory):
    exe, reason = corpus.ffmpeg_exe()
    if exe is None:
        pytest.skip(reason)
    return corpus.build(tmp_path_factory.mktemp("ffmpeg_corpus"))


def corpus_file(files, name) -> corpus.CorpusFile:
    reason = corpus.missing_encoder(name)
    if reason:
        pytest.skip(reason)
    return files[name]


def assert_shows(file: corpus.CorpusFile, frames: np.ndarray, times, context=""):
    """``frames`` are the frames FFmpeg shows at ``times``: the same bar codes, the same pixels."""
    positions = file.on_screen(times)
    assert frames.shape[1:] == file.rgb.shape[1:], context
    got = [corpus.read_index(frame, file.spec.turns) for frame in frames]
    assert got == [file.indices[p] for p in positions], context
    difference = int(np.abs(frames.astype(np.int16) - file.rgb[positions]).max())
    assert difference <= LEVELS, f"{context}: pixels {difference} levels off"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", NAMES)
def test_clips_hold_the_frames_ffmpeg_shows(ffmpeg_files, name, backend, caplog):
    # From the start, inside the first GOP, two thirds in (a seek), the last half second (the
    # last frames, times past the end), and past the end (the last frame, repeated).
    file = corpus_file(ffmpeg_files, name)
    end = file.last_time
    with caplog.at_level(logging.WARNING, logger="videotl.data"):
        for start in (Fraction(0), Fraction(37, 100), end * 2 / 3, end - Fraction(1, 2), end + 1):
            times = [start + Fraction(k, 12) for k in range(8)]
            clip = read_frames_at(file.path, [float(t) for t in times], backend=backend).numpy()
            assert_shows(file, clip, times, f"{name} {backend} from {float(start):.3f} s")
    # A backend that cannot read the file exactly says so once and reads it with PyAV.
    assert sum("read with PyAV instead" in record.getMessage() for record in caplog.records) <= 1


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", NAMES)
def test_segments_hold_the_frames_ffmpeg_shows(ffmpeg_files, name, backend):
    file = corpus_file(ffmpeg_files, name)
    segments = list(iter_segments(file.path, num_frames=8, fps=12.0, backend=backend))
    frames = np.concatenate([clip.numpy() for _, clip in segments])
    times = [Fraction(k, 12) for k in range(len(frames))]
    assert times[-8] < file.end <= times[-1] + Fraction(1, 12)  # segments cover the video, no more
    assert_shows(file, frames, times, f"{name} {backend} segments")


@pytest.mark.parametrize("name", NAMES)
def test_probe_counts_frames_and_size_as_ffmpeg_shows_them(ffmpeg_files, name):
    file = corpus_file(ffmpeg_files, name)
    info = probe(file.path)
    assert info.num_frames == len(file.times)
    assert (info.height, info.width) == file.rgb.shape[1:3]  # displayed, after the display matrix
    assert info.rotation == 90 * file.spec.turns
    assert info.frame_time_marks[-1] == pytest.approx(float(file.last_time), abs=1e-4)
    # The last frame lasts a typical frame's duration (FFmpeg takes its packet's, which differs
    # where the rate varies).
    if name != "vfr":
        assert info.duration == pytest.approx(float(file.end), abs=1e-3)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ROTATED)
def test_autorotate_off_keeps_the_stored_orientation(ffmpeg_files, name, backend):
    file = corpus_file(ffmpeg_files, name)
    times = [Fraction(1, 5), Fraction(1)]
    clip = read_frames_at(file.path, [float(t) for t in times], backend=backend, autorotate=False).numpy()
    stored = np.rot90(file.rgb[file.on_screen(times)], -file.spec.turns, axes=(1, 2))
    assert clip.shape == stored.shape == (2, corpus.HEIGHT, corpus.WIDTH, 3)
    assert np.abs(clip.astype(np.int16) - stored).max() <= LEVELS
    assert [corpus.read_index(frame) for frame in clip] == [file.indices[p] for p in file.on_screen(times)]
    # A short side refers to the orientation returned.
    displayed = read_frames_at(file.path, [0.2], backend=backend, size=32)
    kept = read_frames_at(file.path, [0.2], backend=backend, size=32, autorotate=False)
    assert kept.shape[1:3] == (32, 64)
    assert displayed.shape[1:3] == ((64, 32) if file.spec.turns % 2 else (32, 64))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", COLOUR)
def test_resized_frames_keep_ffmpegs_colours(ffmpeg_files, name, backend):
    # Away from edges any resampler keeps a flat patch's colour: there the resized frame must
    # equal the command line's full-size one (the range and matrix tags survive the resize).
    file = corpus_file(ffmpeg_files, name)
    position = file.on_screen([Fraction(1, 2)])[0]
    full = file.rgb[position].astype(np.int16)
    small = read_frames_at(file.path, [0.5], backend=backend, size=32).numpy()[0].astype(np.int16)
    windows = np.lib.stride_tricks.sliding_window_view(full, (13, 13), axis=(0, 1))
    flat = (windows.max(axis=(-2, -1)) == windows.min(axis=(-2, -1))).all(axis=-1)
    scale_y, scale_x = small.shape[0] / full.shape[0], small.shape[1] / full.shape[1]
    compared = 0
    for y, x in zip(*np.nonzero(flat)):
        sy, sx = int((y + 6.5) * scale_y), int((x + 6.5) * scale_x)
        if 0 < sy < small.shape[0] - 1 and 0 < sx < small.shape[1] - 1:
            assert np.abs(small[sy, sx] - full[y + 6, x + 6]).max() <= LEVELS, (name, backend, y + 6, x + 6)
            compared += 1
    assert compared > 100


@pytest.mark.skipif(TORCHCODEC_SKIP is not None, reason=str(TORCHCODEC_SKIP))
def test_decord_then_torchcodec_on_av1_does_not_crash(ffmpeg_files):
    # In a fresh process, as a user's would be: decord first, then torchcodec, on an AV1 file.
    file = corpus_file(ffmpeg_files, "av1")
    code = textwrap.dedent(
        f"""
        from videotl.data import read_frames_at
        for backend in ("decord", "torchcodec"):
            read_frames_at({str(file.path)!r}, [0.0, 0.5], backend=backend)
        print("read")
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "read" in result.stdout, result.stderr[-2000:]


@pytest.fixture(scope="session")
def damaged_files(tmp_path_factory):
    exe, reason = corpus.ffmpeg_exe()
    if exe is None:
        pytest.skip(reason)
    root = tmp_path_factory.mktemp("damaged")
    return {name: corpus.make_damaged(root, name) for name in corpus.DAMAGED}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", list(corpus.DAMAGED))
def test_damaged_files_give_a_decode_error_or_the_frames_ffmpeg_shows(damaged_files, name, backend):
    path = damaged_files[name]
    times = [Fraction(k, 6) for k in range(12)]
    if name == "unknown_codec":
        with pytest.raises(VideoDecodeError, match="no decoder") as info:
            read_frames_at(path, [float(t) for t in times], backend=backend)
        assert info.value.path == str(path)
        return
    clip = read_frames_at(path, [float(t) for t in times], backend=backend).numpy()
    segments = np.concatenate([c.numpy() for _, c in iter_segments(path, num_frames=8, fps=12.0, backend=backend)])
    # The command line shows each frame at its own size; here every frame comes at the video's.
    file = corpus.CorpusFile(path, corpus.Spec(path.suffix, "", name), *corpus.truth(path, scale=True))
    for frames, at in ((clip, times), (segments, [Fraction(k, 12) for k in range(len(segments))])):
        assert frames.shape[1:] == (corpus.HEIGHT, corpus.WIDTH, 3)
        assert [corpus.read_index(frame) for frame in frames] == [file.indices[p] for p in file.on_screen(at)]


def test_data_autorotate_reaches_the_dataset(ffmpeg_files):
    from videotl.config import load_config
    from videotl.data import read_clip
    from videotl.data.build import dataset_from_records
    from videotl.data.datasets.base import VideoRecord

    file = corpus_file(ffmpeg_files, "rotate90")
    inputs = {}
    for autorotate in (True, False):
        cfg = load_config(
            "",
            ["DATA.AUTOROTATE", str(autorotate), "DATA.NUM_FRAMES", "4", "DATA.TEST_CROP_SIZE", "32"]
            + ["DATA_LOADER.NUM_WORKERS", "0", "MODEL.NUM_CLASSES", "1", "DATA.PROBE_CACHE", "False"],
        )
        dataset = dataset_from_records(cfg, [VideoRecord("r", file.path, (0,))], ["a"], mode="views")
        plan = dataset.clip_plan(0)
        clip = read_clip(file.path, plan.start_sec, 4, cfg.DATA.TARGET_FPS, size=32, autorotate=autorotate)
        inputs[autorotate] = dataset[0]["inputs"]
        assert torch.equal(inputs[autorotate], dataset.strategy.transform(clip, crop_index=plan.crop_index))
    assert not torch.equal(inputs[True], inputs[False])
