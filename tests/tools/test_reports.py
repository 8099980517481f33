"""The one table renderer of the benchmarks and the rows they emit: each benchmark's rows from a
hand-made record against hand-written rows, and the committed docs/benchmarks.md sections
against what the renderers make of the committed JSON files."""

import json
import re
from pathlib import Path

import pytest

from videotl_tools.harness import data_benchmark, gpu_benchmark, model_benchmark
from videotl_tools.harness.reports import Column, markdown_table, table, yes_no

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "docs" / "benchmarks"


def test_markdown_table_against_a_hand_written_table():
    rows = [
        {"table": "t", "reader": "videotl pyav", "clips_per_s": 8.456, "peak_mib": 1234.56, "rounds": [0.5, 0.625], "met": True},
        {"table": "other", "reader": "never shown", "clips_per_s": 1.0},
        {"table": "t", "reader": "decord", "clips_per_s": 3.0, "peak_mib": None, "rounds": [], "met": False},
    ]  # fmt: skip
    columns = [
        Column("reader", "{reader}", "left"),
        Column("clips / s", "{clips_per_s:.2f}"),
        Column("peak MiB", "{peak_mib:,.1f}", missing="—"),
        Column("rounds", lambda row: ", ".join(f"{r:.2f}" for r in row["rounds"])),
        Column("met", yes_no("met", no="**no**"), "left"),
    ]
    assert markdown_table(table(rows, "t"), columns) == (
        "| reader | clips / s | peak MiB | rounds | met |\n"
        "| --- | ---: | ---: | ---: | --- |\n"
        "| videotl pyav | 8.46 | 1,234.6 | 0.50, 0.62 | yes |\n"
        "| decord | 3.00 | — |  | **no** |"
    )


def test_missing_fields_give_the_missing_text_and_no_rows_give_the_header():
    columns = [Column("ratio (totals)", "{median:.2f} ({totals:.2f})"), Column("ok", yes_no("ok"), "left")]
    assert markdown_table([{"median": 1.0}, {"median": 1.0, "totals": 2.0, "ok": None}], columns) == (
        "| ratio (totals) | ok |\n| ---: | --- |\n|  | — |\n| 1.00 (2.00) | — |"
    )
    assert markdown_table([], columns) == "| ratio (totals) | ok |\n| ---: | --- |"
    with pytest.raises(ValueError, match="column 'x': align must be 'left' or 'right', got 'centre'"):
        Column("x", "{x}", "centre")


def _is_flat(row):
    scalars = (str, int, float, bool, type(None))
    return all(
        isinstance(v, scalars) or (isinstance(v, list) and all(isinstance(x, scalars) for x in v)) for v in row.values()
    )


def test_data_rows_of_a_hand_made_record():
    rate = {"per_cpu_second": 5.0, "per_second": 6.0, "median_vs_torchcodec_cpu": 1.25, "vs_torchcodec_cpu": 1.2,
            "median_vs_torchcodec_wall": 1.1, "vs_torchcodec_wall": 1.05}  # fmt: skip
    measured = {"peak_rss_mb": 600.0, "items": 6, "wall_s": 2.0, "vs_sequential_cpu": 0.8,
                "vs_sequential_cpu_rounds": [0.7, 0.8, 0.9], "vs_sequential_wall": 0.75}  # fmt: skip
    result = {
        "peers": {"segments": {"videotl pyav": rate}, "segments_per_video": 6},
        "long_videos": [{"seconds": 600.0, "sequential": {"peak_rss_mb": 500.0}, "score pyav": measured}],
        "transcoded": {"bytes": 3e6, "transcode_seconds": 2.0, "rows": {"pyav size 256": {
            "original_per_cpu_second": 4.0, "transcoded_per_cpu_second": 5.0, "gain_cpu": 1.25, "gain_wall": 1.2}}},
        "targets": [{"target": "t", "measured": "m", "met": False}],
    }  # fmt: skip
    assert data_benchmark.data_rows(result) == [
        {"table": "segments", "reader": "videotl pyav", "videos_per_cpu_s": 5.0, "videos_per_s": 6.0,
         "median_vs_torchcodec_cpu": 1.25, "totals_vs_torchcodec_cpu": 1.2,
         "median_vs_torchcodec_wall": 1.1, "totals_vs_torchcodec_wall": 1.05},
        {"table": "long_videos", "video_s": 600.0, "reader": "sequential decode", "peak_rss_mb": 500.0,
         "vs_sequential_cpu": 1.0, "vs_sequential_wall": 1.0},
        {"table": "long_videos", "video_s": 600.0, "reader": "score pyav", "peak_rss_mb": 600.0, "segments_per_s": 3.0,
         "vs_sequential_cpu": 0.8, "vs_sequential_cpu_rounds": [0.7, 0.8, 0.9], "vs_sequential_wall": 0.75},
        {"table": "transcoded", "backend": "pyav", "short_side": 256, "original_clips_per_cpu_s": 4.0,
         "transcoded_clips_per_cpu_s": 5.0, "gain_cpu": 1.25, "gain_wall": 1.2},
        {"table": "targets", "target": "t", "measured": "m", "met": False},
    ]  # fmt: skip
    lines = data_benchmark.render_markdown({**result, "video": {"duration": 30.0, "size": [480, 360], "fps": 30.0,
                                            "bytes": 2e6}, "clip": {"num_frames": 64, "fps": 12.0}, "machine": {}})  # fmt: skip
    assert "| 10 min | score pyav | 600 | 3.00 | 0.80 (0.70, 0.80, 0.90) | 0.75 |" in lines.splitlines()
    assert "| 10 min | sequential decode | 500 |  | 1.00 | 1.00 |" in lines.splitlines()
    assert "| pyav size 256 | 4.00 | 5.00 | 1.25 | 1.20 |" in lines.splitlines()
    assert "| **videotl pyav** | 5.00 | 6.00 | 1.25 (1.20) | 1.10 (1.05) |" in lines.splitlines()


