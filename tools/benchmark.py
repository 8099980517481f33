#!/usr/bin/env python
"""Benchmarks, one subcommand each; results go to a JSON file, and with --markdown to their section
of a Markdown document.

    python tools/benchmark.py data [--video FILE] [--workdir DIR] [--markdown docs/benchmarks.md] [--output FILE.json]
    python tools/benchmark.py model [--cfg FILE [--module NAME]] [--input TxHxW] [--device cpu|cuda] [--output FILE.json]
    python tools/benchmark.py gpu [--parts kernel models share loss] [--markdown docs/benchmarks.md] [--output FILE.json]

Each subcommand is a :class:`Benchmark` in the ``BENCHMARKS`` registry: a function that adds its
arguments, one that runs it and returns a JSON-ready record, one that gives the rows of its tables
(flat dicts, written to the JSON as ``rows``) and one that writes its Markdown section, whose
tables are those rows through the one renderer, ``videotl_tools.harness.reports.markdown_table``.
"""

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List

from videotl.registry import Registry
from videotl.utils.fileio import atomic_write_text
from videotl_tools._cli import run
from videotl_tools.harness import data_benchmark, gpu_benchmark, model_benchmark
from videotl_tools.harness.reports import update_markdown_section


@dataclass(frozen=True)
class Benchmark:
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], Dict]
    rows: Callable[[Dict], List[Dict]]
    render_markdown: Callable[[Dict], str]


BENCHMARKS: Registry[Benchmark] = Registry("benchmark")
BENCHMARKS.register(
    "data",
    Benchmark(
        "videotl's readers against torchcodec / decord / PyAV, long-video memory, transcoded files, index",
        data_benchmark.add_data_arguments,
        data_benchmark.run_data,
        data_benchmark.data_rows,
        data_benchmark.render_markdown,
    ),
)
BENCHMARKS.register(
    "model",
    Benchmark(
        "fw and fw+bw clips/s and peak memory of models, res5 modules, naive vs chunked VectT",
        model_benchmark.add_model_arguments,
        model_benchmark.run_model,
        model_benchmark.model_rows,
        model_benchmark.render_markdown_section,
    ),
)
BENCHMARKS.register(
    "gpu",
    Benchmark(
        "CUDA only: Triton kernel check, bf16 models eager and compiled, VectT share of a step, bf16 vs fp32 loss",
        gpu_benchmark.add_gpu_arguments,
        gpu_benchmark.run_gpu,
        gpu_benchmark.gpu_rows,
        gpu_benchmark.render_markdown_section,
    ),
)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name, benchmark in BENCHMARKS.items():
        subparser = subparsers.add_parser(name, help=benchmark.help)
        benchmark.add_arguments(subparser)
        subparser.add_argument(
            "--markdown", default=None, help="also rewrite this benchmark's section of this file (docs/benchmarks.md)"
        )
    args = parser.parse_args(argv)

    def work():
        benchmark = BENCHMARKS.get(args.command)
        result = benchmark.run(args)
        result["command"] = " ".join(["python tools/benchmark.py"] + list(argv if argv is not None else sys.argv[1:]))
        result["rows"] = benchmark.rows(result)
        atomic_write_text(args.output, json.dumps(result, indent=2) + "\n")
        print(f"results written to {args.output}")
        if args.markdown:
            section = benchmark.render_markdown(result)
            update_markdown_section(Path(args.markdown), section)
            print(f"{section.splitlines()[0]} written to {args.markdown}")

    return run(work)


if __name__ == "__main__":
    sys.exit(main())
