"""A synthetic dataset in the exact layout of the official Charades release.

The generator writes what :func:`videotl.data.datasets.charades.load_charades` reads::

    Charades_v1_train.csv      id,subject,scene,quality,relevance,verified,script,objects,descriptions,actions,length
    Charades_v1_test.csv
    Charades_v1_classes.txt    c000 Square moving up
    Charades_v1_480/<ID>.mp4   H.264, yuv420p, 24 / 25 / 30 / 29.97 fps, 112x84 .. 128x96

and keeps its ground truth in memory (:class:`SyntheticCharades`) and on disk
(``synthetic_charades.json``).

Design of the task:

- **Classes come in time-reversed pairs.** Both members of a pair draw the same shape in the same
  colour; one plays a cycle forwards (a square rising, a disc growing, a triangle fading in), the
  other plays the same cycle backwards. A single frame tells the pair, never the member: the
  model has to use time. The blinking pair differs by rhythm (fast vs slow) instead.
- **Every pair is invariant to a horizontal flip** (up/down, grow/shrink, fade in/out, meet/part
  vertically, blink rate, colour change). The training pipeline flips clips left-right at random
  (``DATA.RANDOM_FLIP``); a left-vs-right or clockwise-vs-counter-clockwise pair would have its
  labels swapped by that augmentation.
- **Actions are cyclic.** Each action repeats its cycle (about 1.2-2 s) for its whole interval
  (3-9 s), so any short clip inside the interval shows the cue; a one-way motion spread over
  9 s would move a few pixels per 16-frame clip.
- **Objects are big, saturated and high-contrast** on a low-contrast, textured background that
  scrolls; at most two actions run at once, each in its own half of the central square of the
  frame, so random and centre square crops keep them in view.

Everything is drawn from ``numpy.random.default_rng`` streams keyed by ``(seed, split, index)``:
the same seed gives the same files, and a video does not change when others are added.
"""

from __future__ import annotations

import concurrent.futures
import csv
import io
import json
import math
import multiprocessing
import os
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from videotl.data.encoding import write_video
from videotl.utils.fileio import atomic_write_text

__all__ = [
    "CHARADES_COLUMNS",
    "SYNTHETIC_CLASSES",
    "SOURCE_FRAME_RATES",
    "FRAME_SIZES",
    "SyntheticAction",
    "SyntheticVideo",
    "SyntheticCharades",
    "plan_synthetic_charades",
    "render_video",
    "encode_video",
    "generate_synthetic_charades",
    "is_generated",
]

PathLike = Union[str, os.PathLike]

CHARADES_COLUMNS = (
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
)
SPLIT_FILES = {"train": "Charades_v1_train.csv", "test": "Charades_v1_test.csv"}
CLASSES_FILE = "Charades_v1_classes.txt"
VIDEO_DIR = "Charades_v1_480"
MANIFEST_FILE = "synthetic_charades.json"
# Bumped whenever the drawing or the plan changes: a folder made by another version is not reused.
GENERATOR_VERSION = 1

# Charades' frame rates: mostly 30 and 29.97, some 24 and 25. Exact rationals, so the stream's
# rate and time base say exactly 30000/1001 rather than 29.97.
SOURCE_FRAME_RATES: Tuple[Fraction, ...] = (Fraction(24), Fraction(25), Fraction(30), Fraction(30000, 1001))
# 4:3 like Charades_v1_480 (480 x 360), small so that encoding and decoding take milliseconds.
# Not 96 x 72: decord (decord2 3.4.0) fails on every frame of 96- and 144-pixel-wide H.264 files
# ("Check failed: from_size == to_size (27648 vs. 20736)"), while PyAV reads them.
FRAME_SIZES: Tuple[Tuple[int, int], ...] = ((112, 84), (120, 90), (128, 96))


@dataclass(frozen=True)
class _Pair:
    shape: str
    colour: Tuple[int, int, int]
    motion: str
    names: Tuple[str, str]
    noun: str


