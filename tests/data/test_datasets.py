import json
import math
from fractions import Fraction

import pytest
import torch

from videotl.config import load_config
from videotl.data import DatasetError, ShardSampler, build_dataset, build_loader
from videotl.data.loader import SegmentBatches, rank_videos
from videotl.data.strategies import clip_classes

from .conftest import BACKENDS, SMALL, frame_indices

MEAN, STD = 0.45, 0.225


def indices_of(inputs):
    """Frame indices of a normalised C x T x H x W clip (undo the normalisation first)."""
    clip = ((inputs * STD + MEAN) * 255).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 3, 0)
    return frame_indices(clip)


def expected(start, rate, count, num=8, fps=12):
    return [
        min(
            math.floor((Fraction(start).limit_denominator(10**6) + Fraction(k, fps)) * rate + Fraction(1, 10**5)),
            count - 1,
        )
        for k in range(num)
    ]


def hot(*classes, n=5):
    label = torch.zeros(n)
    label[list(classes)] = 1
    return label


@pytest.mark.parametrize("backend", BACKENDS)
def test_charades_train_clip_labels_follow_the_intervals(charades_cfg, backend):
    # Short side 32 = crop 32: the crop keeps every row, so the frame index bands survive.
    cfg = charades_cfg("DATA.TRAIN_JITTER_SCALES", "[32, 32]", "DATA.DECODING_BACKEND", backend)
    dataset = build_dataset(cfg, "train", "train")
    assert dataset.video_ids == ["AAA01", "BBB02", "BROKE"] and len(dataset) == 3
    assert dataset.class_names[3] == "Opening a door"
    seen = set()
    for seed in range(12):
        torch.manual_seed(seed)
        sample = dataset[0]  # AAA01: c001 over [0, 1], c003 over [1.5, 3]; clips last 8/12 s
        start, end = sample["start_sec"], sample["end_sec"]
        assert end == pytest.approx(start + 8 / 12) and 0 <= start <= 3 - 8 / 12
        classes = ([1] if start < 1.0 else []) + ([3] if end > 1.5 else [])
        assert torch.equal(sample["label"], hot(*classes)), (start, sample["label"])
        assert sample["inputs"].shape == (3, 8, 32, 32) and sample["inputs"].dtype == torch.float32
        assert indices_of(sample["inputs"]) == expected(start, 30, 90)
        assert (sample["video_index"], sample["view_index"], sample["valid"], sample["skipped"]) == (0, 0, True, 0)
        seen.add(tuple(classes))
    assert len(seen) >= 2  # random starts reach different label sets


def test_clip_labels_with_a_minimum_coverage_count_the_frames_that_show_the_action(charades_cfg):
    dataset = build_dataset(
        charades_cfg("DATA.TRAIN_JITTER_SCALES", "[32, 32]", "DATA.TRAIN_LABEL_MIN_COVERAGE", "0.5"), "train", "train"
    )
    seen = set()
    for seed in range(16):
        torch.manual_seed(seed)
        sample = dataset[0]  # AAA01: c001 over [0, 1], c003 over [1.5, 3]; 8 frames at 12 fps
        start = sample["start_sec"]
        # Frames at start + k / 12; a class counts when at least 4 of the 8 fall in its interval.
        times = [start + k / 12 for k in range(8)]
        classes = [c for c, (s, e) in ((1, (0.0, 1.0)), (3, (1.5, 3.0))) if sum(s <= t < e for t in times) >= 4]
        assert torch.equal(sample["label"], hot(*classes)), (start, sample["label"])
        seen.add(tuple(classes))
    assert len(seen) >= 2
    # A clip from 0.92 s: c001 shows on its first frame only, c003 on its last only.
    start = 1.5 - 7 / 12 + 0.001
    intervals = dataset.records[0].intervals
    assert clip_classes(intervals, start, num_frames=8, fps=12, min_coverage=0.5) == []
    # Any overlap (the default rule) keeps both.
    assert clip_classes(intervals, start, num_frames=8, fps=12, min_coverage=0.0) == [1, 3]


def test_charades_video_level_training_labels(charades_cfg):
    dataset = build_dataset(charades_cfg("DATA.TRAIN_LABELS", "video"), "train", "train")
    assert torch.equal(dataset[0]["label"], hot(1, 3))
    assert torch.equal(dataset[1]["label"], hot(0))


