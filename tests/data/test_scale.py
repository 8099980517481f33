"""Long videos and large datasets: streaming segments, decode time limits, the probe manifest."""

import json
import os
import threading
import time

import pytest
import torch

from videotl.data import build_dataset, build_loader, clip_reader, decoding, manifest
from videotl.data.decoding import DecodingBackend, PyAVBackend, probing

from .conftest import frame_indices, registered_backend
from .test_datasets import expected, indices_of


def test_segments_stream_one_decode_per_video_across_workers(charades_cfg, tmp_path, monkeypatch):
    log = tmp_path / "opened.log"
    real = clip_reader.iter_segments

    def logged(path, *args, **kwargs):
        # O_APPEND writes from the forked workers land whole.
        with open(log, "a") as handle:
            handle.write(f"{os.getpid()} {path} {kwargs.get('start_segment', 0)}\n")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(clip_reader, "iter_segments", logged)
    cfg = charades_cfg("DATA_LOADER.NUM_WORKERS", "2", "TEST.BATCH_SIZE_PER_DEVICE", "3")
    pairs = []
    for batch in build_loader(cfg, "test", "segments"):
        pairs += list(zip(batch["video_index"].tolist(), batch["view_index"].tolist()))
    assert sorted(pairs) == [(0, i) for i in range(5)] + [(1, i) for i in range(4)] + [(2, 0)]
    opened = [line.split() for line in log.read_text().splitlines()]
    # Each readable video opened once, from its first segment, by one worker process.
    assert sorted(path.rsplit("/", 1)[1] for _, path, _ in opened) == ["AAA01.mp4", "CCC03.mp4"]
    assert {start for _, _, start in opened} == {"0"} and os.getpid() not in {int(pid) for pid, _, _ in opened}


def test_segments_getitem_in_order_continues_one_stream(charades_cfg, monkeypatch):
    dataset = build_dataset(charades_cfg(), "test", "segments")
    starts = []
    real = clip_reader.iter_segments

    def logged(path, *args, **kwargs):
        starts.append((os.path.basename(path), kwargs.get("start_segment", 0)))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(clip_reader, "iter_segments", logged)
    for index in range(5):
        sample = dataset[index]
        assert indices_of(sample["inputs"]) == expected(sample["start_sec"], 30, 90)
    sample = dataset[2]  # out of order: a new stream from segment 2
    assert indices_of(sample["inputs"]) == expected(16 / 12, 30, 90)
    assert starts == [("AAA01.mp4", 0), ("AAA01.mp4", 2)]


class _HangingOn(DecodingBackend):
    """PyAV's reader, except that reading one file blocks (as a spinning decoder would)."""

    def __init__(self, name, release):
        self.name, self.release = name, release

    def open(self, path, info, **options):
        if path.endswith(self.name):
            self.release.wait(60)
        return PyAVBackend().open(path, info, **options)


def test_a_hanging_decode_is_skipped_like_a_broken_video(charades_cfg):
    release = threading.Event()
    try:
        with registered_backend("hanging_on_aaa01", _HangingOn("AAA01.mp4", release)):
            cfg = charades_cfg(
                "DATA.DECODE_TIMEOUT_SEC", "0.5", "DATA.TRAIN_JITTER_SCALES", "[32, 32]",
                "DATA.DECODING_BACKEND", "hanging_on_aaa01",
            )  # fmt: skip
            train = build_dataset(cfg, "train", "train")
            began = time.monotonic()
            sample = train[0]  # AAA01 hangs: a replacement is drawn
            assert sample["video_index"] in (1, 2) and sample["skipped"] >= 1 and time.monotonic() - began < 20
            hung = [reason for path, reason in train.broken.items() if path.endswith("AAA01.mp4")]
            assert hung and "took longer than 0.5 s" in hung[0]

            segments = build_dataset(cfg, "test", "segments")
            samples = segments.segment_samples(0)  # AAA01: 5 segments, the first one hangs
            assert [s["valid"] for s in samples] == [False] * 5
            assert [s["valid"] for s in segments.segment_samples(1)] == [True] * 4
    finally:
        release.set()


def test_probe_manifest_cold_then_warm(charades_cfg, tmp_path, monkeypatch):
    monkeypatch.setenv("VIDEOTL_CACHE_DIR", str(tmp_path / "cache"))
    probed = []
    real = probing.probe_file

    def counting(path):
        probed.append(os.path.basename(path))
        return real(path)

    monkeypatch.setattr(probing, "probe_file", counting)
    monkeypatch.setattr(probing, "PROBE_CACHE", probing.ProbeCache())
    cold = build_dataset(charades_cfg(), "test", "segments")
    assert sorted(probed) == ["AAA01.mp4", "BROKE.mp4", "CCC03.mp4"]
    folder = cold.records[0].path.parent
    saved = json.loads(manifest.manifest_path(folder).read_text())
    assert saved["folder"] == str(folder) and "cannot open" in saved["entries"]["BROKE.mp4"]["error"]
    assert saved["entries"]["AAA01.mp4"]["info"]["num_frames"] == 90

    # A new process: nothing probed, same index, the broken video still reported.
    probed.clear()
    monkeypatch.setattr(probing, "PROBE_CACHE", probing.ProbeCache())
    warm = build_dataset(charades_cfg(), "test", "segments")
    assert probed == [] and [warm.num_views(v) for v in range(3)] == [5, 4, 1]
    assert any(path.endswith("BROKE.mp4") for path in warm.broken)
    # A sample's decode uses the manifest's probe too.
    assert warm[0]["valid"] and probed == []

    # A file that changes is probed again; a corrupt manifest is ignored and rewritten.
    path = warm.records[1].path
    os.utime(path, ns=(time.time_ns(), time.time_ns()))
    monkeypatch.setattr(probing, "PROBE_CACHE", probing.ProbeCache())
    build_dataset(charades_cfg(), "test", "segments")
    assert probed == ["CCC03.mp4"]
    manifest.manifest_path(folder).write_text("{not json")
    probed.clear()
    monkeypatch.setattr(probing, "PROBE_CACHE", probing.ProbeCache())
    build_dataset(charades_cfg(), "test", "segments")
    assert sorted(probed) == ["AAA01.mp4", "BROKE.mp4", "CCC03.mp4"]
    assert json.loads(manifest.manifest_path(folder).read_text())["version"] == 2


def test_probe_cache_off_probes_every_time(charades_cfg, tmp_path, monkeypatch):
    monkeypatch.setenv("VIDEOTL_CACHE_DIR", str(tmp_path / "cache"))
    build_dataset(charades_cfg("DATA.PROBE_CACHE", "False"), "test", "segments")
    assert not (tmp_path / "cache").exists()


def test_iter_segments_holds_one_segment_at_a_time(videos):
    # Frames handed out are not kept by the stream: a segment is freed once the caller drops it.
    import weakref

    refs = []
    for _, clip in decoding.iter_segments(videos["30"], num_frames=4, fps=12.0, backend="pyav"):
        refs.append(weakref.ref(clip))
        del clip
    assert len(refs) == 6 and sum(r() is not None for r in refs) <= 1
    first = next(decoding.iter_segments(videos["30"], num_frames=4, fps=12.0, backend="pyav", start_segment=3))
    assert first[0] == pytest.approx(1.0) and frame_indices(first[1]) == [30, 32, 35, 37]
    assert torch.equal(first[1], decoding.read_clip(videos["30"], 1.0, 4, 12.0, backend="pyav"))
