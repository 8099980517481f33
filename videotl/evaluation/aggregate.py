"""Merge the scores of a video's views (or segments) into one float64 row per video."""

from typing import Any, Dict, List, Sequence

import numpy as np

__all__ = ["ViewAggregator", "ViewCountError"]


class ViewCountError(RuntimeError):
    """A video received more, fewer or repeated views than the dataset announced."""


class ViewAggregator:
    """Accumulate per-view scores into per-video scores by ``max`` or ``mean``.

    Each video ``i`` must receive exactly ``expected_views[i]`` distinct view indices in
    ``[0, expected_views[i])``; anything else raises :class:`ViewCountError` at ``add`` (a repeat
    or an out-of-range index) or at ``finalize`` (a missing view), naming the videos. Sums and
    maxima are kept in float64 and the maximum starts from ``-inf`` (a float32 ``-1e10`` start
    would swallow real scores, as PySlowFast's multi-label "sum" ensemble does).

    A view whose clip could not be decoded (``valid`` False) counts towards the total but adds no
    score. A video with no valid view keeps ``-inf`` everywhere, which the metrics rank last, the
    way the official Charades script treats a video missing from a submission.

    Args:
        expected_views: number of views each video must receive.
        num_classes: width of a score row.
        method: ``"max"`` or ``"mean"``.
    """

    def __init__(self, *, expected_views: Sequence[int], num_classes: int, method: str = "max") -> None:
        if method not in ("max", "mean"):
            raise ValueError(f"ensemble method {method!r}: must be 'max' or 'mean'")
        self.expected = np.asarray(expected_views, dtype=np.int64)
        if (self.expected < 1).any():
            bad = np.flatnonzero(self.expected < 1)[:10].tolist()
            raise ViewCountError(f"videos {bad} expect fewer than one view")
        self.method = method
        num_videos = len(self.expected)
        self.seen = [set() for _ in range(num_videos)]
        self.valid_count = np.zeros(num_videos, dtype=np.int64)
        self.invalid_count = np.zeros(num_videos, dtype=np.int64)
        start = -np.inf if method == "max" else 0.0
        self.scores = np.full((num_videos, num_classes), start, dtype=np.float64)

    @property
    def num_videos(self) -> int:
        return len(self.expected)

    def add(self, *, video_index, view_index, scores, valid=None) -> None:
        """Add a batch of views: indices ``[B]``, scores ``[B, num_classes]``, valid ``[B]`` (default all)."""
        video_index = np.asarray(video_index, dtype=np.int64).reshape(-1)
        view_index = np.asarray(view_index, dtype=np.int64).reshape(-1)
        scores = np.asarray(scores, dtype=np.float64)
        valid = np.ones(len(video_index), dtype=bool) if valid is None else np.asarray(valid, dtype=bool).reshape(-1)
        if scores.ndim != 2 or scores.shape[1] != self.scores.shape[1]:
            raise ValueError(f"scores of shape {scores.shape}; expected [batch, {self.scores.shape[1]}]")
        if not len(video_index) == len(view_index) == len(scores) == len(valid):
            raise ValueError(
                f"batch sizes differ: {len(video_index)} video indices, {len(view_index)} view indices, "
                f"{len(scores)} score rows, {len(valid)} valid flags"
            )
        for video, view, row, ok in zip(video_index, view_index, scores, valid):
            if not 0 <= video < self.num_videos:
                raise ViewCountError(f"video index {video} outside [0, {self.num_videos})")
            if not 0 <= view < self.expected[video]:
                raise ViewCountError(
                    f"video {video}: view index {view} outside [0, {self.expected[video]}) (expected views)"
                )
            if view in self.seen[video]:
                raise ViewCountError(f"video {video}: view {view} received twice")
            self.seen[video].add(int(view))
            if not ok:
                self.invalid_count[video] += 1
                continue
            self.valid_count[video] += 1
            if self.method == "max":
                np.maximum(self.scores[video], row, out=self.scores[video])
            else:
                self.scores[video] += row

    def partial(self) -> Dict[str, Any]:
        """What this aggregator holds for the videos it has seen, for :meth:`merge` elsewhere.

        Under DDP each rank aggregates its own shard and only these rows travel, not every view.
        """
        touched = np.flatnonzero([len(views) > 0 for views in self.seen])
        return {
            "videos": touched,
            "scores": self.scores[touched].copy(),
            "valid": self.valid_count[touched].copy(),
            "invalid": self.invalid_count[touched].copy(),
            "views": [sorted(self.seen[v]) for v in touched],
        }

    def merge(self, partial: Dict[str, Any]) -> None:
        """Fold in another aggregator's :meth:`partial`; a view both have seen is an error."""
        for row, video in enumerate(partial["videos"]):
            views = partial["views"][row]
            repeated = self.seen[video].intersection(views)
            if repeated:
                raise ViewCountError(f"video {video}: views {sorted(repeated)[:10]} received twice (by two processes)")
            self.seen[video].update(views)
            self.valid_count[video] += partial["valid"][row]
            self.invalid_count[video] += partial["invalid"][row]
            # Start values (-inf for max, 0 for mean) are neutral, so rows without a valid view merge as is.
            if self.method == "max":
                np.maximum(self.scores[video], partial["scores"][row], out=self.scores[video])
            else:
                self.scores[video] += partial["scores"][row]

    def finalize(self) -> np.ndarray:
        """Per-video scores ``[num_videos, num_classes]`` in float64; raises if a view is missing."""
        received = np.array([len(s) for s in self.seen], dtype=np.int64)
        wrong = np.flatnonzero(received != self.expected)
        if len(wrong):
            details = ", ".join(f"video {i}: {received[i]} of {self.expected[i]}" for i in wrong[:10])
            more = f" and {len(wrong) - 10} more" if len(wrong) > 10 else ""
            raise ViewCountError(f"{len(wrong)} videos received the wrong number of views ({details}{more})")
        out = self.scores.copy()
        if self.method == "mean":
            has_valid = self.valid_count > 0
            out[has_valid] /= self.valid_count[has_valid, None]
        out[self.valid_count == 0] = -np.inf
        return out

    def failed_videos(self) -> List[int]:
        """Videos with at least one view that could not be decoded."""
        return np.flatnonzero(self.invalid_count > 0).tolist()

    def unscored_videos(self) -> List[int]:
        """Videos with no decodable view at all (their scores are ``-inf``)."""
        return np.flatnonzero(self.valid_count == 0).tolist()
