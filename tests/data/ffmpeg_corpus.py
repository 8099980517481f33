"""A format corpus made, and read back, by FFmpeg's own command line: the truth the readers meet.

imageio-ffmpeg (a PyPI package) ships a static ``ffmpeg`` binary; it encodes every file here
from raw RGB frames piped in, and decodes each file again to give the truth: the frames in the
order it shows them, their times (``-f framecrc``, in the stream's own time base, after the
command line's own timestamp handling) and their RGB pixels as it converts them (``-f rawvideo
-pix_fmt rgb24``, turned upright by its autorotation). PyAV, which is under test, plays no part
in making or reading the truth.

Frame ``i`` shows ``i`` as a bar code in its left 32 columns (8 bands of 8 rows, band ``b`` white
when bit ``b`` is set) and 12 flat colour patches in the rest, so a check reads back which frame
came and compares colours. Files are tiny (128x64, a few seconds) so the whole corpus is made in
about two seconds.
"""

from __future__ import annotations

import functools
import os
import subprocess
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

WIDTH, HEIGHT, BANDS = 128, 64, 8
CODE_WIDTH = 32
PATCH = 16
COLOURS = [
    (255, 0, 0),
    (0, 255, 0),
    (0, 0, 255),
    (255, 255, 0),
    (0, 255, 255),
    (255, 0, 255),
    (128, 128, 128),
    (224, 172, 105),
    (40, 90, 200),
    (250, 250, 250),
    (16, 16, 16),
    (120, 200, 60),
]
# Where MPEG-TS timestamps wrap, in seconds (33 bits of a 90 kHz clock). The muxer starts the
# first frame about 1.4 s after the output offset.
TS_WRAP_SEC = 2**33 / 90000


