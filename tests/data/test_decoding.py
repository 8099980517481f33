import math
from fractions import Fraction

import decord
import numpy as np
import pytest
import torch

from videotl.data import VideoDecodeError, probe, read_clip, read_frames_at, read_segments
from videotl.data.decoding import iter_segments
from videotl.data.sampling import segment_count

from .conftest import (
    BACKENDS,
    ODD_TIMELINES,
    RATES,
    TORCHCODEC_SKIP,
    VFR_LAST_MS,
    VFR_PTS_MS,
    FailingGpuDecoders,
    frame_indices,
    registered_backend,
)

# The backends as plain names (for loops inside one test).
BACKEND_NAMES = ["decord", "pyav"] + (["torchcodec"] if TORCHCODEC_SKIP is None else [])


def on_screen(times, pts_sec, count):
    """Hand rule: the last frame shown at or before t (exact rationals, no float noise)."""
    out = []
    for t in times:
        shown = [i for i, p in enumerate(pts_sec) if p <= t]
        out.append(min(shown[-1] if shown else 0, count - 1))
    return out


def rate_pts(rate, count):
    return [Fraction(i) / rate for i in range(count)]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", list(RATES))
def test_clip_holds_the_frames_on_screen_at_each_time(videos, name, backend):
    rate = RATES[name]
    count = int(round(2 * rate))
    start = Fraction(37, 100)
    times = [start + Fraction(k, 12) for k in range(12)]
    clip = read_clip(videos[name], float(start), num_frames=12, fps=12.0, backend=backend)
    assert clip.dtype == torch.uint8 and clip.shape == (12, 48, 64, 3)
    assert frame_indices(clip) == on_screen(times, rate_pts(rate, count), count)


@pytest.mark.parametrize("backend", BACKENDS)
def test_exact_timestamps_land_on_their_frame(videos, backend):
    # At 30 fps, every second 12 fps sample (k / 12 = 2.5 k / 30) coincides with a frame's PTS.
    clip = read_clip(videos["30"], 0.0, num_frames=24, fps=12.0, backend=backend)
    assert frame_indices(clip) == [math.floor(2.5 * k) for k in range(24)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_slow_source_repeats_frames_and_end_repeats_last(videos, backend):
    # 8 fps source sampled at 12 fps: frame i is on screen for 1.5 samples.
    clip = read_clip(videos["8"], 1.5, num_frames=12, fps=12.0, backend=backend)
    expected = [min(math.floor((Fraction(3, 2) + Fraction(k, 12)) * 8), 15) for k in range(12)]
    assert frame_indices(clip) == expected
    assert expected[:3] == [12, 12, 13] and expected[-1] == 15  # repeats, and past the end: last frame


@pytest.mark.parametrize("backend", BACKENDS)
def test_variable_frame_rate_uses_container_timestamps(videos, backend):
    pts = [Fraction(ms, 1000) for ms in VFR_PTS_MS]
    times = [Fraction(k, 12) for k in range(20)]
    clip = read_clip(videos["vfr"], 0.0, num_frames=20, fps=12.0, backend=backend)
    assert frame_indices(clip) == on_screen(times, pts, len(pts))


@pytest.mark.parametrize("name", list(RATES) + ["vfr", "one_second"])
def test_backends_agree_frame_for_frame(videos, name):
    for start in (0.0, 0.61):
        clips = [read_clip(videos[name], start, num_frames=16, fps=12.0, backend=b) for b in BACKEND_NAMES]
        for clip in clips[1:]:
            assert frame_indices(clip) == frame_indices(clips[0])
            assert torch.equal(clip, clips[0])


@pytest.mark.parametrize("backend", BACKENDS)
def test_size_is_short_side_or_exact(videos, backend):
    clip = read_clip(videos["30"], 0.2, num_frames=6, fps=12.0, backend=backend, size=24)
    assert clip.shape == (6, 24, 32, 3)
    assert frame_indices(clip) == [math.floor((Fraction(1, 5) + Fraction(k, 12)) * 30) for k in range(6)]
    clip = read_clip(videos["30"], 0.2, num_frames=6, fps=12.0, backend=backend, size=(40, 40))
    assert clip.shape == (6, 40, 40, 3)


def test_probe_counts_frames_from_packets(videos):
    for name, rate in RATES.items():
        info = probe(videos[name])
        count = int(round(2 * rate))
        assert info.num_frames == count
        assert info.duration == pytest.approx(count / rate, abs=1e-3)
        assert info.fps == pytest.approx(float(rate), rel=1e-3)
        assert (info.width, info.height) == (64, 48)
        assert info.header_frames == count
    info = probe(videos["vfr"])
    assert info.num_frames == len(VFR_PTS_MS)
    assert info.duration == pytest.approx(VFR_LAST_MS / 1000, abs=0.101)
    assert probe(videos["one_second"]).duration == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize("backend", BACKENDS)
def test_segments_cover_the_video_and_pad_with_the_last_frame(videos, backend):
    # 1 s at 30 fps, 8-frame segments at 12 fps: 12 target times -> 2 segments, the second
    # holding 4 real samples and 4 repeats of the last frame (29).
    segments = read_segments(videos["one_second"], num_frames=8, fps=12.0, backend=backend)
    assert [start for start, _ in segments] == pytest.approx([0.0, 8 / 12])
    assert frame_indices(segments[0][1]) == [math.floor(2.5 * k) for k in range(8)]
    assert frame_indices(segments[1][1]) == [20, 22, 25, 27, 29, 29, 29, 29]


@pytest.mark.parametrize("backend", BACKENDS)
def test_segments_equal_clips_read_one_by_one(videos, backend):
    path = videos["29.97"]
    segments = read_segments(path, num_frames=8, fps=12.0, backend=backend)
    # 60 frames at 29.97 fps last 2.002 s: 25 target times at 12 fps (the 25th at 2.0 s) -> 4 segments.
    assert len(segments) == segment_count(probe(path).duration, num_frames=8, fps=12.0) == 4
    for start, clip in segments:
        assert torch.equal(clip, read_clip(path, start, num_frames=8, fps=12.0, backend=backend))


def test_times_in_any_order_and_repeated(videos):
    times = [1.0, 0.0, 1.0, 0.5]
    for backend in BACKEND_NAMES:
        frames = read_frames_at(videos["25"], times, backend=backend)
        assert frame_indices(frames) == [25, 0, 25, 12]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ["empty", "text", "truncated"])
