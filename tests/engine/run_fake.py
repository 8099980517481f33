"""Subprocess entry for the engine tests: ``run_fake.py train|test|train_test KEY VALUE ...`` on the fakes.

Errors and interruptions end the way they do in tools/train_net.py (``videotl_tools._cli.run``):
one line on stderr and exit status 1, or 130 / 143 after SIGINT / SIGTERM.
"""

import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import fakes  # noqa: E402

from videotl.config import load_config  # noqa: E402
from videotl.engine import test, train  # noqa: E402
from videotl_tools._cli import run  # noqa: E402


def main(command, overrides):
    cfg = load_config("", fakes.TINY + overrides)
    if command in ("train", "train_test"):
        summary = train(cfg, build_model_fn=fakes.build_model, build_loader_fn=fakes.build_loader)
        print(f"summary skipped_samples={summary['skipped_samples']} broken_videos={summary['broken_videos']}")
    if command in ("test", "train_test"):
        test(cfg, build_model_fn=fakes.build_model, build_loader_fn=fakes.build_loader)


if __name__ == "__main__":
    torch.set_num_threads(1)
    # Imports done, start when the test says so (FAKE_START_AFTER names a file it creates).
    gate = os.environ.get("FAKE_START_AFTER")
    while gate and not os.path.exists(gate):
        time.sleep(0.01)
    sys.exit(run(lambda: main(sys.argv[1], sys.argv[2:])))
