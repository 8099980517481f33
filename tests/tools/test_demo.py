"""The demo (generate -> train -> test -> mAP vs chance) and the res5 ablation, at tiny size."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from videotl.config import load_config
from videotl.data import VideoRecord
from videotl.engine.evaluator import EvalResult
from videotl_tools.harness.ablation import (
    AblationRow,
    measure_compute,
    render_table,
    run_ablation,
    summarise,
    variant_overrides,
)
from videotl_tools.harness.demo import ensure_synthetic_charades, pair_separation, pick_timeline_videos, run_demo

ROOT = Path(__file__).resolve().parents[2]
DEMO_CFG = str(ROOT / "configs" / "demo" / "synthetic_charades.yaml")
TINY_DATASET = {"seed": 0, "num_train": 4, "num_test": 3, "min_seconds": 2.0, "max_seconds": 3.0}
TINY_RUN = [
    "DEVICE",
    "cpu",
    "X3D.STEM_DIM",
    "4",
    "X3D.STAGE_DEPTHS",
    "[1,1,1,2]",
    "X3D.STAGE_DIMS",
    "[4,8,8,8]",
    "X3D.CONV5_DIM",
    "16",
    "X3D.HEAD_DIM",
    "16",
    "TOKENLEARNER.DIM",
    "18",
    "RES5.CONVERTED_BLOCKS",
    "[1]",
    "RES5.NUM_HEADS",
    "2",
    "DATA.NUM_FRAMES",
    "4",
    "DATA.TRAIN_JITTER_SCALES",
    "[32, 36]",
    "DATA.TRAIN_CROP_SIZE",
    "32",
    "DATA.TEST_CROP_SIZE",
    "32",
    "DATA_LOADER.NUM_WORKERS",
    "0",
    "TRAIN.BATCH_SIZE_PER_DEVICE",
    "2",
    "TEST.BATCH_SIZE_PER_DEVICE",
    "4",
    "SOLVER.MAX_EPOCH",
    "1",
    "TENSORBOARD.ENABLE",
    "False",
]


def _test_positive_rate(root: Path) -> float:
    """Chance level straight from the test CSV: positives / (videos x classes that occur)."""
    with open(root / "Charades_v1_test.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    per_video = [{item.split()[0] for item in row["actions"].split(";") if item} for row in rows]
    classes = set().union(*per_video)
    return sum(map(len, per_video)) / (len(rows) * len(classes))


def test_demo_tool_runs_end_to_end_and_reruns_without_redoing_work(tmp_path, capsys, monkeypatch):
    from videotl_tools import run_demo as tool

    monkeypatch.setattr("videotl_tools.harness.demo.DEMO_DATASET", dict(TINY_DATASET))
    monkeypatch.setattr(tool, "DEMO_DATASET", dict(TINY_DATASET))
    data, out = tmp_path / "data", tmp_path / "run"
    args = [
        "--cfg",
        DEMO_CFG,
        "--num-train",
        "4",
        "--num-test",
        "3",
        *TINY_RUN,
        "DATA.PATH_TO_DATA_DIR",
        str(data),
        "OUTPUT_DIR",
        str(out),
    ]
    assert tool.main(args) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    saved = json.loads((out / "demo_result.json").read_text())
    headline = [line for line in printed if line.startswith("mAP ")]
    assert headline == [
        f"mAP {saved['mean_ap']:.4f}, chance {saved['chance']:.4f} (mean positive rate), normalised gain "
        f"{saved['normalised_gain']:.3f} = (mAP - chance) / (1 - chance); 3 test videos, "
        f"{saved['num_classes']} classes, mAP over the classes with test positives"
    ]
    assert saved["normalised_gain"] == pytest.approx((saved["mean_ap"] - saved["chance"]) / (1 - saved["chance"]))
    # The pictures lie next to demo_result.json, are PNGs, and their paths are printed.
    names = {"per_class_ap", "training_curves", "token_attention"}
    assert names <= set(saved["pictures"]) and sum(n.startswith("timeline_") for n in saved["pictures"]) == 2
    for path in saved["pictures"].values():
        assert Path(path).parent == out and Path(path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"picture: {path}" in printed
    assert saved["cpu_seconds"] > 0
    # The token maps' measures, on the 3 test videos (one clip each), printed and saved per module.
    token_lines = [line for line in printed if line.startswith("token maps: ")]
    assert len(saved["token_maps"]) == len(token_lines) >= 1
    for measures, line in zip(saved["token_maps"], token_lines):
        assert measures["num_clips"] == 3 and len(measures["motion_ratio"]) == 4  # the demo's 4 tokens
        assert f"median token's motion ratio {measures['median_motion_ratio']:.2f}" in line
        assert f"mean pairwise map correlation {measures['correlation']:.2f}" in line
    # Three tiny test videos cannot hold all 12 classes: the mAP and chance cover those they hold.
    assert saved["metric"] == "mAP over the classes with test positives"
    assert saved["chance"] == pytest.approx(_test_positive_rate(data))
    assert 0.0 <= saved["mean_ap"] <= 1.0 and saved["num_test_videos"] == 3
    assert saved["seconds"]["generate"] > 0
    assert (out / "checkpoints" / "checkpoint_epoch_00001.pyth").is_file()
    assert (out / "test_metrics.json").is_file()

    # A second run finds the data and the finished training: it only tests again, with the same result.
    cfg = load_config(DEMO_CFG, [*TINY_RUN, "DATA.PATH_TO_DATA_DIR", str(data), "OUTPUT_DIR", str(out)])
    again = run_demo(cfg, dataset=TINY_DATASET, progress=False)
    assert again.seconds["generate"] == 0.0
    assert again.mean_ap == pytest.approx(saved["mean_ap"])


def test_pair_separation_ranks_each_class_against_partner_and_other_negatives():
    labels = np.array([[1, 0], [0, 1], [0, 0], [1, 1]])
    scores = np.array([[0.9, 0.95], [0.8, 0.6], [0.1, 0.2], [0.5, 0.9]])
    result = EvalResult(["a", "b", "c", "d"], ["up", "down"], scores, labels, True, {})
    pairs = pair_separation(result)
    # Class 0 among {a+, d+, b-}: a, b, d -> (1 + 2/3) / 2. Class 1 among {b+, d+, a-}: a, d, b
    # -> (1/2 + 2/3) / 2. The negative without the partner (c) ranks last for both: AP 1.
    assert pairs["ap_against_partner"] == pytest.approx(((1 + 2 / 3) / 2 + (1 / 2 + 2 / 3) / 2) / 2)
    assert pairs["ap_against_others"] == pytest.approx(1.0)


def test_timeline_videos_are_picked_by_their_labels_only():
    records = [VideoRecord(str(i), Path(f"{i}.mp4"), tuple(range(n))) for i, n in enumerate([1, 5, 3, 2, 3])]
    assert [r.video_id for r in pick_timeline_videos(records)] == ["2", "4"]
    # Then the next closest count (2 labels), before the farther ones in file order.
    assert [r.video_id for r in pick_timeline_videos(records, count=4)] == ["2", "4", "3", "0"]


def test_demo_never_writes_into_a_real_charades_folder(tmp_path):
    (tmp_path / "Charades_v1_train.csv").write_text("id,actions\n")
    with pytest.raises(FileExistsError, match="not generated here"):
        ensure_synthetic_charades(str(tmp_path), progress=False, num_workers=0, **TINY_DATASET)
    assert (tmp_path / "Charades_v1_train.csv").read_text() == "id,actions\n"


def test_variant_overrides_take_only_the_res5_keys_the_file_sets(tmp_path):
    (tmp_path / "v.yaml").write_text(
        "_BASE_: ../charades_12fps.yaml\nDATA:\n  TARGET_FPS: 6.0\nRES5:\n  SPATIAL: none\n"
        "TOKENLEARNER:\n  TOKENIZER: fixed_grid\n  NUM_TOKENS: 8\n"
    )
    assert variant_overrides("v", directory=tmp_path) == [
        "RES5.SPATIAL",
        "none",
        "TOKENLEARNER.TOKENIZER",
        "fixed_grid",
        "TOKENLEARNER.NUM_TOKENS",
        "8",
    ]
    with pytest.raises(FileNotFoundError, match="known variants: v"):
        variant_overrides("w", directory=tmp_path)
    # The repository's ablation files are all usable as variants.
    for path in sorted((ROOT / "configs" / "ablations").glob("*.yaml")):
        load_config(DEMO_CFG, variant_overrides(path.stem))


def test_module_compute_is_the_converted_blocks_conv_pair():
    cfg = load_config(DEMO_CFG, variant_overrides("conv2d_conv1d"))
    compute = measure_compute(cfg)
    width = round(cfg.X3D.STAGE_DIMS[-1] * cfg.X3D.BOTTLENECK_FACTOR)  # 144
    frames, side = cfg.DATA.NUM_FRAMES, 3  # res5 of an 80 x 80 input is 3 x 3
    # 1x3x3 and 3x1x1 full convs without bias, each followed by BatchNorm (2 parameters per channel).
    assert compute["module_params"] == 9 * width**2 + 3 * width**2 + 2 * 2 * width
    conv_macs = 12 * width**2 * frames * side * side
    assert compute["module_gflops"] == pytest.approx(2 * conv_macs / 1e9, rel=0.01)
    assert compute["model_gflops"] > 5 * compute["module_gflops"]


def test_ablation_trains_each_variant_once_and_tabulates(tmp_path):
    data = tmp_path / "data"
    ensure_synthetic_charades(str(data), progress=False, num_workers=0, **TINY_DATASET)
    overrides = [*TINY_RUN, "DATA.PATH_TO_DATA_DIR", str(data)]
    rows = run_ablation(
        DEMO_CFG, ["conv2d_conv1d", "conv2d_tokenlearner"], output_root=str(tmp_path / "abl"), overrides=overrides
    )
    assert [r.variant for r in rows] == ["conv2d_conv1d", "conv2d_tokenlearner"]
    for row in rows:
        assert 0.0 <= row.mean_ap <= 1.0 and row.train_clips_per_s > 0 and row.clips == 2 * 2  # 2 iterations of 2
    assert rows[0].module_params != rows[1].module_params
    # Finished variants are read back, not retrained.
    stamp = (tmp_path / "abl" / "conv2d_conv1d" / "ablation_row.json").stat().st_mtime_ns
    again = run_ablation(DEMO_CFG, ["conv2d_conv1d"], output_root=str(tmp_path / "abl"), overrides=overrides)
    assert again[0] == rows[0]
    assert (tmp_path / "abl" / "conv2d_conv1d" / "ablation_row.json").stat().st_mtime_ns == stamp


def test_ablation_with_seeds_trains_once_per_seed(tmp_path):
    data = tmp_path / "data"
    ensure_synthetic_charades(str(data), progress=False, num_workers=0, **TINY_DATASET)
    overrides = [*TINY_RUN, "DATA.PATH_TO_DATA_DIR", str(data)]
    rows = run_ablation(
        DEMO_CFG, ["conv2d_conv1d"], output_root=str(tmp_path / "abl"), overrides=overrides, seeds=[5, 6]
    )
    assert [(r.variant, r.seed) for r in rows] == [("conv2d_conv1d", 5), ("conv2d_conv1d", 6)]
    for row, seed in zip(rows, (5, 6)):
        run_dir = tmp_path / "abl" / "conv2d_conv1d" / f"seed{seed}"
        assert row.output_dir == str(run_dir) and (run_dir / "ablation_row.json").is_file()
        assert load_config(str(run_dir / "config.yaml")).RNG_SEED == seed
        assert row.train_cpu_seconds > 0 and 0 < row.chance < 1
    assert summarise(rows)[0].seeds == [5, 6]


def _row(variant, mean_ap, seed, **kwargs):
    values = dict(
        label="Conv2D + Conv1D",
        module_gflops=0.0718,
        module_params=249408,
        model_gflops=0.59,
        model_params=997312,
        train_clips_per_s=12.34,
        train_seconds=10.0,
        clips=8,
        output_dir="o",
        train_cpu_seconds=19.6,
    )
    values.update(kwargs)
    return AblationRow(variant=variant, mean_ap=mean_ap, seed=seed, **values)


def test_render_table():
    table = render_table([_row("x", 0.4567, 0)], chance=0.3).splitlines()
    # One seed: the value alone; gain (0.4567 - 0.3) / 0.7 = 0.224.
    assert table[2] == "| Conv2D + Conv1D | 45.7 | 45.7 | 0.22 | 0.072 | 249.4K | 0.59 | 12.3 | 20 |"
    assert table[3].startswith("| *chance (mean positive rate)* | 30.0 |")


def test_table_gives_mean_and_sample_spread_over_seeds():
    rows = [
        _row("a", 0.50, 0, train_clips_per_s=10.0),
        _row("b", 0.80, 0, label="B"),
        _row("a", 0.60, 1, train_clips_per_s=14.0),
        _row("a", 0.70, 2, train_clips_per_s=12.0),
    ]
    summary = summarise(rows)
    assert [s.variant for s in summary] == ["a", "b"]
    assert summary[0].seeds == [0, 1, 2] and summary[0].mean_ap == pytest.approx(0.6)
    # Sample standard deviation of 0.5, 0.6, 0.7: sqrt((0.01 + 0 + 0.01) / 2) = 0.1.
    assert summary[0].std_ap == pytest.approx(0.1) and summary[0].spread == pytest.approx(0.2)
    table = render_table(rows, chance=0.2).splitlines()
    # Gain of the mean: (0.6 - 0.2) / 0.8 = 0.5; clips/s averaged over the seeds.
    assert (
        table[2] == "| Conv2D + Conv1D | 60.0 +- 10.0 | 50.0 / 60.0 / 70.0 | 0.50 | 0.072 | 249.4K | 0.59 | 12.0 | 20 |"
    )
    assert table[3].startswith("| B | 80.0 | 80.0 | 0.75 |")


def test_ablate_tool_writes_the_markdown_table(tmp_path, monkeypatch, capsys):
    from videotl_tools import ablate as tool

    monkeypatch.setattr(tool, "DEMO_DATASET", dict(TINY_DATASET))
    data, doc = tmp_path / "data", tmp_path / "ablation.md"
    args = [
        "--cfg",
        DEMO_CFG,
        "--variants",
        "conv2d_conv1d",
        "--output-root",
        str(tmp_path / "abl"),
        "--out",
        str(doc),
        *TINY_RUN,
        "DATA.PATH_TO_DATA_DIR",
        str(data),
    ]
    assert tool.main(args) == 0
    text = doc.read_text()
    assert "python tools/ablate.py --cfg " in text and "--variants conv2d_conv1d" in text
    assert "| res5 module | mAP (%) | per seed | normalised gain | module GFLOPs | module params | model GFLOPs" in text
    assert "| Conv2D + Conv1D (X(2+1)D) |" in text and "| *chance (mean positive rate)* |" in text
    assert "on the 3 test videos, every 4-frame segment" in text
