#!/usr/bin/env python
"""Plot loss, learning rate and evaluation metrics of a run from OUTPUT_DIR/stats.jsonl.

python tools/plot_training.py OUTPUT_DIR [--out FILE.png]
"""

import argparse
import sys

from videotl.visualization import plot_training_curves
from videotl_tools._cli import run


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output_dir")
    parser.add_argument("--out", default=None, help="PNG path (default OUTPUT_DIR/training_curves.png)")
    args = parser.parse_args(argv)
    return run(lambda: print(f"wrote {plot_training_curves(args.output_dir, out_path=args.out)}"))


if __name__ == "__main__":
    sys.exit(main())
