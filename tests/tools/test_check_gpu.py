"""tools/check_gpu.py without a GPU: the one line it prints, how it reports and counts checks, and
every check run on the CPU at tiny sizes (the Triton ones under TRITON_INTERPRET=1), failing where
the GPU path would have failed."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.data.conftest import TORCHCODEC_SKIP
from tests.models.conftest import TINY_X3D
from tests.tools.test_gpu_benchmark import _synthetic_payload
from videotl.models import vector_attention_triton
from videotl_tools import check_gpu
from videotl_tools.harness import gpu_benchmark as gb
from videotl_tools.harness import gpu_check

CPU = torch.device("cpu")
ROOT = Path(__file__).resolve().parents[2]
# The tiny network at 4 x 32 x 32 clips, as the GPU benchmark's own tests run it.
TINY_CLIP = (4, 32, 32)
AOT_EAGER = {"dynamic": False, "backend": "aot_eager"}
# The decode-training check at the tiny network's size, decoding in the main process.
DECODE_TRAINING_OVERRIDES = [
    *TINY_X3D,
    "MODEL.NUM_CLASSES",
    "12",
    "DATA_LOADER.NUM_WORKERS",
    "0",
    "DATA.TRAIN_JITTER_SCALES",
    "[64, 72]",
]


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_without_cuda_it_says_so_in_one_line(capsys):
    assert check_gpu.main([]) == 0
    out = capsys.readouterr().out
    assert out == "check_gpu: torch finds no CUDA GPU here (torch.cuda.is_available() is False): nothing to check\n"


@pytest.fixture
def pretend_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Pretend GPU")
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: None)


def _lines(text):
    return [line for line in text.splitlines() if line]


def test_one_line_per_check_and_exit_status_1_when_one_fails(pretend_cuda, monkeypatch, tmp_path, capsys):
    def noisy_pass(context):
        print("a progress bar and a log line")  # goes to the log, not to the report
        assert context.device == torch.device("cuda", 0) and context.workdir.is_dir()
        return True, "measured 1.0"

    def raises(context):
        raise RuntimeError("CUDA error: an illegal memory access was encountered\nmore lines")

    checks = {"first": noisy_pass, "second": lambda context: (False, "measured 9.0 (<= 2)"), "third": raises}
    monkeypatch.setattr(gpu_check, "CHECKS", checks)
    assert check_gpu.main(["--workdir", str(tmp_path)]) == 1
    lines = _lines(capsys.readouterr().out)
    assert lines[0].startswith("checking Pretend GPU (cuda:0): torch ") and lines[1].startswith("preflight: ")
    assert [line.split()[:2] for line in lines[2:5]] == [["first", "pass"], ["second", "FAIL"], ["third", "FAIL"]]
    assert "measured 9.0 (<= 2)" in lines[3]
    assert "RuntimeError: CUDA error: an illegal memory access was encountered [" in lines[4]
    assert lines[5].startswith("2 of 3 checks FAILED (second, third) in ")
    # The failed run's folder stays, with what the checks printed and the error in full.
    (folder,) = tmp_path.iterdir()
    log = (folder / "check_gpu.log").read_text()
    assert "a progress bar and a log line" in log and "more lines" in log and "===== third" in log


def test_all_passing_removes_the_folder_and_only_runs_what_was_asked(pretend_cuda, monkeypatch, tmp_path, capsys):
    ran = []
    checks = {name: (lambda context, name=name: ran.append(name) or (True, "ok")) for name in ("a", "b", "c")}
    monkeypatch.setattr(gpu_check, "CHECKS", checks)
    assert check_gpu.main(["--workdir", str(tmp_path), "--only", "c", "a"]) == 0
    assert ran == ["c", "a"] and list(tmp_path.iterdir()) == []
    assert _lines(capsys.readouterr().out)[-1].startswith("2 of 2 checks passed in ")
    with pytest.raises(SystemExit):
        check_gpu.main(["--only", "d"])
    assert "invalid choice: 'd'" in capsys.readouterr().err


def test_the_whole_set_over_five_minutes_says_so_without_failing(pretend_cuda, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(gpu_check, "CHECKS", {"a": lambda context: (True, "ok")})
    monkeypatch.setattr(gpu_check, "TIME_BUDGET_S", 0.0)
    assert check_gpu.main(["--workdir", str(tmp_path)]) == 0
    last = _lines(capsys.readouterr().out)[-1]
    assert last.startswith("1 of 1 checks passed in ") and last.endswith("s, over the 0 s aimed at")


def test_a_check_past_its_budget_is_stopped_and_the_next_one_runs(tmp_path):
    import io
    import time

    def hangs(context):
        time.sleep(30)
        return True, "never reached"

    checks = {"hangs": hangs, "quick": lambda context: (True, f"budget {context.budget_s} s")}
    begin = time.perf_counter()
    results = gpu_check.run_checks(
        device=CPU, workdir=tmp_path, log=io.StringIO(), checks=checks, budgets_s={"hangs": 0.3, "quick": 7.0},
        report=lambda result: None,
    )  # fmt: skip
    assert time.perf_counter() - begin < 10
    assert [(r.name, r.passed) for r in results] == [("hangs", False), ("quick", True)]
    assert results[0].value == "CheckOverBudget: stopped at its 0.3 s budget" and results[1].value == "budget 7.0 s"


def test_every_check_has_a_budget_and_they_fit_five_minutes():
    assert set(gpu_check.CHECK_BUDGETS_S) == set(gpu_check.CHECKS)
    assert sum(gpu_check.CHECK_BUDGETS_S.values()) <= gpu_check.TIME_BUDGET_S == 300


def test_a_check_the_machine_cannot_run_is_skipped_with_its_reason(pretend_cuda, monkeypatch, tmp_path, capsys):
    def lacks_nvdec(context):
        raise gpu_check.CheckSkipped("torchcodec has no CUDA build here")

    monkeypatch.setattr(gpu_check, "CHECKS", {"decode": lacks_nvdec, "kernel": lambda context: (True, "ok")})
    assert check_gpu.main(["--workdir", str(tmp_path)]) == 0
    lines = _lines(capsys.readouterr().out)
    assert lines[1].startswith("preflight: has: ") and "; lacks: " in lines[1]
    assert lines[2].split()[:2] == ["decode", "skip"] and "skipped: torchcodec has no CUDA build here" in lines[2]
    assert lines[3].split()[:2] == ["kernel", "pass"]
    assert lines[4].startswith("1 of 2 checks passed, 1 skipped (decode) in ")


def test_preflight_names_what_the_machine_has_and_lacks(monkeypatch):
    import ctypes.util
    import shutil

    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/gcc" if name == "gcc" else None)
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: "libavcodec.so.59" if name == "avcodec" else None)
    found = gpu_check.preflight()
    assert found["C compiler"] == "gcc" and found["FFmpeg libraries"] == "libavcodec.so.59"
    assert found["NVDEC library"] == ""
    line = gpu_check.preflight_line(found)
    assert "C compiler (gcc)" in line and "FFmpeg libraries (libavcodec.so.59)" in line
    assert line.split("; lacks: ")[1].startswith("NVDEC library")


def test_triton_checks_skip_without_a_c_compiler(monkeypatch):
    import shutil

    monkeypatch.setattr(vector_attention_triton, "triton_installed", lambda: True)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(gpu_check.CheckSkipped, match="no C compiler"):
        gpu_check.check_triton_kernel(device=CPU)
    # Compiled training on CUDA builds Triton kernels too (inductor's); eager training does not.
    monkeypatch.setattr(gpu_check.gpu_benchmark, "measure_loss", lambda **kwargs: pytest.fail("should have skipped"))
    with pytest.raises(gpu_check.CheckSkipped, match="no C compiler"):
        gpu_check.check_bf16_training(device=torch.device("cuda"), compiled=True)


def test_every_named_check_is_listed_in_the_docs():
    docs = (ROOT / "docs" / "training.md").read_text()
    assert all(f"`{name}`" in docs for name in gpu_check.CHECKS)


@pytest.mark.skipif(not vector_attention_triton.triton_installed(), reason="triton is not installed")
def test_triton_checks_pass_under_the_interpreter():
    # The interpreter must be on before triton is imported: a fresh process, as for the kernel tests.
    code = (
        "import torch; from videotl_tools.harness import gpu_check as g; cpu = torch.device('cpu'); "
        "print(g.check_triton_kernel(device=cpu, shape=(1, 20, 9))); "
        "print(g.check_triton_edge_shapes(device=cpu, batch=3)); "
        "print(g.check_triton_same_forward(device=cpu, shape=(1, 19, 9))); "
        "import json; from videotl_tools.harness import gpu_benchmark as gb; "
        "print(json.dumps(gb.time_configs(device=cpu, shape=(1, 19, 9), dtype='float32', warmup=0, repeats=1, "
        "only_pinned=True))); "
        "print(json.dumps(gb.time_configs(device=cpu, shape=(1, 19, 9), dtype='float32', warmup=0, repeats=1)))"
    )
    env = dict(os.environ, TRITON_INTERPRET="1", OMP_NUM_THREADS="1")
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = _lines(result.stdout)
    (kernel, edges, same) = [line for line in lines if line.startswith("(")]
    pinned, configs = [line for line in lines if line.startswith("{")]
    assert kernel.startswith("(True, 'largest errors against float64 eq. 3: float32 out ")
    assert "at 1x20x9 and 2x37x27" in kernel
    assert edges.startswith("(True, 'batch 3: largest error ") and "no keys: zeros and zero gradients" in edges
    assert same.startswith("(True, 'a second process computed the same forward at 1x19x9, bit for bit")
    # Every block config timed; 19 tokens of 9 channels pad least with 32 x 8 x 16 blocks (32 x 24 lanes).
    configs = json.loads(configs)
    assert [row["config"] for row in configs["results"]] == [
        "16x16x16, 4 warps", "32x8x16, 4 warps", "16x8x32, 4 warps", "32x16x16, 8 warps", "64x4x16, 4 warps",
        "16x16x32, 8 warps",
    ]  # fmt: skip
    assert configs["pinned"] == "32x8x16, 4 warps" and 0 < configs["pinned_vs_fastest_speed"] <= 1
    # The check's shortest benchmark times the pinned config alone: one compile, no ratio.
    pinned = json.loads(pinned)
    assert [row["config"] for row in pinned["results"]] == ["32x8x16, 4 warps"] and pinned["fastest"] is None


def test_bf16_training_compares_against_eager_float32():
    graphs = []

    def counting_backend(graph_module, example_inputs):
        graphs.append(graph_module)
        return graph_module.forward

    eager = gpu_check.check_bf16_training(
        device=CPU, compiled=False, steps=2, clip=TINY_CLIP, batch=2, overrides=TINY_X3D
    )
    assert eager[0] and "2 steps: bf16 loss " in eager[1] and "apart (<= 2%)" in eager[1]
    assert not graphs
    compiled = gpu_check.check_bf16_training(
        device=CPU, compiled=True, steps=2, clip=TINY_CLIP, batch=2, overrides=TINY_X3D,
        compile_options={"dynamic": False, "backend": counting_backend},
    )  # fmt: skip
    # The bfloat16 run went through torch.compile, the float32 reference did not (one graph per mode).
    assert compiled[0] and graphs
    torch._dynamo.reset()


def test_bf16_training_fails_past_two_percent(monkeypatch):
    losses = {"final_loss": {"bfloat16": 1.03, "float32": 1.0}, "relative_difference": 0.03, "final_window": 5}
    monkeypatch.setattr(gb, "measure_loss", lambda **kwargs: losses)
    passed, value = gpu_check.check_bf16_training(device=CPU, compiled=False)
    assert not passed and value == "20 steps: bf16 loss 1.0300, fp32 1.0000 (last 5 steps): 3.00% apart (<= 2%)"


def test_compiled_checkpoint_reloads_into_an_eager_model(tmp_path, monkeypatch):
    from videotl.engine import trainer

    monkeypatch.setitem(trainer.COMPILE_OPTIONS, "backend", "aot_eager")
    passed, value = gpu_check.check_compiled_checkpoint(
        device=CPU, workdir=tmp_path, clip=TINY_CLIP, batch=2, overrides=TINY_X3D
    )
    torch._dynamo.reset()
    assert passed, value
    assert (
        "tensors saved and reloaded by name; the reloaded model's outputs equal the saved model's bit for bit" in value
    )


@pytest.mark.skipif(TORCHCODEC_SKIP is not None, reason=str(TORCHCODEC_SKIP))
def test_decoding_check_on_the_cpu_and_with_a_gpu_decoder_that_fails(tmp_path, monkeypatch):
    import torchcodec.decoders

    from tests.data.conftest import FailingGpuDecoders, registered_backend
    from videotl.data.decoding import TorchcodecBackend

    passed, value = gpu_check.check_cuda_decoding(device=CPU, workdir=tmp_path, frames=6, size=(48, 64))
    assert passed and value.startswith("6 frames 64x48: largest difference from CPU decoding 0 levels (<= 3)")
    # NVDEC that fails: the reader falls back to the CPU (and the video is read); the check must fail.
    monkeypatch.setattr(torchcodec.decoders, "VideoDecoder", FailingGpuDecoders())
    # As on a machine with CUDA: the device asked for is the device used.
    with registered_backend("torchcodec", TorchcodecBackend(cuda_available=lambda: True)):
        passed, value = gpu_check.check_cuda_decoding(
            device=torch.device("cuda"), workdir=tmp_path, frames=6, size=(48, 64)
        )
    assert not passed and value.startswith("decoded on cpu, not cuda: torchcodec fell back to the CPU (torchcodec")
    assert "cannot decode on cuda (CUDA error: an illegal memory access was encountered (NVDEC))" in value


@pytest.mark.skipif(TORCHCODEC_SKIP is not None, reason=str(TORCHCODEC_SKIP))
def test_decode_training_trains_in_the_main_process(tmp_path):
    passed, value = gpu_check.check_cuda_decode_training(
        device=CPU, workdir=tmp_path, steps=2, overrides=DECODE_TRAINING_OVERRIDES, encoding_workers=0
    )
    assert passed, value
    assert value.startswith("2 steps decoding on cpu in the main process, last loss ") and "0 samples skipped" in value


@pytest.mark.skipif(TORCHCODEC_SKIP is not None, reason=str(TORCHCODEC_SKIP))
def test_decode_training_fails_when_every_read_fell_back_to_pyav(tmp_path):
    from tests.data.conftest import registered_backend
    from videotl.data.decoding import TorchcodecBackend

    class Untrusting(TorchcodecBackend):
        def cannot_read_exactly(self, info):
            return "its frame index disagrees with the container's"

    with registered_backend("torchcodec", Untrusting()):
        passed, value = gpu_check.check_cuda_decode_training(
            device=CPU, workdir=tmp_path, steps=2, overrides=DECODE_TRAINING_OVERRIDES, encoding_workers=0
        )
    # Training went on (PyAV read every clip), but not on the decoder the check is about.
    assert not passed and "0 samples skipped; decoded on the CPU instead: torchcodec cannot read " in value
    assert value.endswith("exactly (its frame index disagrees with the container's); read with PyAV instead")


def test_torchrun_check_forms_a_group_of_one():
    passed, value = gpu_check.check_torchrun(device=CPU)
    assert passed, value
    assert value.startswith("backend gloo, device cpu, world size 1;") and "all-reduce 1 (expected 1)" in value


def test_benchmark_check_runs_the_shortest_setting(tmp_path, monkeypatch):
    import argparse

    parser = argparse.ArgumentParser()
    gb.add_gpu_arguments(parser)
    args = parser.parse_args(list(gpu_check.SHORTEST_BENCHMARK))
    gb._check_arguments(args)
    assert args.parts == list(gb.PARTS) and args.variants == ["eager"] and args.steps == 5
    # One block config and four small videos, not six configs and sixteen at 640 x 480.
    assert args.kernel_configs == "pinned" and args.decode_videos == 4 and args.decode_size == (240, 320)
    if not torch.cuda.is_available():
        # Here the benchmark itself refuses: the check reports its one line.
        passed, value = gpu_check.check_gpu_benchmark(workdir=tmp_path, timeout=300)
        assert not passed and value.startswith("exit status 1: error: the gpu benchmark needs a CUDA GPU")
    commands = []

    def finished_benchmark(command, **kwargs):
        commands.append(command)
        payload = {**_synthetic_payload(), "seconds": 95.0}
        payload["targets"] = gb.target_rows(payload)
        Path(command[command.index("--output") + 1]).write_text(json.dumps(payload))
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(gpu_check.subprocess, "run", finished_benchmark)
    passed, value = gpu_check.check_gpu_benchmark(workdir=tmp_path)
    assert commands[0][1:4] == ["-m", "videotl_tools.benchmark", "gpu"]
    assert commands[0][4:-2] == list(gpu_check.SHORTEST_BENCHMARK)
    assert passed and value.startswith(f"all parts in 95 s ({tmp_path / 'benchmark_gpu.json'}): ")
    assert "triton_vs_pytorch_attention_speed 10.000" in value and "kernel_matches_naive yes" in value
    assert value.endswith("; pinned block config 0.75x the fastest's speed")

    # Timed alone, the pinned config has no ratio to report.
    def pinned_only(command, **kwargs):
        payload = {**_synthetic_payload(), "seconds": 60.0}
        payload["kernel_configs"] = {**payload["kernel_configs"], "fastest": None, "pinned_vs_fastest_speed": None}
        payload["targets"] = gb.target_rows(payload)
        Path(command[command.index("--output") + 1]).write_text(json.dumps(payload))
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(gpu_check.subprocess, "run", pinned_only)
    passed, value = gpu_check.check_gpu_benchmark(workdir=tmp_path)
    assert passed and "pinned block config" not in value


# What docs/training.md tells an offline GPU machine to bring (beside its own torch, torchvision,
# numpy and pillow) leaves these out: the checks must run without them.
NOT_BROUGHT = ("sklearn", "matplotlib", "tensorboard", "decord", "pytorchvideo", "scipy")


@pytest.mark.skipif(TORCHCODEC_SKIP is not None, reason=str(TORCHCODEC_SKIP))
def test_the_checks_run_with_only_the_wheels_the_offline_docs_name(tmp_path):
    code = (
        f"import sys; sys.modules.update(dict.fromkeys({NOT_BROUGHT!r})); "
        "import torch; from videotl_tools import check_gpu; from videotl_tools.harness import gpu_check as g; "
        "from tests.models.conftest import TINY_X3D; cpu = torch.device('cpu'); "
        f"print(g.check_cuda_decoding(device=cpu, workdir={str(tmp_path)!r}, frames=4, size=(48, 64))); "
        "print(g.check_bf16_training(device=cpu, compiled=False, steps=2, clip=(4, 32, 32), batch=2, overrides=TINY_X3D))"
    )
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr[-3000:]
    decoding, training = [line for line in _lines(result.stdout) if line.startswith("(")]
    assert decoding.startswith("(True, '4 frames 64x48") and training.startswith("(True, '2 steps: bf16 loss ")