# (shape, colour, what the cycle does, (forward name, backward name)). For "blink" the first
# member is the fast rhythm and the second the slow one.
_PAIRS: Tuple[_Pair, ...] = (
    _Pair("square", (235, 45, 45), "rise", ("Square moving up", "Square moving down"), "square"),
    _Pair("disc", (250, 220, 30), "grow", ("Disc growing", "Disc shrinking"), "disc"),
    _Pair("triangle", (40, 230, 240), "fade", ("Triangle appearing", "Triangle disappearing"), "triangle"),
    _Pair("bars", (240, 60, 230), "meet", ("Two bars meeting", "Two bars parting"), "bars"),
    _Pair("cross", (60, 240, 70), "blink", ("Cross blinking fast", "Cross blinking slow"), "cross"),
    _Pair("diamond", (255, 150, 20), "recolour", ("Diamond turning blue", "Diamond turning orange"), "diamond"),
)
SYNTHETIC_CLASSES: Tuple[str, ...] = tuple(name for pair in _PAIRS for name in pair.names)
_BLUE = np.array((40, 90, 255), dtype=np.float32)

# Plan parameters (seconds).
_ACTION_SECONDS = (3.0, 9.0)
_CYCLE_SECONDS = (1.2, 2.0)
_FAST_BLINK_SECONDS = (0.28, 0.4)
_SLOW_BLINK_SECONDS = (1.1, 1.5)
# Videos hold about one action per this many seconds (two slots, gaps between actions).
_SECONDS_PER_ACTION = 7.0
_NUM_SLOTS = 2
_SLOT_GAP = 0.5


@dataclass(frozen=True)
class SyntheticAction:
    """One annotated action: class ``label`` on screen during ``[start, end)`` seconds.

    Attributes:
        label: class index into :data:`SYNTHETIC_CLASSES` (code ``c{label:03d}``).
        start / end: seconds from the first frame, at the CSV's 0.01 s precision.
        slot: which half of the frame's central square (0 left, 1 right) shows it.
        period: seconds per cycle (per blink for the blinking pair).
        phase: where in its cycle the action starts, in [0, 1).
        offset: horizontal jitter of the object inside its slot, as a fraction of the frame height.
    """

    label: int
    start: float
    end: float
    slot: int
    period: float
    phase: float
    offset: float

    @property
    def code(self) -> str:
        return f"c{self.label:03d}"


@dataclass(frozen=True)
class SyntheticVideo:
    """One generated video and its ground truth.

    Attributes:
        video_id: Charades-style id (5 uppercase letters and digits).
        split: ``"train"`` or ``"test"``.
        fps: exact source frame rate (the stream's rate; its time base is ``1 / fps``).
        width / height: frame size.
        num_frames: frames in the file; the video lasts ``num_frames / fps`` seconds.
        actions: the annotated actions, sorted by start.
        seed: seed of the drawing (background texture and motion).
    """

    video_id: str
    split: str
    fps: Fraction
    width: int
    height: int
    num_frames: int
    actions: Tuple[SyntheticAction, ...]
    seed: int

    @property
    def duration(self) -> float:
        return float(self.num_frames / self.fps)

    @property
    def labels(self) -> Tuple[int, ...]:
        """Video-level labels: the sorted distinct classes of its actions."""
        return tuple(sorted({a.label for a in self.actions}))

    def labels_at(self, time: float) -> Tuple[int, ...]:
        """Classes on screen at ``time`` seconds (``start <= time < end``)."""
        return tuple(sorted({a.label for a in self.actions if a.start <= time < a.end}))

    def actions_field(self) -> str:
        """The CSV ``actions`` field: ``c003 11.90 21.20;c001 0.00 12.60``."""
        return ";".join(f"{a.code} {a.start:.2f} {a.end:.2f}" for a in self.actions)

    def length_field(self) -> str:
        return f"{self.duration:.2f}"


@dataclass(frozen=True)
class SyntheticCharades:
    """A planned synthetic dataset: class names and every video's ground truth, per split."""

    seed: int
    classes: Tuple[str, ...]
    train: Tuple[SyntheticVideo, ...]
    test: Tuple[SyntheticVideo, ...]
    settings: Dict[str, object] = field(default_factory=dict)

    def split(self, name: str) -> Tuple[SyntheticVideo, ...]:
        if name not in SPLIT_FILES:
            raise ValueError(f"split {name!r}: must be one of {sorted(SPLIT_FILES)}")
        return self.train if name == "train" else self.test

    @property
    def videos(self) -> Tuple[SyntheticVideo, ...]:
        return self.train + self.test

    def positive_rate(self, split: str = "test") -> float:
        """Mean fraction of positive video-level labels: the expected mAP of random scores."""
        videos = self.split(split)
        return sum(len(v.labels) for v in videos) / (len(videos) * len(self.classes))


