"""The lists researchers arrive with: MMAction2's video lists (single- and multi-label, any file
name) and Kinetics' official CSVs (clips named <youtube_id>_<start:06d>_<end:06d> in per-class or
flat folders, some missing) read, train and evaluate through tools/train_net.py; Kinetics is scored
with top-1 / top-5 accuracy over multi-view testing."""

import csv
import json
import logging
from pathlib import Path

import pytest

from tests.data.conftest import SMALL, write_video
from videotl.config import load_config
from videotl.data import DatasetError, build_dataset, load_records
from videotl.data.datasets import load_kinetics

from .test_tools import TINY_MODEL, tool  # noqa: F401  (the fixture)

KINETICS_CLASSES = ["abseiling", "tying knot (not on a tie)", "zumba"]
# (label, youtube_id, start, end) per split; the val clip of "zumba" was never downloaded.
KINETICS_CLIPS = {
    "train": [
        ("abseiling", "-3B32lodo2M", 59, 69),
        ("tying knot (not on a tie)", "0_8-Mk2fLDs", 4, 14),
        ("zumba", "zxJ6hGxrPPw", 120, 130),
        ("abseiling", "a_b-c", 0, 10),
    ],
    "validate": [
        ("abseiling", "Ab9YvNa3C0I", 7, 17),
        ("tying knot (not on a tie)", "kX8-_t0Q2aU", 30, 40),
        ("zumba", "gone0000000", 15, 25),
    ],
}
MISSING = "gone0000000_000015_000025"
KINETICS_RUN = [
    "MODEL.NUM_CLASSES", "3", "DATA.MULTI_LABEL", "False", "MODEL.LOSS_FUNC", "cross_entropy",
    "MODEL.HEAD_ACT", "softmax", "TRAIN.DATASET", "kinetics", "TEST.DATASET", "kinetics", "TEST.SPLIT", "val",
]  # fmt: skip


