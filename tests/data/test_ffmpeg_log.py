"""FFmpeg's own log lines go through videotl's logger (videotl.data.ffmpeg_log), from every backend.

FFmpeg prints to file descriptor 2 from C, past Python's sys.stderr, so each check runs in a child
process and reads what that process wrote to its real stderr.
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from videotl.data import encoding

from .conftest import TORCHCODEC_SKIP

# What the matroska demuxer says of a zeroed byte where an EBML element starts.
EBML_COMPLAINT = "invalid as first byte of an EBML number"
BACKENDS = ["pyav", "decord"] + ([] if TORCHCODEC_SKIP else ["torchcodec"])
MARKER = "=== backend "


@pytest.fixture(scope="module")
def damaged_webm(tmp_path_factory):
    """A 2 s VP9 WebM whose last two thirds have every 97th byte zeroed: the demuxer complains
    about it line after line, and the decoder gives up."""
    root = tmp_path_factory.mktemp("damaged")
    frames = (np.full((48, 64, 3), 5 * i, dtype=np.uint8) for i in range(48))
    data = bytearray(encoding.write_video(root / "whole.webm", frames, rate=24, codec="libvpx-vp9").read_bytes())
    for position in range(len(data) // 3, len(data), 97):
        data[position] = 0
    path = root / "damaged.webm"
    path.write_bytes(bytes(data))
    return path


def _read_with_each_backend(path, backends, mode):
    """stderr of a child that reads ``path`` twice with each backend (markers between them), its
    logging sent to stderr; the parsed parts per backend."""
    script = textwrap.dedent(
        """
        import json, logging, sys
        logging.basicConfig(level=logging.WARNING, format="LOG %(name)s: %(message)s")
        from videotl.data import VideoDecodeError, read_clip
        for backend in json.loads(sys.argv[2]):
            print("=== backend " + backend, file=sys.stderr, flush=True)
            for _ in range(2):
                try:
                    read_clip(sys.argv[1], 0.0, num_frames=16, fps=12.0, backend=backend)
                except VideoDecodeError:
                    pass
            sys.stderr.flush()
        """
    )
    env = {**os.environ}
    env.pop("VIDEOTL_FFMPEG_LOG", None)
    if mode is not None:
        env["VIDEOTL_FFMPEG_LOG"] = mode
    result = subprocess.run(
        [sys.executable, "-c", script, str(path), json.dumps(backends)],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    parts, current = {}, None
    for line in result.stderr.splitlines():
        if line.startswith(MARKER):
            current = line[len(MARKER) :]
            parts[current] = []
        elif current is not None:
            parts[current].append(line)
    assert sorted(parts) == sorted(backends), result.stderr[-3000:]
    return parts


def test_by_default_each_file_gets_one_warning_and_ffmpeg_prints_nothing(damaged_webm):
    parts = _read_with_each_backend(damaged_webm, BACKENDS, None)
    # The first backend's reads carry the file's one warning; later reads of the same file in
    # this process add nothing, whichever backend.
    first, *others = BACKENDS
    assert len(parts[first]) == 1, parts[first]
    (warning,) = parts[first]
    assert warning.startswith("LOG videotl.data.ffmpeg: FFmpeg logged ") and str(damaged_webm) in warning
    assert EBML_COMPLAINT in warning and "VIDEOTL_FFMPEG_LOG=all" in warning
    for backend in others:
        assert parts[backend] == [], (backend, parts[backend])


def test_all_lines_through_the_logger_on_request(damaged_webm):
    parts = _read_with_each_backend(damaged_webm, BACKENDS, "all")
    for backend, lines in parts.items():
        assert lines, backend
        # Every line comes through the logger, names the file and carries FFmpeg's words.
        assert all(line.startswith(f"LOG videotl.data.ffmpeg: FFmpeg, reading {damaged_webm}: ") for line in lines)
        assert any(EBML_COMPLAINT in line for line in lines), (backend, lines)
    # decord re-reads the damaged part as it decodes: more lines than the demuxer's one.
    assert len(parts["decord"]) > 1


def test_ffmpeg_mode_leaves_decords_own_printing(damaged_webm):
    """The unrouted behaviour the default replaces: decord's FFmpeg prints the complaint to the
    terminal again and again, outside any logger."""
    parts = _read_with_each_backend(damaged_webm, ["decord"], "ffmpeg")
    raw = [line for line in parts["decord"] if EBML_COMPLAINT in line and not line.startswith("LOG ")]
    assert len(raw) > 2, parts["decord"]


def test_an_unknown_mode_is_named_once_and_summarises(monkeypatch, caplog):
    from videotl.data import ffmpeg_log

    monkeypatch.setenv("VIDEOTL_FFMPEG_LOG", "loud")
    assert ffmpeg_log.ffmpeg_log_mode() == "summary" and ffmpeg_log.ffmpeg_log_mode() == "summary"
    named = [r.getMessage() for r in caplog.records if "VIDEOTL_FFMPEG_LOG='loud'" in r.getMessage()]
    assert named == ["VIDEOTL_FFMPEG_LOG='loud' is not one of summary, all, ffmpeg: FFmpeg's lines are summarised"]
