#!/usr/bin/env python
"""Evaluate a trained model on the test views or segments and write the result files.

python tools/test_net.py --cfg configs/charades_12fps.yaml DATA.PATH_TO_DATA_DIR /data/charades OUTPUT_DIR runs/c12
(TEST.CHECKPOINT_FILE_PATH FILE picks the weights; by default the run's newest checkpoint)
"""

import sys

from videotl.engine import test
from videotl_tools._cli import parse, run


def main(argv=None) -> int:
    return run(lambda: test(parse(__doc__.split("\n\n")[0], argv)))


if __name__ == "__main__":
    sys.exit(main())
