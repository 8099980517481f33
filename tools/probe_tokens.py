#!/usr/bin/env python
"""Train the demo for a short budget under one change and print its normalised gain and what its
tokens look at (median token motion ratio, mean pairwise map correlation, border ratio).

    python tools/probe_tokens.py --name baseline --epochs 20
    python tools/probe_tokens.py --name no_conv2d --epochs 20 RES5.SPATIAL none

Runs go to OUTPUT_ROOT/<name> (a finished probe is not rerun); --table prints the rows of every
finished probe under OUTPUT_ROOT as Markdown (the table of docs/visualization.md).
"""

import os

# Set before torch loads OpenMP: idle threads sleep instead of spinning (docs/synthetic_charades.md).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

from videotl_tools._cli import add_config_arguments, make_parser, parse_args, positive_int, run  # noqa: E402
from videotl_tools.harness.demo import DEMO_CONFIG  # noqa: E402
from videotl_tools.harness.token_probe import ProbeRow, render_probe_table, run_probe  # noqa: E402


def main(argv=None) -> int:
    parser = make_parser(__doc__)
    add_config_arguments(parser, default=DEMO_CONFIG)
    parser.add_argument("--name", help="the probe's name (its run folder)")
    parser.add_argument("--epochs", type=positive_int, default=20, help="training epochs (default 20)")
    parser.add_argument("--output-root", default="runs/token_probes", help="one run folder per probe")
    parser.add_argument("--table", action="store_true", help="print the finished probes' Markdown table")
    args = parse_args(parser, argv)
    if not args.table and not args.name:
        parser.error("give --name (a probe to run) or --table")

    def work():
        if args.table:
            saved = sorted(Path(args.output_root).glob("*/probe_row.json"), key=lambda p: p.stat().st_mtime)
            print(render_probe_table([ProbeRow(**json.loads(p.read_text())) for p in saved]), end="")
            return
        row = run_probe(args.cfg_file, args.name, args.opts, epochs=args.epochs, output_root=args.output_root)
        print(render_probe_table([row]), end="")

    return run(work)


if __name__ == "__main__":
    sys.exit(main())
