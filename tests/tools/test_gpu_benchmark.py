"""The GPU benchmark's CPU-runnable parts: arguments, the refusal without CUDA, the report writer,
and its measuring machinery on CPU at tiny sizes (what it records, never how fast anything is)."""

import argparse
import json
import math

import pytest
import torch

from tests.data.conftest import TORCHCODEC_SKIP
from tests.models.conftest import TINY_X3D
from videotl_tools import benchmark
from videotl_tools.harness import gpu_benchmark as gb
from videotl_tools.harness.reports import update_markdown_section

CPU = torch.device("cpu")
TINY_MODELS = {gb.BASELINE: gb.MODELS[gb.BASELINE], gb.TOKENLEARNER_MODEL: gb.MODELS[gb.TOKENLEARNER_MODEL]}


def _parse(*argv):
    parser = argparse.ArgumentParser()
    gb.add_gpu_arguments(parser)
    return parser.parse_args(list(argv))


def test_defaults_are_the_issue_setting():
    args = _parse()
    assert args.parts == ["kernel", "models", "share", "loss", "decode"]
    assert args.input == (64, 224, 224) and args.batch == 8 and args.amp_dtype == "bfloat16"
    assert args.variants == ["eager", "compiled"] and args.steps == 50
    args = _parse("--parts", "kernel", "loss", "--input", "16x112x112", "--variants", "eager", "--batch", "2")
    assert args.parts == ["kernel", "loss"] and args.input == (16, 112, 112) and args.variants == ["eager"]


def test_unknown_part_is_an_argument_error(capsys):
    with pytest.raises(SystemExit) as raised:
        _parse("--parts", "decoding")
    assert raised.value.code == 2 and "invalid choice: 'decoding'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message", [(["--batch", "0"], "--batch must be >= 1"), (["--input", "64x224"], "--input takes T x H x W")]
)
def test_bad_numbers_are_refused_in_one_line(argv, message, tmp_path):
    with pytest.raises(SystemExit) as raised:
        benchmark.main(["gpu", *argv, "--output", str(tmp_path / "out.json")])
    text = str(raised.value.code)
    assert message in text and "\n" not in text
    assert not (tmp_path / "out.json").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_refuses_without_cuda_in_one_line(tmp_path):
    with pytest.raises(SystemExit) as raised:
        benchmark.main(["gpu", "--output", str(tmp_path / "out.json")])
    text = str(raised.value.code)
    assert text.startswith("error: the gpu benchmark needs a CUDA GPU") and "\n" not in text
    assert not (tmp_path / "out.json").exists()