# ---------------------------------------------------------------------------------------- plan

_ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_SPLIT_KEYS = {"train": 0, "test": 1}


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, *key]))


def _plan_video(
    *, seed: int, split: str, index: int, min_seconds: float, max_seconds: float, taken_ids: set
) -> SyntheticVideo:
    rng = _rng(seed, _SPLIT_KEYS[split], index)
    while True:
        video_id = "".join(rng.choice(list(_ID_ALPHABET), size=5))
        if video_id not in taken_ids:
            break
    taken_ids.add(video_id)
    fps = SOURCE_FRAME_RATES[int(rng.integers(len(SOURCE_FRAME_RATES)))]
    width, height = FRAME_SIZES[int(rng.integers(len(FRAME_SIZES)))]
    num_frames = int(round(rng.uniform(min_seconds, max_seconds) * fps))
    duration = float(num_frames / fps)
    # The CSV stores 0.01 s; every time is drawn at that precision so the file is exact.
    last = math.floor(duration * 100) / 100

    count = max(1, int(round(duration / _SECONDS_PER_ACTION)) + int(rng.integers(-1, 2)))
    classes = rng.permutation(len(SYNTHETIC_CLASSES))[: min(count, len(SYNTHETIC_CLASSES))]
    busy: List[List[Tuple[float, float]]] = [[] for _ in range(_NUM_SLOTS)]
    actions = []
    for label in classes:
        for _ in range(50):
            length = rng.uniform(*_ACTION_SECONDS)
            length = min(length, last)
            start = round(rng.uniform(0.0, last - length), 2)
            end = round(min(start + length, last), 2)
            slot = int(rng.integers(_NUM_SLOTS))
            if all(end + _SLOT_GAP <= s or start >= e + _SLOT_GAP for s, e in busy[slot]):
                break
        else:
            # No free room in 50 draws: the video keeps fewer actions.
            continue
        busy[slot].append((start, end))
        pair, member = divmod(int(label), 2)
        if _PAIRS[pair].motion == "blink":
            period = rng.uniform(*(_FAST_BLINK_SECONDS if member == 0 else _SLOW_BLINK_SECONDS))
        else:
            period = rng.uniform(*_CYCLE_SECONDS)
        actions.append(
            SyntheticAction(
                label=int(label),
                start=start,
                end=end,
                slot=slot,
                period=float(period),
                phase=float(rng.uniform()),
                offset=float(rng.uniform(-0.04, 0.04)),
            )
        )
    actions.sort(key=lambda a: (a.start, a.label))
    return SyntheticVideo(
        video_id=video_id,
        split=split,
        fps=fps,
        width=width,
        height=height,
        num_frames=num_frames,
        actions=tuple(actions),
        seed=int(rng.integers(2**31)),
    )


def plan_synthetic_charades(
    *, seed: int = 0, num_train: int = 200, num_test: int = 60, min_seconds: float = 15.0, max_seconds: float = 40.0
) -> SyntheticCharades:
    """Draw every video's id, frame rate, size, length and actions (no pixels yet).

    Args:
        seed: the dataset seed; each video draws from its own stream keyed by (seed, split, index).
        num_train / num_test: videos per split.
        min_seconds / max_seconds: range of video lengths.
    """
    if num_train < 0 or num_test < 0:
        raise ValueError(f"num_train = {num_train}, num_test = {num_test}: must be >= 0")
    if not 0 < min_seconds <= max_seconds:
        raise ValueError(f"min_seconds = {min_seconds}, max_seconds = {max_seconds}: need 0 < min <= max")
    taken: set = set()
    splits = {}
    for split, count in (("train", num_train), ("test", num_test)):
        splits[split] = tuple(
            _plan_video(
                seed=seed, split=split, index=i, min_seconds=min_seconds, max_seconds=max_seconds, taken_ids=taken
            )
            for i in range(count)
        )
    settings = {
        "version": GENERATOR_VERSION,
        "seed": seed,
        "num_train": num_train,
        "num_test": num_test,
        "min_seconds": min_seconds,
        "max_seconds": max_seconds,
    }
    return SyntheticCharades(
        seed=seed, classes=SYNTHETIC_CLASSES, train=splits["train"], test=splits["test"], settings=settings
    )


