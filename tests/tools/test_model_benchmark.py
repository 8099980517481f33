"""The benchmark machinery on tiny inputs: what it records, never how fast anything is."""

import argparse
from dataclasses import replace

import pytest
import torch

from videotl_tools.harness import model_benchmark as mb
from videotl_tools.harness.model_benchmark import (
    BenchmarkCase,
    compare,
    render_markdown_section,
    run_case,
)
from videotl_tools.harness.reports import update_markdown_section

from ..models.conftest import TINY_X3D


@pytest.mark.parametrize("mode", ["fw", "fwbw"])
def test_run_case_reports_speed_and_memory(mode):
    case = BenchmarkCase(
        "Vector Transformer, chunked", "vector_attention", (2, 16, 8), implementation="chunked", chunk_size=4
    )
    result = run_case(case, mode=mode, warmup=1, repeats=3)
    assert len(result["times_s"]) == 3
    assert result["clips_per_s"] == pytest.approx(2 / result["median_s"])
    assert result["peak_memory_bytes"] >= 0
    assert result["memory_method"].startswith("cpu")


def test_run_case_builds_a_res5_module_from_its_config():
    case = BenchmarkCase(
        "TL",
        "module",
        (1, 432, 4, 2, 2),
        "configs/ablations/tokenlearner.yaml",
        ("DATA.NUM_FRAMES", "4"),
        "stages.3.6.middle",
    )
    result = run_case(case, mode="fwbw", warmup=0, repeats=1)
    assert result["case"]["submodule"] == "stages.3.6.middle"


def _fake(name: str, mode: str, seconds: float, peak: int, batch: int = 1):
    case = BenchmarkCase(name, "model", (batch, 3, 4, 8, 8))
    return {"case": mb.asdict(case), "mode": mode, "median_s": seconds, "clips_per_s": batch / seconds,
            "peak_memory_bytes": peak, "memory_method": "cpu test"}  # fmt: skip


def test_compare_gives_the_issue_ratios():
    results = [
        _fake("X(2+1)D-M baseline", "fw", 2.0, 100),
        _fake("AViD TokenLearner model (TL only)", "fw", 1.6, 90),
        _fake("TokenLearner", "fwbw", 0.1, 10),
        _fake("Joint space-time MHSA", "fwbw", 0.8, 80),
        _fake("Vector Transformer, naive", "fwbw", 1.0, 400),
        _fake("Vector Transformer, chunked", "fwbw", 1.2, 80, batch=2),
        _fake("Vector Transformer, chunked (PyTorch ops)", "fwbw", 0.9, 100, batch=2),
    ]
    ratios = compare(results)
    assert ratios["avid_tl_model_vs_baseline_speed_fw"] == pytest.approx(1.25)
    assert ratios["tl_module_vs_joint_mhsa_module_speed_fwbw"] == pytest.approx(8.0)
    assert ratios["vector_attention_chunked_over_naive_time_fwbw"] == pytest.approx(1.2)
    assert ratios["vector_attention_chunked_over_naive_peak_memory_fwbw"] == pytest.approx(0.2)
    assert ratios["vector_attention_chunked_pytorch_over_naive_time_fwbw"] == pytest.approx(0.9)
    assert ratios["vector_attention_chunked_pytorch_over_naive_peak_memory_fwbw"] == pytest.approx(0.25)


def test_compare_gives_channels_last_against_the_default_layout():
    results = [_fake("demo", "fwbw", 0.5, 1), _fake("demo (channels-last)", "fwbw", 0.4, 1), _fake("other", "fw", 1, 1)]
    assert compare(results) == {"demo: channels_last_vs_contiguous_speed_fwbw": pytest.approx(1.25)}


def test_channels_last_case_builds_channels_last_kernels_and_inputs():
    case = BenchmarkCase("tiny", "model", (1, 3, 4, 64, 64), "configs/charades_12fps.yaml", tuple(TINY_X3D))
    for channels_last in (False, True):
        model, (inputs,) = mb.build_case(replace(case, channels_last=channels_last), device=torch.device("cpu"))
        kernel = model.stem.conv_xy.weight
        assert inputs.is_contiguous(memory_format=torch.channels_last_3d) == channels_last
        assert kernel.is_contiguous(memory_format=torch.channels_last_3d) == channels_last
        assert kernel.is_contiguous() != channels_last


