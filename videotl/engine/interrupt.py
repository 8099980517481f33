"""SIGINT and SIGTERM during a run: stop at a step boundary, never in the middle of a save.

While :class:`StopSignals` is entered, the first signal that arrives inside one of its
:meth:`~StopSignals.deferred` blocks (training steps, checkpoint saves) is only noted; the
training loop looks at :attr:`~StopSignals.signum` at each step boundary and stops there. A signal
outside such a block (evaluation, building loaders), or a second signal, raises
:class:`RunInterrupted` at once; atomic writes keep every file whole either way.

DataLoader workers started by a shielded loader (:func:`shield_workers`) ignore SIGINT: a
terminal's Ctrl-C reaches the whole process group, and the main process decides when to stop.
SIGTERM keeps PyTorch's worker behaviour (a worker exits when its parent or anyone else sends
it); when a stop was requested, a worker that died of it is part of the stop, not an error.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import sys
import threading
from typing import Any, Callable, Dict, Iterator, Optional

from .output_dir import release_inherited_locks

__all__ = ["RunInterrupted", "StopSignals", "STOP_SIGNALS", "shield_workers"]

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_QUIET_CHLD = False


class RunInterrupted(KeyboardInterrupt):
    """A run stopped for SIGINT or SIGTERM. ``signum`` is the signal; ``exit_code`` the shell's
    convention for it (130 for SIGINT, 143 for SIGTERM)."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = int(signum)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signum).name

    def __str__(self) -> str:
        return str(self.args[0])


def _say(text: str) -> None:
    # A handler may run in the middle of a print to the same stream; a raw write cannot clash with it.
    with contextlib.suppress(OSError):
        os.write(2, text.encode("utf-8", "replace"))


class StopSignals:
    """Turn SIGINT and SIGTERM into a stop request while entered (from the main thread only;
    elsewhere the signals keep their handlers)."""

    def __init__(self) -> None:
        self.signum: Optional[int] = None
        self._depth = 0
        self._pid = 0
        self._previous: Dict[int, Any] = {}
        self._previous_hook: Any = None

    def __enter__(self) -> StopSignals:
        self._pid = os.getpid()
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
            self._previous_hook, sys.unraisablehook = sys.unraisablehook, self._unraisable
        return self

    def __exit__(self, *exc_info) -> bool:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()
        if self._previous_hook is not None:
            sys.unraisablehook, self._previous_hook = self._previous_hook, None
        return False

    def _unraisable(self, unraisable) -> None:
        # The handler raised where Python cannot propagate an exception (a __del__ method, an
        # at-fork hook) and only reports it: deliver the signal again, from a thread so that it
        # lands after this hook, and the handler raises where the exception does reach the run.
        if isinstance(unraisable.exc_value, RunInterrupted) and os.getpid() == self._pid:
            again = threading.Timer(0.01, os.kill, (self._pid, unraisable.exc_value.signum))
            again.daemon = True
            again.start()
            return
        self._previous_hook(unraisable)

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        """A block that a first signal does not cut short: the loop inside checks :attr:`requested`."""
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1

    def interrupted(self, message: str) -> RunInterrupted:
        return RunInterrupted(message, self.signum or signal.SIGINT)

    @staticmethod
    def _quiet_worker_deaths() -> None:
        # PyTorch's SIGCHLD handler raises in the main thread, wherever it is, when a worker dies of
        # a signal. After a stop request that is expected (SIGTERM to the process group) and may
        # happen until the dead workers' loader is collected, after this block: the handler stays
        # quiet from now on, and the next fetch from such a loader still reports a dead worker.
        global _QUIET_CHLD
        previous = signal.getsignal(signal.SIGCHLD)
        if _QUIET_CHLD or not callable(previous):
            return
        _QUIET_CHLD = True

        def handler(signum, frame):
            with contextlib.suppress(RuntimeError):
                previous(signum, frame)

        signal.signal(signal.SIGCHLD, handler)

    def _handle(self, signum: int, frame) -> None:
        if os.getpid() != self._pid:
            # A forked DataLoader worker inherited this handler: the main process decides.
            return
        first = self.signum is None
        if first:
            self.signum = signum
            self._quiet_worker_deaths()
        name = signal.Signals(signum).name
        if first and self._depth:
            _say(f"\n{name} received: stopping at the end of this step (send it again to stop at once)\n")
            return
        raise RunInterrupted(f"{name} received", self.signum)


def _ignore_sigint_then(init_fn: Optional[Callable[[int], None]], worker_id: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    release_inherited_locks()
    if init_fn is not None:
        init_fn(worker_id)


def shield_workers(loader) -> Any:
    """Make ``loader``'s worker processes ignore SIGINT and drop the run lock they inherit.

    Chains the loader's own ``worker_init_fn``; loaders without workers are left unchanged.
    Returns ``loader``.
    """
    if getattr(loader, "num_workers", 0) and hasattr(loader, "worker_init_fn"):
        current = loader.worker_init_fn
        if not (isinstance(current, functools.partial) and current.func is _ignore_sigint_then):
            loader.worker_init_fn = functools.partial(_ignore_sigint_then, current)
    return loader