def _synthetic_payload():
    def timing(seconds, peak=2**30, first=1.0):
        return {"median_s": seconds, "times_s": [seconds], "first_call_s": first, "peak_memory_bytes": peak}

    models = []
    for model, step_s in ((gb.BASELINE, 1.0), (gb.TOKENLEARNER_MODEL, 0.9), ("Joint space-time MHSA model", 2.0)):
        for variant, speedup in (("eager", 1.0), ("compiled", 1.25)):
            for mode, seconds in (("fw", step_s / 3), ("fwbw", step_s)):
                row = timing(seconds / speedup, first=60.0 if variant == "compiled" else 1.0)
                row["clips_per_s"] = 8 / row["median_s"]
                models.append({"model": model, "config": "", "variant": variant, "mode": mode, **row})
    kernel_rows = [
        {"implementation": "triton", "dtype": "float32", "mode": "fw", **timing(0.001)},
        {"implementation": "triton", "dtype": "float32", "mode": "fwbw", **timing(0.004)},
        {"implementation": "pytorch", "dtype": "float32", "mode": "fw", **timing(0.020)},
        {"implementation": "pytorch", "dtype": "float32", "mode": "fwbw", **timing(0.080)},
        {"implementation": "naive", "dtype": "float32", "mode": "fw", **timing(0.030)},
        {"implementation": "naive", "dtype": "float32", "mode": "fwbw", "error": "out of memory"},
    ]
    errors = {"out": 1e-6, "grad_q": 2e-6, "grad_k": 3e-6, "grad_v": 1e-6}
    return {
        "machine": {"gpu": "NVIDIA H200", "torch": "2.14", "cpu_count": 16},
        "triton": "3.8.0",
        "cuda_version": "13.0",
        "warmup": 3,
        "repeats": 10,
        "command": "python tools/benchmark.py gpu --markdown docs/benchmarks.md",
        "kernel_check": {
            "implementation": "triton",
            "checks": [{"shape": [1, 512, 432], "dtype": "float32", "errors": errors, "within_tolerance": True}],
            "all_within_tolerance": True,
        },
        "kernel_timing": {"shape": [8, 512, 432], "results": kernel_rows, "ratios": gb._kernel_ratios(kernel_rows)},
        "kernel_configs": {
            "shape": [8, 512, 432],
            "dtype": "bfloat16",
            "results": [
                {"config": "16x16x16, 4 warps", **timing(0.004)},
                {"config": "32x8x16, 4 warps", **timing(0.003)},
            ],
            "pinned": "16x16x16, 4 warps",
            "fastest": "32x8x16, 4 warps",
            "pinned_vs_fastest_speed": 0.75,
        },
        "models": {
            "clip": [64, 224, 224],
            "batch": 8,
            "amp_dtype": "bfloat16",
            "results": models,
            "ratios": gb._model_ratios(models),
        },  # fmt: skip
        "share": {
            "results": [
                {"implementation": "triton", "step_s": 0.9, "attention_fwbw_s": 0.072, "share_of_step": 0.08},
                {"implementation": "pytorch", "step_s": 1.5, "attention_fwbw_s": 0.72, "share_of_step": 0.48},
            ],
            "ratios": {"triton_vs_pytorch_attention_speed": 10.0, "triton_vs_pytorch_step_speed": 1.5 / 0.9},
        },
        "loss": {
            "steps": 50,
            "lr": 0.05,
            "distinct_batches": 4,
            "final_window": 5,
            "final_loss": {"bfloat16": 0.2020, "float32": 0.2000},
            "relative_difference": 0.01,
        },  # fmt: skip
        "decoding": {
            "device": "cuda:0",
            "workers": 8,
            "videos": 16,
            "source": "640x480 30 fps H.264, 4 s",
            "clip": [64, 224, 224],
            "batch": 8,
            "results": {"cpu_workers": {"clips_per_s": 40.0}, "gpu_main_process": {"clips_per_s": 100.0}},
            "gpu_vs_cpu": 2.5,
        },
    }


def test_targets_from_a_synthetic_result():
    rows = {row["target"]: row for row in gb.target_rows(_synthetic_payload())}
    # 0.9 s against 1.0 s per step at the same batch: 1.11x the baseline's speed, eager and compiled.
    assert rows["tl_model_vs_baseline_step_speed (eager)"]["value"] == pytest.approx(1 / 0.9)
    assert rows["tl_model_vs_baseline_step_speed (compiled)"]["met"]
    assert (
        rows["triton_vs_pytorch_attention_speed"]["value"] == 10.0 and rows["triton_vs_pytorch_attention_speed"]["met"]
    )
    assert rows["triton_share_of_step"]["value"] == 0.08 and not rows["triton_share_of_step"]["met"]
    assert rows["bf16_vs_fp32_loss_relative_difference"]["met"]
    assert rows["kernel_matches_naive"]["met"]
    ratios = _synthetic_payload()["kernel_timing"]["ratios"]
    assert ratios == {"triton_vs_pytorch_float32_fw": pytest.approx(20.0),
                      "triton_vs_pytorch_float32_fwbw": pytest.approx(20.0),
                      "triton_vs_naive_float32_fw": pytest.approx(30.0)}  # fmt: skip