def test_faster_rounds_compares_the_cases_round_by_round():
    def timed(name, times, batch=1):
        return {**_fake(name, "fw", sorted(times)[len(times) // 2], 1, batch), "batch": batch, "times_s": times}

    # The machine slows down in rounds 2 and 3; the Charades model is faster in rounds 1, 2 and 5
    # although its median (8.9 s) is above the baseline's (4.9 s).
    results = [
        timed("X(2+1)D-M baseline", [4.0, 9.0, 9.0, 4.9, 4.8]),
        timed("Charades TokenLearner model (Conv2D + TL)", [3.9, 8.9, 9.5, 9.0, 4.7]),
        # Batch 2, compared per clip: 4.1, 8.5, 9.5, 4.5, 4.5 s, faster in rounds 2, 4 and 5.
        timed("AViD TokenLearner model (TL only)", [8.2, 17.0, 19.0, 9.0, 9.0], batch=2),
    ]
    rounds = mb.faster_rounds(results)
    assert rounds["charades_tl_model_vs_baseline_speed_fw"] == (3, 5)
    assert rounds["avid_tl_model_vs_baseline_speed_fw"] == (3, 5)
    assert "charades_tl_model_vs_baseline_speed_fwbw" not in rounds


def test_whole_network_targets_must_beat_the_control():
    # The second baseline instance ran 3% faster than the first (fw) or 2% slower (fw+bw): a TL model
    # 1.02x faster is within that in fw and beyond it in fw+bw (1.025 - 0.02 > 1).
    ratios = {
        "baseline_second_instance_vs_baseline_speed_fw": 1.03,
        "baseline_second_instance_vs_baseline_speed_fwbw": 0.98,
        "charades_tl_model_vs_baseline_speed_fw": 1.02,
        "charades_tl_model_vs_baseline_speed_fwbw": 1.025,
        "tl_module_vs_joint_mhsa_module_speed_fw": 5.01,
    }
    assert mb.target_met(ratios, "charades_tl_model_vs_baseline_speed", "fw") is False
    assert mb.target_met(ratios, "charades_tl_model_vs_baseline_speed", "fwbw") is True
    # Module targets do not take the control: the modules are not timed beside it.
    assert mb.target_met(ratios, "tl_module_vs_joint_mhsa_module_speed", "fw") is True
    assert mb.target_met(ratios, "tl_module_vs_joint_mhsa_module_speed", "fwbw") is None
    assert mb.target_met(ratios, "baseline_second_instance_vs_baseline_speed", "fw") is None


def test_markdown_section_replaces_only_the_model_section(tmp_path):
    path = tmp_path / "benchmarks.md"
    path.write_text("# Benchmarks\n\n## Data pipeline\n\ndata table\n\n## Model\n\nold\n\n## Later\n\nkept\n")
    payload = {
        "command": "python tools/benchmark.py model",
        "machine": {
            "cpu": "Test CPU",
            "cpu_count": 2,
            "threads": 1,
            "torch": "2",
            "platform": "linux",
            "load_average_at_start": (1.0, 1.0, 1.0),
        },
        "warmup": 1,
        "repeats": 3,
        "results": [_fake("X(2+1)D-M baseline", "fw", 2.0, 2**20), _fake("X(2+1)D-M baseline", "fwbw", 4.0, 2**21)],
        "comparison": {"vector_attention_chunked_over_naive_time_fwbw": 1.1},
    }
    update_markdown_section(path, render_markdown_section(payload))
    text = path.read_text()
    assert "data table" in text and "kept" in text and "old" not in text
    assert "| X(2+1)D-M baseline | 1x3x4x8x8 | 0.500 | 2,000.0 | 1.0 | 0.250 | 4,000.0 | 2.0 |" in text
    assert "| vector_attention_chunked_over_naive_time | — | 1.10 |  | <= 1.3 | — / yes |" in text
    assert text.index("## Data pipeline") < text.index("## Model") < text.index("## Later")


def test_cli_arguments_parse():
    parser = argparse.ArgumentParser()
    mb.add_model_arguments(parser)
    args = parser.parse_args(
        ["--cfg", "configs/charades_12fps.yaml", "--input", "8x64x64", "--device", "cpu", "MODEL.NUM_CLASSES", "10"]
    )
    assert args.input == (8, 64, 64) and args.overrides == ["MODEL.NUM_CLASSES", "10"]
    assert args.memory_format == "contiguous"


def test_time_group_times_every_case_round_robin():
    cases = [BenchmarkCase(f"Vector Transformer, {impl}", "vector_attention", (1, 8, 4), implementation=impl, chunk_size=4)
             for impl in ("naive", "chunked")]  # fmt: skip
    times = mb.time_group(cases, mode="fwbw", warmup=1, repeats=2)
    assert set(times) == {case.name for case in cases}
    assert all(len(values) == 2 and min(values) > 0 for values in times.values())


def test_time_group_rotates_the_order_every_round(monkeypatch):
    order = []
    monkeypatch.setattr(mb, "_prepare", lambda case, mode, device: (case.name, ()))
    monkeypatch.setattr(mb, "time_passes", lambda module, inputs, **kw: order.append(module) or [1.0])
    cases = [BenchmarkCase(name, "vector_attention", (1, 4, 2), implementation="naive") for name in "abc"]
    times = mb.time_group(cases, mode="fw", warmup=1, repeats=2)
    assert order == list("abc") + list("bca") + list("cab")
    assert times == {"a": [1.0, 1.0], "b": [1.0, 1.0], "c": [1.0, 1.0]}


def test_memory_format_without_a_config_is_one_line():
    parser = argparse.ArgumentParser()
    mb.add_model_arguments(parser)
    with pytest.raises(SystemExit, match="--memory-format needs --cfg"):
        mb.run_model(parser.parse_args(["--memory-format", "both", "--device", "cpu"]))