def test_unreadable_files_raise_decode_error_with_path_and_reason(videos, name, backend):
    with pytest.raises(VideoDecodeError) as info:
        read_clip(videos[name], 0.0, num_frames=4, backend=backend)
    assert info.value.path == str(videos[name]) and info.value.reason
    with pytest.raises(VideoDecodeError):
        probe(videos[name])


@pytest.mark.parametrize("backend", BACKENDS)
def test_truncated_faststart_file_is_a_decode_error_or_its_readable_frames(videos, backend):
    # The index promises 60 frames that are not all there: either refuse or return true frames.
    try:
        clip = read_clip(videos["truncated_faststart"], 0.0, num_frames=6, fps=12.0, backend=backend)
    except VideoDecodeError:
        return
    assert frame_indices(clip) == [math.floor(2.5 * k) for k in range(6)]


def test_missing_file_and_folder(tmp_path):
    for path in (tmp_path / "nope.mp4", tmp_path):
        for backend in BACKEND_NAMES:
            with pytest.raises(VideoDecodeError, match=str(path)):
                read_clip(path, 0.0, num_frames=2, backend=backend)


def test_decord_bridge_is_left_alone(videos):
    read_clip(videos["30"], 0.0, num_frames=2, backend="decord")
    reader = decord.VideoReader(str(videos["30"]))
    assert isinstance(reader[0].asnumpy(), np.ndarray)  # still the native bridge
    # And a bridge someone else set globally does not break the reader.
    decord.bridge.set_bridge("torch")
    try:
        clip = read_clip(videos["30"], 0.0, num_frames=3, fps=30.0, backend="decord")
    finally:
        decord.bridge.reset_bridge()
    assert frame_indices(clip) == [0, 1, 2]


def test_decode_error_survives_pickling():
    import pickle

    error = pickle.loads(pickle.dumps(VideoDecodeError("a.mp4", "broken")))
    assert (error.path, error.reason, str(error)) == ("a.mp4", "broken", "a.mp4: broken")


class _CountingContext:
    """Stands in for a codec context: counts the packets sent and the frames that come out."""

    def __init__(self, context, log):
        object.__setattr__(self, "_context", context)
        object.__setattr__(self, "_log", log)

    def __getattr__(self, name):
        return getattr(self._context, name)

    def __setattr__(self, name, value):
        setattr(self._context, name, value)

    def decode(self, packet=None):
        frames = self._context.decode(packet)
        if packet is not None:
            self._log["sent"].append((packet.pts, self._context.skip_frame))
        self._log["decoded"].extend(f.pts for f in frames)
        return frames


