"""Probe results kept on disk, so that a dataset of tens of thousands of videos (AViD's test split)
is indexed once, not once per process: a second run and every DDP rank read the manifest.

One manifest per video folder, under the cache directory (``$VIDEOTL_CACHE_DIR``, default
``~/.cache/videotl``): ``probes/<hash of the folder>.json`` maps each file name to its size,
modification time and :class:`~videotl.data.decoding.VideoInfo` (or the reason it cannot be read).
An entry counts only while the file's size and mtime match; the manifest is rewritten atomically
(temporary file + rename), so a crash or two ranks writing at once never leave a broken one (the
last writer wins; an entry lost that way is probed again next time).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Union

from tqdm import tqdm

from ..utils.fileio import atomic_write_text
from .decoding import DecodeTimeout, VideoDecodeError, VideoInfo, call_with_timeout, file_key, probe, remember_probe

__all__ = ["cache_dir", "manifest_path", "probe_videos"]

logger = logging.getLogger("videotl.data")

# 2: VideoInfo gained timing, rotation, discontinuities and leading_frames.
_VERSION = 2
PathLike = Union[str, os.PathLike]


def cache_dir() -> Path:
    """``$VIDEOTL_CACHE_DIR``, or ``~/.cache/videotl``."""
    return Path(os.environ.get("VIDEOTL_CACHE_DIR") or Path.home() / ".cache" / "videotl")


def manifest_path(folder: PathLike) -> Path:
    """Where the probe manifest of the videos in ``folder`` lives."""
    digest = hashlib.sha1(os.path.abspath(folder).encode("utf-8")).hexdigest()[:16]
    return cache_dir() / "probes" / f"{digest}.json"


def _load(path: Path, folder: str) -> Dict[str, dict]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:
        logger.warning("probe manifest %s is unreadable (%s): probing again", path, error)
        return {}
    if not isinstance(data, dict) or data.get("version") != _VERSION or data.get("folder") != folder:
        return {}
    entries = data.get("entries")
    return entries if isinstance(entries, dict) else {}


def probe_videos(
    paths: Sequence[PathLike],
    *,
    use_cache: bool = True,
    probe_missing: bool = True,
    timeout: float = 0.0,
    show_progress: bool = True,
    on_error: Optional[Callable[[VideoDecodeError], None]] = None,
) -> List[Optional[VideoInfo]]:
    """Probe every path, reading and updating the folders' manifests.

    Args:
        use_cache: read and write manifests (else probe everything, as :func:`probe` does).
        probe_missing: probe files the manifests lack; False only seeds the per-process probe
            cache from the manifests (and returns None for the rest).
        timeout: seconds one probe may take (0: no limit); a probe past it counts as unreadable.
        on_error: called with the error of each unreadable file.

    Returns:
        per path, its :class:`VideoInfo`, or None when it cannot be read (or was not probed).
    """
    results: List[Optional[VideoInfo]] = [None] * len(paths)
    folders: Dict[str, List[int]] = {}
    for i, path in enumerate(paths):
        folders.setdefault(os.path.dirname(os.path.abspath(path)), []).append(i)
    manifests = {folder: (_load(manifest_path(folder), folder) if use_cache else {}) for folder in folders}
    todo: List[int] = []
    for folder, indices in folders.items():
        entries = manifests[folder]
        for i in indices:
            try:
                key = file_key(paths[i])
            except VideoDecodeError as error:
                _report(on_error, error)
                continue
            entry = entries.get(os.path.basename(key[0]))
            if entry and entry.get("size") == key[1] and entry.get("mtime_ns") == key[2]:
                if "error" in entry:
                    _report(on_error, VideoDecodeError(key[0], entry["error"]))
                    continue
                try:
                    info = VideoInfo.from_dict(entry["info"])
                except (KeyError, TypeError, ValueError):
                    todo.append(i)
                    continue
                remember_probe(key, info)
                results[i] = info
            else:
                todo.append(i)
    if not probe_missing or not todo:
        return results
    items: Iterable[int] = todo
    if show_progress and len(todo) > 50:
        items = tqdm(todo, desc="probing videos", unit="video", dynamic_ncols=True)
    changed = set()
    for i in items:
        path = paths[i]
        try:
            key = file_key(path)
            info = call_with_timeout(functools.partial(probe, path), seconds=timeout, path=path)
            entry = {"size": key[1], "mtime_ns": key[2], "info": info.to_dict()}
            results[i] = info
        except VideoDecodeError as error:
            _report(on_error, error)
            if isinstance(error, DecodeTimeout):
                continue  # the machine may have been busy: probe again next time
            try:
                key = file_key(path)
            except VideoDecodeError:
                continue
            entry = {"size": key[1], "mtime_ns": key[2], "error": error.reason}
        folder = os.path.dirname(key[0])
        manifests[folder][os.path.basename(key[0])] = entry
        changed.add(folder)
    if use_cache:
        for folder in changed:
            _save(manifest_path(folder), folder, manifests[folder])
    return results


def _report(on_error, error: VideoDecodeError) -> None:
    if on_error is not None:
        on_error(error)


def _save(path: Path, folder: str, entries: Dict[str, dict]) -> None:
    try:
        atomic_write_text(path, json.dumps({"version": _VERSION, "folder": folder, "entries": entries}))
    except OSError as error:
        logger.warning("cannot write the probe manifest %s (%s): the next run probes again", path, error)
