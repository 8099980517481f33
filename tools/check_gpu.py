#!/usr/bin/env python
"""The first command to run on a machine with a GPU: every CUDA path of videotl, once, in about
five minutes (the Triton kernels, bfloat16 and compiled training, GPU decoding and training on
it, a compiled model's checkpoint, NCCL under torchrun, then the GPU benchmark at its shortest).

    python tools/check_gpu.py [--only CHECK ...] [--workdir DIR]

First a line saying what the machine has and lacks for the checks (C compiler and Python headers
for Triton, FFmpeg's libraries, torchcodec, NVDEC's library); then one line per check: its name,
pass, FAIL or skip (a check this machine cannot run, with the reason), what it measured, its
seconds. The exit status is 1 when a check failed; a run past five minutes says so. Without CUDA it
says so in one line and exits 0. What the checks print themselves (training logs, progress bars, the
benchmark's output) goes to check_gpu.log in the run's folder, a new folder in DIR (default: the
system's temporary folder), which is removed when every check passed and kept otherwise. The
checks are described in tools/harness/gpu_check.py.
"""

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

from videotl_tools._cli import run
from videotl_tools.harness import gpu_check


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--only", nargs="+", choices=list(gpu_check.CHECKS), metavar="CHECK",
        help=f"run only these checks: {', '.join(gpu_check.CHECKS)}",
    )  # fmt: skip
    parser.add_argument(
        "--workdir", default=None, help="where the run's folder is made (default: the temporary folder)"
    )
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("check_gpu: torch finds no CUDA GPU here (torch.cuda.is_available() is False): nothing to check")
        return 0

    def work() -> int:
        device = torch.device("cuda", torch.cuda.current_device())
        if args.workdir:
            Path(args.workdir).mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix="videotl_check_gpu_", dir=args.workdir))
        print(
            f"checking {torch.cuda.get_device_name(device)} ({device}): torch {torch.__version__}, "
            f"CUDA {torch.version.cuda}; details in {folder / 'check_gpu.log'}",
            flush=True,
        )
        print(f"preflight: {gpu_check.preflight_line(gpu_check.preflight())}", flush=True)
        started = time.perf_counter()
        with open(folder / "check_gpu.log", "w") as log:
            results = gpu_check.run_checks(device=device, workdir=folder, log=log, names=args.only)
        seconds = time.perf_counter() - started
        failed = [result.name for result in results if not result.passed]
        skipped = [result.name for result in results if result.skipped]
        skips = f", {len(skipped)} skipped ({', '.join(skipped)})" if skipped else ""
        # A subset may take any time; the whole set aims at five minutes (a first, cold run may not).
        slow = (
            f", over the {gpu_check.TIME_BUDGET_S:.0f} s aimed at"
            if args.only is None and seconds > gpu_check.TIME_BUDGET_S
            else ""
        )
        if failed:
            print(
                f"{len(failed)} of {len(results)} checks FAILED ({', '.join(failed)}){skips} in {seconds:.0f} s{slow}; "
                f"see {folder}"
            )
            return 1
        print(f"{len(results) - len(skipped)} of {len(results)} checks passed{skips} in {seconds:.0f} s{slow}")
        shutil.rmtree(folder, ignore_errors=True)
        return 0

    return run(work)


if __name__ == "__main__":
    sys.exit(main())
