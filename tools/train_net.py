#!/usr/bin/env python
"""Train (then test, when TEST.ENABLE) a video model.

python tools/train_net.py --cfg configs/charades_12fps.yaml DATA.PATH_TO_DATA_DIR /data/charades OUTPUT_DIR runs/c12
torchrun --nproc_per_node 8 tools/train_net.py --cfg ...   # one process per GPU
"""

import os
import sys

from videotl.engine import test, train
from videotl.engine.output_dir import run_lock
from videotl.engine.trainer import check_run_annotations
from videotl_tools._cli import parse, run


def main(argv=None) -> int:
    def work():
        cfg = parse(__doc__.split("\n\n")[0], argv)
        # Before the lock, which creates OUTPUT_DIR: bad annotations leave no run folder behind.
        check_run_annotations(cfg, train=cfg.TRAIN.ENABLE, test=cfg.TEST.ENABLE or cfg.TRAIN.EVAL_PERIOD > 0)
        # One lock over training and the final test, so no other run takes the folder in between
        # (rank 0 only under torchrun, as inside train() and test()).
        with run_lock(cfg.OUTPUT_DIR, enabled=os.environ.get("RANK", "0") == "0"):
            if cfg.TRAIN.ENABLE:
                train(cfg)
            if cfg.TEST.ENABLE:
                test(cfg)

    return run(work)


if __name__ == "__main__":
    sys.exit(main())