def corpus_image(index: int, width: int = WIDTH, height: int = HEIGHT) -> np.ndarray:
    image = np.zeros((height, width, 3), dtype=np.uint8)
    band = height // BANDS
    for bit in range(BANDS):
        if (index >> bit) & 1:
            image[bit * band : (bit + 1) * band, :CODE_WIDTH] = 255
    columns = (width - CODE_WIDTH) // PATCH
    for k in range(2 * columns):
        row, column = divmod(k, columns)
        x = CODE_WIDTH + column * PATCH
        image[row * (height // 2) : (row + 1) * (height // 2), x : x + PATCH] = COLOURS[k % len(COLOURS)]
    return image


def read_index(frame: np.ndarray, turns: int = 0) -> int:
    """The index a frame's bar code shows; ``turns`` undoes a display rotation first."""
    frame = np.rot90(frame, -turns) if turns else frame
    height = frame.shape[0]
    value = 0
    for bit in range(BANDS):
        y = int((bit + 0.5) * height / BANDS)
        if frame[y - 1 : y + 2, 4 : CODE_WIDTH - 4].mean() > 128:
            value |= 1 << bit
    return value


@dataclass(frozen=True)
class Spec:
    """One corpus file: what it is, the encoder it needs, and how the command line makes it."""

    suffix: str
    encoder: str
    what: str
    encode: Tuple[str, ...] = ()  # output options of the encode from raw frames
    frames: int = 60
    rate: str = "30"
    turns: int = 0  # display rotation, counter-clockwise quarter turns
    # A second command line step from the encoded file: input options, output options.
    remux: Optional[Tuple[Tuple[str, ...], Tuple[str, ...]]] = None
    # Transport streams joined byte for byte: the output offset (seconds) of each part.
    joined_offsets: Tuple[float, ...] = ()
    # A transport stream's first third cut off (whole 188-byte packets), as a recording that
    # starts mid-GOP.
    cut_head: bool = False


_X264 = ("-c:v", "libx264", "-bf", "2", "-g", "12", "-crf", "10", "-pix_fmt", "yuv420p")
_TS = _X264 + ("-f", "mpegts")

SPECS: Dict[str, Spec] = {
    "h264_cfr": Spec(
        ".mp4", "libx264", "H.264, constant frame rate, no B-frames", _X264[:2] + ("-bf", "0") + _X264[4:]
    ),
    "h264_open_gop": Spec(
        ".mp4",
        "libx264",
        "H.264, B-frame pyramid, open GOP",
        ("-c:v", "libx264", "-bf", "3", "-crf", "10", "-pix_fmt", "yuv420p")
        + ("-x264-params", "open-gop=1:keyint=12:min-keyint=12:scenecut=0"),
    ),
    "hevc": Spec(
        ".mp4",
        "libx265",
        "HEVC (x265's defaults: B-frames, open GOP)",
        ("-c:v", "libx265", "-x265-params", "log-level=error:keyint=12", "-crf", "10", "-pix_fmt", "yuv420p"),
    ),
    "vp9": Spec(
        ".webm",
        "libvpx-vp9",
        "VP9 in WebM",
        ("-c:v", "libvpx-vp9", "-g", "12", "-crf", "20", "-b:v", "0", "-deadline", "realtime", "-cpu-used", "8"),
    ),
    "av1": Spec(
        ".mp4",
        "libaom-av1",
        "AV1 (libaom, hidden frames shown later)",
        ("-c:v", "libaom-av1", "-g", "12", "-crf", "20", "-cpu-used", "8", "-row-mt", "1", "-pix_fmt", "yuv420p"),
    ),
    "mpeg4_packed_bframes": Spec(
        ".avi",
        "libxvid",
        "MPEG-4 Part 2 (Xvid) AVI with packed B-frames",
        ("-c:v", "libxvid", "-bf", "2", "-g", "12", "-q:v", "2"),
    ),
    "mpeg4_bframes": Spec(
        ".avi", "mpeg4", "MPEG-4 Part 2 AVI with B-frames", ("-c:v", "mpeg4", "-bf", "2", "-g", "12", "-q:v", "2")
    ),
    "mjpeg": Spec(
        ".avi", "mjpeg", "Motion JPEG AVI (full range)", ("-c:v", "mjpeg", "-q:v", "2", "-pix_fmt", "yuvj420p")
    ),
    "mpeg2_ps": Spec(
        ".mpeg",
        "mpeg2video",
        "MPEG-2 program stream (starts at 0.5 s)",
        ("-c:v", "mpeg2video", "-bf", "2", "-g", "12", "-q:v", "2", "-f", "mpeg"),
    ),
    "mpeg2_ps_shared_packets": Spec(
        ".mpeg",
        "mpeg2video",
        "MPEG-2 program stream of small frames sharing PES packets (many without a timestamp)",
        ("-c:v", "mpeg2video", "-bf", "2", "-g", "12", "-q:v", "2", "-vf", "scale=64:48", "-f", "mpeg"),
    ),
    "ts_start": Spec(".ts", "libx264", "MPEG-TS starting at 1000 s", _TS + ("-output_ts_offset", "1000")),
    "ts_wrap": Spec(
        ".ts",
        "libx264",
        "MPEG-TS whose 33-bit timestamps wrap 1 s in (negative early times)",
        _TS + ("-output_ts_offset", f"{TS_WRAP_SEC - 2.5:.6f}"),
    ),
    "ts_wrap_far": Spec(
        ".ts",
        "libx264",
        "MPEG-TS starting 65 s before the wrap (times past 2^33), 1 fps",
        _TS + ("-output_ts_offset", f"{TS_WRAP_SEC - 65:.6f}"),
        frames=80,
        rate="1",
    ),
    "ts_cut": Spec(".ts", "libx264", "MPEG-TS starting mid-GOP (its first packets undecodable)", _TS, cut_head=True),
    "ts_jump": Spec(
        ".ts", "libx264", "two MPEG-TS joined: the timestamps jump 989 s forward", _TS, joined_offsets=(10.0, 1000.0)
    ),
    "ts_jump_back": Spec(
        ".ts", "libx264", "two MPEG-TS joined: the timestamps jump 990 s back", _TS, joined_offsets=(1000.0, 10.0)
    ),
    "mp4_start": Spec(
        ".mp4", "libx264", "MP4 starting at 3 s", _X264, remux=((), ("-c", "copy", "-output_ts_offset", "3"))
    ),
    "mp4_no_edit_list": Spec(
        ".mp4",
        "libx264",
        "MP4 without edit list (first PTS 2 frames in)",
        _X264,
        remux=((), ("-c", "copy", "-use_editlist", "0")),
    ),
    "edit_list": Spec(
        ".mp4",
        "libx264",
        "MP4 cut at 0.5 s by stream copy: an edit list hides 3 frames",
        _X264,
        remux=(("-ss", "0.5"), ("-c", "copy")),
    ),
    "rotate90": Spec(
        ".mp4",
        "libx264",
        "display matrix 90 degrees",
        _X264,
        turns=1,
        remux=(("-display_rotation", "90"), ("-c", "copy")),
    ),
    "rotate180": Spec(
        ".mp4",
        "libx264",
        "display matrix 180 degrees",
        _X264,
        turns=2,
        remux=(("-display_rotation", "180"), ("-c", "copy")),
    ),
    "rotate270": Spec(
        ".mp4",
        "libx264",
        "display matrix 270 degrees",
        _X264,
        turns=3,
        remux=(("-display_rotation", "270"), ("-c", "copy")),
    ),
    "vfr": Spec(
        ".mp4",
        "libx264",
        "variable frame rate (frame intervals from 1/30 s to 5/30 s)",
        _X264 + ("-vf", "setpts=(N+floor(N*N/30))/30/TB", "-fps_mode", "passthrough"),
    ),
    "h264_10bit": Spec(".mp4", "libx264", "10-bit H.264 (yuv420p10le)", _X264[:-1] + ("yuv420p10le",)),
    "full_range": Spec(
        ".mp4",
        "libx264",
        "full range (yuvj420p, color_range pc)",
        _X264[:-2] + ("-vf", "scale=out_range=full", "-pix_fmt", "yuvj420p", "-color_range", "pc"),
    ),
    "bt709": Spec(
        ".mp4",
        "libx264",
        "BT.709 matrix, tagged",
        _X264
        + ("-vf", "scale=out_color_matrix=bt709", "-colorspace", "bt709")
        + ("-color_primaries", "bt709", "-color_trc", "bt709"),
    ),
    "bt601": Spec(
        ".mp4",
        "libx264",
        "BT.601 matrix, tagged (smpte170m)",
        _X264
        + ("-vf", "scale=out_color_matrix=bt601", "-colorspace", "smpte170m")
        + ("-color_primaries", "smpte170m", "-color_trc", "smpte170m"),
    ),
    "odd_size": Spec(
        ".webm",
        "libvpx-vp9",
        "odd width and height (127x63, VP9)",
        ("-c:v", "libvpx-vp9", "-g", "12", "-crf", "20", "-b:v", "0", "-deadline", "realtime", "-cpu-used", "8")
        + ("-vf", "crop=127:63:0:0", "-pix_fmt", "yuv420p"),
    ),
    "h264_mkv": Spec(".mkv", "libx264", "H.264 in Matroska", _X264),
    "raw_h264": Spec(".h264", "libx264", "raw H.264 stream, no timestamps", _X264 + ("-f", "h264")),
}


@dataclass(repr=False)
class CorpusFile:
    """A corpus file and FFmpeg's own reading of it."""

    path: Path
    spec: Spec
    times: List[Fraction]  # each frame's time from the first frame, in the order shown
    end: Fraction  # when the last frame's duration is over
    indices: List[int]  # the bar code each frame shows
    rgb: np.ndarray  # N x H x W x 3, as the command line converts and turns them

    def __repr__(self) -> str:  # the frames would fill a failing test's report
        return f"CorpusFile({self.path.name}, {len(self.times)} frames)"

    @property
    def last_time(self) -> Fraction:
        return self.times[-1]

    def on_screen(self, times: Sequence[Fraction]) -> List[int]:
        """Positions (in the command line's frame list) of the frames shown at ``times``: the
        last frame whose time is at or before each (the first frame before it)."""
        positions = []
        for t in times:
            shown = [k for k, time in enumerate(self.times) if time <= t]
            positions.append(shown[-1] if shown else 0)
        return positions


@functools.lru_cache(maxsize=1)
def ffmpeg_exe() -> Tuple[Optional[str], str]:
    """(path of imageio-ffmpeg's ffmpeg, "") or (None, why not)."""
    try:
        import imageio_ffmpeg
    except ImportError:
        return None, "imageio-ffmpeg is not installed (pip install imageio-ffmpeg; the test extra has it)"
    try:
        return imageio_ffmpeg.get_ffmpeg_exe(), ""
    except RuntimeError as error:
        return None, f"imageio-ffmpeg has no ffmpeg binary here: {error}"


@functools.lru_cache(maxsize=1)
def encoders() -> frozenset:
    exe, _ = ffmpeg_exe()
    listing = subprocess.run([exe, "-hide_banner", "-encoders"], capture_output=True, text=True, check=True).stdout
    names = set()
    for line in listing.splitlines():
        parts = line.split()
        if len(parts) >= 2 and len(parts[0]) == 6 and parts[0][0] == "V":
            names.add(parts[1])
    return frozenset(names)


def missing_encoder(name: str) -> Optional[str]:
    """Why the corpus file ``name`` cannot be made here, or None."""
    exe, reason = ffmpeg_exe()
    if exe is None:
        return reason
    encoder = SPECS[name].encoder
    if encoder not in encoders():
        return f"imageio-ffmpeg's ffmpeg has no {encoder} encoder: no {SPECS[name].what} file to test"
    return None


def _ffmpeg(*args: str, stdin: Optional[bytes] = None) -> subprocess.CompletedProcess:
    exe, _ = ffmpeg_exe()
    command = [exe, "-hide_banner", "-loglevel", "error", "-nostdin", "-y", *args]
    result = subprocess.run(command, input=stdin, capture_output=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {result.stderr.decode(errors='replace')[-2000:]}")
    return result


def _encode(path: Path, spec: Spec, first: int, count: int, offset: Optional[float] = None) -> None:
    raw = b"".join(corpus_image(i).tobytes() for i in range(first, first + count))
    source = ("-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{WIDTH}x{HEIGHT}", "-r", spec.rate, "-i", "-")
    extra = () if offset is None else ("-output_ts_offset", str(offset))
    _ffmpeg(*source, *spec.encode, *extra, str(path), stdin=raw)


def make(root: Path, name: str) -> Path:
    spec = SPECS[name]
    path = root / f"{name}{spec.suffix}"
    if spec.joined_offsets:
        parts = []
        per_part = spec.frames // len(spec.joined_offsets)
        for k, offset in enumerate(spec.joined_offsets):
            part = root / f"{name}.part{k}{spec.suffix}"
            _encode(part, spec, k * per_part, per_part, offset)
            parts.append(part.read_bytes())
            part.unlink()
        path.write_bytes(b"".join(parts))
    elif spec.remux is not None:
        source = root / f"{name}.source{spec.suffix}"
        _encode(source, spec, 0, spec.frames)
        before, after = spec.remux
        _ffmpeg(*before, "-i", str(source), *after, str(path))
        source.unlink()
    else:
        _encode(path, spec, 0, spec.frames)
    if spec.cut_head:
        data = path.read_bytes()
        path.write_bytes(data[len(data) // 188 // 3 * 188 :])
    return path


def truth(path: Path, turns: int = 0, scale: bool = False) -> Tuple[List[Fraction], Fraction, List[int], np.ndarray]:
    """FFmpeg's reading of a file: frame times from the first frame (display order), the end of
    the last frame, bar codes, RGB frames (``scale``: all at 128x64, for a stream that changes
    size)."""
    rgb_path = path.with_name(path.name + ".rgb")
    video = ("-map", "0:v:0", "-fps_mode", "passthrough")
    size = ("-vf", f"scale={WIDTH}:{HEIGHT}") if scale else ()
    result = _ffmpeg(
        "-i", str(path), *video, "-enc_time_base", "demux", "-f", "framecrc", "-", *video, *size,
        "-f", "rawvideo", "-pix_fmt", "rgb24", str(rgb_path),
    )  # fmt: skip
    lines = result.stdout.decode().splitlines()
    header = dict(line[1:].split(": ", 1) for line in lines if line.startswith("#") and ": " in line)
    time_base = Fraction(header["tb 0"])
    width, height = map(int, header["dimensions 0"].split("x"))
    rows = [line.split(",") for line in lines if line and not line.startswith("#")]
    pts = [int(row[2]) for row in rows]
    rgb = np.fromfile(rgb_path, dtype=np.uint8).reshape(-1, height, width, 3)
    os.remove(rgb_path)
    if len(rgb) != len(pts):
        raise RuntimeError(f"{path}: ffmpeg listed {len(pts)} frames but wrote {len(rgb)}")
    times = [Fraction(p - pts[0]) * time_base for p in pts]
    end = times[-1] + int(rows[-1][3]) * time_base
    return times, end, [read_index(frame, turns) for frame in rgb], rgb


# Damaged files, each made by damaging a corpus-like file in one known way.
DAMAGED = {
    "metadata_not_utf8": "Matroska whose title is not UTF-8",
    "size_change": "two MPEG-TS joined, 128x64 then 160x80",
    "unknown_codec": "MP4 whose codec tag is unknown (avc1 overwritten)",
}


def make_damaged(root: Path, name: str) -> Path:
    spec = Spec(".ts", "libx264", DAMAGED[name], _TS)
    if name == "metadata_not_utf8":
        path = root / f"{name}.mkv"
        _encode(path, Spec(".mkv", "libx264", "", _X264 + ("-metadata", "title=QQQQQQQQ")), 0, 30)
        path.write_bytes(path.read_bytes().replace(b"QQQQQQQQ", b"\xfe\xff" * 4))
    elif name == "size_change":
        path = root / f"{name}.ts"
        first, second = root / f"{name}.0.ts", root / f"{name}.1.ts"
        _encode(first, spec, 0, 30)
        raw = b"".join(corpus_image(i, 160, 80).tobytes() for i in range(30, 60))
        source = ("-f", "rawvideo", "-pix_fmt", "rgb24", "-s", "160x80", "-r", "30", "-i", "-")
        _ffmpeg(*source, *_TS, "-output_ts_offset", "1", str(second), stdin=raw)
        path.write_bytes(first.read_bytes() + second.read_bytes())
        first.unlink()
        second.unlink()
    else:
        path = root / f"{name}.mp4"
        _encode(path, Spec(".mp4", "libx264", "", _X264), 0, 30)
        path.write_bytes(path.read_bytes().replace(b"avc1", b"zzzz"))
    return path


def build(root: Path) -> Dict[str, CorpusFile]:
    """Every corpus file the binary's encoders allow, with FFmpeg's truth."""
    out = {}
    for name, spec in SPECS.items():
        if missing_encoder(name):
            continue
        path = make(root, name)
        out[name] = CorpusFile(path, spec, *truth(path, spec.turns))
    return out