class _CountingStream:
    def __init__(self, stream, log):
        self._stream, self.codec_context = stream, _CountingContext(stream.codec_context, log)

    def __getattr__(self, name):
        return getattr(self._stream, name)


class _CountingContainer:
    def __init__(self, container):
        self._container = container

    def __getattr__(self, name):
        return getattr(self._container, name)

    def demux(self, stream):
        return self._container.demux(stream._stream)

    def seek(self, *args, stream=None, **kwargs):
        return self._container.seek(*args, stream=stream._stream, **kwargs)


@pytest.fixture
def pyav_log():
    from videotl.data.decoding import PyAVBackend
    from videotl.data.decoding.container import open_video

    log = {"sent": [], "decoded": []}

    def counting_open(path):
        container, stream = open_video(path)
        return _CountingContainer(container), _CountingStream(stream, log)

    with registered_backend("pyav", PyAVBackend(open_container=counting_open)):
        yield log


def test_pyav_decodes_from_the_preceding_keyframe_only(videos, pyav_log):
    # Frames 45..52 of a 60-frame file with a keyframe at least every 12 frames.
    clip = read_clip(videos["30"], 1.5, num_frames=4, fps=12.0, backend="pyav")
    assert frame_indices(clip) == [45, 47, 50, 52]
    first_sent = min(pts for pts, _ in pyav_log["sent"]) / 15360  # mp4 time base of a 30 fps file: 1/15360
    assert 33 / 30 <= first_sent + 1e-9 <= 45 / 30  # from the keyframe at or before frame 45, within one GOP
    assert max(pyav_log["decoded"]) / 15360 < 53 / 30 + 3 / 30  # stops within the reordering after frame 52


def test_pyav_skips_non_reference_frames_no_time_shows(videos, pyav_log):
    # 12 fps from 30 fps: frames 0, 2, 5, 7, 10, ... are shown; with B-frames, most of the rest are
    # non-reference frames the decoder need not decode at all.
    clip = read_clip(videos["30"], 0.0, num_frames=24, fps=12.0, backend="pyav")
    wanted = [math.floor(2.5 * k) for k in range(24)]
    assert frame_indices(clip) == wanted
    tick = Fraction(1, 15360)
    decoded = {round(pts * tick * 30) for pts in pyav_log["decoded"]}
    assert set(wanted) <= decoded
    skipped = set(range(max(wanted) + 1)) - decoded
    # The skipped frames were sent as skippable and show no wanted time.
    sent_skippable = {round(pts * tick * 30) for pts, mode in pyav_log["sent"] if mode == "NONREF"}
    assert skipped and skipped <= sent_skippable and not skipped & set(wanted)


def test_decord_frames_listed_past_the_decodable_end_are_dropped(videos, monkeypatch):
    # decord can list more frames than decode (its issue #373): simulate one phantom last frame.
    real_reader = decord.VideoReader

    class OverReporting:
        def __init__(self, *args, **kwargs):
            self._reader = real_reader(*args, **kwargs)
            self._count = len(self._reader)

        def __len__(self):
            return self._count + 1

        def get_frame_timestamp(self, indices):
            indices = np.asarray(indices)
            stamps = self._reader.get_frame_timestamp(np.minimum(indices, self._count - 1))
            return stamps + (indices >= self._count)[:, None] / 30.0

        def get_batch(self, indices):
            if max(indices) >= self._count:
                raise decord.DECORDError("cannot decode the phantom frame")
            return self._reader.get_batch(indices)

    monkeypatch.setattr(decord, "VideoReader", OverReporting)
    clip = read_clip(videos["30"], 1.8, num_frames=6, fps=12.0, backend="decord")
    assert frame_indices(clip) == [54, 56, 59, 59, 59, 59]


