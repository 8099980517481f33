#!/usr/bin/env python
"""Benchmarks, one subcommand each; results go to a JSON file.

    python tools/benchmark.py data [--video FILE | --workdir DIR] [--backend decord pyav] [--output FILE.json]
    python tools/benchmark.py model [--cfg FILE [--module NAME]] [--input TxHxW] [--device cpu|cuda] [--output FILE.json]

Each subcommand registers itself in SUBCOMMANDS with a function that adds its arguments and one
that runs it and returns a JSON-ready dict.
"""

import argparse
import json
import sys
from typing import Callable, Dict, Tuple

from videotl.utils.fileio import atomic_write_text


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--video", default=None, help="H.264 video to read (default: write a 30 s 480x360 30 fps one)")
    parser.add_argument("--workdir", default=None, help="where the generated video goes (kept for reruns)")
    parser.add_argument("--backend", nargs="+", default=["decord", "pyav"], choices=["decord", "pyav"])
    parser.add_argument("--clips", type=int, default=40, help="random 64-frame clips timed per side")
    parser.add_argument("--segment-repeats", type=int, default=6, help="whole-video decodes timed per side")
    parser.add_argument("--loader-clips", type=int, default=48, help="training samples for the DataLoader comparison")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers (= cores used)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--num-frames", type=int, default=64)
    parser.add_argument("--fps", type=float, default=12.0)
    parser.add_argument("--output", default="benchmark_data.json")


def run_data(args: argparse.Namespace) -> Dict:
    from videotl.profiling.data_benchmark import run_data_benchmark

    return run_data_benchmark(
        args.video,
        workdir=args.workdir,
        backends=args.backend,
        num_clips=args.clips,
        segment_repeats=args.segment_repeats,
        loader_clips=args.loader_clips,
        workers=args.workers,
        batch_size=args.batch_size,
        num_frames=args.num_frames,
        fps=args.fps,
    )


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    from videotl.profiling.model_benchmark import add_model_arguments as add

    add(parser)


def run_model(args: argparse.Namespace) -> Dict:
    from videotl.profiling.model_benchmark import run_model as run

    return run(args)


# name -> (help, add arguments, run)
SUBCOMMANDS: Dict[str, Tuple[str, Callable, Callable]] = {
    "data": ("decoding / segment / DataLoader throughput against bare decoder loops", add_data_arguments, run_data),
    "model": ("fw and fw+bw clips/s and peak memory of models, res5 modules, naive vs chunked VectT", add_model_arguments, run_model),
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name, (help_text, add_arguments, _) in SUBCOMMANDS.items():
        add_arguments(subparsers.add_parser(name, help=help_text))
    args = parser.parse_args(argv)
    result = SUBCOMMANDS[args.command][2](args)
    result["command"] = " ".join(["python tools/benchmark.py"] + list(argv if argv is not None else sys.argv[1:]))
    atomic_write_text(args.output, json.dumps(result, indent=2) + "\n")
    print(f"results written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
