#!/usr/bin/env python
"""Write a synthetic dataset in the official Charades layout (see tools/harness/synthetic_charades.py).

    python datasets/make_synthetic_charades.py --out data/synthetic_charades --seed 0

Then train on it with ``DATA.PATH_TO_DATA_DIR data/synthetic_charades MODEL.NUM_CLASSES 12``.
"""

import argparse
import time

from videotl_tools.harness.synthetic_charades import generate_synthetic_charades


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="dataset root to write (DATA.PATH_TO_DATA_DIR)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-train", type=int, default=200)
    parser.add_argument("--num-test", type=int, default=60)
    parser.add_argument("--min-seconds", type=float, default=15.0, help="shortest video")
    parser.add_argument("--max-seconds", type=float, default=40.0, help="longest video")
    parser.add_argument("--workers", type=int, default=None, help="encoding processes (default: one per core)")
    parser.add_argument("--crf", type=int, default=23, help="libx264 quality (lower = better, bigger)")
    parser.add_argument("--preset", default="ultrafast", help="libx264 speed preset")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    dataset = generate_synthetic_charades(
        args.out,
        seed=args.seed,
        num_train=args.num_train,
        num_test=args.num_test,
        min_seconds=args.min_seconds,
        max_seconds=args.max_seconds,
        num_workers=args.workers,
        crf=args.crf,
        preset=args.preset,
    )
    seconds = sum(v.duration for v in dataset.videos)
    print(
        f"{args.out}: {len(dataset.train)} train + {len(dataset.test)} test videos ({seconds / 60:.1f} min of video), "
        f"{len(dataset.classes)} classes, test positive rate {dataset.positive_rate('test'):.3f}; "
        f"{time.perf_counter() - start:.1f} s"
    )


if __name__ == "__main__":
    main()
