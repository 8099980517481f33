#!/usr/bin/env python
"""Measure every row of the paper's compute tables and write docs/compute.md.

    python tools/compute_table.py --out docs/compute.md --only "Table 10" "Table 11" "Table 12" "Other res5" "Related"

Rows, inputs and the paper's numbers live in ``videotl_tools.harness.paper_figures`` (add rows there or
through ``register_rows`` in a ``ROW_PROVIDERS`` module). Without ``--only`` every registered row
is measured, the ViT / ViViT ones too (hours on a CPU: ``tools/compute_vit_table.py`` writes those
to their own page, faster). The whole-network X(2+1)D rows trace a 64 x 256 x 256 clip on the
CPU: one to two minutes each on two cores.
"""

import argparse
import sys
import time

from videotl_tools.harness.paper_figures import all_rows, measure_row, write_figure_outputs


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="docs/compute.md", help="markdown file to write")
    parser.add_argument("--json", default=None, help="also write the measured counts here")
    parser.add_argument(
        "--only", nargs="+", default=None, help="measure only rows whose table contains one of these texts"
    )
    args = parser.parse_args(argv)

    rows = [row for row in all_rows() if args.only is None or any(text in row.table for text in args.only)]
    results = []
    for row in rows:
        start = time.perf_counter()
        result = measure_row(row)
        results.append(result)
        ours = f"{result.gflops:.2f} GFLOPs, {result.params_m:.3f}M" if result.report else "not built"
        print(
            f"{row.table.split(':')[0]:<10} {row.label:<55} {ours}  ({time.perf_counter() - start:.0f} s)", flush=True
        )

    command = f"python tools/compute_table.py --out {args.out}"
    if args.only:
        command += " --only " + " ".join(f'"{text}"' for text in args.only)
    return write_figure_outputs(results, out=args.out, command=command, json_path=args.json)


if __name__ == "__main__":
    sys.exit(main())