def test_broken_training_video_is_skipped_deterministically(charades_cfg):
    dataset = build_dataset(charades_cfg(), "train", "train")
    first = dataset[2]
    assert first["video_index"] in (0, 1) and first["skipped"] >= 1 and first["valid"]
    assert any(path.endswith("BROKE.mp4") for path in dataset.broken)
    assert dataset[2]["video_index"] == first["video_index"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_charades_views_mode_indexing_and_content(charades_cfg, backend):
    cfg = charades_cfg(
        "TEST.MODE",
        "views",
        "TEST.NUM_ENSEMBLE_VIEWS",
        "2",
        "TEST.NUM_SPATIAL_CROPS",
        "3",
        "DATA.DECODING_BACKEND",
        backend,
    )
    dataset = build_dataset(cfg, "test", "views")
    assert dataset.video_ids == ["AAA01", "CCC03", "BROKE"]
    assert len(dataset) == 3 * 2 * 3 and dataset.num_views(0) == 6
    rate = Fraction(30000, 1001)
    # CCC03: 60 frames at 29.97 fps; the last start 60 / rate - 8 / 12 = 1.3353 s, moved back onto
    # the 12 fps grid: 16 / 12.
    last_start = Fraction(math.floor((60 / rate - Fraction(8, 12)) * 12), 12)
    for t, start in enumerate([0, last_start]):
        for s in range(3):
            sample = dataset[1 * 6 + t * 3 + s]  # PySlowFast: video * V * C + t * C + s
            assert (sample["video_index"], sample["view_index"], sample["valid"]) == (1, t * 3 + s, True)
            assert sample["start_sec"] == pytest.approx(float(start), abs=1e-6)
            assert indices_of(sample["inputs"]) == expected(start, rate, 60)
            assert torch.equal(sample["label"], hot())
    broken = dataset[2 * 6 + 4]
    assert broken["valid"] is False and broken["inputs"].abs().sum() == 0
    assert broken["inputs"].shape == (3, 8, 32, 32) and torch.equal(broken["label"], hot(4))
    assert torch.equal(dataset.video_labels(), torch.stack([hot(1, 3), hot(), hot(4)]))


@pytest.mark.parametrize("backend", BACKENDS)
def test_charades_segments_mode(charades_cfg, backend):
    dataset = build_dataset(charades_cfg("DATA.DECODING_BACKEND", backend), "test", "segments")
    # AAA01: 3 s -> 36 target frames -> 5 segments; CCC03: 2.002 s -> 25 -> 4; BROKE: 1 invalid.
    assert [dataset.num_views(v) for v in range(3)] == [5, 4, 1] and len(dataset) == 10
    assert dataset.segment_ranges(0)[1] == pytest.approx((8 / 12, 16 / 12))
    samples = [dataset[i] for i in range(len(dataset))]
    assert [(s["video_index"], s["view_index"]) for s in samples] == [(0, i) for i in range(5)] + [
        (1, i) for i in range(4)
    ] + [(2, 0)]
    for sample in samples[:5]:
        start = Fraction(sample["view_index"] * 8, 12)
        assert sample["segment_start_sec"] == pytest.approx(float(start))
        assert indices_of(sample["inputs"]) == expected(start, 30, 90)
        assert torch.equal(sample["label"], hot(1, 3)) and sample["valid"]
    assert indices_of(samples[4]["inputs"]) == [80, 82, 85, 87, 89, 89, 89, 89]  # padded with the last frame
    assert samples[-1]["valid"] is False
    assert torch.equal(dataset.segment_samples(0)[2]["inputs"], samples[2]["inputs"])


@pytest.mark.parametrize("workers", [0, 2])
def test_segment_loader_yields_every_segment_once(charades_cfg, workers):
    cfg = charades_cfg("DATA_LOADER.NUM_WORKERS", str(workers), "TEST.BATCH_SIZE_PER_DEVICE", "3")
    loader = build_loader(cfg, "test", "segments")
    pairs, batches = [], 0
    for batch in loader:
        batches += 1
        assert batch["inputs"].shape[1:] == (3, 8, 32, 32)
        pairs += list(zip(batch["video_index"].tolist(), batch["view_index"].tolist()))
        assert batch["valid"].dtype == torch.bool
    assert sorted(pairs) == [(0, i) for i in range(5)] + [(1, i) for i in range(4)] + [(2, 0)]
    assert batches == len(loader)


def test_segment_batches_write_into_batch_tensors_reused_only_once_dropped(charades_cfg):
    dataset = build_dataset(charades_cfg(), "test", "segments")
    # The samples one by one (each allocated on its own), stacked: what every batch must hold.
    samples = [s for v in range(3) for s in dataset.segment_samples(v)]
    want = torch.stack([s["inputs"] for s in samples])
    assert not torch.any(want[-1]) and torch.any(want[0])  # the broken video's sample is zeros
    batches = SegmentBatches(dataset, videos=[0, 1, 2], batch_size=3, num_workers=1)
    # Kept all at once: no batch tensor may be reused while a batch still holds it.
    kept = list(batches)
    assert [len(b["inputs"]) for b in kept] == [3, 3, 3, 1]
    assert torch.equal(torch.cat([b["inputs"] for b in kept]), want)
    assert len({b["inputs"].data_ptr() for b in kept}) == 4
    assert [int(v) for b in kept for v in b["video_index"]] == [s["video_index"] for s in samples]
    del kept
    # Dropped as it goes (the usual loop): the contents are the same, and two tensors take turns.
    seen, pointers = [], []
    for batch in batches:
        seen.append(batch["inputs"].clone())
        pointers.append(batch["inputs"].data_ptr())
    assert torch.equal(torch.cat(seen), want)
    assert pointers[0] == pointers[2] and pointers[0] != pointers[1]


def test_evaluation_shards_cover_every_sample_exactly_once(charades_cfg):
    cfg = charades_cfg("TEST.NUM_ENSEMBLE_VIEWS", "2", "TEST.NUM_SPATIAL_CROPS", "3")
    views = build_dataset(cfg, "test", "views")
    segments = build_dataset(cfg, "test", "segments")
    for world in (1, 2, 3, 4):
        shards = [list(ShardSampler(views, rank=r, world_size=world)) for r in range(world)]
        assert sorted(i for shard in shards for i in shard) == list(range(len(views)))
        blocks = [list(rank_videos(3, rank=r, world_size=world)) for r in range(world)]
        assert sorted(v for block in blocks for v in block) == [0, 1, 2]
        per_rank = [SegmentBatches(segments, videos=b, batch_size=2, num_workers=1).num_samples() for b in blocks]
        assert sum(per_rank) == len(segments)


def test_distributed_loaders_in_a_one_process_group(charades_cfg, tmp_path):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        cfg = charades_cfg()
        train = build_loader(cfg, "train", "train", distributed=True)
        train.sampler.set_epoch(3)
        assert sorted(train.sampler) == [0, 1, 2]
        views = build_loader(cfg, "test", "views", distributed=True)
        assert list(views.sampler) == [0, 1, 2]
    finally:
        dist.destroy_process_group()
    with pytest.raises(RuntimeError, match="torch.distributed"):
        build_loader(cfg, "test", "views", distributed=True)


@pytest.mark.parametrize("workers", [0, 2])
def test_train_loader_epochs_and_skip_count(charades_cfg, workers):
    loader = build_loader(charades_cfg("DATA_LOADER.NUM_WORKERS", str(workers)), "train", "train")
    orders = []
    for epoch in range(2):
        loader.sampler.set_epoch(epoch)
        skipped, videos = 0, []
        for batch in loader:
            assert batch["inputs"].shape[1:] == (3, 8, 32, 32) and batch["label"].shape[1:] == (5,)
            skipped += int(batch["skipped"].sum())
            videos += batch["video_index"].tolist()
        assert skipped >= 1 and 2 not in videos  # BROKE was replaced every time it was drawn
        orders.append(list(loader.sampler))
    assert sorted(orders[0]) == [0, 1, 2]


def test_missing_paths_are_named(charades_root, tmp_path):
    def cfg(root, *extra):
        return load_config("", SMALL + ["DATA.PATH_TO_DATA_DIR", str(root), "MODEL.NUM_CLASSES", "5"] + list(extra))

    with pytest.raises(DatasetError, match=f"{tmp_path / 'nowhere'}: no such folder"):
        build_dataset(cfg(tmp_path / "nowhere"), "train", "train")
    root = tmp_path / "partial"
    root.mkdir()
    with pytest.raises(DatasetError, match="Charades_v1_classes.txt: no such file; expected the Charades class list"):
        build_dataset(cfg(root), "train", "train")
    (root / "Charades_v1_classes.txt").write_text((charades_root / "Charades_v1_classes.txt").read_text())
    with pytest.raises(DatasetError, match="Charades_v1_train.csv: no such file"):
        build_dataset(cfg(root), "train", "train")
    (root / "Charades_v1_train.csv").write_text((charades_root / "Charades_v1_train.csv").read_text())
    with pytest.raises(DatasetError, match="Charades_v1_480 or Charades_v1"):
        build_dataset(cfg(root), "train", "train")
    (root / "Charades_v1").mkdir()  # the original-resolution folder is accepted too
    assert build_dataset(cfg(root), "train", "train").records[0].path == root / "Charades_v1" / "AAA01.mp4"
    with pytest.raises(DatasetError, match="lists 5 classes but MODEL.NUM_CLASSES = 157"):
        build_dataset(cfg(root, "MODEL.NUM_CLASSES", "157"), "train", "train")


def test_malformed_rows_name_file_and_line(charades_root, tmp_path):
    root = tmp_path / "bad"
    (root / "Charades_v1_480").mkdir(parents=True)
    (root / "Charades_v1_classes.txt").write_text("c000 a\nc001 b\nc002 c\nc003 d\nc004 e\n")
    header = "id,subject,scene,quality,relevance,verified,script,objects,descriptions,actions,length\n"
    good = 'X1,S,K,6,7,Yes,"a, b",o,d,c001 0.00 1.00,3\n'
    (root / "Charades_v1_train.csv").write_text(header + good + "X2,S,K,6,7,Yes,s,o,d,c001 0.00;c002 1 2,3\n")
    cfg = load_config("", SMALL + ["DATA.PATH_TO_DATA_DIR", str(root), "MODEL.NUM_CLASSES", "5"])
    with pytest.raises(DatasetError, match=r"Charades_v1_train.csv:3: malformed action 'c001 0.00'"):
        build_dataset(cfg, "train", "train")
    (root / "Charades_v1_train.csv").write_text(header + good + "X3,S,K,6,7,Yes,s,o,d,c009 0 1,3\n")
    with pytest.raises(DatasetError, match=r"Charades_v1_train.csv:3: action class c009"):
        build_dataset(cfg, "train", "train")
    (root / "Charades_v1_classes.txt").write_text("c000 a\nHolding\n")
    with pytest.raises(DatasetError, match=r"Charades_v1_classes.txt:2: malformed class line"):
        build_dataset(cfg, "train", "train")


def _avid(tmp_path, videos):
    root = tmp_path / "avid"
    (root / "videos").mkdir(parents=True)
    (root / "avid_classes.txt").write_text("archery\nbaking\n")
    entries = {"a.mp4": "baking", "b.mp4": "none", "c.mp4": "", "d.mp4": "zumba", "e.mp4": "archery", "f.mp4": "none"}
    (root / "avid_val.json").write_text(json.dumps(entries))
    for name in ("a.mp4", "e.mp4"):
        (root / "videos" / name).write_bytes(videos["30"].read_bytes())
    return root


def test_avid_label_rules_and_report(tmp_path, videos):
    from videotl.data.datasets import load_avid

    root = _avid(tmp_path, videos)
    records, names, report = load_avid(root, "val")
    assert names == ["archery", "baking"] and [(r.video_id, r.labels) for r in records] == [("a", (1,)), ("e", (0,))]
    assert (report.kept, report.none_removed, report.empty_removed, report.unknown_removed) == (2, 2, 1, 1)
    records, names, report = load_avid(root, "val", none_label="class")
    assert names == ["archery", "baking", "none"] and [r.labels for r in records] == [(1,), (2,), (0,), (2,)]
    assert report.none_removed == 0 and report.kept == 4
    with pytest.raises(DatasetError, match=r"'c.mp4' has label ''"):
        load_avid(root, "val", unknown_label="error")
    cfg = load_config(
        "",
        SMALL
        + [
            "DATA.PATH_TO_DATA_DIR",
            str(root),
            "MODEL.NUM_CLASSES",
            "2",
            "DATA.MULTI_LABEL",
            "False",
            "MODEL.LOSS_FUNC",
            "cross_entropy",
            "MODEL.HEAD_ACT",
            "softmax",
            "TEST.DATASET",
            "avid",
            "TRAIN.DATASET",
            "avid",
        ],
    )
    dataset = build_dataset(cfg, "val", "views")
    sample = dataset[0]
    assert sample["label"].dtype == torch.int64 and int(sample["label"]) == 1
    assert torch.equal(dataset.video_labels(), torch.tensor([1, 0]))


def test_csv_dataset(tmp_path, videos):
    root = tmp_path / "own"
    (root / "clips").mkdir(parents=True)
    (root / "clips" / "one_clip.mp4").write_bytes(videos["25"].read_bytes())
    (root / "train.csv").write_text(f"clips/one_clip.mp4 2\n\n{videos['30']} 0,3\n")
    base = SMALL + [
        "DATA.PATH_TO_DATA_DIR",
        str(root),
        "MODEL.NUM_CLASSES",
        "4",
        "TRAIN.DATASET",
        "csv",
        "TEST.DATASET",
        "csv",
    ]
    dataset = build_dataset(load_config("", base + ["DATA.TRAIN_LABELS", "video"]), "train", "train")
    assert dataset.video_ids == ["clips/one_clip.mp4", str(videos["30"])]
    assert torch.equal(dataset.video_labels(), torch.tensor([[0, 0, 1, 0], [1, 0, 0, 1]], dtype=torch.float32))
    assert torch.equal(dataset[1]["label"], torch.tensor([1.0, 0, 0, 1]))
    (root / "train.csv").write_text("clips/one_clip.mp4 2\nclips/x.mp4 7\n")
    with pytest.raises(DatasetError, match=r"train.csv:2: label\(s\) \[7\] outside \[0, 4\)"):
        build_dataset(load_config("", base), "train", "train")
    # The path is the id in the space-separated score file: a space in it is refused.
    (root / "train.csv").write_text("clips/one_clip.mp4 2\nclips/one clip.mp4 1\n")
    with pytest.raises(DatasetError, match=r"train.csv:2: video id 'clips/one clip.mp4' contains white space"):
        build_dataset(load_config("", base), "train", "train")
    (root / "train.csv").write_text("clips/x.mp4;1\n")
    with pytest.raises(DatasetError, match=r"train.csv:1: malformed line"):
        build_dataset(load_config("", base), "train", "train")
    (root / "train.csv").write_text("clips/x.mp4;1\n")
    cfg = load_config("", base + ["DATA.PATH_LABEL_SEPARATOR", ";"])
    assert build_dataset(cfg, "train", "train").records[0].labels == (1,)


def _add_in_child(registry, queue):
    queue.put(registry.add("/videos/bad.mp4", "corrupt"))


def test_broken_paths_are_shared_across_workers_and_noted_once(charades_cfg):
    import multiprocessing

    cfg = charades_cfg("DATA_LOADER.NUM_WORKERS", "2", "TEST.NUM_ENSEMBLE_VIEWS", "2")
    loader = build_loader(cfg, "test", "views")
    valid = torch.cat([batch["valid"] for batch in loader])
    assert valid.tolist() == [True] * 4 + [False] * 2
    # Found in a worker process, visible here.
    assert list(loader.dataset.broken) == [str(loader.dataset.records[2].path)]

    registry = loader.dataset._broken
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    children = [context.Process(target=_add_in_child, args=(registry, queue)) for _ in range(3)]
    for child in children:
        child.start()
    firsts = sorted(queue.get(timeout=30) for _ in children)
    for child in children:
        child.join()
    assert firsts == [False, False, True] and registry.add("/videos/bad.mp4", "again") is False
    assert loader.dataset.broken["/videos/bad.mp4"] == "corrupt"