def write_kinetics(root: Path) -> Path:
    """The official CSV layout: training clips in per-class folders (named as the downloader of
    the ActivityNet crawler names them), validation clips flat; plus the unlabelled test CSV."""
    root.mkdir(parents=True)
    for split, clips in KINETICS_CLIPS.items():
        with open(root / f"{split}.csv", "w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["label", "youtube_id", "time_start", "time_end", "split"])
            for label, youtube_id, start, end in clips:
                writer.writerow([label, youtube_id, start, end, "train" if split == "train" else "val"])
                name = f"{youtube_id}_{start:06d}_{end:06d}.mp4"
                folder = root / "train" / label.replace(" ", "_") if split == "train" else root / "validate"
                if youtube_id != "gone0000000":
                    folder.mkdir(parents=True, exist_ok=True)
                    write_video(folder / name, rate=25, num_frames=40)
    (root / "test.csv").write_text("youtube_id,time_start,time_end,split\nx1,0,10,test\n", encoding="utf-8")
    return root


def write_mmaction(root: Path, *, multi_label: bool) -> Path:
    """MMAction2's lists under names of MMAction2's own (kinetics400_*_list_videos.txt)."""
    (root / "videos" / "sub").mkdir(parents=True)
    for name in ("a", "b", "c", "d"):
        write_video(root / "videos" / "sub" / f"{name}.mp4", rate=25, num_frames=40)
    if multi_label:
        train, val = "sub/a.mp4 0 2\nsub/b.mp4 1\nsub/c.mp4 0 1 2\n", "sub/d.mp4 2 0\nsub/a.mp4 1\n"
    else:
        train, val = "sub/a.mp4 0\nsub/b.mp4 1\nsub/c.mp4 2\n", "sub/d.mp4 2\nsub/a.mp4 0\n"
    (root / "kinetics400_train_list_videos.txt").write_text(train, encoding="utf-8")
    (root / "kinetics400_val_list_videos.txt").write_text(val, encoding="utf-8")
    (root / "label_map.txt").write_text("archery\nbaking\ncycling\n", encoding="utf-8")
    (root / "classes.txt").symlink_to("label_map.txt")
    return root


def mmaction_run(multi_label: bool) -> list:
    head = (
        ["DATA.MULTI_LABEL", "True", "MODEL.LOSS_FUNC", "bce_logits", "MODEL.HEAD_ACT", "sigmoid"]
        if multi_label
        else ["DATA.MULTI_LABEL", "False", "MODEL.LOSS_FUNC", "cross_entropy", "MODEL.HEAD_ACT", "softmax"]
    )
    return [
        *head, "MODEL.NUM_CLASSES", "3", "TRAIN.DATASET", "mmaction2", "TEST.DATASET", "mmaction2",
        "TRAIN.SPLIT", "kinetics400_train_list_videos.txt", "TEST.SPLIT", "kinetics400_val_list_videos.txt",
        "DATA.TRAIN_LABELS", "video",
    ]  # fmt: skip


def _cfg(root: Path, *overrides):
    return load_config("", [*SMALL, "DATA.PATH_TO_DATA_DIR", str(root), *overrides])


def _run_args(root: Path, out: Path, overrides) -> list:
    return [
        "DEVICE", "cpu", "DATA.PATH_TO_DATA_DIR", str(root), *SMALL, *TINY_MODEL, *overrides,
        "SOLVER.MAX_EPOCH", "1", "OUTPUT_DIR", str(out),
    ]  # fmt: skip


def test_kinetics_reads_the_official_csvs_per_class_and_flat_and_lists_missing_clips(tmp_path, caplog):
    root = write_kinetics(tmp_path / "k400")
    records, names, report = load_kinetics(root, "train")
    assert names == KINETICS_CLASSES and report.missing == []
    assert [(r.video_id, r.labels) for r in records] == [
        ("-3B32lodo2M_000059_000069", (0,)), ("0_8-Mk2fLDs_000004_000014", (1,)),
        ("zxJ6hGxrPPw_000120_000130", (2,)), ("a_b-c_000000_000010", (0,)),
    ]  # fmt: skip
    assert records[1].path == root / "train" / "tying_knot_(not_on_a_tie)" / "0_8-Mk2fLDs_000004_000014.mp4"
    with caplog.at_level(logging.WARNING, logger="videotl.data"):
        records, names, report = load_kinetics(root, "val")  # validate.csv, clips in validate/
    assert [r.video_id for r in records] == ["Ab9YvNa3C0I_000007_000017", "kX8-_t0Q2aU_000030_000040"]
    assert report.listed == 3 and report.missing == [MISSING]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "1 of 3 clips missing: " + MISSING in warnings[0], warnings
    with pytest.raises(DatasetError, match=r"test.csv:1: header lacks column\(s\) \['label'\]"):
        load_kinetics(root, "test")


def test_kinetics_stops_on_what_is_wrong_in_one_line(tmp_path):
    root = write_kinetics(tmp_path / "k400")
    with pytest.raises(DatasetError, match=r"k400/train/nothing\.csv: no such file"):
        load_kinetics(root, "train/nothing")
    (root / "classes.txt").write_text("abseiling\nzumba\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"train.csv:3: class 'tying knot \(not on a tie\)' is not among the 2"):
        load_kinetics(root, "train")
    (root / "classes.txt").unlink()
    for folder in (root / "validate",):
        for clip in folder.iterdir():
            clip.unlink()
    with pytest.raises(DatasetError, match=r"validate.csv: none of its 3 clips is under .*validate"):
        load_kinetics(root, "val")


def test_mmaction_lists_single_and_multi_label(tmp_path):
    single = write_mmaction(tmp_path / "single", multi_label=False)
    cfg = _cfg(single, *mmaction_run(False), "DATA.PATH_PREFIX", str(single / "videos"))
    records, names = load_records(cfg, "kinetics400_train_list_videos.txt", "mmaction2")
    assert names == ["archery", "baking", "cycling"]
    assert [(r.video_id, r.path, r.labels) for r in records] == [
        (f"sub/{n}.mp4", single / "videos" / "sub" / f"{n}.mp4", (i,)) for i, n in enumerate("abc")
    ]
    multi = write_mmaction(tmp_path / "multi", multi_label=True)
    cfg = _cfg(multi, *mmaction_run(True), "DATA.PATH_PREFIX", str(multi / "videos"))
    records, _ = load_records(cfg, "kinetics400_val_list_videos.txt", "mmaction2")
    assert [(r.path, r.labels) for r in records] == [
        (multi / "videos" / "sub" / "d.mp4", (0, 2)),
        (multi / "videos" / "sub" / "a.mp4", (1,)),
    ]
    # Several labels on a single-label run: the line's video is named, with the setting to change.
    cfg = _cfg(multi, *mmaction_run(False), "DATA.PATH_PREFIX", str(multi / "videos"))
    with pytest.raises(DatasetError, match=r"video sub/a.mp4 has 2 labels .* DATA.MULTI_LABEL True"):
        build_dataset(cfg, "kinetics400_train_list_videos.txt", "train")
    # The raw-frame variant (frame_dir total_frames label) is a folder: said so.
    (multi / "videos" / "frames").mkdir()
    (multi / "raw.txt").write_text("frames 120 1\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"raw.txt:1: .*frames is a folder: MMAction2's raw-frame lists"):
        load_records(cfg, "raw.txt", "mmaction2")


@pytest.mark.parametrize("multi_label", [False, True])
def test_an_mmaction_list_trains_and_evaluates_through_train_net(tmp_path, tool, multi_label):  # noqa: F811
    root = write_mmaction(tmp_path / "data", multi_label=multi_label)
    out = tmp_path / "run"
    overrides = [*mmaction_run(multi_label), "DATA.PATH_PREFIX", str(root / "videos"), "TEST.MODE", "views"]
    tool("train_net.py", *_run_args(root, out, overrides))
    metrics = json.loads((out / "test_metrics.json").read_text(encoding="utf-8"))
    assert metrics["num_videos"] == 2 and metrics["failed_videos"] == []
    assert ("map_sklearn" in metrics) == multi_label and ("top1" in metrics) != multi_label


def test_kinetics_csv_trains_and_tests_multi_view_with_top1_top5_through_train_net(tmp_path, tool):  # noqa: F811
    root = write_kinetics(tmp_path / "k400")
    out = tmp_path / "run"
    views = ["TEST.MODE", "views", "TEST.NUM_ENSEMBLE_VIEWS", "2", "TEST.NUM_SPATIAL_CROPS", "3"]
    result = tool("train_net.py", *_run_args(root, out, [*KINETICS_RUN, *views, "TEST.ENSEMBLE_METHOD", "mean"]))
    missing_lines = [line for line in result.stdout.splitlines() if MISSING in line]
    # The val split is read to check it, to evaluate and to test: its missing clip is one line.
    assert len(missing_lines) == 1 and "1 of 3 clips missing: " + MISSING in missing_lines[0], missing_lines
    metrics = json.loads((out / "test_metrics.json").read_text(encoding="utf-8"))
    assert metrics["test_mode"] == "views" and metrics["num_views"] == 2 * 6 and metrics["num_videos"] == 2
    assert 0 <= metrics["top1"] <= metrics["top5"] == 1.0
    scores = (out / "charades_submission.txt").read_text(encoding="utf-8").split("\n")
    assert sorted(line.split()[0] for line in scores if line) == [
        "Ab9YvNa3C0I_000007_000017",
        "kX8-_t0Q2aU_000030_000040",
    ]


def test_the_vivit_kinetics400_config_reads_the_official_csvs(tmp_path):
    root = write_kinetics(tmp_path / "k400")
    config = Path(__file__).resolve().parents[2] / "configs" / "vivit" / "kinetics400.yaml"
    cfg = load_config(str(config), ["DATA.PATH_TO_DATA_DIR", str(root), "MODEL.NUM_CLASSES", "3"])
    assert cfg.TEST.NUM_ENSEMBLE_VIEWS * cfg.TEST.NUM_SPATIAL_CROPS == 12 and not cfg.DATA.MULTI_LABEL
    train, names = load_records(cfg, cfg.TRAIN.SPLIT, cfg.TRAIN.DATASET)
    test, test_names = load_records(cfg, cfg.TEST.SPLIT, cfg.TEST.DATASET)
    assert names == test_names == KINETICS_CLASSES and (len(train), len(test)) == (4, 2)
