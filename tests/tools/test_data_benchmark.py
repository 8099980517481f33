"""Smoke test of the data benchmark on a tiny video (the real run is in docs/benchmarks.md)."""

import json
from pathlib import Path

from videotl.data import probe
from videotl_tools.harness.data_benchmark import make_benchmark_video, run_data_benchmark

TOOL = Path(__file__).resolve().parents[2] / "tools" / "benchmark.py"
SMALL_LOADER = ["DATA.NUM_FRAMES", "8", "DATA.TRAIN_JITTER_SCALES", "[40, 48]", "DATA.TRAIN_CROP_SIZE", "32"]


def test_benchmark_video_and_report(tmp_path):
    video = make_benchmark_video(tmp_path / "v.mp4", seconds=1.0, width=96, height=72, fps=30, gop=12)
    info = probe(video)
    assert (info.num_frames, info.width, info.height) == (30, 96, 72)
    result = run_data_benchmark(
        str(video),
        backends=("pyav",),
        num_clips=2,
        segment_repeats=1,
        loader_clips=4,
        workers=0,
        batch_size=2,
        num_frames=8,
        loader_overrides=SMALL_LOADER,
        log=lambda line: None,
    )
    report = result["backends"]["pyav"]
    assert report["random_clips"]["clips"] == 2 and report["random_clips"]["ratio_cpu"] > 0
    assert report["segments"]["segments_per_video"] == 2  # 12 target frames at 12 fps, 8 per segment
    assert report["loader"]["clips_loader_timed"] == 4 and report["loader"]["first_batch_shape"] == [2, 3, 8, 32, 32]
    assert result["machine"]["cpu_count"] >= 1 and result["video"]["frames"] == 30


def test_tool_writes_json(tmp_path):
    from videotl_tools import benchmark as module

    video = make_benchmark_video(tmp_path / "v.mp4", seconds=1.0, width=64, height=48, fps=25, gop=12)
    out = tmp_path / "data.json"
    assert "data" in module.BENCHMARKS
    status = module.main(
        [
            "data",
            "--video",
            str(video),
            "--backend",
            "decord",
            "--clips",
            "1",
            "--segment-repeats",
            "1",
            "--loader-clips",
            "2",
            "--workers",
            "0",
            "--batch-size",
            "1",
            "--num-frames",
            "4",
            "--output",
            str(out),
        ]
    )
    assert status == 0
    result = json.loads(out.read_text())
    assert result["command"].startswith("python tools/benchmark.py data --video")
    assert set(result["backends"]["decord"]) == {"random_clips", "segments", "loader"}