def test_decord_falls_back_to_pyav_where_decord_fails(tmp_path, caplog):
    # decord 3.4 fails on every frame of a 96-pixel-wide H.264 file; PyAV reads it.
    from videotl.data.decoding import BACKENDS

    from .conftest import write_video

    path = write_video(tmp_path / "w96.mp4", rate=30, num_frames=30, width=96, height=72)
    try:
        BACKENDS.get("decord").open(str(path), probe(path), num_threads=0).frames_at(np.array([0.1]), None)
        decord_fails = False
    except VideoDecodeError:
        decord_fails = True
    with caplog.at_level("WARNING", logger="videotl.data"):
        a = read_clip(path, 0.1, num_frames=6, fps=12.0, backend="decord")
        read_clip(path, 0.2, num_frames=6, fps=12.0, backend="decord")
    b = read_clip(path, 0.1, num_frames=6, fps=12.0, backend="pyav")
    assert torch.equal(a, b)
    assert frame_indices(a) == [math.floor((Fraction(1, 10) + Fraction(k, 12)) * 30) for k in range(6)]
    assert sum("read with PyAV instead" in r.getMessage() for r in caplog.records) == int(decord_fails)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_file_no_backend_reads_is_named_with_the_reason(videos, backend):
    with pytest.raises(VideoDecodeError, match=r"cannot open as a video container") as info:
        read_clip(videos["text"], 0.0, num_frames=4, fps=12.0, backend=backend)
    assert info.value.path == str(videos["text"])


def _expected_at(timeline, times):
    """Hand rule over a fixture's timeline: the frame shown last at or before each time."""
    out = []
    for t in times:
        shown = [index for time, index in timeline if time <= t]
        out.append(shown[-1] if shown else timeline[0][1])
    return out


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", list(ODD_TIMELINES))
def test_real_world_timestamps_give_the_frames_on_screen(odd_videos, name, backend):
    path, timeline = odd_videos[name]
    duration = float(timeline[-1][0])
    for start in (Fraction(0), Fraction(37, 100), Fraction(duration).limit_denominator(1000) - Fraction(1, 2)):
        times = [start + Fraction(k, 12) for k in range(10)]
        clip = read_frames_at(path, [float(t) for t in times], backend=backend)
        assert frame_indices(clip) == _expected_at(timeline, times), (name, backend, float(start))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", list(ODD_TIMELINES))
def test_real_world_timestamps_in_segments(odd_videos, name, backend):
    path, timeline = odd_videos[name]
    segments = list(iter_segments(path, num_frames=8, fps=12.0, backend=backend))
    times = [Fraction(k, 12) for k in range(8 * len(segments))]
    got = [i for _, clip in segments for i in frame_indices(clip)]
    assert got == _expected_at(timeline, times)


def test_probe_sees_odd_timestamps(odd_videos):
    from videotl.data.decoding import decoder_notes

    info = probe(odd_videos["raw_h264"][0])
    assert not info.has_timestamps and info.num_frames == 60 and info.duration == pytest.approx(2.0)
    assert any("no presentation timestamps" in note for note in decoder_notes(odd_videos["raw_h264"][0]))
    info = probe(odd_videos["mpeg4_avi"][0])
    assert info.start_pts == 1 and info.num_frames == 60  # the first frame is at 1/30 s
    assert any("decord" in note for note in decoder_notes(odd_videos["mpeg4_avi"][0]))
    info = probe(odd_videos["stored_out_of_order"][0])
    assert info.stored_out_of_order == 20 and not info.decoder_reorders  # two of each block of three
    edit_list = odd_videos["edit_list"]
    assert probe(edit_list[0]).num_frames == len(edit_list[1]) and probe(edit_list[0]).hidden_frames > 0
    assert any("beyond decord" in note for note in decoder_notes(odd_videos["huge_pts"][0]))
    assert any("edit list hides" in note for note in decoder_notes(edit_list[0]))
    assert any("stored out of presentation order" in n for n in decoder_notes(odd_videos["stored_out_of_order"][0]))


@pytest.mark.parametrize("backend", BACKENDS)
def test_iter_segments_is_lazy_and_equals_read_segments(videos, backend):
    path = videos["29.97"]
    stream = iter_segments(path, num_frames=8, fps=12.0, backend=backend)
    start, first = next(stream)
    assert start == 0.0 and first.shape == (8, 48, 64, 3)
    rest = list(stream)
    listed = read_segments(path, num_frames=8, fps=12.0, backend=backend)
    assert [s for s, _ in listed] == [0.0] + [s for s, _ in rest]
    for (_, a), (_, b) in zip(listed, [(start, first)] + rest):
        assert torch.equal(a, b)