def test_markdown_section_replaces_its_own_section_only(tmp_path):
    text = gb.render_markdown_section(_synthetic_payload())
    assert text.startswith("## GPU\n")
    assert "| triton_share_of_step | 0.080 | <= 0.05 | no | share |" in text
    assert "| tl_model_vs_baseline_step_speed (eager) | 1.111 |" in text
    assert "| 1x512x432 | float32 | 1.0e-06 | 2.0e-06 | 3.0e-06 | 1.0e-06 | yes |" in text
    assert "| naive | float32 | 30.000 | out of memory | — |" in text
    assert "the one pinned for this shape, 16x16x16, 4 warps, runs at 0.75x the fastest's speed (32x8x16" in text
    assert "| 32x8x16, 4 warps | 3.000 |" in text
    assert "| Charades TokenLearner model | compiled | 33.33 | 1,024 | 11.11 | 1,024 | 60.0 |" in text
    assert "| triton | 900.0 | 72.00 | 8.0% |" in text
    assert "bfloat16 0.2020, float32 0.2000; relative difference 1.00%" in text
    assert (
        "CPU decoding in 8 DataLoader workers 40.0 clips/s, GPU decoding in the main process 100.0 clips/s (2.50x)"
        in text
    )
    skipped = gb.render_markdown_section({**_synthetic_payload(), "decoding": {"skipped": "no CUDA"}})
    assert "GPU decoding against CPU decoding: skipped: no CUDA." in skipped
    docs = tmp_path / "benchmarks.md"
    docs.write_text("# Benchmarks\n\n## Model\n\nkept\n\n## GPU\n\nold numbers\n\n## Data\n\nalso kept\n")
    update_markdown_section(docs, text)
    written = docs.read_text()
    assert "old numbers" not in written and "kept" in written and "also kept" in written
    assert written.count("## GPU") == 1 and written.index("## Model") < written.index("## GPU") < written.index(
        "## Data"
    )


def test_kernel_check_finds_a_wrong_implementation(monkeypatch):
    good = gb.check_kernel(device=CPU, implementation="pytorch", shape=(1, 16, 6))
    assert good["all_within_tolerance"] and len(good["checks"]) == 4

    real = torch.ops.videotl.vector_attention

    def off_by_a_bit(q, k, v, implementation, chunk_size):
        out, lse = real(q, k, v, implementation, chunk_size)
        return out * (1 + 1e-3), lse

    monkeypatch.setattr(torch.ops.videotl, "vector_attention", off_by_a_bit)
    bad = gb.check_kernel(device=CPU, implementation="pytorch", shape=(1, 16, 6))
    assert not bad["all_within_tolerance"]
    assert all(check["errors"]["out"] == pytest.approx(1e-3, rel=0.05) for check in bad["checks"])


def test_time_kernels_records_every_implementation_and_mode():
    result = gb.time_kernels(
        device=CPU, shape=(1, 8, 6), implementations=("auto", "pytorch", "naive"), warmup=1, repeats=2
    )
    cases = [(r["implementation"], r["dtype"], r["mode"]) for r in result["results"]]
    # naive runs in float32 only
    assert len(cases) == 10 and ("naive", "bfloat16", "fw") not in cases
    assert all(len(r["times_s"]) == 2 and r["peak_memory_bytes"] is None for r in result["results"])


def test_models_and_share_on_cpu_at_tiny_sizes():
    timing = {"warmup": 1, "repeats": 1}
    models = gb.measure_models(
        device=CPU, models=TINY_MODELS, clip=(4, 64, 64), batch=2, overrides=TINY_X3D, variants=("eager",), **timing
    )
    assert [(r["model"], r["mode"]) for r in models["results"]] == [
        (gb.BASELINE, "fw"), (gb.BASELINE, "fwbw"), (gb.TOKENLEARNER_MODEL, "fw"), (gb.TOKENLEARNER_MODEL, "fwbw"),
    ]  # fmt: skip
    assert set(models["ratios"]) == {"tl_model_vs_baseline_speed_eager_fw", "tl_model_vs_baseline_speed_eager_fwbw"}
    share = gb.measure_share(
        device=CPU, clip=(4, 64, 64), batch=2, implementations=("auto", "pytorch"), overrides=TINY_X3D, **timing
    )
    for row in share["results"]:
        # Two converted res5 blocks in the tiny config, each with 8 tokens x 4 frames of width 36,
        # under bfloat16 autocast (CPU autocast here, CUDA's on a GPU).
        assert row["attention_calls"] == [{"shape": [2, 32, 36], "dtype": "bfloat16"}] * 2
        assert 0 < row["share_of_step"] < 1


def test_compiled_variant_times_the_compiled_model(monkeypatch):
    # Whether the networks compile is tests/models/test_compile.py's business; here, that the
    # compiled variant times what torch.compile returned, with static shapes.
    compiled = []

    def recording_compile(model, **options):
        compiled.append(options)

        def run(*args):
            compiled.append("called")
            return model(*args)

        return run

    monkeypatch.setattr(torch, "compile", recording_compile)
    models = gb.measure_models(
        device=CPU, models={gb.BASELINE: gb.MODELS[gb.BASELINE]}, clip=(4, 32, 32), batch=1, overrides=TINY_X3D,
        variants=("compiled",), compile_backend="eager", warmup=1, repeats=2,
    )  # fmt: skip
    assert compiled[0] == {"dynamic": False, "backend": "eager"} and compiled.count("called") == 6  # 2 modes x 3 calls
    assert {r["variant"] for r in models["results"]} == {"compiled"}


