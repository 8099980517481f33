#!/usr/bin/env python
"""Evaluate a Charades classification submission the way ``Charades_v1_classify.m`` does.

    python tools/eval_charades.py OUTPUT_DIR/charades_submission.txt Charades_v1_test.csv [--sklearn]

Prints per-class AP, a warning line for videos missing from the submission, and ``mAP <value>``
as the last line.
"""

import argparse
import sys

from videotl.evaluation import evaluate_submission


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("submission", help="lines of 'id s0 s1 ... s156'")
    parser.add_argument("ground_truth", help="Charades_v1_test.csv (or any CSV with id and actions columns)")
    parser.add_argument(
        "--sklearn", action="store_true", help="PySlowFast's variant: sklearn AP over the classes that have a positive"
    )
    parser.add_argument("--num-classes", type=int, default=157)
    args = parser.parse_args(argv)
    try:
        result, missing = evaluate_submission(
            args.submission,
            args.ground_truth,
            num_classes=args.num_classes,
            variant="sklearn" if args.sklearn else "official",
        )
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for index, ap in enumerate(result.per_class_ap):
        print(f"c{index:03d} AP {ap:.6f}")
    if missing:
        print(f"Warning: {missing} videos missing (ranked last)")
    print(f"classes with a positive {result.num_classes_evaluated} of {len(result.per_class_ap)}")
    if not args.sklearn and result.classes_without_positives:
        # The official mean is NaN then; this is the mean the official APs give over the others.
        print(f"mean AP over the classes with a positive {result.map_over_evaluated:.6f}")
    print(f"mAP {result.mean_ap:.6f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