def test_torchcodec_without_ffmpeg_fails_in_one_line(videos, monkeypatch):
    import torchcodec._internally_replaced_utils as loader

    import videotl.data.decoding as decoding

    def missing():
        raise RuntimeError("Could not load libtorchcodec. Likely causes: ...")

    monkeypatch.setattr(loader, "load_core_libraries", missing)
    decoding.torchcodec_unavailable_reason.cache_clear()
    try:
        reason = decoding.torchcodec_unavailable_reason()
        assert "apt-get install ffmpeg" in reason and "decord and PyAV backends work without them" in reason
        assert "\n" not in reason
        with pytest.raises(VideoDecodeError, match="FFmpeg's shared libraries") as info:
            decoding.BACKENDS.get("torchcodec").open(str(videos["30"]), probe(videos["30"]), num_threads=1)
        assert info.value.path == str(videos["30"])
    finally:
        decoding.torchcodec_unavailable_reason.cache_clear()


@pytest.mark.skipif(TORCHCODEC_SKIP is not None, reason=str(TORCHCODEC_SKIP))
def test_torchcodec_cuda_request_falls_back_to_the_cpu(videos, caplog):
    if torch.cuda.is_available():
        pytest.skip("CUDA is here: the GPU test covers it")
    with caplog.at_level("WARNING", logger="videotl.data"):
        clip = read_clip(videos["30"], 0.0, num_frames=4, fps=12.0, backend="torchcodec", device="cuda")
    assert clip.device.type == "cpu" and frame_indices(clip) == [0, 2, 5, 7]
    assert any("CUDA is not available" in r.getMessage() for r in caplog.records)