def test_loss_comparison_starts_from_the_same_weights():
    result = gb.measure_loss(device=CPU, clip=(4, 32, 32), batch=2, steps=3, overrides=TINY_X3D, final_window=2)
    low, full = result["losses"]["bfloat16"], result["losses"]["float32"]
    assert len(low) == len(full) == 3
    # The same weights and batch: the first losses differ by bfloat16 rounding only.
    assert low[0] == pytest.approx(full[0], rel=2e-2) and low != full
    assert result["relative_difference"] == pytest.approx(abs(sum(low[1:]) - sum(full[1:])) / sum(full[1:]))
    assert math.isfinite(result["relative_difference"])


def test_command_runs_the_parts_and_writes_json_and_markdown(tmp_path, monkeypatch):
    # The parts are replaced by recorders returning the synthetic result: this checks what the
    # command passes them and what it writes, on a machine pretending to have a GPU.
    payload = _synthetic_payload()
    received = {}

    def part(name, result):
        def run(**kwargs):
            received[name] = kwargs
            return result

        return run

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(gb, "machine_info", lambda device: {**payload["machine"], "device": device})
    for name, key in (("check_kernel", "kernel_check"), ("time_kernels", "kernel_timing"), ("measure_models", "models"),
                      ("measure_share", "share"), ("measure_loss", "loss"), ("measure_decoding", "decoding"),
                      ("time_configs", "kernel_configs")):  # fmt: skip
        monkeypatch.setattr(gb, name, part(name, payload[key]))
    docs, output = tmp_path / "benchmarks.md", tmp_path / "gpu.json"
    argv = ["gpu", "--input", "32x112x112", "--batch", "4", "--variants", "eager", "--steps", "7",
            "--kernel-configs", "pinned", "--decode-videos", "3", "--decode-size", "96x128",
            "--markdown", str(docs), "--output", str(output)]  # fmt: skip
    assert benchmark.main(argv) == 0
    assert received["time_kernels"]["shape"] == received["time_configs"]["shape"] == (4, 512, 432)
    assert received["measure_models"]["clip"] == (32, 112, 112) and received["measure_models"]["batch"] == 4
    assert received["measure_models"]["variants"] == ["eager"]
    assert received["measure_models"]["amp_dtype"] == torch.bfloat16
    assert received["measure_loss"]["steps"] == 7 and received["measure_share"]["device"] == torch.device("cuda", 0)
    assert received["measure_decoding"] == {
        "device": torch.device("cuda", 0),
        "batch": 4,
        "num_videos": 3,
        "source": (96, 128),
    }
    assert received["time_configs"]["only_pinned"] is True
    written = json.loads(output.read_text())
    assert written["machine"]["device"] == "cuda:0" and written["command"].startswith("python tools/benchmark.py gpu")
    assert {row["target"] for row in written["targets"]} >= {"triton_share_of_step", "kernel_matches_naive"}
    assert docs.read_text().startswith("# Benchmarks\n\n## GPU\n")


def test_decoding_part_skips_cleanly_without_cuda():
    assert gb.measure_decoding(device=torch.device("cpu")) == {"skipped": "no CUDA"}


@pytest.mark.skipif(TORCHCODEC_SKIP is not None, reason=str(TORCHCODEC_SKIP))
def test_decoding_part_measures_both_paths_on_cpu_at_tiny_sizes():
    result = gb.measure_decoding(
        device=torch.device("cpu"), num_videos=2, repeats_per_video=2, seconds=1.0, source=(48, 64),
        num_frames=4, crop=32, batch=2, workers=1, require_cuda=False,
    )  # fmt: skip
    for name in ("cpu_workers", "gpu_main_process"):
        assert result["results"][name]["clips"] == 4 and result["results"][name]["clips_per_s"] > 0
    assert result["gpu_vs_cpu"] == pytest.approx(
        result["results"]["gpu_main_process"]["clips_per_s"] / result["results"]["cpu_workers"]["clips_per_s"]
    )