# ------------------------------------------------------------------------------------ drawing
#
# Frames are drawn straight into planar YUV 4:2:0 (BT.601, limited range: what decoders assume for
# untagged SD video). Converting each RGB frame with swscale cost three times as much as drawing
# and encoding it together.

_RGB_TO_YUV = (
    np.array([[65.481, 128.553, 24.966], [-37.797, -74.203, 112.0], [112.0, -93.786, -18.214]], dtype=np.float32)
    / 255.0
)
_YUV_OFFSET = np.array([16.0, 128.0, 128.0], dtype=np.float32)


def _to_yuv(rgb: np.ndarray) -> np.ndarray:
    """RGB in [0, 255] (``... x 3``) -> YUV (``... x 3``), BT.601 limited range."""
    return rgb @ _RGB_TO_YUV.T + _YUV_OFFSET


def _to_rgb(yuv: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_to_yuv`."""
    return (yuv - _YUV_OFFSET) @ np.linalg.inv(_RGB_TO_YUV).T


def _periodic_texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A seamless (tileable) RGB texture in about [50, 160]: a few low-frequency waves plus fine grain."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    grey = np.zeros((height, width), np.float32)
    for _ in range(6):
        # Integer cycles per tile keep the texture seamless when it scrolls around.
        fy, fx = rng.integers(-4, 5, size=2)
        if fy == 0 and fx == 0:
            fx = 1
        grey += rng.uniform(6, 14) * np.sin(
            2 * np.pi * (fy * yy / height + fx * xx / width) + rng.uniform(0, 2 * np.pi)
        )
    grey += rng.normal(0, 6, size=(height, width)).astype(np.float32)
    tint = rng.uniform(0.8, 1.2, size=3).astype(np.float32)
    texture = (105 + grey[..., None]) * tint
    return np.clip(texture, 0, 255).astype(np.float32)


def _coverage(shape: str, dy: np.ndarray, dx: np.ndarray, size: float, extra: float) -> np.ndarray:
    """Anti-aliased coverage in [0, 1] of a shape centred at the origin (``dy``/``dx`` in pixels).

    Each shape is a signed distance (negative inside); ``0.5 - distance`` clipped gives a one
    pixel soft edge, so sub-pixel motion shows as smooth change instead of jumps.
    """
    if shape == "square":
        distance = np.maximum(np.abs(dx), np.abs(dy)) - size
    elif shape == "disc":
        distance = np.sqrt(dx * dx + dy * dy) - size
    elif shape == "triangle":
        # Upward triangle: apex at dy = -size, base at dy = +0.7 size from dx = -size to +size.
        base = dy - 0.7 * size
        side = (1.7 * np.abs(dx) - dy - size) / math.hypot(1.7, 1.0)
        distance = np.maximum(base, side)
    elif shape == "cross":
        arm = size * 0.3
        distance = np.minimum(
            np.maximum(np.abs(dx) - size, np.abs(dy) - arm), np.maximum(np.abs(dx) - arm, np.abs(dy) - size)
        )
    elif shape == "diamond":
        distance = (np.abs(dx) + np.abs(dy) - size) / math.sqrt(2)
    elif shape == "bars":
        # Two horizontal bars ``extra`` pixels apart (centre to centre), mirrored about dy = 0.
        half = size * 0.22
        distance = np.maximum(np.abs(dx) - size, np.abs(np.abs(dy) - extra / 2) - half)
    else:
        raise ValueError(f"unknown shape {shape!r}")
    return np.clip(0.5 - distance, 0.0, 1.0)


def _object_state(action: SyntheticAction, time: float, height: int) -> Tuple[float, float, float, float, np.ndarray]:
    """Where and how the action's object is drawn at ``time``: (cy, size, extra, alpha, RGB colour).

    ``cy`` is relative to the frame centre. Forward members follow the cycle's progress ``p``,
    backward members ``1 - p``: the same frames in reverse order.
    """
    pair, member = divmod(action.label, 2)
    spec = _PAIRS[pair]
    colour = np.asarray(spec.colour, dtype=np.float32)
    cycles = (time - action.start) / action.period + action.phase
    progress = cycles - math.floor(cycles)
    if spec.motion != "blink" and member == 1:
        progress = 1.0 - progress
    size, cy, extra, alpha = 0.17 * height, 0.0, 0.0, 1.0
    if spec.motion == "rise":
        # From the bottom to the top of the frame (y grows downwards).
        cy = (0.5 - progress) * (height - 2.6 * size)
    elif spec.motion == "grow":
        size = (0.05 + 0.19 * progress) * height
    elif spec.motion == "fade":
        # Fades in over 70% of the cycle, stays, vanishes at once; reversed: appears, fades out.
        alpha = min(1.0, progress / 0.7)
    elif spec.motion == "meet":
        # Centre-to-centre distance of the bars shrinks from most of the frame height to touching.
        extra = (0.75 - 0.65 * progress) * height
        size = 0.2 * height
    elif spec.motion == "blink":
        alpha = 1.0 if progress < 0.5 else 0.0
    elif spec.motion == "recolour":
        # A straight blend passes through grey; rescaling to full brightness keeps it vivid.
        colour = (1.0 - progress) * colour + progress * _BLUE
        colour = colour * (255.0 / colour.max())
    return cy, size, extra, alpha, colour


def _render_planes(video: SyntheticVideo) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
    """Yield each frame as float32 planes: luma ``H x W`` and chroma ``H/2 x W/2 x 2`` (Cb, Cr)."""
    rng = _rng(video.seed)
    height, width = video.height, video.width
    texture = _to_yuv(_periodic_texture(rng, 2 * height, 2 * width))
    tiled = np.tile(texture, (2, 2, 1))
    luma_tile = np.ascontiguousarray(tiled[..., 0])
    chroma_tile = np.ascontiguousarray(tiled[..., 1:])
    # The background scrolls in a random direction (camera pan) and its brightness drifts slowly.
    speed = rng.uniform(4.0, 12.0)
    angle = rng.uniform(0, 2 * np.pi)
    velocity = (speed * math.sin(angle), speed * math.cos(angle))
    flicker_rate, flicker_phase = rng.uniform(0.05, 0.2), rng.uniform(0, 2 * np.pi)
    # The two slots are the halves of the central square.
    left = (width - height) / 2
    slot_centres = (left + height / 4, left + 3 * height / 4)
    fps = float(video.fps)
    for index in range(video.num_frames):
        time = index / fps
        # Even offsets keep the chroma samples on the luma grid of 4:2:0.
        oy = 2 * int(round(velocity[0] * time / 2)) % (2 * height)
        ox = 2 * int(round(velocity[1] * time / 2)) % (2 * width)
        gain = 1.0 + 0.1 * math.sin(2 * np.pi * flicker_rate * time + flicker_phase)
        luma = (luma_tile[oy : oy + height, ox : ox + width] - 16.0) * gain + 16.0
        chroma = chroma_tile[oy : oy + height : 2, ox : ox + width : 2].copy()
        for action in video.actions:
            if not action.start <= time < action.end:
                continue
            pair = _PAIRS[action.label // 2]
            cy, size, extra, alpha, colour = _object_state(action, time, height)
            if alpha <= 0.0:
                continue
            cx = slot_centres[action.slot] + action.offset * height
            cy = height / 2 + cy
            reach = max(size, extra / 2 + 0.25 * size) + 2
            # A box on even coordinates, so its chroma is exactly the 2 x 2 means of its luma.
            y0, y1 = max(0, int(cy - reach) // 2 * 2), min(height, (int(math.ceil(cy + reach)) + 2) // 2 * 2)
            x0, x1 = max(0, int(cx - reach) // 2 * 2), min(width, (int(math.ceil(cx + reach)) + 2) // 2 * 2)
            if y1 <= y0 or x1 <= x0:
                continue
            dy = np.arange(y0, y1, dtype=np.float32)[:, None] + 0.5 - cy
            dx = np.arange(x0, x1, dtype=np.float32)[None, :] + 0.5 - cx
            cover = alpha * _coverage(pair.shape, dy, dx, size, extra)
            target = _to_yuv(colour)
            patch = luma[y0:y1, x0:x1]
            patch += cover * (target[0] - patch)
            cover2 = cover.reshape((y1 - y0) // 2, 2, (x1 - x0) // 2, 2).mean(axis=(1, 3))[..., None]
            patch2 = chroma[y0 // 2 : y1 // 2, x0 // 2 : x1 // 2]
            patch2 += cover2 * (target[1:] - patch2)
        yield luma, chroma


def _pack_yuv420p(luma: np.ndarray, chroma: np.ndarray) -> np.ndarray:
    """Planes -> the ``(3H/2) x W`` uint8 array PyAV takes for a yuv420p frame."""
    height, width = luma.shape
    out = np.empty((height * 3 // 2, width), np.uint8)
    out[:height] = np.clip(luma + 0.5, 0, 255)
    flat = out[height:].reshape(-1)
    quarter = height * width // 4
    flat[:quarter] = np.clip(chroma[..., 0] + 0.5, 0, 255).ravel()
    flat[quarter:] = np.clip(chroma[..., 1] + 0.5, 0, 255).ravel()
    return out


def render_video(video: SyntheticVideo) -> Iterator[np.ndarray]:
    """Yield the video's frames as ``height x width x 3`` uint8 RGB arrays (chroma upsampled by
    repetition), e.g. to look at them; :func:`encode_video` encodes the YUV planes directly."""
    for luma, chroma in _render_planes(video):
        full = np.repeat(np.repeat(chroma, 2, axis=0), 2, axis=1)
        yuv = np.concatenate([luma[..., None], full], axis=-1)
        yield np.clip(_to_rgb(yuv) + 0.5, 0, 255).astype(np.uint8)


def encode_video(video: SyntheticVideo, path: PathLike, *, crf: int = 23, preset: str = "ultrafast") -> None:
    """Render ``video`` and encode it as H.264 (yuv420p) MP4 at ``path``, atomically.

    The stream's rate is the exact source rate and its codec time base ``1 / rate``, so frame
    ``i`` has PTS ``i`` and the container reports e.g. 30000/1001, not 29.97. A keyframe every
    second bounds what a random clip has to decode before its first frame (x264's default is
    one per 250 frames, about 10 s).
    """
    write_video(
        path,
        (_pack_yuv420p(luma, chroma) for luma, chroma in _render_planes(video)),
        rate=video.fps,
        input_format="yuv420p",
        container_format="mp4",
        # One encoder thread: the generator runs one process per core.
        options={"preset": preset, "crf": str(crf), "threads": "1", "g": str(round(video.fps))},
    )


# ------------------------------------------------------------------------------ annotations


def _row(video: SyntheticVideo, classes: Sequence[str]) -> Dict[str, str]:
    rng = _rng(video.seed, 7)
    sentences = []
    for action in video.actions:
        side = "left" if action.slot == 0 else "right"
        sentences.append(
            f"On the {side}, {classes[action.label].lower()}, from {action.start:.1f} s to {action.end:.1f} s."
        )
    nouns = sorted({_PAIRS[a.label // 2].noun for a in video.actions})
    return {
        "id": video.video_id,
        "subject": "SY" + "".join(rng.choice(list("0123456789"), size=2)),
        "scene": "Synthetic studio",
        "quality": str(int(rng.integers(5, 8))),
        "relevance": str(int(rng.integers(5, 8))),
        "verified": "Yes",
        "script": " ".join(sentences) or "Nothing happens.",
        "objects": ";".join(nouns),
        "descriptions": f"A {video.width}x{video.height} clip at {float(video.fps):.3f} fps; " + " ".join(sentences),
        "actions": video.actions_field(),
        "length": video.length_field(),
    }


def _csv_text(videos: Sequence[SyntheticVideo], classes: Sequence[str]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CHARADES_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for video in videos:
        writer.writerow(_row(video, classes))
    return buffer.getvalue()


def _manifest(dataset: SyntheticCharades) -> dict:
    def video_dict(video: SyntheticVideo) -> dict:
        item = asdict(video)
        item["fps"] = f"{video.fps.numerator}/{video.fps.denominator}"
        item["duration"] = video.duration
        return item

    return {
        "settings": dataset.settings,
        "classes": list(dataset.classes),
        "train": [video_dict(v) for v in dataset.train],
        "test": [video_dict(v) for v in dataset.test],
    }


def is_generated(out_dir: PathLike, dataset: SyntheticCharades) -> bool:
    """Whether ``out_dir`` already holds this exact dataset (manifest, annotations, every video)."""
    root = Path(out_dir)
    manifest = root / MANIFEST_FILE
    if not manifest.is_file():
        return False
    try:
        if json.loads(manifest.read_text())["settings"] != dataset.settings:
            return False
    except (ValueError, KeyError):
        return False
    files = [root / CLASSES_FILE, *(root / name for name in SPLIT_FILES.values())]
    files += [root / VIDEO_DIR / f"{v.video_id}.mp4" for v in dataset.videos]
    return all(f.is_file() for f in files)


# ------------------------------------------------------------------------------- generation


def _encode_job(args: Tuple[SyntheticVideo, str, int, str]) -> str:
    video, path, crf, preset = args
    encode_video(video, path, crf=crf, preset=preset)
    return video.video_id


def _pool_context() -> multiprocessing.context.BaseContext:
    # fork starts workers in milliseconds; they only use numpy and PyAV, never torch.
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")


def _encoded(jobs: Sequence[Tuple[SyntheticVideo, str, int, str]], *, workers: int) -> Iterator[str]:
    """Encode every job, in ``workers`` processes (in this one for 0 or 1, or a single job);
    yields each video's id as it is written."""
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            yield _encode_job(job)
        return
    with concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=_pool_context()) as pool:
        yield from pool.map(_encode_job, jobs)


def _refuse_other_settings(manifest: Path, dataset: SyntheticCharades) -> None:
    """Raise FileExistsError when ``manifest`` exists and records other settings than ``dataset``'s."""
    if not manifest.is_file():
        return
    try:
        previous = json.loads(manifest.read_text()).get("settings")
    except ValueError:
        previous = None
    if previous != dataset.settings:
        raise FileExistsError(
            f"{manifest.parent} holds a synthetic dataset made with other settings ({previous}); asked for "
            f"{dataset.settings}: choose another folder or delete this one"
        )


def generate_synthetic_charades(
    out_dir: PathLike,
    *,
    seed: int = 0,
    num_train: int = 200,
    num_test: int = 60,
    min_seconds: float = 15.0,
    max_seconds: float = 40.0,
    num_workers: Optional[int] = None,
    crf: int = 23,
    preset: str = "ultrafast",
    progress: bool = True,
) -> SyntheticCharades:
    """Write a synthetic Charades release to ``out_dir`` and return its ground truth.

    Videos are written atomically (a temporary file renamed into place), so an interrupted run
    leaves only complete videos under their final names; a rerun with the same settings skips
    them. The manifest (settings and ground truth) is written first, the annotation files last:
    their presence means the dataset is complete.

    Args:
        out_dir: dataset root (``DATA.PATH_TO_DATA_DIR``).
        seed / num_train / num_test / min_seconds / max_seconds: see :func:`plan_synthetic_charades`.
        num_workers: encoding processes (default: one per CPU core, at most 8; 0 = in this process).
        crf / preset: libx264 quality and speed.
        progress: show a tqdm bar.

    Raises:
        FileExistsError: ``out_dir`` holds a synthetic dataset made with other settings.
    """
    from tqdm import tqdm

    dataset = plan_synthetic_charades(
        seed=seed, num_train=num_train, num_test=num_test, min_seconds=min_seconds, max_seconds=max_seconds
    )
    root = Path(out_dir)
    manifest = root / MANIFEST_FILE
    _refuse_other_settings(manifest, dataset)
    # The manifest goes first: a rerun after an interruption checks its settings before it trusts
    # the videos already there. The annotation files go last and mark the dataset complete.
    atomic_write_text(manifest, json.dumps(_manifest(dataset), indent=1) + "\n")
    video_dir = root / VIDEO_DIR
    video_dir.mkdir(parents=True, exist_ok=True)
    jobs = [
        (v, str(video_dir / f"{v.video_id}.mp4"), crf, preset)
        for v in dataset.videos
        if not (video_dir / f"{v.video_id}.mp4").is_file()
    ]
    # Longest first, so the last job does not leave one core idle for long.
    jobs.sort(key=lambda job: -job[0].num_frames * job[0].width * job[0].height)
    workers = min(os.cpu_count() or 1, 8) if num_workers is None else num_workers
    bar = tqdm(
        total=len(dataset.videos),
        initial=len(dataset.videos) - len(jobs),
        desc="synthetic Charades",
        unit="video",
        disable=not progress,
    )
    with bar:
        for _ in _encoded(jobs, workers=workers):
            bar.update()
    lines = "".join(f"c{i:03d} {name}\n" for i, name in enumerate(dataset.classes))
    atomic_write_text(root / CLASSES_FILE, lines)
    for split, name in SPLIT_FILES.items():
        atomic_write_text(root / name, _csv_text(dataset.split(split), dataset.classes))
    return dataset