def test_model_rows_of_hand_made_results():
    def result(name, mode, seconds, peak, times):
        case = model_benchmark.BenchmarkCase(name, "module", (2, 8, 4, 2, 2), submodule="stages.3.6.middle")
        return {"case": model_benchmark.asdict(case), "mode": mode, "batch": 2, "median_s": seconds,
                "clips_per_s": 2 / seconds, "times_s": times, "peak_memory_bytes": peak}  # fmt: skip

    results = [
        result("TokenLearner", "fw", 0.5, 3 * 2**20, [0.5, 0.4, 0.6]),
        result("Joint space-time MHSA", "fw", 2.0, 2**21, [2.0, 0.3, 2.1]),
    ]
    payload = {"results": results, "comparison": model_benchmark.compare(results),
               "faster_rounds": model_benchmark.faster_rounds(results)}  # fmt: skip
    tokenlearner, mhsa, comparison = model_benchmark.model_rows(payload)
    assert tokenlearner["fw_clips_per_s"] == 4.0 and tokenlearner["fw_peak_mib"] == 3.0
    assert mhsa == {"table": "cases", "case": "Joint space-time MHSA", "input_shape": [2, 8, 4, 2, 2],
                    "submodule": "stages.3.6.middle", "fw_clips_per_s": 1.0, "fw_median_ms": 2000.0,
                    "fw_peak_mib": 2.0}  # fmt: skip
    # 2.0 / 0.5 s: 4x the speed; faster in rounds 1 and 3 of 3; below the >= 5 target.
    assert comparison == {"table": "comparisons", "comparison": "tl_module_vs_joint_mhsa_module_speed",
                          "target": ">= 5", "fw_ratio": 4.0, "fw_faster_rounds": 2, "fw_rounds": 3, "fw_met": False,
                          "fwbw_ratio": None, "fwbw_faster_rounds": None, "fwbw_rounds": None, "fwbw_met": None}  # fmt: skip


def test_gpu_rows_of_the_synthetic_result():
    from .test_gpu_benchmark import _synthetic_payload

    rows = gpu_benchmark.gpu_rows(_synthetic_payload())
    assert {row["table"] for row in rows} == {
        "targets",
        "kernel_check",
        "kernel_timing",
        "kernel_configs",
        "models",
        "share",
    }
    assert all(_is_flat(row) for row in rows)
    naive = [row for row in table(rows, "kernel_timing") if row["implementation"] == "naive"]
    assert naive == [{"table": "kernel_timing", "implementation": "naive", "dtype": "float32", "fw_ms": pytest.approx(30.0),
                      "fw_error": None, "fwbw_ms": None, "fwbw_error": "out of memory", "fwbw_peak_mib": None}]  # fmt: skip
    # Compiled: 1.25x the eager speed of 8 clips in 0.9 s per step, 0.3 s per forward pass.
    compiled = [row for row in table(rows, "models") if row["model"] == gpu_benchmark.TOKENLEARNER_MODEL][1]
    assert compiled == {"table": "models", "model": gpu_benchmark.TOKENLEARNER_MODEL, "variant": "compiled",
                        "fw_clips_per_s": pytest.approx(8 * 1.25 / 0.3), "fw_peak_mib": 1024.0,
                        "step_clips_per_s": pytest.approx(8 * 1.25 / 0.9), "step_peak_mib": 1024.0,
                        "first_step_s": 60.0}  # fmt: skip


def _sections(text):
    return {
        part.splitlines()[0]: part.rstrip("\n") for part in re.split(r"(?m)^(?=## )", text) if part.startswith("## ")
    }


def test_committed_sections_are_the_committed_results_rendered():
    # The sections tools/benchmark.py wrote from the runs whose JSON is committed beside them.
    committed = _sections((ROOT / "docs" / "benchmarks.md").read_text())
    data = json.loads((RESULTS / "data_pipeline.json").read_text())
    model = json.loads((RESULTS / "model_cpu.json").read_text())
    assert committed["## Data pipeline"] == data_benchmark.render_markdown(data).rstrip("\n")
    assert committed["## Model"] == model_benchmark.render_markdown_section(model).rstrip("\n")


@pytest.mark.parametrize("name", sorted(path.name for path in RESULTS.glob("*.json")))
def test_committed_results_hold_flat_rows(name):
    rows = json.loads((RESULTS / name).read_text())["rows"]
    assert rows and all(_is_flat(row) and isinstance(row["table"], str) for row in rows)
