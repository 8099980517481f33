#!/usr/bin/env python
"""The whole toolkit on a laptop CPU: generate a synthetic Charades set (when absent), train the
scaled-down TokenLearner model on it, test it, and print the mAP next to chance.

    python tools/run_demo.py
    python tools/run_demo.py --cfg configs/demo/synthetic_charades.yaml OUTPUT_DIR runs/demo SOLVER.MAX_EPOCH 10

Everything goes under OUTPUT_DIR (log.txt, checkpoints/, test_metrics.json, demo_result.json and
the pictures: per_class_ap.png, training_curves.png, timeline_<id>.png, token_attention_grid.png);
the dataset goes to DATA.PATH_TO_DATA_DIR (default data/synthetic_charades). Rerunning resumes.
"""

import os

# Set before torch loads OpenMP: idle threads sleep instead of spinning, which matters on two cores
# shared with the DataLoader workers (docs/synthetic_charades.md).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import sys  # noqa: E402

from videotl_tools._cli import add_config_arguments, config_from, make_parser, parse_args, run  # noqa: E402
from videotl_tools.harness.demo import DEMO_CONFIG, DEMO_DATASET, run_demo  # noqa: E402


def main(argv=None) -> int:
    parser = make_parser(__doc__)
    add_config_arguments(parser, default=DEMO_CONFIG)
    parser.add_argument("--seed", type=int, default=DEMO_DATASET["seed"], help="dataset seed")
    parser.add_argument("--num-train", type=int, default=DEMO_DATASET["num_train"], help="training videos")
    parser.add_argument("--num-test", type=int, default=DEMO_DATASET["num_test"], help="test videos")
    args = parse_args(parser, argv)

    def work():
        cfg = config_from(args)
        dataset = {**DEMO_DATASET, "seed": args.seed, "num_train": args.num_train, "num_test": args.num_test}
        result = run_demo(cfg, dataset=dataset)
        times = ", ".join(f"{name} {value:.0f} s" for name, value in result.seconds.items())
        print(f"{times} (CPU time {result.cpu_seconds:.0f} s); results in {result.output_dir}")
        for path in result.pictures.values():
            print(f"picture: {path}")
        print(result.summary())

    return run(work)


if __name__ == "__main__":
    sys.exit(main())
