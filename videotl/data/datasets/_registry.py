"""Broken videos noted once across all DataLoader worker processes."""

from __future__ import annotations

from ...utils.shared_keys import SharedKeys


class BrokenVideoRegistry(SharedKeys):
    """Unreadable video paths with their reasons, shared by the process that built the dataset
    and its DataLoader workers: :meth:`add` is True only for the first report of a path."""

    def __init__(self):
        super().__init__(prefix="videotl_broken_")
