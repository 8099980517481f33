import importlib.util
from fractions import Fraction
from pathlib import Path

import pytest

from videotl.data import probe, read_clip
from videotl.data.decoding import iter_segments
from videotl.data.sampling import random_clip_start, uniform_clip_starts
from videotl.data.transcode import transcode_video

from .conftest import BACKENDS, VFR_PTS_MS, frame_indices, write_video

SCRIPT = Path(__file__).resolve().parents[2] / "datasets" / "transcode.py"


def _script():
    spec = importlib.util.spec_from_file_location("transcode_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def transcoded(tmp_path_factory):
    root = tmp_path_factory.mktemp("transcode")
    src = root / "src"
    write_video(src / "a" / "r30.mp4", rate=30, num_frames=75)
    write_video(src / "r2997.mp4", rate=Fraction(30000, 1001), num_frames=60)
    write_video(src / "vfr.mp4", rate=10, num_frames=len(VFR_PTS_MS), pts_ms=VFR_PTS_MS)
    (src / "broken.mp4").write_text("not a video")
    dst = root / "dst"
    status = _script().main(
        ["--src", str(src), "--dst", str(dst), "--fps", "12", "--short-side", "32", "--workers", "1"]
    )
    return src, dst, status


def test_transcode_tree_failures_and_resume(transcoded, capsys):
    src, dst, status = transcoded
    assert status == 1  # the broken file
    outputs = sorted(p.relative_to(dst).as_posix() for p in dst.rglob("*.mp4"))
    assert outputs == ["a/r30.mp4", "r2997.mp4", "vfr.mp4"]
    failures = (dst / "transcode_failures.tsv").read_text().splitlines()
    assert len(failures) == 1 and failures[0].startswith(str(src / "broken.mp4") + "\t")
    info = probe(dst / "a" / "r30.mp4")
    assert (info.width, info.height) == (44, 32) and info.fps == pytest.approx(12.0)
    assert info.duration == pytest.approx(probe(src / "a" / "r30.mp4").duration, abs=1 / 12)
    # A second run converts nothing again.
    assert (
        _script().main(["--src", str(src), "--dst", str(dst), "--fps", "12", "--short-side", "32", "--workers", "1"])
        == 1
    )
    assert "0 converted, 3 already there, 1 failed" in capsys.readouterr().out


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ["a/r30.mp4", "r2997.mp4", "vfr.mp4"])
def test_sampler_reads_the_same_frames_from_the_transcoded_file(transcoded, name, backend):
    src, dst, _ = transcoded
    original, converted = src / name, dst / name
    duration = probe(original).duration
    starts = uniform_clip_starts(duration, num_frames=6, fps=12.0, num_clips=3)
    starts += [random_clip_start(duration, num_frames=6, fps=12.0) for _ in range(3)]
    for start in starts:
        a = read_clip(original, start, 6, 12.0, backend=backend)
        b = read_clip(converted, start, 6, 12.0, backend=backend)
        assert frame_indices(a) == frame_indices(b), (name, start)
    segments_a = [frame_indices(c) for _, c in iter_segments(original, 6, 12.0, backend=backend)]
    segments_b = [frame_indices(c) for _, c in iter_segments(converted, 6, 12.0, backend=backend)]
    assert segments_a == segments_b


def test_interrupted_output_never_counts(tmp_path, monkeypatch):
    import videotl.data.transcode as transcode

    source = write_video(tmp_path / "v.mp4", rate=30, num_frames=30)
    output = tmp_path / "out" / "v.mp4"

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(transcode, "write_video", crash)
    result = transcode_video(source, output, short_side=32)
    assert result.status == "failed" and "disk full" in result.reason
    assert not output.exists()
    assert not (output.parent.exists() and list(output.parent.glob(".*")))  # no partial file left
    monkeypatch.undo()
    assert transcode_video(source, output, short_side=32).status == "done"
    assert transcode_video(source, output, short_side=32).status == "skipped"
    output.write_bytes(output.read_bytes()[:200])  # a damaged output is converted again
    assert transcode_video(source, output, short_side=32).status == "done"