@pytest.mark.skipif(TORCHCODEC_SKIP is not None, reason=str(TORCHCODEC_SKIP))
@pytest.mark.parametrize("reader", ["clip", "segments"])
def test_a_gpu_decoding_failure_reads_on_the_cpu_and_stays_there(videos, monkeypatch, caplog, reader):
    import torchcodec.decoders

    from videotl.data.decoding import DecodingBackend, TorchcodecBackend

    decoders = FailingGpuDecoders()
    monkeypatch.setattr(torchcodec.decoders, "VideoDecoder", decoders)
    # As on a machine with CUDA: the device asked for is the device used.
    gpu_torchcodec = TorchcodecBackend(cuda_available=lambda: True)
    cpu_only = gpu_torchcodec.cpu_only_devices

    class NoPyAV(DecodingBackend):
        def open(self, path, info, **options):
            raise VideoDecodeError(path, "PyAV must not be needed: torchcodec reads this file on the CPU")

    # Were the file handed to PyAV (or called broken), the read would fail.
    on_gpu, no_pyav = registered_backend("torchcodec", gpu_torchcodec), registered_backend("pyav", NoPyAV())
    with on_gpu, no_pyav, caplog.at_level("WARNING", logger="videotl.data"):
        if reader == "clip":
            clip = read_clip(videos["30"], 0.0, num_frames=4, fps=12.0, backend="torchcodec", device="cuda")
            assert frame_indices(clip) == [0, 2, 5, 7]
        else:
            segments = read_segments(videos["30"], num_frames=8, fps=12.0, backend="torchcodec", device="cuda")
            # 2 s at 30 fps: 24 times k / 12, each showing frame floor(2.5 k).
            assert [frame_indices(c) for _, c in segments] == [
                [5 * k // 2 for k in range(s, s + 8)] for s in (0, 8, 16)
            ]
        # The next video goes straight to the CPU.
        other = read_clip(videos["25"], 0.0, num_frames=3, fps=12.0, backend="torchcodec", device="cuda")
    assert frame_indices(other) == [0, 2, 4]
    assert decoders.devices == ["cuda", "cpu", "cpu"] and cpu_only == {"cuda"}
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1 and "cannot decode on cuda (CUDA error: an illegal memory access" in messages[0]
    assert "decoding on the CPU from now on" in messages[0]


def test_decode_time_limit_gives_a_decode_error(videos, monkeypatch):
    import threading
    import time

    from videotl.data.decoding import call_with_timeout

    release = threading.Event()
    started = time.monotonic()
    with pytest.raises(VideoDecodeError, match=r"took longer than 0.3 s") as info:
        call_with_timeout(lambda: release.wait(30), seconds=0.3, path=videos["30"])
    assert info.value.path == str(videos["30"]) and time.monotonic() - started < 5
    release.set()
    # The next call gets a fresh thread and works; errors inside pass through unchanged.
    assert call_with_timeout(lambda: 7, seconds=5, path="x") == 7
    with pytest.raises(ZeroDivisionError):
        call_with_timeout(lambda: 1 / 0, seconds=5, path="x")


def test_frames_stored_far_from_their_presentation_order_fail_loudly(tmp_path):
    from fractions import Fraction

    from videotl.data import encoding

    from .conftest import frame_image

    # Frame 0 stored 45th: beyond any decoder's reordering, so the streaming reader cannot place it.
    order = list(range(1, 46)) + [0] + list(range(46, 60))
    path = encoding.write_video(
        tmp_path / "far.mkv",
        (frame_image(i) for i in range(60)),
        rate=30,
        codec="mjpeg",
        pix_fmt="yuvj420p",
        pts=[round(i * 1000 / 30) for i in range(60)],
        time_base=Fraction(1, 1000),
        storage_order=order,
    )
    with pytest.raises(VideoDecodeError, match="stored more than 33 packets away from their presentation order"):
        read_clip(path, 0.0, num_frames=12, fps=12.0, backend="pyav")


def test_decord_frames_are_not_copied_out_of_decords_batch(videos, monkeypatch):
    # decord's batch reaches torch through DLPack; asnumpy would copy every frame once more.
    copy = decord.nd.NDArray.asnumpy

    def refuse_frames(self):
        if len(self.shape) == 4:  # a batch of frames (decord reads its timestamps with asnumpy too)
            raise AssertionError("asnumpy copied the batch")
        return copy(self)

    monkeypatch.setattr(decord.nd.NDArray, "asnumpy", refuse_frames)
    times = [0.0, 0.5, 0.51, 1.2]
    clip = read_frames_at(videos["30"], times, backend="decord")
    assert frame_indices(clip) == [0, 15, 15, 36]  # floor(30 * t): the frame on screen


class _ThreadsAsked(torch.utils.data.Dataset):
    """Reads one frame with num_threads=0 and returns the thread count decord's reader got."""

    def __init__(self, path):
        self.path = path

    def __len__(self):
        return 1

    def __getitem__(self, index):
        from videotl.data.decoding import decord_backend

        asked = []
        original = decord_backend.DecordBackend.open

        def spy(backend, path, info, **options):
            asked.append(options["num_threads"])
            return original(backend, path, info, **options)

        decord_backend.DecordBackend.open = spy
        try:
            read_frames_at(self.path, [0.2], backend="decord", num_threads=0)
        finally:
            decord_backend.DecordBackend.open = original
        return torch.tensor(asked)


def test_a_dataloader_worker_decodes_on_one_thread(videos):
    dataset = _ThreadsAsked(videos["30"])
    assert dataset[0].tolist() == [0]  # the main process leaves the choice to the decoder
    (in_worker,) = torch.utils.data.DataLoader(dataset, num_workers=1)
    assert in_worker.tolist() == [[1]]


def test_a_read_that_names_no_backend_decodes_with_pyav(videos, monkeypatch):
    # PyAV is the default: the fastest exact reader (docs/benchmarks.md); decord is not opened.
    from videotl.data.decoding import decord_backend, pyav_backend

    opened = []
    for module, cls in ((decord_backend, "DecordBackend"), (pyav_backend, "PyAVBackend")):
        original = getattr(module, cls).open

        def spy(backend, *args, _original=original, _name=cls, **kwargs):
            opened.append(_name)
            return _original(backend, *args, **kwargs)

        monkeypatch.setattr(getattr(module, cls), "open", spy)
    clip = read_clip(videos["30"], 0.5, num_frames=3, fps=30.0)
    assert frame_indices(clip) == [15, 16, 17] and opened == ["PyAVBackend"]
    frames = [clip for _, clip in iter_segments(videos["30"], num_frames=30, fps=30.0)]
    assert len(frames) == 2 and opened == ["PyAVBackend"] * 2


def test_torchcodec_prepare_loads_its_libraries(monkeypatch):
    # prepare() loads them before a read (or a benchmark's clock) starts, never during it.
    import torchcodec._internally_replaced_utils as loader

    import videotl.data.decoding as decoding

    loaded = []
    monkeypatch.setattr(loader, "load_core_libraries", lambda: loaded.append(True))
    decoding.torchcodec_unavailable_reason.cache_clear()
    try:
        decoding.BACKENDS.get("torchcodec").prepare()
        decoding.BACKENDS.get("torchcodec").prepare()
    finally:
        decoding.torchcodec_unavailable_reason.cache_clear()
    assert loaded == [True]  # once, and remembered
