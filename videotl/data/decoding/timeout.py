"""A time limit on decoding: a decoder spinning on a corrupt stream costs a sample, not the run."""

from __future__ import annotations

import logging
import os
import queue
import threading
from typing import Callable, Optional, TypeVar

import torch

from .errors import DecodeTimeout, PathLike

__all__ = ["call_with_timeout"]

logger = logging.getLogger("videotl.data")

T = TypeVar("T")


class _DecodeThread:
    """A daemon thread that runs decoding calls, so that the caller can stop waiting."""

    def __init__(self):
        self.requests: queue.SimpleQueue = queue.SimpleQueue()
        self.pid = os.getpid()
        threading.Thread(target=self._run, name="videotl-decode", daemon=True).start()

    def _run(self):
        while True:
            fn, box, done = self.requests.get()
            try:
                box.append((True, fn()))
            except BaseException as error:  # handed to the waiting caller, who re-raises it
                box.append((False, error))
            done.set()


_DECODE_THREAD: Optional[_DecodeThread] = None
_DECODE_LOCK = threading.Lock()


def _in_callers_stream(fn: Callable[[], T]) -> Callable[[], T]:
    # CUDA streams are per thread: the decode thread would otherwise issue on the default stream.
    # Never touches CUDA where it is not started (DataLoader workers).
    if not torch.cuda.is_initialized():
        return fn
    stream = torch.cuda.current_stream()

    def in_stream():
        with torch.cuda.stream(stream):
            return fn()

    return in_stream


def call_with_timeout(fn: Callable[[], T], *, seconds: float, path: PathLike) -> T:
    """``fn()``, or a :class:`DecodeTimeout` (a VideoDecodeError) for ``path`` once it has run ``seconds``.

    ``seconds <= 0`` calls ``fn`` directly. The call runs in a daemon thread of this process; one
    that never returns (a decoder spinning on a corrupt stream) is left behind and the next call
    gets a new thread, so a hung file costs a sample, not the run. ``fn`` runs in the caller's
    current CUDA stream (a GPU decode issued from a side stream stays on it).
    """
    global _DECODE_THREAD
    if not seconds or seconds <= 0:
        return fn()
    fn = _in_callers_stream(fn)
    with _DECODE_LOCK:
        # A forked DataLoader worker inherits the object but not the thread.
        if _DECODE_THREAD is None or _DECODE_THREAD.pid != os.getpid():
            _DECODE_THREAD = _DecodeThread()
        worker = _DECODE_THREAD
    box: list = []
    done = threading.Event()
    worker.requests.put((fn, box, done))
    if not done.wait(seconds):
        with _DECODE_LOCK:
            if _DECODE_THREAD is worker:
                _DECODE_THREAD = None
        logger.warning("decoding %s took longer than %g s: abandoned (its thread may still be running)", path, seconds)
        raise DecodeTimeout(path, f"decoding took longer than {seconds:g} s (time limit); skipped")
    ok, value = box[0]
    if ok:
        return value
    raise value
