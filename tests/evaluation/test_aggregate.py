import numpy as np
import pytest

from videotl.evaluation import ViewAggregator, ViewCountError


def test_single_view_is_identity():
    agg = ViewAggregator(expected_views=[1, 1], num_classes=2, method="max")
    agg.add(video_index=[1, 0], view_index=[0, 0], scores=np.array([[0.3, 0.4], [0.1, 0.2]]))
    np.testing.assert_array_equal(agg.finalize(), [[0.1, 0.2], [0.3, 0.4]])
    agg = ViewAggregator(expected_views=[1], num_classes=2, method="mean")
    agg.add(video_index=[0], view_index=[0], scores=np.array([[0.3, 0.4]]))
    np.testing.assert_array_equal(agg.finalize(), [[0.3, 0.4]])


def test_max_starts_from_minus_infinity():
    # Logit-like negative scores: a zero or -1e10 float32 start would be wrong or lossy.
    agg = ViewAggregator(expected_views=[2], num_classes=1, method="max")
    agg.add(video_index=[0, 0], view_index=[0, 1], scores=np.array([[-3.0], [-2.5]]))
    assert agg.finalize()[0, 0] == -2.5


def test_mean_accumulates_in_float64():
    agg = ViewAggregator(expected_views=[3], num_classes=1, method="mean")
    values = np.array([[1e8], [1.0], [1e-8]], dtype=np.float32)
    agg.add(video_index=[0, 0, 0], view_index=[0, 1, 2], scores=values)
    out = agg.finalize()
    assert out.dtype == np.float64
    assert out[0, 0] == pytest.approx((1e8 + 1.0 + float(np.float32(1e-8))) / 3, rel=1e-15)


def test_wrong_view_count_raises():
    agg = ViewAggregator(expected_views=[2, 2], num_classes=1)
    agg.add(video_index=[0, 0, 1], view_index=[0, 1, 0], scores=np.zeros((3, 1)))
    with pytest.raises(ViewCountError, match="video 1: 1 of 2"):
        agg.finalize()


def test_repeated_or_out_of_range_view_raises():
    agg = ViewAggregator(expected_views=[2], num_classes=1)
    agg.add(video_index=[0], view_index=[1], scores=np.zeros((1, 1)))
    with pytest.raises(ViewCountError, match="twice"):
        agg.add(video_index=[0], view_index=[1], scores=np.zeros((1, 1)))
    with pytest.raises(ViewCountError, match="outside"):
        agg.add(video_index=[0], view_index=[2], scores=np.zeros((1, 1)))
    with pytest.raises(ViewCountError, match="video index 3"):
        agg.add(video_index=[3], view_index=[0], scores=np.zeros((1, 1)))


def test_undecodable_views_count_but_add_no_score():
    agg = ViewAggregator(expected_views=[2, 1], num_classes=1, method="mean")
    agg.add(
        video_index=[0, 0, 1], view_index=[0, 1, 0], scores=np.array([[0.4], [0.0], [0.0]]), valid=[True, False, False]
    )
    out = agg.finalize()
    assert out[0, 0] == 0.4  # the mean over the one valid view
    assert out[1, 0] == -np.inf  # nothing decoded: ranked last
    assert agg.failed_videos() == [0, 1] and agg.unscored_videos() == [1]


def test_bad_method_and_shapes():
    with pytest.raises(ValueError, match="sum"):
        ViewAggregator(expected_views=[1], num_classes=1, method="sum")
    agg = ViewAggregator(expected_views=[1], num_classes=2)
    with pytest.raises(ValueError, match="shape"):
        agg.add(video_index=[0], view_index=[0], scores=np.zeros((1, 3)))


def test_partials_merge_like_one_aggregator():
    rng = np.random.default_rng(0)
    scores = rng.random((12, 3))
    videos = np.repeat(np.arange(4), 3)
    views = np.tile(np.arange(3), 4)
    for method in ("max", "mean"):
        whole = ViewAggregator(expected_views=[3] * 4, num_classes=3, method=method)
        whole.add(video_index=videos, view_index=views, scores=scores)
        # Two "ranks" with interleaved samples: videos split across them.
        merged = ViewAggregator(expected_views=[3] * 4, num_classes=3, method=method)
        for rank in (0, 1):
            part = ViewAggregator(expected_views=[3] * 4, num_classes=3, method=method)
            part.add(
                video_index=videos[rank::2],
                view_index=views[rank::2],
                scores=scores[rank::2],
                valid=np.arange(rank, 12, 2) != 5,
            )
            merged.merge(part.partial())
        np.testing.assert_allclose(merged.finalize()[[0, 2, 3]], whole.finalize()[[0, 2, 3]], rtol=1e-15)
        assert merged.failed_videos() == [1]
    part = ViewAggregator(expected_views=[3] * 4, num_classes=3)
    part.add(video_index=[0], view_index=[1], scores=scores[:1])
    with pytest.raises(ViewCountError, match="by two processes"):
        part.merge(part.partial())
