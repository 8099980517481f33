#!/usr/bin/env python
"""Benchmarks, one subcommand each; results go to a JSON file.

    python tools/benchmark.py data [--video FILE] [--workdir DIR] [--markdown docs/benchmarks.md] [--output FILE.json]
    python tools/benchmark.py model [--cfg FILE [--module NAME]] [--input TxHxW] [--device cpu|cuda] [--output FILE.json]
    python tools/benchmark.py gpu [--parts kernel models share loss] [--markdown docs/benchmarks.md] [--output FILE.json]

Each subcommand is a :class:`Benchmark` in the ``BENCHMARKS`` registry: a function that adds its
arguments and one that runs it and returns a JSON-ready dict.
"""

import argparse
import json
import sys
from dataclasses import dataclass
from typing import Callable, Dict

from videotl.registry import Registry
from videotl.utils.fileio import atomic_write_text
from videotl_tools._cli import run
from videotl_tools.harness import data_benchmark, gpu_benchmark, model_benchmark


@dataclass(frozen=True)
class Benchmark:
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], Dict]


BENCHMARKS: Registry[Benchmark] = Registry("benchmark")
BENCHMARKS.register(
    "data",
    Benchmark(
        "videotl's readers against torchcodec / decord / PyAV, long-video memory, transcoded files, index",
        data_benchmark.add_data_arguments,
        data_benchmark.run_data,
    ),
)
BENCHMARKS.register(
    "model",
    Benchmark(
        "fw and fw+bw clips/s and peak memory of models, res5 modules, naive vs chunked VectT",
        model_benchmark.add_model_arguments,
        model_benchmark.run_model,
    ),
)
BENCHMARKS.register(
    "gpu",
    Benchmark(
        "CUDA only: Triton kernel check, bf16 models eager and compiled, VectT share of a step, bf16 vs fp32 loss",
        gpu_benchmark.add_gpu_arguments,
        gpu_benchmark.run_gpu,
    ),
)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name, benchmark in BENCHMARKS.items():
        benchmark.add_arguments(subparsers.add_parser(name, help=benchmark.help))
    args = parser.parse_args(argv)
    args.argv = list(argv if argv is not None else sys.argv[1:])

    def work():
        result = BENCHMARKS.get(args.command).run(args)
        result["command"] = " ".join(["python tools/benchmark.py"] + list(argv if argv is not None else sys.argv[1:]))
        atomic_write_text(args.output, json.dumps(result, indent=2) + "\n")
        print(f"results written to {args.output}")

    return run(work)


if __name__ == "__main__":
    sys.exit(main())
