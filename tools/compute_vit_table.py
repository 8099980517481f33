#!/usr/bin/env python
"""Measure the ViT / ViViT rows of the paper's compute tables and write docs/compute_vit.md.

    python tools/compute_vit_table.py --out docs/compute_vit.md [--json vit.json] [--only "Table 6"]

The rows are those ``videotl_tools.harness.paper_figures_vit`` registers with ``tools/compute_table.py``
(which measures them by running every layer: about two hours for the ViViT-L rows on two CPU
cores). Here each model is counted with the same fvcore handles on a copy with one layer of each
kind, and the repeated layers are added from their per-layer counts: the same numbers exactly
(``measure_row_by_layers``), in minutes.
"""

import argparse
import sys
import time

from videotl_tools.harness.paper_figures import write_figure_outputs
from videotl_tools.harness.paper_figures_vit import ROWS, measure_row_by_layers


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="docs/compute_vit.md", help="markdown file to write")
    parser.add_argument("--json", default=None, help="also write the counts here")
    parser.add_argument("--only", default=None, help="measure only rows whose table contains this text")
    args = parser.parse_args(argv)

    results = []
    for row in [r for r in ROWS if args.only is None or args.only in r.table]:
        start = time.perf_counter()
        result = measure_row_by_layers(row)
        results.append(result)
        print(
            f"{row.table.split(':')[0]:<8} {row.label:<58} {result.gflops:9.2f} GFLOPs ({result.gflops_ratio:.3f} of the paper), "
            f"{result.params_m:8.3f}M  ({time.perf_counter() - start:.0f} s)",
            flush=True,
        )
    command = "python tools/compute_vit_table.py --out " + args.out + (f' --only "{args.only}"' if args.only else "")
    return write_figure_outputs(results, out=args.out, command=command, json_path=args.json)


if __name__ == "__main__":
    sys.exit(main())
